#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The issue's main scenario. A fresh dynamic image is mounted writable; sfdisk writes a GPT
# with two partitions through the mount's `disk` file, and p1, p2 appear with the sizes and
# offsets libblkid (partx) and libfdisk (sfdisk) find; mkfs.ext4 makes a file system in p1
# through a loop device, files are written, p2 gets raw data. After `vdisk umount` returns,
# the peers agree: qemu-img check is clean, and qemu-img convert's raw copy has the same
# partition table (partx), the same files (loop-mounted at p1's offset, read-only) and p2's
# data; a read-only remount reads exactly what qemu-img converted.
. "$(dirname "$0")/lib.sh"
requires_root
requires qemu-img --version
requires sfdisk --version
requires partx --version
requires mkfs.ext4 -V

img=$SCRATCH/gpt.vhdx
mnt=$SCRATCH/mnt
vdisk create "$img" 256M || die "create failed"
fuse_mount --rw "$img" "$mnt"
assert_eq "$(ls "$mnt")" "disk" "files of a fresh image's mount"
assert_eq "$(file_size "$mnt/disk")" $((256 * MiB)) "size of disk"

sfdisk -q "$mnt/disk" <<'TABLE' || die "sfdisk on the mount failed"
label: gpt
size=100MiB, type=linux, name=first
type=linux, name=second
TABLE
assert_eq "$(ls "$mnt" | tr '\n' ' ')" "disk p1 p2 " "files after partitioning"
blkid_parts "$mnt/disk" >"$SCRATCH/parts"
[ "$(wc -l <"$SCRATCH/parts")" -eq 2 ] || die "partx found: $(cat "$SCRATCH/parts")"
assert_eq "$(mount_sizes "$mnt")" "$(awk '{ print $1, $3 }' "$SCRATCH/parts")" \
	"partition sizes (mount vs partx)"
assert_eq "$(sfdisk -J "$mnt/disk" | jq -r '.partitiontable.partitions[] | "\(.start * 512) \(.size * 512)"')" \
	"$(awk '{ print $2, $3 }' "$SCRATCH/parts")" "geometry (sfdisk vs partx)"
while read -r nr start _; do
	assert_part_content "$mnt" "$nr" "$start"
done <"$SCRATCH/parts"
read -r _ p2_start _ < <(sed -n 2p "$SCRATCH/parts")

# ext4 in p1 through a loop device, files in it
loop_attach loop "$mnt/p1"
mkfs.ext4 -q -L vdisk-fuse "$loop" || die "mkfs.ext4 on $loop ($mnt/p1) failed"
fs_mount "$loop" "$SCRATCH/fs"
cp -r "$VDISK_SOURCE_DIR/fuse" "$SCRATCH/fs/src"
gen_data ext4-file $((24 * MiB)) >"$SCRATCH/fs/random.bin"
mkdir -p "$SCRATCH/fs/a/b/c"
echo "vdisk mount" >"$SCRATCH/fs/a/b/c/hello.txt"
tree_sums "$SCRATCH/fs" >"$SCRATCH/sums"
[ "$(wc -l <"$SCRATCH/sums")" -ge 5 ] || die "too few files written"
umount "$SCRATCH/fs" || die "umount of the ext4 file system failed"
losetup -d "$loop" || die "losetup -d $loop failed"

# raw data in p2, at an offset inside it
gen_data p2-data $((8 * MiB + 4096)) >"$SCRATCH/p2.bin"
dd if="$SCRATCH/p2.bin" of="$mnt/p2" bs=1M seek=3 conv=notrunc status=none ||
	die "writing p2 failed"

vdisk umount "$mnt" || die "vdisk umount failed"
is_mounted "$mnt" && die "$mnt is still mounted after vdisk umount"

# peers: qemu-img check, our check, and qemu-img's raw copy
qemu_check "$img"
expect_status 0 vdisk check "$img"
qemu-img convert -f vhdx -O raw "$img" "$SCRATCH/raw.img" || die "qemu-img convert failed"
assert_eq "$(blkid_parts "$SCRATCH/raw.img")" "$(cat "$SCRATCH/parts")" \
	"partition table of qemu-img's raw copy"
read -r _ p1_start p1_size < <(sed -n 1p "$SCRATCH/parts")
fs_mount "$SCRATCH/raw.img" "$SCRATCH/rawfs" "ro,loop,offset=$p1_start,sizelimit=$p1_size"
assert_eq "$(tree_sums "$SCRATCH/rawfs")" "$(cat "$SCRATCH/sums")" "files in qemu-img's raw copy"
umount "$SCRATCH/rawfs"
cmp "$SCRATCH/p2.bin" <(read_range "$SCRATCH/raw.img" $((p2_start + 3 * MiB)) \
	"$(file_size "$SCRATCH/p2.bin")") || die "p2 data differs in qemu-img's raw copy"

# a read-only remount reads what qemu-img converted, file by file
fuse_mount "$img" "$mnt"
assert_eq "$(sha256 "$mnt/disk")" "$(sha256 "$SCRATCH/raw.img")" "disk (mount vs qemu-img convert)"
vdisk umount "$mnt" || die "vdisk umount (read-only) failed"
log "ok"
