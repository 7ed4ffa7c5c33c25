#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Images made by qemu-img (dynamic and fixed, several block sizes, with and without
# block_state_zero, empty and converted from data) are read byte for byte by vdisk, then
# written by vdisk: qemu-img check still finds them clean, qemu-img compare matches the
# raw shadow, and later writes by qemu-io are read back by vdisk.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires qemu-io --version

size=$((48 * MiB))

# the starting content: a sparse raw file with data in a few places
base=$SCRATCH/base.raw
truncate -s "$size" "$base"
for spec in "0 65536 s1" "$((3 * MiB - 4096)) 8192 s2" "$((17 * MiB + 333)) $((5 * MiB)) s3" \
	"$((size - MiB)) $MiB s4"; do
	read -r off len seed <<<"$spec"
	gen_data "$seed" "$len" | dd of="$base" bs=1M oflag=seek_bytes seek="$off" conv=notrunc status=none
done

run_case()
{
	local name=$1 how=$2 opts=$3 bs=$4
	local img=$SCRATCH/$name.vhdx shadow=$SCRATCH/$name.raw
	if [ "$how" = convert ]; then
		qemu-img convert -f raw -O vhdx -o "$opts" "$base" "$img" || die "$name: qemu-img convert"
		cp "$base" "$shadow"
	else
		qemu-img create -q -f vhdx -o "$opts" "$img" "$size" || die "$name: qemu-img create"
		truncate -s "$size" "$shadow"
	fi
	log "$name: qemu-img $how -o $opts"

	# vdisk sees what qemu made
	assert_eq "$(vdisk_info_field "$img" '."virtual-size"')" "$size" "$name: vdisk virtual-size"
	assert_eq "$(vdisk_info_field "$img" '."cluster-size"')" \
		"$(qemu_info_field "$img" '."cluster-size"')" "$name: vdisk cluster-size vs qemu-img"
	if [ -n "$bs" ]; then assert_eq "$(vdisk_info_field "$img" '."cluster-size"')" "$bs" "$name: block size"; fi
	assert_eq "$(vdisk_raw_sha "$img")" "$(sha256 "$shadow")" "$name: vdisk read of the qemu image"
	assert_eq "$(vdisk_raw_sha "$img")" "$(qemu_raw_sha "$img")" "$name: vdisk read vs qemu-img convert"
	expect_status 0 vdisk check "$img"

	# vdisk writes into it: new blocks, blocks qemu wrote, zero-state blocks, the end
	put "$img" "$shadow" 512 1024 "$name-a"
	put "$img" "$shadow" $((9 * MiB + 1)) $((3 * MiB)) "$name-b"
	put "$img" "$shadow" $((17 * MiB)) 100000 "$name-c"
	put "$img" "$shadow" $((size - 100)) 100 "$name-d"
	put_zeros "$img" "$shadow" $((3 * MiB - 2048)) 4096
	assert_range "$img" "$shadow" 0 "$size"
	qemu_check "$img"
	qemu_compare "$img" "$shadow"

	# and qemu writes again on top; vdisk reads qemu's bytes
	qemu-io -f vhdx -c "write -P 0xa5 $((30 * MiB + 512)) 1536k" "$img" >/dev/null ||
		die "$name: qemu-io write"
	head -c $((1536 * 1024)) /dev/zero | tr '\0' '\245' |
		dd of="$shadow" bs=1M oflag=seek_bytes seek=$((30 * MiB + 512)) conv=notrunc status=none
	assert_range "$img" "$shadow" 0 "$size"
	expect_status 0 vdisk check "$img"
	rm -f "$img" "$shadow"
}

run_case qdyn-default create subformat=dynamic ""
run_case qdyn-1m create subformat=dynamic,block_size=1M $MiB
run_case qdyn-8m-nozero create subformat=dynamic,block_size=8M,block_state_zero=off $((8 * MiB))
run_case qdyn-32m create subformat=dynamic,block_size=32M $((32 * MiB))
run_case qfix-1m create subformat=fixed,block_size=1M $MiB
run_case qfix-16m create subformat=fixed,block_size=16M $((16 * MiB))
run_case qcdyn-2m convert subformat=dynamic,block_size=2M $((2 * MiB))
run_case qcdyn-32m convert subformat=dynamic,block_size=32M,log_size=4M $((32 * MiB))
run_case qcfix-4m convert subformat=fixed,block_size=4M $((4 * MiB))
log "ok"
