#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every refusal of vdisk lun map triggers on a real device, with its reason, and --force
# overrides only the one that is safe (a device another program has open exclusively right
# now: mapping writes nothing to it): a mounted partition (and its disk), active swap, a
# device held by device-mapper (when this kernel has it), the device holding the host's root
# filesystem, a device already mapped to another slot (itself, its disk or its partition), a
# read-only device mapped read-write. No refusal changes the map file.
. "$(dirname "$0")/lib.sh"
requires perl -MFcntl -e 1

make_file a.img 64
make_file b.img 32
make_file r.img 16
make_file x.img 16
new_loop A a.img
new_loop B b.img
new_loop R r.img --read-only
new_loop X x.img
gpt "$A" 3 16
mkfs.ext4 -q "${A}p1"
mkswap "${A}p2" >/dev/null
gpt "$X" 1 8
mkfs.ext4 -q "$B"
# a read-only loop cannot be written: its identity comes from a table written beforehand
losetup -d "$R"
printf 'label: gpt\nsize=8MiB\n' | sfdisk -q r.img >/dev/null 2>&1
new_loop R r.img --read-only
[ -n "$(blkid_value "$R" PTUUID)" ] || die "no GPT on $R"

expect_status 0 vdisk lun map vm0 0:0:9 "$B" # so the map file exists
cp "$VDISK_LUN_MAP" before.conf
unchanged() { assert_same_file "$VDISK_LUN_MAP" before.conf "map file after a refusal"; }

# mounted: the partition, and its whole disk; --force does not override it
mkdir mnt
mount "${A}p1" mnt || die "mount ${A}p1 failed"
cleanup_fn umount_if "$SCRATCH/mnt"
expect_fail "refusing ${A}p1: mounted on $SCRATCH/mnt \(unmount, swapoff" vdisk lun map vm1 0:0:0 "${A}p1"
expect_fail "refusing ${A}p1: mounted on" vdisk lun map --force vm1 0:0:0 "${A}p1"
expect_fail "refusing $A: .*mounted on ${A#/dev/}p1:$SCRATCH/mnt" vdisk lun map --force vm1 0:0:0 "$A"
unchanged
umount mnt

# swap
swapon "${A}p2" || die "swapon ${A}p2 failed"
cleanup_fn swapoff_if "${A}p2"
expect_fail "refusing ${A}p2: active swap" vdisk lun map --force vm1 0:0:0 "${A}p2"
expect_fail "refusing $A: .*active swap" vdisk lun map vm1 0:0:0 "$A"
unchanged
swapoff "${A}p2"

# now free: the partition maps
expect_status 0 vdisk lun map vm1 0:0:0 "${A}p1"

# mapped elsewhere: the same device, its disk, by another identity too
expect_fail "refusing ${A}p1: already mapped to vm1 0:0:0 as PARTUUID=" vdisk lun map vm2 0:0:0 "${A}p1"
expect_fail "refusing $A: already mapped to vm1 0:0:0" vdisk lun map --force vm2 0:0:0 "$A"
expect_fail "refusing $B: already mapped to vm0 0:0:9" vdisk lun map vm1 0:0:5 "$B"
# and the partitions of a mapped disk
expect_status 0 vdisk lun map vm3 0:0:0 "$X"
expect_fail "refusing ${X}p1: already mapped to vm3 0:0:0 as PTUUID=" vdisk lun map vm4 0:0:0 "${X}p1"
cp "$VDISK_LUN_MAP" before.conf

# read-only device: only --readonly
expect_fail "refusing $R: the device is read-only; map it with --readonly" vdisk lun map vm5 0:0:0 "$R"
unchanged
expect_status 0 vdisk lun map --readonly vm5 0:0:0 "$R"
cp "$VDISK_LUN_MAP" before.conf

# open exclusively by another program: refused; --force maps it (mapping does not touch it)
perl -MFcntl -e 'sysopen(my $f, $ARGV[0], O_RDONLY | O_EXCL) or die "O_EXCL: $!\n";
	$| = 1; print "held\n"; sleep 120' "${A}p3" >holder.out &
holder=$!
cleanup_fn stop_pid "$holder"
for i in $(seq 50); do
	grep -q held holder.out && break
	sleep 0.1
done
grep -q held holder.out || die "the O_EXCL holder did not start"
vdisk lun list --json >list.json || die "list failed"
assert_eq "$(jq -r --arg p "${A}p3" '.blockdevices[] | select(.path == $p) | .busy.exclusive' list.json)" \
	true "exclusive flag of ${A}p3"
expect_fail "refusing ${A}p3: open exclusively by another program \(--force maps it anyway" \
	vdisk lun map vm6 0:0:0 "${A}p3"
unchanged
expect_status 0 vdisk lun map --force vm6 0:0:0 "${A}p3"
grep -q "^vm6 0:0:0 rw PARTUUID=$(blkid_value "${A}p3" PART_ENTRY_UUID)$" "$VDISK_LUN_MAP" ||
	die "forced map line missing: $(cat "$VDISK_LUN_MAP")"
stop_pid "$holder" || : # (|| : keeps set -e away from the wait status)
cp "$VDISK_LUN_MAP" before.conf

# the host's root filesystem: never, whatever the options
root_src=$(findmnt -n -o SOURCE / || :)
if [ -b "$root_src" ]; then
	expect_fail "refusing .*holds the host's root or boot filesystem.*never handed to a VM" \
		vdisk lun map --force --readonly vm7 0:0:0 "$root_src"
	unchanged
	vdisk lun list --json >list.json
	jq -e --arg p "$(readlink -f "$root_src")" \
		'.blockdevices[] | select(.path == $p) | .busy["host-root"] == true' list.json >/dev/null ||
		die "list does not flag $root_src as the host root"
else
	log "/ is on '$root_src', not a block device: host-root refusal covered by test-passthrough only"
fi

# held by device-mapper (a linear target over a loop device), when this kernel has dm
if dmsetup version >/dev/null 2>&1 && [ -e /dev/mapper/control ]; then
	name=vdisk-test-$$
	dmsetup create "$name" --table "0 $((16 * MiB / 512)) linear $B 0" || die "dmsetup create failed"
	cleanup_fn dmsetup remove "$name"
	expect_status 0 vdisk lun unmap vm0 0:0:9
	expect_fail "refusing $B: held by dm-[0-9]+" vdisk lun map --force vm8 0:0:0 "$B"
	dmsetup remove "$name"
else
	log "device-mapper is not in this kernel: the held-by refusal is covered by test-passthrough"
fi
log "ok"
