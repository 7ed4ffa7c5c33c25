#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Windows-made images from ../shared/fixtures/windows (read in place, decompressed into the
# scratch folder): vdisk reads the fixed and dynamic Hyper-V disks and the DiscUtils btrfs
# disk byte for byte as qemu-img does (SHA-256 of `vdisk convert -O raw` and of `vdisk read`
# equal the one in SOURCES.md and the one of `qemu-img convert`), reports their geometry,
# checks them clean, maps exactly the FULLY_PRESENT blocks; writes into copies keep them
# valid for qemu-img and libvhdi. The differencing child without its parent is refused with
# a message naming the parent.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires vhdiinfo -V
for f in hyperv-win10.0.18363-fixed-10M hyperv-win10.0.18363-dynamic-10M discutils-btrfs \
	hyperv-win10.0.17763-differencing-8G-orphan; do
	[ -r "$FIXTURES_WIN/$f.vhdx.gz" ] || requires_fixture "$f.avhdx.gz"
done

# name  block-size  payload blocks with data (FULLY_PRESENT, per SOURCES.md)  type
cases=(
	"hyperv-win10.0.18363-fixed-10M $((2 * MiB)) 5 fixed"
	"hyperv-win10.0.18363-dynamic-10M $((32 * MiB)) 1 dynamic"
	"discutils-btrfs $((32 * MiB)) 2 dynamic"
)

for c in "${cases[@]}"; do
	read -r name bs nfull type <<<"$c"
	log "$name"
	img=$(fixture_unpack "$name")
	size=$(fixture_field "$name" raw-size)
	want=$(fixture_field "$name" raw-sha)
	cp "$img" "$SCRATCH/pristine"

	assert_eq "$(vdisk_info_field "$img" '."virtual-size"')" "$size" "$name: virtual-size"
	assert_eq "$(vdisk_info_field "$img" '."cluster-size"')" "$bs" "$name: cluster-size"
	expect_status 0 vdisk check "$img"

	# content: vdisk convert, vdisk read, qemu-img convert, SOURCES.md
	vdisk convert -O raw "$img" "$SCRATCH/v.raw" || die "$name: vdisk convert -O raw failed"
	assert_eq "$(file_size "$SCRATCH/v.raw")" "$size" "$name: size of the converted disk"
	assert_eq "$(sha256 "$SCRATCH/v.raw")" "$want" "$name: SHA-256 of vdisk convert -O raw vs SOURCES.md"
	assert_eq "$(vdisk_raw_sha "$img")" "$want" "$name: SHA-256 of vdisk read vs SOURCES.md"
	assert_eq "$(qemu_raw_sha "$img")" "$want" "$name: SHA-256 of qemu-img convert vs SOURCES.md"
	assert_eq "$(vdisk read "$img" 510 2 | od -An -tx1 | tr -d ' \n')" 55aa "$name: MBR signature"
	assert_same_file "$img" "$SCRATCH/pristine" "$name after reading"

	# map: exactly the FULLY_PRESENT blocks are data
	vdisk map --json "$img" >"$SCRATCH/map.json" || die "$name: vdisk map --json failed"
	data=$(jq '[.[] | select(.data == true) | .length] | add // 0' "$SCRATCH/map.json")
	full=$((nfull * bs))
	[ "$full" -le "$size" ] || full=$size
	assert_eq "$data" "$full" "$name: bytes mapped as data"

	# write into a copy: qemu-img and libvhdi still accept it and read the same bytes
	put "$img" "$SCRATCH/v.raw" $((size / 3)) 70000 "$name-w1"
	put "$img" "$SCRATCH/v.raw" 4096 8192 "$name-w2"
	assert_range "$img" "$SCRATCH/v.raw" 0 "$size"
	qemu_check "$img"
	qemu_compare "$img" "$SCRATCH/v.raw"
	assert_eq "$(vhdiinfo_field "$img" 'Media size' | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p')" \
		"$size" "$name: vhdiinfo media size after vdisk wrote"
	expect_status 0 vdisk check "$img"
	rm -f "$img" "$SCRATCH/v.raw" "$SCRATCH/pristine"
done

# fixed disk facts from SOURCES.md: LeaveBlockAllocated, 512/4096 sectors, 0xFF at 2 MiB
img=$(fixture_unpack hyperv-win10.0.18363-fixed-10M)
assert_eq "$(vdisk read "$img" $((2 * MiB)) 4 | od -An -tx1 | tr -d ' \n')" ffffffff "bytes at 2 MiB"
vdisk info "$img" >"$SCRATCH/info.txt" || die "vdisk info failed"
grep -qi fixed "$SCRATCH/info.txt" || die "vdisk info does not call the image fixed: $(cat "$SCRATCH/info.txt")"
grep -q 4096 "$SCRATCH/info.txt" || die "vdisk info does not show the 4096-byte physical sector"
grep -q 'Microsoft Windows 10.0.18363.0' "$SCRATCH/info.txt" ||
	die "vdisk info does not show the creator string"
rm -f "$img"

# the differencing child alone: its parent is missing, say so
img=$(fixture_unpack hyperv-win10.0.17763-differencing-8G-orphan)
cp "$img" "$SCRATCH/pristine"
expect_fail 'parent' vdisk read "$img" 0 512
grep -q 'Generation 1_' "$ERR" || echo "# note: the error does not name the parent file: $(cat "$ERR")"
assert_same_file "$img" "$SCRATCH/pristine" "the orphan after a refused read"
log "ok"
