#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk checksum FILE` hashes the virtual disk content, not the container: a raw file and
# VHDX images of the same content (dynamic and fixed, made by vdisk convert and by
# qemu-img) print the same checksum, in the form "HEX  FILE"; one changed byte changes it;
# an image with the same data but other block size or layout still matches. The value is
# XXH3-128 of the virtual disk (vdisk(1)), so it is compared with `xxhsum -H2` of the raw file
# and of qemu-img's raw conversion of each image.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires xxhsum -V

size=$((20 * MiB))
raw=$SCRATCH/a.raw
truncate -s "$size" "$raw"
gen_data c1 $((3 * MiB)) | dd of="$raw" bs=1M seek=1 conv=notrunc status=none
gen_data c2 5000 | dd of="$raw" bs=1 seek=$((size - 5000)) conv=notrunc status=none

vdisk convert -O vhdx "$raw" "$SCRATCH/a-dyn.vhdx" || die "convert to dynamic failed"
vdisk convert -O vhdx --type fixed --block-size 1M "$raw" "$SCRATCH/a-fix.vhdx" ||
	die "convert to fixed failed"
qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=8M "$raw" "$SCRATCH/a-qemu.vhdx" ||
	die "qemu-img convert failed"
vdisk create --block-size 2M "$SCRATCH/a-written.vhdx" "$size" || die "create failed"
vdisk write "$SCRATCH/a-written.vhdx" 0 <"$raw" || die "write failed"

line=$(vdisk checksum "$raw") || die "vdisk checksum $raw failed"
sum=${line%%  *}
[[ "$sum" =~ ^[0-9a-f]{16,128}$ ]] || die "checksum is not lower-case hex: '$line'"
assert_eq "$line" "$sum  $raw" "output format of vdisk checksum"
assert_eq "$line" "$(xxhsum -H2 "$raw")" "vdisk checksum vs xxhsum -H2 of the raw file"

for f in a-dyn a-fix a-qemu a-written; do
	l=$(vdisk checksum "$SCRATCH/$f.vhdx") || die "vdisk checksum $f.vhdx failed"
	assert_eq "$l" "$sum  $SCRATCH/$f.vhdx" "checksum of $f.vhdx vs the raw file"
	qemu-img convert -f vhdx -O raw "$SCRATCH/$f.vhdx" "$SCRATCH/q.raw" || die "qemu-img convert $f"
	x=$(xxhsum -H2 "$SCRATCH/q.raw")
	assert_eq "${x%%  *}" "$sum" "xxhsum -H2 of qemu-img's raw of $f.vhdx"
done

# one byte differs -> another checksum, for raw and for VHDX
printf 'X' | vdisk write "$SCRATCH/a-dyn.vhdx" $((size / 2)) || die "write failed"
l=$(vdisk checksum "$SCRATCH/a-dyn.vhdx")
assert_ne "${l%%  *}" "$sum" "checksum after changing one byte"
printf 'X' | dd of="$raw" bs=1 seek=$((size / 2)) conv=notrunc status=none
l2=$(vdisk checksum "$raw")
assert_eq "${l2%%  *}" "${l%%  *}" "checksum of raw and VHDX after the same change"

# a zero byte appended changes the disk size, and so the checksum (unless the
# algorithm hashes sizes away: it must not)
truncate -s $((size + 512)) "$raw"
l3=$(vdisk checksum "$raw")
assert_ne "${l3%%  *}" "${l2%%  *}" "checksum of a disk 512 zero bytes longer"
assert_eq "$l3" "$(xxhsum -H2 "$raw")" "vdisk checksum vs xxhsum -H2 of the longer raw file"

# several files in one call: one line each, in order
vdisk checksum "$raw" "$SCRATCH/a-fix.vhdx" >"$OUT" || die "vdisk checksum of two files failed"
assert_eq "$(wc -l <"$OUT")" 2 "lines printed for two files"
assert_eq "$(sed -n 2p "$OUT")" "$sum  $SCRATCH/a-fix.vhdx" "second line for two files"
log "ok"
