#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A Linux guest (QEMU TCG, Debian's kernel, the busybox initramfs of vsp/guest.bash) gets a
# VM's passthrough LUNs from `vsp-storage --map FILE --vm VM --vhost-user-blk S`, one
# vhost-user-blk-pci device per S.C-T-L: a loop device with 512-byte sectors (rw), one with
# `--sector-size 4096` (rw) and one mapped --readonly. The guest must see each device's size,
# logical/physical block size and read-only flag; it writes the host's own
# data files (carried in the initramfs) with O_DIRECT at several offsets, including a single
# 512-byte sector and the last 64 KiB of each disk, reads back a region the host wrote on the
# device beforehand, discards a range when its kernel offers discard, and cannot write the
# read-only LUN. On the host, after a clean SIGTERM stop, every written range holds exactly
# the host's bytes, every discarded range reads zeros, and the whole of each device equals a
# shadow copy taken before the guest ran with exactly those changes applied (so nothing else
# moved), including the read-only one, which must be unchanged.
. "$(dirname "$0")/lib.sh"
. "$VDISK_SOURCE_DIR/tests/integration/vsp/guest.bash"
VSP=$VDISK_BUILD_DIR/vsp-storage/vsp-storage
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
requires blockdev --version
requires cmp --version

make_file a.img 24
make_file b.img 32
make_file c.img 8
new_loop A a.img
new_loop B b.img --sector-size 4096
new_loop C c.img
for d in "$A" "$B" "$C"; do
	gpt "$d" 1 4
	partx -d "$d" >/dev/null 2>&1 || :
done
assert_eq "$(blockdev --getss "$B")" 4096 "logical sector of the 4096-byte loop device"
vdisk lun map gvm 0:0:0 "$A" >/dev/null || die "map A failed"
vdisk lun map gvm 0:0:1 "$B" >/dev/null || die "map B failed"
vdisk lun map --readonly gvm 0:0:2 "$C" >/dev/null || die "map C failed"

# put_dev DEV OFFSET FILE: FILE's bytes onto the device at OFFSET, with O_DIRECT.
put_dev()
{
	dd if="$3" of="$1" bs=64k oflag=direct,seek_bytes seek="$2" conv=notrunc,fsync status=none ||
		die "dd $3 to $1 at $2 failed"
}

# dev_bytes DEV OFFSET LEN: the device's bytes (O_DIRECT, past any page cache).
dev_bytes()
{
	dd if="$1" bs=64k iflag=direct,skip_bytes,count_bytes skip="$2" count="$3" status=none ||
		die "dd from $1 at $2+$3 failed"
}

# the host writes data on the devices beforehand: regions the guest reads, ranges it discards
gen_data pre-a $MiB >pre-a.bin
gen_data pre-b $MiB >pre-b.bin
gen_data pre-c $MiB >pre-c.bin
gen_data disc-a $MiB >disc-a.bin
gen_data disc-b $((2 * MiB)) >disc-b.bin
put_dev "$A" $((8 * MiB)) pre-a.bin
put_dev "$B" $((6 * MiB)) pre-b.bin
put_dev "$C" $((2 * MiB)) pre-c.bin
put_dev "$A" $((12 * MiB)) disc-a.bin
put_dev "$B" $((20 * MiB)) disc-b.bin
for d in A B C; do
	dev_bytes "${!d}" 0 "$(blockdev --getsize64 "${!d}")" >"$d.shadow"
done
c_sha=$(sha256 C.shadow)

# What the guest writes: DISK FILE OFFSET DD-BLOCK-SIZE (DISK = the LUN's serial suffix).
size_a=$((24 * MiB))
size_b=$((32 * MiB))
WRITES=(
	"0.0.0 a-big.bin $((4 * MiB)) 65536"
	"0.0.0 a-sec.bin $((20001 * 512)) 512"
	"0.0.0 a-end.bin $((size_a - 65536)) 65536"
	"0.0.1 b-big.bin $((2 * MiB)) 65536"
	"0.0.1 b-blk.bin $((2001 * 4096)) 4096"
	"0.0.1 b-end.bin $((size_b - 65536)) 65536"
)
gen_data a-big $((3 * MiB)) >a-big.bin
gen_data a-sec 512 >a-sec.bin
gen_data a-end 65536 >a-end.bin
gen_data b-big $((3 * MiB)) >b-big.bin
gen_data b-blk 4096 >b-blk.bin
gen_data b-end 65536 >b-end.bin
# discards: DISK OFFSET LENGTH (over the ranges filled above)
DISCARDS=("0.0.0 $((12 * MiB)) $MiB" "0.0.1 $((20 * MiB)) $((2 * MiB))")

{
	cat <<'G'
sha() { sha256sum | cut -d' ' -f1; }
i=0
while [ ! -b /dev/vdc ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
for d in /sys/block/vd*; do
	q=$d/queue
	echo "VSP-DISK $(cat $d/serial) $(cat $d/size) $(cat $q/logical_block_size)" \
		"$(cat $q/physical_block_size) $(cat $q/minimum_io_size) $(cat $d/ro)" \
		"$(cat $q/discard_max_bytes)"
done
# dev SUFFIX: the /dev node whose virtio serial is gvm-SUFFIX
dev() {
	for d in /sys/block/vd*; do
		[ "$(cat $d/serial)" = "gvm-$1" ] && { echo /dev/${d##*/}; return; }
	done
	echo "VSP-ERROR no disk gvm-$1" >&2
	echo /dev/null
}
# rd SUFFIX OFFSET LEN BS: checksum of a range read with O_DIRECT
rd() { dd if=$(dev $1) bs=$4 skip=$(($2 / $4)) count=$(($3 / $4)) iflag=direct 2>/dev/null | sha; }
# wr SUFFIX FILE OFFSET BS: /data/FILE written with O_DIRECT, then a flush (fsync)
wr() {
	dd if=/data/$2 of=$(dev $1) bs=$4 seek=$(($3 / $4)) oflag=direct conv=notrunc,fsync \
		2>/tmp/dd.err || echo "VSP-ERROR write $2: $(cat /tmp/dd.err)"
}
echo "VSP-PRE-A $(rd 0.0.0 8388608 1048576 65536)"
echo "VSP-PRE-B $(rd 0.0.1 6291456 1048576 65536)"
echo "VSP-PRE-C $(rd 0.0.2 2097152 1048576 65536)"
G
	for w in "${WRITES[@]}"; do
		read -r disk file off bs <<<"$w"
		echo "wr $disk $file $off $bs"
		echo "echo \"VSP-RB $file \$(rd $disk $off $(file_size "$file") $bs)\""
	done
	for x in "${DISCARDS[@]}"; do
		read -r disk off len <<<"$x"
		cat <<G
if [ "\$(cat /sys/block/\$(basename \$(dev $disk))/queue/discard_max_bytes)" -gt 0 ]; then
	blkdiscard -o $off -l $len \$(dev $disk) && echo "VSP-DISCARD $disk done" ||
		echo "VSP-ERROR discard $disk"
	echo "VSP-RBD $disk \$(rd $disk $off $len 65536)"
else
	echo "VSP-DISCARD $disk none"
fi
G
	done
	cat <<'G'
# the read-only LUN: a write must fail
if dd if=/data/a-sec.bin of=$(dev 0.0.2) bs=512 seek=100 oflag=direct conv=notrunc,fsync 2>/dev/null; then
	echo "VSP-RO-WRITE accepted"
else
	echo "VSP-RO-WRITE refused"
fi
sync
G
} >guest.sh

"$VSP" --map "$VDISK_LUN_MAP" --vm gvm --vhost-user-blk "$SCRATCH/v.sock" --queues 2 \
	--pidfile "$SCRATCH/vsp.pid" >/dev/null 2>daemon.log &
pid=$!
cleanup_fn stop_pid "$pid"
for _ in $(seq 100); do [ -s vsp.pid ] && break; sleep 0.1; done
[ -s vsp.pid ] || die "vsp-storage did not serve the LUNs: $(cat daemon.log)"
for s in 0-0-0 0-0-1 0-0-2; do
	[ -S "v.sock.$s" ] || die "no socket v.sock.$s: $(cat daemon.log)"
done

build_initramfs guest.sh initrd.gz a-big.bin a-sec.bin a-end.bin b-big.bin b-blk.bin b-end.bin
log "guest boot"
run_guest_disks initrd.gz guest.log "" "$SCRATCH/v.sock.0-0-0" "$SCRATCH/v.sock.0-0-1" \
	"$SCRATCH/v.sock.0-0-2"
grep -q VSP-DONE guest.log || die "guest did not finish: $(tail -20 guest.log)"
! grep VSP-ERROR guest.log || die "errors in the guest"
val() { sed -n "s/^VSP-$1 //p" guest.log | head -1 | tr -d '\r'; }

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
assert_eq "$rc" 0 "vsp-storage exit status after SIGTERM"
grep -q "stopped cleanly" daemon.log || die "no clean stop: $(tail -5 daemon.log)"

# what the guest saw: SERIAL SECTORS LOGICAL PHYSICAL MIN-IO RO DISCARD-MAX
for x in "0.0.0 A 0" "0.0.1 B 0" "0.0.2 C 1"; do
	read -r disk d ro <<<"$x"
	dev=${!d}
	read -r sectors lbs pbs mio gro gdisc < <(val "DISK gvm-$disk") ||
		die "the guest has no disk gvm-$disk: $(grep VSP-DISK guest.log)"
	assert_eq "$((sectors * 512))" "$(blockdev --getsize64 "$dev")" "size of gvm-$disk in the guest"
	assert_eq "$lbs" "$(blockdev --getss "$dev")" "logical block size of gvm-$disk"
	assert_eq "$pbs" "$(blockdev --getpbsz "$dev")" "physical block size of gvm-$disk"
	assert_eq "$mio" "$(blockdev --getiomin "$dev")" "minimum I/O size of gvm-$disk"
	assert_eq "$gro" "$ro" "read-only flag of gvm-$disk"
	[ "$ro" = 1 ] || [ "$gdisc" -gt 0 ] || log "gvm-$disk: the guest kernel offers no discard"
done
assert_eq "$(grep -c '^VSP-DISK' guest.log)" 3 "disks in the guest"

# the regions the host wrote beforehand, as the guest read them
assert_eq "$(val PRE-A)" "$(sha256 pre-a.bin)" "guest read of the host's data on LUN 0:0:0"
assert_eq "$(val PRE-B)" "$(sha256 pre-b.bin)" "guest read of the host's data on LUN 0:0:1"
assert_eq "$(val PRE-C)" "$(sha256 pre-c.bin)" "guest read of the host's data on the read-only LUN"

# every write: the guest's read-back and the device's bytes; the shadow gets the same change
for w in "${WRITES[@]}"; do
	read -r disk file off bs <<<"$w"
	case $disk in 0.0.0) d=A ;; 0.0.1) d=B ;; esac
	len=$(file_size "$file")
	assert_eq "$(val "RB $file")" "$(sha256 "$file")" "guest read-back of $file"
	dev_bytes "${!d}" "$off" "$len" >got.bin
	cmp -s got.bin "$file" || die "$file did not land at $off on ${!d} (gvm-$disk)"
	dd if="$file" of="$d.shadow" bs=64k oflag=seek_bytes seek="$off" conv=notrunc status=none
done
for x in "${DISCARDS[@]}"; do
	read -r disk off len <<<"$x"
	case $disk in 0.0.0) d=A ;; 0.0.1) d=B ;; esac
	case $(val "DISCARD $disk") in
	done)
		# a loop device punches a hole in its file: the range reads zeros
		zero=$(head -c "$len" /dev/zero | sha256)
		assert_eq "$(val "RBD $disk")" "$zero" "guest read of the discarded range of gvm-$disk"
		assert_eq "$(dev_bytes "${!d}" "$off" "$len" | sha256)" "$zero" \
			"discarded range of ${!d} (gvm-$disk)"
		dd if=/dev/zero of="$d.shadow" bs=64k oflag=seek_bytes seek="$off" count="$len" \
			iflag=count_bytes conv=notrunc status=none
		;;
	none) log "gvm-$disk: no discard in the guest, range left as it was" ;;
	*) die "no discard result for gvm-$disk" ;;
	esac
done
assert_eq "$(val RO-WRITE)" refused "a guest write to the read-only LUN"

# the whole of each device: the shadow with exactly these changes
for d in A B C; do
	dev_bytes "${!d}" 0 "$(blockdev --getsize64 "${!d}")" >"$d.after"
	assert_same_file "$d.after" "$d.shadow" "device $d (${!d}) vs its shadow"
done
assert_eq "$(sha256 C.after)" "$c_sha" "the read-only LUN's device"
log "ok"
