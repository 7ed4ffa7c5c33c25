#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Region table copy 1 (at 192 KiB) damaged, copy 2 intact: qemu-img and libvhdi read only
# copy 1 and refuse the image, vdisk falls back to copy 2 and reads every byte right (read
# only, without changing the file), `vdisk check` reports the damage (exit 2), and
# `vdisk check --repair` rewrites copy 1 so that qemu-img accepts the image again and reads
# the same content. Done for a vdisk-made and a qemu-made image, and for a damage that keeps
# the signature but points the BAT elsewhere (a reader that skips the checksum would read
# garbage).
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires vhdiinfo -V

run_case()
{
	local name=$1 img=$2 shadow=$3 how=$4
	local ref=$SCRATCH/$name.ref
	case $how in
	zero) dd if=/dev/zero of="$img" bs=1K seek=192 count=64 conv=notrunc status=none ;;
	moved) # BAT entry (first entry's FileOffset) moved by 1 MiB, CRC left as it was
		local i n=$(le_uint "$img" $((REGION_TABLE_1 + 8)) 4)
		for ((i = 0; i < n; i++)); do
			if [ "$(hex_at "$img" $((REGION_TABLE_1 + 16 + 32 * i)) 16)" = "$GUID_REGION_BAT" ]; then
				local o=$((REGION_TABLE_1 + 16 + 32 * i + 16))
				put_le "$img" "$o" 8 $(($(le_uint "$img" "$o" 8) + MiB))
			fi
		done
		;;
	esac
	cp "$img" "$ref"
	log "$name: region table 1 damaged ($how)"

	# the peers refuse it (they only read copy 1)
	rc=0
	qemu-img info -f vhdx "$img" >/dev/null 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || die "$name: qemu-img opened an image with a bad region table 1 (test is wrong?)"

	# vdisk reads it right, and a read-only use does not write
	assert_range "$img" "$shadow" 0 "$(file_size "$shadow")"
	assert_eq "$(vdisk_info_field "$img" '."virtual-size"')" "$(file_size "$shadow")" "$name: size"
	assert_same_file "$img" "$ref" "$name after reading"

	expect_status 2 vdisk check "$img"
	grep -qiE 'region' "$OUT" "$ERR" || die "$name: check does not mention the region table"
	assert_same_file "$img" "$ref" "$name after check without --repair"

	rc=0
	vdisk check --repair "$img" >"$OUT" 2>&1 || rc=$?
	[ "$rc" -eq 0 ] || { cat "$OUT" >&2; die "$name: check --repair exited $rc"; }
	expect_status 0 vdisk check "$img"
	assert_eq "$(hex_at "$img" $REGION_TABLE_1 65536)" "$(hex_at "$img" $REGION_TABLE_2 65536)" \
		"$name: region table copies after repair"
	qemu_check "$img"
	qemu_compare "$img" "$shadow"
	vhdiinfo "$img" >/dev/null || die "$name: vhdiinfo fails after repair"
	assert_range "$img" "$shadow" 0 "$(file_size "$shadow")"
}

# made by vdisk
size=$((24 * MiB))
img=$SCRATCH/v.vhdx
shadow=$SCRATCH/v.raw
vdisk create --block-size 2M "$img" "$size" || die "create failed"
truncate -s "$size" "$shadow"
put "$img" "$shadow" 0 $((3 * MiB)) r1
put "$img" "$shadow" $((11 * MiB + 5)) 77777 r2
put "$img" "$shadow" $((size - 512)) 512 r3
cp "$img" "$SCRATCH/v-clean.vhdx"
run_case vdisk-zeroed "$img" "$shadow" zero
cp "$SCRATCH/v-clean.vhdx" "$img"
run_case vdisk-moved "$img" "$shadow" moved

# made by qemu-img
gen_data q1 $((5 * MiB)) | dd of="$shadow" bs=1M seek=4 conv=notrunc status=none
qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=1M "$shadow" "$SCRATCH/q.vhdx" ||
	die "qemu-img convert failed"
run_case qemu-zeroed "$SCRATCH/q.vhdx" "$shadow" zero
log "ok"
