#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk create` over a matrix of types, block sizes, sector sizes and disk sizes: each
# image is checked by qemu-img (check, info), by libvhdi's vhdiinfo (size, sector size, type)
# and by reading the metadata items straight from the file with od; a new image reads as
# zeros through vdisk and qemu-img; a fixed image has every block FULLY_PRESENT inside the
# file, a dynamic one stays small.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires vhdiinfo -V

# type block-size(0 = default) logical physical size-in-bytes
cases=(
	"default 0 0 0 $((64 * MiB))"
	"dynamic $((1 * MiB)) 512 512 $((10 * MiB + 512))"
	"dynamic $((8 * MiB)) 512 4096 $((100 * MiB))"
	"dynamic $((256 * MiB)) 4096 4096 $((1 * GiB))"
	"fixed $((1 * MiB)) 512 4096 $((16 * MiB))"
	"fixed 0 4096 4096 $((20 * MiB))"
)

n=0
for c in "${cases[@]}"; do
	read -r type bs ls ps size <<<"$c"
	n=$((n + 1))
	img=$SCRATCH/c$n.vhdx
	args=()
	[ "$type" = default ] || args+=(--type "$type")
	[ "$bs" = 0 ] || args+=(--block-size "$bs")
	[ "$ls" = 0 ] || args+=(--logical-sector "$ls")
	[ "$ps" = 0 ] || args+=(--physical-sector "$ps")
	log "case $n: vdisk create ${args[*]} $img $size"
	vdisk create "${args[@]}" "$img" "$size" || die "vdisk create ${args[*]} $size failed"

	# what the options mean when left out (include/vdisk/vhdx.h): dynamic, 32 MiB blocks
	# (2 MiB for fixed), 512-byte logical and 4096-byte physical sectors
	[ "$type" = default ] && type=dynamic
	[ "$bs" != 0 ] || { [ "$type" = fixed ] && bs=$((2 * MiB)) || bs=$((32 * MiB)); }
	[ "$ls" != 0 ] || ls=512
	[ "$ps" != 0 ] || ps=4096

	# the metadata as stored, read without vdisk
	assert_eq "$(meta_u64 "$img" "$GUID_META_DISK_SIZE")" "$size" "case $n: Virtual Disk Size item"
	assert_eq "$(meta_u32 "$img" "$GUID_META_LOGICAL_SECTOR")" "$ls" "case $n: Logical Sector Size item"
	assert_eq "$(meta_u32 "$img" "$GUID_META_PHYSICAL_SECTOR")" "$ps" "case $n: Physical Sector Size item"
	fp=$(meta_item_offset "$img" "$GUID_META_FILE_PARAMETERS")
	assert_eq "$(le_uint "$img" "$fp" 4)" "$bs" "case $n: File Parameters BlockSize"
	flags=$(le_uint "$img" $((fp + 4)) 4)
	if [ "$type" = fixed ]; then
		assert_eq "$flags" 1 "case $n: File Parameters flags (LeaveBlockAllocated)"
	else
		assert_eq "$flags" 0 "case $n: File Parameters flags"
	fi

	# vdisk's own view
	assert_eq "$(vdisk_info_field "$img" '."virtual-size"')" "$size" "case $n: vdisk info virtual-size"
	assert_eq "$(vdisk_info_field "$img" '."cluster-size"')" "$bs" "case $n: vdisk info cluster-size"

	assert_eq "$(vdisk_info_field "$img" '."logical-sector-size"')" "$ls" "case $n: vdisk logical sector"
	assert_eq "$(vdisk_info_field "$img" '."physical-sector-size"')" "$ps" "case $n: vdisk physical sector"
	assert_eq "$(vdisk_info_field "$img" .type)" "$type" "case $n: vdisk info type"

	# qemu-img (7.2 opens only 512-byte logical sector VHDX: "Operation not supported")
	if [ "$ls" = 512 ]; then
		qemu_check "$img"
		assert_eq "$(qemu_info_field "$img" .format)" vhdx "case $n: qemu-img info format"
		assert_eq "$(qemu_info_field "$img" '."virtual-size"')" "$size" "case $n: qemu-img virtual-size"
		assert_eq "$(qemu_info_field "$img" '."cluster-size"')" "$bs" "case $n: qemu-img cluster-size"
	fi

	# libvhdi
	vi=$(vhdiinfo "$img") || die "case $n: vhdiinfo failed"
	assert_eq "$(vhdiinfo_field "$img" 'Media size' | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p')" \
		"$size" "case $n: vhdiinfo media size"
	assert_eq "$(vhdiinfo_field "$img" 'Bytes per sector')" "$ls bytes" "case $n: vhdiinfo bytes per sector"
	want_type=Dynamic
	[ "$type" = fixed ] && want_type=Fixed
	assert_eq "$(vhdiinfo_field "$img" 'Disk type')" "$want_type" "case $n: vhdiinfo disk type"

	# a new disk reads as zeros, through vdisk and through qemu-img (512-byte logical
	# sectors only)
	vdisk read "$img" 0 "$size" | cmp -n "$size" - /dev/zero ||
		die "case $n: a new image does not read as $size zero bytes"
	if [ "$ls" = 512 ]; then
		truncate -s "$size" "$SCRATCH/zero.raw"
		qemu_compare "$img" "$SCRATCH/zero.raw"
		rm -f "$SCRATCH/zero.raw"
	fi

	# allocation: fixed = every payload block FULLY_PRESENT, distinct, inside the file;
	# dynamic = nothing allocated yet and a small file
	nblocks=$(((size + bs - 1) / bs))
	fsize=$(file_size "$img")
	mapfile -t ents < <(bat_entries "$img" "$nblocks")
	assert_eq "${#ents[@]}" "$nblocks" "case $n: BAT entries read"
	if [ "$type" = fixed ]; then
		assert_ge "$fsize" $((nblocks * bs + 4 * MiB)) "case $n: size of the fixed file"
		prev=-1
		for ((b = 0; b < nblocks; b++)); do
			e=${ents[b]}
			assert_eq $((e & 7)) 6 "case $n: BAT state of block $b"
			off=$(((e >> 20) * MiB))
			[ "$off" -gt "$prev" ] || die "case $n: block $b at $off is not after the previous block"
			[ $((off + bs)) -le "$fsize" ] || die "case $n: block $b at $off ends beyond EOF $fsize"
			prev=$off
		done
	else
		[ "$fsize" -le $((16 * MiB)) ] || die "case $n: new dynamic image is $fsize bytes"
		for ((b = 0; b < nblocks; b++)); do
			e=${ents[b]}
			[ $((e & 7)) -le 3 ] || die "case $n: block $b of a new dynamic image has state $((e & 7))"
		done
	fi
	rm -f "$img"
done

# an existing file is not replaced
vdisk create "$SCRATCH/keep.vhdx" 8M || die "vdisk create keep.vhdx failed"
cp "$SCRATCH/keep.vhdx" "$SCRATCH/keep.ref"
expect_fail 'exist' vdisk create "$SCRATCH/keep.vhdx" 16M
assert_same_file "$SCRATCH/keep.vhdx" "$SCRATCH/keep.ref" "keep.vhdx after a refused create"

# sizes that are not a multiple of the logical sector are refused, nothing is left behind
expect_fail 'sector|multiple|size' vdisk create --logical-sector 4096 "$SCRATCH/bad.vhdx" $((MiB + 512))
[ ! -e "$SCRATCH/bad.vhdx" ] || die "a refused create left bad.vhdx behind"
log "ok"
