#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Partition tables as the mount shows them, compared with libblkid (partx) on the same bytes:
# an MBR with two primaries and an extended partition holding three logical ones (p1, p3,
# p5-p7; the extended container itself is not a file); a GPT whose primary header is then
# destroyed (the backup at the last LBA is used, as libblkid does); a table rewritten while
# mounted (the files follow at once: new sizes, removed partitions gone); no table at all
# (only `disk`). Each partition file reads exactly as `disk` at its offset.
. "$(dirname "$0")/lib.sh"
requires sfdisk --version
requires partx --version

img=$SCRATCH/t.vhdx
mnt=$SCRATCH/mnt
vdisk create --block-size 1M "$img" 96M || die "create failed"
fuse_mount --rw "$img" "$mnt"

# compare_with_blkid: the pN files against partx on `disk`, sizes and content
compare_with_blkid()
{
	blkid_parts "$mnt/disk" | grep -v "^$1 " >"$SCRATCH/parts" || :
	assert_eq "$(mount_sizes "$mnt")" "$(awk '{ print $1, $3 }' "$SCRATCH/parts")" \
		"partitions ($2): mount vs partx"
	while read -r nr start _; do
		assert_part_content "$mnt" "$nr" "$start"
	done <"$SCRATCH/parts"
}

gen_data fill $((96 * MiB)) | dd of="$mnt/disk" bs=1M conv=notrunc status=none
sfdisk -q "$mnt/disk" <<'TABLE' || die "sfdisk (MBR) failed"
label: dos
start=2048, size=20MiB, type=83
start=43008, size=50MiB, type=5
start=145408, size=8MiB, type=c
start=45056, size=10MiB, type=83
start=67584, size=12MiB, type=82
start=94208, size=6MiB, type=83
TABLE
assert_eq "$(ls "$mnt" | tr '\n' ' ')" "disk p1 p3 p5 p6 p7 " "files of the MBR disk"
# partx lists the extended container (p2, 1 KiB); the mount does not
compare_with_blkid 2 "MBR"

# GPT, then its primary header destroyed: the backup serves
sfdisk -q --wipe always "$mnt/disk" <<'TABLE' || die "sfdisk (GPT) failed"
label: gpt
size=30MiB, type=linux
size=10MiB, type=swap
type=linux
TABLE
assert_eq "$(ls "$mnt" | tr '\n' ' ')" "disk p1 p2 p3 " "files of the GPT disk"
compare_with_blkid none "GPT"
before=$(mount_sizes "$mnt")
dd if=/dev/zero of="$mnt/disk" bs=512 seek=1 count=1 conv=notrunc status=none
assert_eq "$(mount_sizes "$mnt")" "$before" "partitions from the backup GPT header"
compare_with_blkid none "backup GPT"

# rewritten while mounted: sizes follow, the third partition goes away
sfdisk -q --wipe always "$mnt/disk" <<'TABLE' || die "sfdisk (second GPT) failed"
label: gpt
size=50MiB, type=linux
size=20MiB, type=linux
TABLE
assert_eq "$(mount_sizes "$mnt")" "1 $((50 * MiB))
2 $((20 * MiB))" "partitions after rewriting the table"
[ ! -e "$mnt/p3" ] || die "p3 still there after the table lost it"
compare_with_blkid none "second GPT"

# no table: only disk
dd if=/dev/zero of="$mnt/disk" bs=1M count=1 conv=notrunc status=none
dd if=/dev/zero of="$mnt/disk" bs=1M seek=95 count=1 conv=notrunc status=none
assert_eq "$(ls "$mnt")" "disk" "files without a partition table"
vdisk umount "$mnt" || die "umount failed"
log "ok"
