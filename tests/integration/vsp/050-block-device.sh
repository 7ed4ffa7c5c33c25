#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A block device as an export: a loop device over a raw file is served over NBD and over
# vhost-user-blk (vsp-driver); writes through both, discard (BLKDISCARD) and write-zeroes
# (BLKZEROOUT) reach the device, and the backing file holds exactly the bytes of a shadow.
# Skips (77) only when this machine cannot create loop devices.
. "$(dirname "$0")/../lib.sh"
VSP=$VDISK_BUILD_DIR/vsp-storage/vsp-storage
DRV=$VDISK_BUILD_DIR/vsp-storage/vsp-driver
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
[ -x "$DRV" ] || die "vsp-driver not built: $DRV"
requires qemu-io --version

gen_data blk $((16 * MiB)) >back.raw
cp back.raw shadow.raw
dev=$(losetup -f --show back.raw 2>/dev/null) || skip "cannot create a loop device here"
detach() { losetup -d "$dev" 2>/dev/null || :; }
cleanup_fn detach

"$VSP" --nbd "unix:$SCRATCH/n.sock" --vhost-user-blk "$SCRATCH/v.sock" --queues 2 --name blk \
	"$dev" >/dev/null 2>daemon.log &
pid=$!
cleanup_fn stop_pid "$pid"
for _ in $(seq 50); do [ -S n.sock ] && [ -S v.sock ] && break; sleep 0.1; done
[ -S v.sock ] || die "daemon did not start: $(cat daemon.log)"
grep -q "raw, $((16 * MiB)) bytes" daemon.log || die "block device size: $(cat daemon.log)"

uri="nbd+unix:///blk?socket=$SCRATCH/n.sock"
qemu-io -f raw -c "write -P 0x5a 1M 1M" -c "write -z 4M 1M" -c "discard 8M 1M" -c flush "$uri" \
	>qio.out 2>&1 || die "qemu-io: $(cat qio.out)"
head -c $MiB /dev/zero | tr '\0' '\132' | dd of=shadow.raw bs=1M seek=1 conv=notrunc status=none
# a discarded range of a loop device over a file reads as zeros (hole punched)
for m in 4 8; do
	dd if=/dev/zero of=shadow.raw bs=1M seek=$m count=1 conv=notrunc status=none
done
gen_data via-vhost $((2 * MiB)) >w.bin
"$DRV" write v.sock $((12 * MiB)) <w.bin || die "vsp-driver write failed"
dd if=w.bin of=shadow.raw bs=1M seek=12 conv=notrunc status=none
"$DRV" read v.sock 0 $((16 * MiB)) >r.bin || die "vsp-driver read failed"
assert_same_file r.bin shadow.raw "device read through vhost-user vs shadow"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
assert_eq "$rc" 0 "daemon exit status"
detach
assert_same_file back.raw shadow.raw "the loop device's backing file vs shadow"
log "ok"
