# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# Body of 022/023-windows-large*.sh (split in two so ctest -j2 runs them side by side): for
# each large DiscUtils disk in $cases (10 GiB virtual each), decompressed once into the scratch
# folder and deleted after use, `vdisk convert -O raw` gives the SHA-256 listed in SOURCES.md
# (that of `qemu-img convert`), `vdisk check` finds it clean, `vdisk map` shows exactly the
# FULLY_PRESENT blocks as data (counted in the BAT with od), and the file is not changed.
# The raw output is sparse and hashed without reading its holes.

# cases: "NAME FULLY_PRESENT-blocks" (SOURCES.md), set by the script that sources this file
for c in "${cases[@]}"; do
	requires_fixture "${c%% *}.vhdx.gz"
done

for c in "${cases[@]}"; do
	read -r name nfull <<<"$c"
	log "$name"
	img=$(fixture_unpack "$name")
	size=$(fixture_field "$name" raw-size)
	want=$(fixture_field "$name" raw-sha)

	assert_eq "$(vdisk_info_field "$img" '."virtual-size"')" "$size" "$name: virtual-size"
	bs=$(vdisk_info_field "$img" '."cluster-size"')
	assert_eq "$bs" $((32 * MiB)) "$name: block size"

	# the BAT as stored, counted with od: FULLY_PRESENT entries
	nblocks=$(((size + bs - 1) / bs))
	counted=$(bat_entries "$img" "$nblocks" | awk '$1 % 8 == 6 { n++ } END { print n + 0 }')
	assert_eq "$counted" "$nfull" "$name: FULLY_PRESENT entries in the BAT"

	expect_status 0 vdisk check "$img"
	vdisk map --json "$img" >"$SCRATCH/map.json" || die "$name: vdisk map --json failed"
	assert_eq "$(jq '[.[] | select(.data == true) | .length] | add // 0' "$SCRATCH/map.json")" \
		$((nfull * bs)) "$name: bytes mapped as data"

	vdisk convert -O raw "$img" "$SCRATCH/v.raw" || die "$name: vdisk convert -O raw failed"
	assert_eq "$(file_size "$SCRATCH/v.raw")" "$size" "$name: size of the raw disk"
	[ "$(allocated_bytes "$SCRATCH/v.raw")" -le $(((nfull + 1) * bs)) ] ||
		echo "# note: $name: the raw output is not sparse ($(allocated_bytes "$SCRATCH/v.raw") bytes)"
	assert_eq "$(sha256 "$SCRATCH/v.raw")" "$want" "$name: SHA-256 of vdisk convert -O raw vs SOURCES.md"
	rm -f "$SCRATCH/v.raw"

	assert_eq "$(sha256 "$img")" "$(fixture_field "$name" file-sha)" "$name: file after vdisk read it"
	rm -f "$img"
done
log "ok"
