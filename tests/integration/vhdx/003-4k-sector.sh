#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Images with 4096-byte logical sectors made and written by vdisk: libvhdi (vhdiinfo) reports
# the disk size and the 4096-byte sector, vhdimount (FUSE) reads exactly the bytes written
# (kept in a raw shadow), and `vdisk read` agrees. qemu-img 7.2 refuses VHDX files with
# 4096-byte logical sectors ("Operation not supported"), so libvhdi is the reference here.
. "$(dirname "$0")/../lib.sh"
requires vhdiinfo -V
requires vhdimount -V
requires fusermount -V
requires qemu-img --version

run_case()
{
	local name=$1 size=$2
	shift 2
	local img=$SCRATCH/$name.vhdx shadow=$SCRATCH/$name.raw
	log "$name: vdisk create --logical-sector 4096 $* $size"
	vdisk create --logical-sector 4096 "$@" "$img" "$size" || die "$name: create failed"
	truncate -s "$size" "$shadow"

	assert_eq "$(vhdiinfo_field "$img" 'Bytes per sector')" "4096 bytes" "$name: vhdiinfo sector size"
	assert_eq "$(vhdiinfo_field "$img" 'Media size' | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p')" \
		"$size" "$name: vhdiinfo media size"
	assert_eq "$(meta_u32 "$img" "$GUID_META_LOGICAL_SECTOR")" 4096 "$name: Logical Sector Size item"

	put "$img" "$shadow" 0 8192 "$name-a"
	put "$img" "$shadow" 5000 10000 "$name-b"              # not sector aligned
	put "$img" "$shadow" $((MiB - 4096)) 12288 "$name-c"    # crosses the first 1 MiB
	put "$img" "$shadow" $((7 * MiB + 4096)) $((3 * MiB)) "$name-d"
	put "$img" "$shadow" $((size - 4096)) 4096 "$name-e"
	put_zeros "$img" "$shadow" $((7 * MiB + 8192)) 4096

	assert_range "$img" "$shadow" 0 "$size"
	expect_status 0 vdisk check "$img"
	rc=0
	qemu-img info -f vhdx "$img" >"$OUT" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] && grep -q 'not supported' "$OUT" ||
		echo "# note: qemu-img now opens 4096-byte logical sector VHDX: add it as a peer here"

	fuse_mount_vhdi "$img" "$SCRATCH/mnt-$name"
	assert_eq "$(file_size "$SCRATCH/mnt-$name/vhdi1")" "$size" "$name: size of the vhdimount disk"
	assert_same_file "$SCRATCH/mnt-$name/vhdi1" "$shadow" "$name as read by vhdimount"
	fuse_umount "$SCRATCH/mnt-$name"
	rm -f "$img" "$shadow"
}

run_case dyn $((32 * MiB)) --type dynamic --block-size 1M --physical-sector 4096
run_case dyn32 $((80 * MiB)) --physical-sector 4096
run_case fix $((16 * MiB)) --type fixed --block-size 2M
log "ok"
