#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk check` exit codes as qemu-img check's: 0 clean, 2 corruption, 3 leaks only; and
# its --json report. Corruptions are made with dd at places found by reading the file with
# od: a BAT entry pointing past the end of the file (qemu-img check also says 2), two BAT
# entries sharing one block, a bad header checksum in both headers, a zeroed metadata table.
# Leaked space (unreferenced 1 MiB units at the end) gives 3 and --repair removes it.
# `check --repair` never makes a clean image differ.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version

bs=$MiB
size=$((16 * MiB))
good=$SCRATCH/good.vhdx
vdisk create --block-size "$bs" "$good" "$size" || die "create failed"
gen_data k1 $((4 * MiB)) | vdisk write "$good" $((2 * MiB)) || die "write failed"
gen_data k2 4096 | vdisk write "$good" $((12 * MiB)) || die "write failed"

# clean: 0, and --json says so
expect_status 0 vdisk check "$good"
expect_status 0 vdisk check --json "$good"
jq -e . "$OUT" >/dev/null || die "vdisk check --json printed no JSON: $(head -c 300 "$OUT")"
assert_eq "$(jq -r '.corruptions // 0' "$OUT")" 0 "check --json corruptions of a clean image"
assert_eq "$(jq -r '.leaks // 0' "$OUT")" 0 "check --json leaks of a clean image"
cp "$good" "$SCRATCH/good.ref"
expect_status 0 vdisk check --repair "$good"
assert_same_file "$good" "$SCRATCH/good.ref" "clean image after check --repair"
qemu_check "$good"

entry_of() { bat_entry_offset "$1" "$2"; }

# 1. a BAT entry past the end of the file
img=$SCRATCH/eof.vhdx
cp "$good" "$img"
put_le "$img" "$(entry_of "$img" 2)" 8 $(((4096 << 20) | 6))
expect_status 2 vdisk check "$img"
grep -qiE 'block|BAT|end of file|beyond|past' "$OUT" "$ERR" ||
	die "check of eof.vhdx does not say what is wrong: $(cat "$OUT" "$ERR")"
expect_status 2 vdisk check --json "$img"
[ "$(jq -r '.corruptions' "$OUT")" -ge 1 ] || die "check --json: corruptions of eof.vhdx: $(cat "$OUT")"
expect_status 2 qemu-img check -f vhdx "$img"
# like qemu-img, vdisk refuses to use it, naming the entry
expect_fail 'BAT entry 2.*end of file' vdisk read "$img" 0 512

# 2. two BAT entries naming the same file block
img=$SCRATCH/overlap.vhdx
cp "$good" "$img"
put_le "$img" "$(entry_of "$img" 5)" 8 "$(le_uint "$img" "$(entry_of "$img" 3)" 8)"
expect_status 2 vdisk check "$img"
grep -qiE 'overlap|same|twice|shared|both|collid' "$OUT" "$ERR" ||
	die "check of overlap.vhdx does not name the overlap: $(cat "$OUT" "$ERR")"

# 3. an invalid payload block state
img=$SCRATCH/state.vhdx
cp "$good" "$img"
e=$(le_uint "$img" "$(entry_of "$img" 3)" 8)
put_le "$img" "$(entry_of "$img" 3)" 8 $(((e & ~7) | 4))
expect_status 2 vdisk check "$img"

# 4. both headers with a bad checksum: cannot be opened; still exit 2, with a message
img=$SCRATCH/headers.vhdx
cp "$good" "$img"
put_le "$img" $((64 * 1024 + 4)) 4 0x12345678
put_le "$img" $((128 * 1024 + 4)) 4 0x12345678
expect_status 2 vdisk check "$img"
grep -qiE 'header' "$OUT" "$ERR" || die "check of headers.vhdx does not mention the headers"
expect_fail 'header|invalid|corrupt|checksum' vdisk info "$img"

# 5. one header damaged (either one): the other is used, the data reads back, and check
# does not call the image clean
for h in 64 128; do
	img=$SCRATCH/header-$h.vhdx
	cp "$good" "$img"
	put_le "$img" $((h * 1024 + 4)) 4 0x12345678
	assert_eq "$(vdisk read "$img" $((2 * MiB)) $((4 * MiB)) | sha256)" \
		"$(gen_data k1 $((4 * MiB)) | sha256)" "data of an image whose header at ${h} KiB is damaged"
	expect_status 2 vdisk check "$img"
done

# 6. a zeroed metadata table
img=$SCRATCH/meta.vhdx
cp "$good" "$img"
read -r m _ < <(region_entry "$img" "$GUID_REGION_METADATA")
dd if=/dev/zero of="$img" bs=64K seek=$((m / 65536)) count=1 conv=notrunc status=none
expect_status 2 vdisk check "$img"
expect_fail 'metadata' vdisk info "$img"

# 7. leaked space at the end of the file: 3; --repair gives it back; then 0
img=$SCRATCH/leak.vhdx
cp "$good" "$img"
truncate -s $(($(file_size "$good") + 3 * MiB)) "$img"
dd if=/dev/urandom of="$img" bs=1M seek=$(($(file_size "$good") / MiB)) count=3 conv=notrunc status=none
expect_status 3 vdisk check "$img"
expect_status 3 vdisk check --json "$img"
[ "$(jq -r '.leaks' "$OUT")" -ge 1 ] || die "check --json: leaks of leak.vhdx: $(cat "$OUT")"
assert_eq "$(jq -r '.corruptions' "$OUT")" 0 "check --json corruptions of leak.vhdx"
expect_status 0 vdisk check --repair "$img"
expect_status 0 vdisk check "$img"
assert_eq "$(file_size "$img")" "$(file_size "$good")" "size of leak.vhdx after repair"
assert_eq "$(vdisk_raw_sha "$img")" "$(vdisk_raw_sha "$good")" "content of leak.vhdx after repair"
qemu_check "$img"

# 8. not a VHDX at all
head -c $((2 * MiB)) /dev/urandom >"$SCRATCH/junk.bin"
rc=0
vdisk check "$SCRATCH/junk.bin" >/dev/null 2>"$ERR" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] || die "check of a random file exited $rc"
[ -s "$ERR" ] || die "check of a random file printed no message"
log "ok"
