#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A 4096-byte-sector image: the mount exposes the same bytes (checked against a raw shadow
# after writes at unaligned offsets, which the mount turns into read-modify-writes of whole
# 4 KiB sectors); a GPT made with 4096-byte sectors (by sfdisk on a 4096-byte loop device) is found at
# LBA 1 = byte 4096, with p1/p2 where libblkid sees them on a 4096-byte loop device; ext4
# made through a 4096-byte loop device on p1 holds its files, and libvhdi's reading of the
# image has them too (loop-mounted with 4096-byte sectors at p1's offset). qemu-img 7.2
# cannot open 4096-byte-sector VHDX files.
. "$(dirname "$0")/lib.sh"
requires_root
requires vhdimount -V
requires vhdiinfo -V
requires sfdisk --version
requires partx --version
requires mkfs.ext4 -V

img=$SCRATCH/4k.vhdx
mnt=$SCRATCH/mnt
vdisk create --logical-sector 4096 "$img" 192M || die "create failed"
assert_eq "$(vdisk_info_field "$img" '."logical-sector-size"')" 4096 "logical sector size"
fuse_mount --rw "$img" "$mnt"
truncate -s 192M "$SCRATCH/shadow"

# sfdisk 2.38 has no --sector-size: it partitions a 4096-byte loop device of `disk`
loop_attach dev "$mnt/disk" -b 4096
assert_eq "$(blockdev --getss "$dev")" 4096 "sector size of the loop device"
sfdisk -q --no-reread "$dev" <<'TABLE' || die "sfdisk on $dev ($mnt/disk) failed"
label: gpt
size=64MiB, type=linux
type=linux
TABLE
blkid_parts "$dev" >"$SCRATCH/parts"
losetup -d "$dev"
dd if="$mnt/disk" of="$SCRATCH/shadow" bs=1M conv=notrunc status=none
assert_eq "$(ls "$mnt" | tr '\n' ' ')" "disk p1 p2 " "files after partitioning"
[ "$(wc -l <"$SCRATCH/parts")" -eq 2 ] || die "partx found: $(cat "$SCRATCH/parts")"
assert_eq "$(mount_sizes "$mnt")" "$(awk '{ print $1, $3 }' "$SCRATCH/parts")" \
	"partition sizes (mount vs partx on a 4096-byte loop device)"
while read -r nr start _; do
	assert_part_content "$mnt" "$nr" "$start"
done <"$SCRATCH/parts"
read -r _ p1_start p1_size < <(sed -n 1p "$SCRATCH/parts")
read -r _ p2_start _ < <(sed -n 2p "$SCRATCH/parts")

# sub-sector writes through p2: each is a read-modify-write of 4 KiB sectors
w()
{
	gen_data "$3" "$2" >"$SCRATCH/w"
	dd if="$SCRATCH/w" of="$mnt/p2" bs=64K oflag=seek_bytes seek="$1" conv=notrunc status=none ||
		die "write of $2 bytes at $1 of p2 failed"
	dd if="$SCRATCH/w" of="$SCRATCH/shadow" bs=64K oflag=seek_bytes seek=$((p2_start + $1)) \
		conv=notrunc status=none
}
w 100 1 a
w 4095 2 b
w 8192 512 c
w $((MiB - 700)) 5000 d
w $((3 * MiB)) $((MiB + 4096)) e
assert_same_file "$mnt/disk" "$SCRATCH/shadow" "disk after sub-sector writes"

# ext4 through a 4096-byte loop device on p1
loop_attach loop "$mnt/p1" -b 4096
mkfs.ext4 -q "$loop" || die "mkfs.ext4 on $loop failed"
fs_mount "$loop" "$SCRATCH/fs"
cp -r "$VDISK_SOURCE_DIR/fuse" "$SCRATCH/fs/src"
gen_data ext4-4k $((9 * MiB + 123)) >"$SCRATCH/fs/odd-size.bin"
tree_sums "$SCRATCH/fs" >"$SCRATCH/sums"
umount "$SCRATCH/fs"
losetup -d "$loop"
dd if="$mnt/p1" of="$SCRATCH/shadow" bs=1M seek=$((p1_start / MiB)) conv=notrunc status=none
vdisk umount "$mnt" || die "vdisk umount failed"

# qemu-img 7.2 refuses 4096-byte-sector VHDX ("Operation not supported"): libvhdi is the peer
expect_status 0 vdisk check "$img"
assert_eq "$(vdisk_raw_sha "$img")" "$(sha256 "$SCRATCH/shadow")" "image content vs shadow"
fuse_mount_vhdi "$img" "$SCRATCH/vhdi"
assert_eq "$(vhdiinfo_field "$img" "Bytes per sector")" "4096 bytes" "sector size (vhdiinfo)"
cp "$SCRATCH/vhdi/vhdi1" "$SCRATCH/raw.img"
fuse_umount "$SCRATCH/vhdi"
assert_same_file "$SCRATCH/raw.img" "$SCRATCH/shadow" "libvhdi's reading of the image"
loop_attach rawdev "$SCRATCH/raw.img" -b 4096 -r -o "$p1_start" --sizelimit "$p1_size"
fs_mount "$rawdev" "$SCRATCH/rawfs" ro
assert_eq "$(tree_sums "$SCRATCH/rawfs")" "$(cat "$SCRATCH/sums")" "files in libvhdi's copy"
log "ok"
