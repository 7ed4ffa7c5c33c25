#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk mount --fs PART IMAGE MNT DIR`: the file system of a partition is mounted on DIR
# through a loop device (direct I/O, the image's sector size); `vdisk umount MNT` takes down the
# file system, the loop device and the FUSE mount in that order and returns once the image
# is closed (qemu-img check clean right after). A read-only --fs mount refuses writes. A bad
# PART fails with a message naming the partitions there are, leaving nothing mounted.
. "$(dirname "$0")/lib.sh"
requires_root
requires qemu-img --version
requires sfdisk --version
requires mkfs.ext4 -V

img=$SCRATCH/fs.vhdx
mnt=$SCRATCH/mnt
dir=$SCRATCH/dir
mkdir -p "$dir"
vdisk create "$img" 128M || die "create failed"
fuse_mount --rw "$img" "$mnt"
printf 'label: dos\nsize=40MiB, type=83\ntype=83\n' | sfdisk -q "$mnt/disk" || die "sfdisk failed"
loop_attach loop "$mnt/p2"
mkfs.ext4 -q "$loop" || die "mkfs.ext4 failed"
losetup -d "$loop"
vdisk umount "$mnt" || die "umount failed"

# writable --fs mount of p2
cleanup_fn umount -q "$dir"
vdisk mount --rw --fs 2 "$img" "$mnt" "$dir" || die "mount --fs 2 failed"
is_mounted "$dir" || die "$dir is not mounted"
loopdev=$(awk -v d="$dir" '$5 == d { print $(NF - 1) }' /proc/self/mountinfo)
[[ "$loopdev" == /dev/loop* ]] || die "$dir is mounted from '$loopdev', expected a loop device"
assert_eq "$(losetup -n -O BACK-FILE "$loopdev" | sed 's/ *$//')" "$mnt/p2" "backing file of $loopdev"
assert_eq "$(losetup -n -O DIO,LOG-SEC "$loopdev" | tr -s ' ' | sed 's/^ //; s/ $//')" "1 512" \
	"direct I/O and sector size of $loopdev"
cp -r "$VDISK_SOURCE_DIR/fuse" "$dir/src"
gen_data fs-opt $((5 * MiB)) >"$dir/data.bin"
tree_sums "$dir" >"$SCRATCH/sums"
vdisk umount "$mnt" || die "vdisk umount failed"
is_mounted "$dir" && die "$dir still mounted after vdisk umount"
is_mounted "$mnt" && die "$mnt still mounted after vdisk umount"
losetup -j "$mnt/p2" 2>/dev/null | grep -q . && die "a loop device still uses $mnt/p2"
qemu_check "$img"
expect_status 0 vdisk check "$img"

# read-only --fs mount (p2 spelled as in the mount): the files are there, writes refused
vdisk mount --fs p2 "$img" "$mnt" "$dir" || die "read-only mount --fs p2 failed"
cleanup_fn quiet_umount "$mnt"
assert_eq "$(tree_sums "$dir")" "$(cat "$SCRATCH/sums")" "files through a read-only --fs mount"
expect_fail 'read-only' touch "$dir/new-file"
vdisk umount "$mnt" || die "vdisk umount failed"
is_mounted "$dir" && die "$dir still mounted"

# a partition that is not there: a clear error, nothing left mounted
expect_fail 'p7.*(the mount has: disk p1 p2)' vdisk mount --fs 7 "$img" "$mnt" "$dir"
is_mounted "$mnt" && die "a failed --fs mount left $mnt mounted"
expect_status 64 vdisk mount --fs 1 "$img" "$mnt"
log "ok"
