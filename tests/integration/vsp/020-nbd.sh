#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# vsp-storage's NBD server against real clients, with both I/O engines. Two exports from one
# configuration file: a dynamic VHDX on a UNIX socket and a raw file on TCP loopback. Every
# write also goes to a raw shadow. Checked: nbdinfo's view (size, flags, base:allocation
# map against the image's own map), qemu-io writes (aligned, unaligned, FUA, zeroes,
# discard) from two connections at once, qemu-img compare of each export with its shadow,
# fio's nbd engine with verification, a read-only export refusing writes, a non-loopback
# address refused, and after SIGTERM a clean exit, `vdisk check` and qemu-img compare on the
# image files themselves.
. "$(dirname "$0")/../lib.sh"
VSP=$VDISK_BUILD_DIR/vsp-storage/vsp-storage
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
requires nbdinfo --version
requires qemu-io --version
requires fio --version

free_port()
{
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# qio URI CMD...: qemu-io on an NBD URI, each CMD a -c argument; fails on any error line.
qio()
{
	local uri=$1 args=() c
	shift
	for c in "$@"; do args+=(-c "$c"); done
	qemu-io -f raw "${args[@]}" "$uri" >"$SCRATCH/qio.out" 2>&1 || die "qemu-io $*: $(cat "$SCRATCH/qio.out")"
	! grep -qiE 'error|failed|Pattern verification' "$SCRATCH/qio.out" || die "qemu-io $*: $(cat "$SCRATCH/qio.out")"
}

# shadow_pattern SHADOW OFF LEN BYTE: what `write -P BYTE OFF LEN` does, in the shadow.
shadow_pattern()
{
	head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$4")" |
		dd of="$1" bs=64K oflag=seek_bytes seek="$2" conv=notrunc status=none
}

shadow_zero()
{
	head -c "$3" /dev/zero | dd of="$1" bs=64K oflag=seek_bytes seek="$2" conv=notrunc status=none
}

run_engine()
{
	local engine=$1 port uriv urir rc want_alloc
	rm -f img.vhdx shadow.raw disk.raw disk-shadow.raw ro.raw
	vdisk create img.vhdx 64M >/dev/null
	truncate -s 64M shadow.raw
	put img.vhdx shadow.raw $((3 * MiB)) $((2 * MiB)) seed-$engine
	gen_data raw-$engine $((16 * MiB)) >disk.raw
	cp disk.raw disk-shadow.raw
	gen_data ro $((4 * MiB)) >ro.raw
	want_alloc=$(vdisk map --json img.vhdx | jq '[.[] | select(.data) | .length] | add')
	port=$(free_port)
	cat >vsp.conf <<CONF
# two exports, one per transport
[daemon]
log-level = info
[export vhdx]
image = $SCRATCH/img.vhdx
nbd = unix:$SCRATCH/vhdx.sock
io-engine = $engine
[export raw]
image = $SCRATCH/disk.raw
nbd = tcp:127.0.0.1:$port
io-engine = $engine
[export ro]
image = $SCRATCH/ro.raw
nbd = unix:$SCRATCH/ro.sock
readonly = yes
CONF
	"$VSP" --config vsp.conf >/dev/null 2>daemon-$engine.log &
	vsp_pid=$!
	cleanup_fn stop_pid "$vsp_pid"
	for _ in $(seq 50); do [ -S ro.sock ] && break; sleep 0.1; done
	[ -S ro.sock ] || die "daemon did not start: $(cat daemon-$engine.log)"
	uriv="nbd+unix:///vhdx?socket=$SCRATCH/vhdx.sock"
	urir="nbd://127.0.0.1:$port/raw"

	# what the clients are told
	nbdinfo --json "$uriv" >info.json || die "nbdinfo failed"
	assert_eq "$(jq -r '.exports[0]."export-size"' info.json)" $((64 * MiB)) "export size"
	for f in can_flush can_fua can_trim can_zero can_multi_conn; do
		assert_eq "$(jq -r ".exports[0].$f" info.json)" true "nbdinfo $f"
	done
	assert_eq "$(jq -r '.exports[0].is_read_only' info.json)" false "read-only flag"
	assert_eq "$(jq -r '.exports[0].contexts | index("base:allocation") != null' info.json)" true \
		"base:allocation offered"
	# base:allocation: the data the image holds, and holes elsewhere
	nbdinfo --map --json "$uriv" >map.json
	assert_eq "$(jq '[.[] | select(.type == 0) | .length] | add' map.json)" \
		"$want_alloc" "allocated bytes (nbd map vs vdisk map)"
	assert_eq "$(jq '[.[] | .length] | add' map.json)" $((64 * MiB)) "map covers the disk"

	# writes from two connections at once, every kind
	qio "$uriv" "write -P 0x11 0 1M" "write -P 0x22 1000 3000" "write -f -P 0x33 5M 64K" \
		"write -z 3M 128K" "discard 4M 1M" "flush" &
	local q1=$!
	qio "$uriv" "write -P 0x44 20M 2M" "write -P 0x55 $((40 * MiB + 512)) 100000" "flush" &
	local q2=$!
	wait $q1 || die "first qemu-io failed"
	wait $q2 || die "second qemu-io failed"
	shadow_pattern shadow.raw 0 $MiB 0x11
	shadow_pattern shadow.raw 1000 3000 0x22
	shadow_pattern shadow.raw $((5 * MiB)) 65536 0x33
	shadow_zero shadow.raw $((3 * MiB)) 131072
	shadow_zero shadow.raw $((4 * MiB)) $MiB
	shadow_pattern shadow.raw $((20 * MiB)) $((2 * MiB)) 0x44
	shadow_pattern shadow.raw $((40 * MiB + 512)) 100000 0x55
	qio "$uriv" "read -P 0x22 1000 3000" "read -P 0x44 20M 2M" "read -P 0 4M 1M"
	rc=0
	qemu-img compare -f raw -F raw "$uriv" shadow.raw >cmp.out 2>&1 || rc=$?
	assert_eq "$rc" 0 "qemu-img compare (vhdx export vs shadow): $(cat cmp.out)"

	# the raw export over TCP
	qio "$urir" "write -P 0x66 7M 1M" "write -P 0x77 123 4567" "write -z 9M 1M" "flush"
	shadow_pattern disk-shadow.raw $((7 * MiB)) $MiB 0x66
	shadow_pattern disk-shadow.raw 123 4567 0x77
	shadow_zero disk-shadow.raw $((9 * MiB)) $MiB
	rc=0
	qemu-img compare -f raw -F raw "$urir" disk-shadow.raw >cmp.out 2>&1 || rc=$?
	assert_eq "$rc" 0 "qemu-img compare (raw export vs shadow): $(cat cmp.out)"

	# fio's nbd engine: random writes at depth 16, then verified reads
	fio --name=vsp --ioengine=nbd --uri="$uriv" --rw=randwrite --bs=4k --size=8M \
		--offset=48M --iodepth=16 --verify=crc32c --verify_fatal=1 --do_verify=1 \
		--randrepeat=1 --output=fio.out >/dev/null 2>&1 || die "fio failed: $(cat fio.out)"
	grep -q "err= 0" fio.out || die "fio reported errors: $(cat fio.out)"
	# fio wrote 48M..56M: mirror it into the shadow from the export itself
	qemu-img convert -f raw -O raw "$uriv" after.raw
	dd if=after.raw of=shadow.raw bs=1M skip=48 seek=48 count=8 conv=notrunc status=none

	# the read-only export refuses writes, serves reads
	nbdinfo --json "nbd+unix:///ro?socket=$SCRATCH/ro.sock" | jq -e '.exports[0].is_read_only' >/dev/null ||
		die "ro export not read-only"
	if qemu-io -f raw -c "write 0 4k" "nbd+unix:///ro?socket=$SCRATCH/ro.sock" 2>&1 | grep -q "^wrote"; then
		die "a write to the read-only export succeeded"
	fi
	assert_eq "$(nbdcopy "nbd+unix:///ro?socket=$SCRATCH/ro.sock" - | sha256)" "$(sha256 ro.raw)" \
		"read-only export content"

	kill -TERM "$vsp_pid"
	rc=0
	wait "$vsp_pid" || rc=$?
	assert_eq "$rc" 0 "daemon exit status ($engine)"
	grep -q "stopped cleanly" daemon-$engine.log || die "no clean stop: $(cat daemon-$engine.log)"
	expect_status 0 vdisk check img.vhdx
	qemu_compare img.vhdx shadow.raw
	assert_same_file disk.raw disk-shadow.raw "raw export file vs its shadow"
	log "$engine: ok"
}

run_engine io_uring
run_engine libaio

# a non-loopback TCP address is refused unless asked for
vdisk create x.vhdx 16M >/dev/null
expect_fail "not a loopback address" "$VSP" --nbd tcp:0.0.0.0:10809 x.vhdx
log "ok"
