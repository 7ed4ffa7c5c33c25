#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# An open that writes nothing leaves the file byte-identical (cmp): info, map, read,
# checksum, check without --repair, convert (of the source) and a writable open that
# writes zero bytes (`vdisk write` with empty stdin), on images made by vdisk, by qemu-img
# and by Windows (fixture from ../shared, decompressed here).
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires qemu-io --version
requires_fixture hyperv-win10.0.18363-dynamic-10M.vhdx.gz

untouched()
{
	local img=$1 ref=$SCRATCH/ref.bin size
	cp "$img" "$ref"
	size=$(vdisk_info_field "$img" '."virtual-size"')
	assert_same_file "$img" "$ref" "$img after info --json"
	vdisk info "$img" >/dev/null || die "vdisk info $img failed"
	assert_same_file "$img" "$ref" "$img after info"
	vdisk map "$img" >/dev/null || die "vdisk map $img failed"
	vdisk map --json "$img" >/dev/null || die "vdisk map --json $img failed"
	assert_same_file "$img" "$ref" "$img after map"
	vdisk read "$img" 0 "$size" >/dev/null || die "vdisk read $img failed"
	assert_same_file "$img" "$ref" "$img after read"
	vdisk checksum "$img" >/dev/null || die "vdisk checksum $img failed"
	assert_same_file "$img" "$ref" "$img after checksum"
	vdisk check "$img" >/dev/null || die "vdisk check $img failed"
	vdisk check --json "$img" >/dev/null || die "vdisk check --json $img failed"
	assert_same_file "$img" "$ref" "$img after check"
	vdisk convert -O raw "$img" "$SCRATCH/out.raw" || die "vdisk convert $img failed"
	rm -f "$SCRATCH/out.raw"
	assert_same_file "$img" "$ref" "$img after convert (as the source)"
	vdisk write "$img" 4096 </dev/null || die "vdisk write of nothing into $img failed"
	assert_same_file "$img" "$ref" "$img after a writable open that wrote nothing"
	rm -f "$ref"
}

vdisk create --block-size 1M "$SCRATCH/v.vhdx" 32M || die "create failed"
gen_data u1 $((3 * MiB)) | vdisk write "$SCRATCH/v.vhdx" 5000 || die "write failed"
untouched "$SCRATCH/v.vhdx"

vdisk create --type fixed --logical-sector 4096 "$SCRATCH/f.vhdx" 8M || die "create fixed failed"
untouched "$SCRATCH/f.vhdx"

qemu-img create -q -f vhdx -o subformat=dynamic,block_size=2M "$SCRATCH/q.vhdx" 32M ||
	die "qemu-img create failed"
qemu-io -f vhdx -c 'write -P 0x11 1M 3M' "$SCRATCH/q.vhdx" >/dev/null || die "qemu-io failed"
untouched "$SCRATCH/q.vhdx"

win=$(fixture_unpack hyperv-win10.0.18363-dynamic-10M)
untouched "$win"
log "ok"
