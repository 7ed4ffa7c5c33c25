#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# vsp-storage's vhost-user-blk back end driven by our own front end (tests/vsp/vsp-driver):
# the configuration space, data written through the socket read back by the host and by
# the driver, patterned writes on four queues at once with flush/discard/write-zeroes, and
# the hostile cases (buffers and indirect tables outside guest memory, loops, nested
# indirect tables, bad indices, oversized requests, malformed messages): the daemon must
# fail only that request or connection, keep serving, and keep serving its other export
# (NBD) meanwhile. Run under ASan in CI's sanitized pass.
. "$(dirname "$0")/../lib.sh"
VSP=$VDISK_BUILD_DIR/vsp-storage/vsp-storage
DRV=$VDISK_BUILD_DIR/vsp-storage/vsp-driver
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
[ -x "$DRV" ] || die "vsp-driver not built: $DRV"
requires nbdinfo --version

vdisk create a.vhdx 128M >/dev/null
truncate -s 128M a-shadow.raw
put a.vhdx a-shadow.raw $((5 * MiB)) $((3 * MiB)) pre
gen_data other $((8 * MiB)) >b.raw
cat >vsp.conf <<CONF
[export a]
image = $SCRATCH/a.vhdx
vhost-user-blk = $SCRATCH/a.sock
queues = 4
[export b]
image = $SCRATCH/b.raw
nbd = unix:$SCRATCH/b.sock
CONF
"$VSP" --config vsp.conf >/dev/null 2>daemon.log &
vsp_pid=$!
cleanup_fn stop_pid "$vsp_pid"
for _ in $(seq 50); do [ -S b.sock ] && [ -S a.sock ] && break; sleep 0.1; done
[ -S a.sock ] || die "daemon did not start: $(cat daemon.log)"

"$DRV" info a.sock >info.txt || die "vsp-driver info failed"
assert_eq "$(sed -n 's/^capacity //p' info.txt)" $((128 * MiB)) "capacity from the config space"
assert_eq "$(sed -n 's/^queues //p' info.txt)" 4 "num_queues"
assert_eq "$(sed -n 's/^serial //p' info.txt)" a "serial from GET_ID"

# data through the socket: written, read back by the driver, and by the host later
gen_data drv $((3 * MiB)) >w.bin
"$DRV" write a.sock $((40 * MiB)) <w.bin || die "vsp-driver write failed"
dd if=w.bin of=a-shadow.raw bs=1M seek=40 conv=notrunc status=none
"$DRV" read a.sock 0 $((64 * MiB)) >r.bin || die "vsp-driver read failed"
assert_eq "$(sha256 r.bin)" "$(read_range a-shadow.raw 0 $((64 * MiB)) | sha256)" \
	"first 64 MiB read through vhost-user"

"$DRV" verify a.sock --queues 4 --size 32M || die "vsp-driver verify failed"

nbd_sha_before=$(nbdcopy "nbd+unix:///b?socket=$SCRATCH/b.sock" - | sha256)
"$DRV" hostile a.sock >hostile.txt 2>&1 || die "hostile cases: $(cat hostile.txt)"
grep -q "all cases ok" hostile.txt || die "hostile run incomplete: $(cat hostile.txt)"
log "$(grep -c survived hostile.txt) hostile cases survived"
kill -0 "$vsp_pid" || die "the daemon died"
assert_eq "$(nbdcopy "nbd+unix:///b?socket=$SCRATCH/b.sock" - | sha256)" "$nbd_sha_before" \
	"the other export still serves"
assert_eq "$nbd_sha_before" "$(sha256 b.raw)" "the other export's content"

kill -TERM "$vsp_pid"
rc=0
wait "$vsp_pid" || rc=$?
assert_eq "$rc" 0 "daemon exit status"
! grep -qE 'AddressSanitizer|runtime error' daemon.log || die "sanitizer report: $(cat daemon.log)"
expect_status 0 vdisk check a.vhdx
assert_eq "$(vdisk read a.vhdx $((40 * MiB)) $((3 * MiB)) | sha256)" "$(sha256 w.bin)" \
	"host read of the data written through vhost-user"
assert_eq "$(vdisk read a.vhdx $((5 * MiB)) $((3 * MiB)) | sha256)" \
	"$(read_range a-shadow.raw $((5 * MiB)) $((3 * MiB)) | sha256)" "data from before"
log "ok"
