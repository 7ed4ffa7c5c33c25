#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk check` output and exit status, as qemu-img check: 0 clean, 2 corrupt, 3 leaks only,
# 1 when it cannot run (a raw file, a missing file). The JSON has qemu-img's keys where they
# mean the same (compared with qemu-img check --output=json) plus the findings. A dirty log
# is reported without touching the file, and --repair replays it: the image is then clean for
# both checkers and reads as SOURCES.md says.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version

img=$SCRATCH/a.vhdx
vdisk create --block-size 1M "$img" 10M || die "create failed"
gen_data a $((2 * MiB)) | vdisk write "$img" $((3 * MiB + 512)) || die "write failed"
expect_status 0 vdisk check "$img"
grep -qx 'No errors were found on the image.' "$OUT" || die "clean summary: $(cat "$OUT")"
grep -qx '3/10 = 30.00% allocated' "$OUT" || die "allocation line: $(cat "$OUT")"
expect_status 0 vdisk check --output=json "$img"
cp "$OUT" "$SCRATCH/v.json"
qemu-img check -f vhdx --output=json "$img" >"$SCRATCH/q.json" || die "qemu-img check failed"
for k in check-errors filename format; do
	assert_eq "$(jq -c ".\"$k\"" "$SCRATCH/v.json")" "$(jq -c ".\"$k\"" "$SCRATCH/q.json")" "check key $k"
done
assert_eq "$(jq -c '[.corruptions, .leaks, ."total-clusters", ."allocated-clusters",
	."image-end-offset", ."log-was-dirty", .findings]' "$SCRATCH/v.json")" \
	"[0,0,10,3,$(file_size "$img"),false,[]]" "check --json of a clean image"

# a dirty log: reported (2), the file untouched; --repair replays it
requires_fixture discutils-vhdx-log-replay.vhdx.gz
dirty=$(fixture_unpack discutils-vhdx-log-replay)
before=$(sha256 "$dirty")
expect_status 2 vdisk check --json "$dirty"
assert_eq "$(jq -r '."log-was-dirty"' "$OUT")" true "log-was-dirty"
assert_eq "$(jq -r '[.findings[] | select(.severity == "corruption")] | length' "$OUT")" 1 "findings"
jq -r '.findings[0].message' "$OUT" | grep -qi 'log' || die "finding: $(jq -r '.findings' "$OUT")"
assert_eq "$(sha256 "$dirty")" "$before" "dirty image after check without --repair"
expect_status 0 vdisk check --repair "$dirty"
grep -q '^Repaired: ' "$OUT" || die "--repair printed no repaired finding: $(cat "$OUT")"
expect_status 0 vdisk check "$dirty"
qemu_check "$dirty"
assert_eq "$(vdisk_raw_sha "$dirty")" "$(fixture_field discutils-vhdx-log-replay raw-sha)" \
	"content of the replayed image"

# leaked space at the end: 3, then --repair gives it back
leak=$SCRATCH/leak.vhdx
cp "$img" "$leak"
gen_data l $((3 * MiB)) >>"$leak"
expect_status 3 vdisk check "$leak"
grep -q 'leaked' "$OUT" || die "leak summary: $(cat "$OUT")"
expect_status 3 vdisk check --json "$leak"
[ "$(jq -r '."leaked-bytes"' "$OUT")" -ge $((3 * MiB)) ] || die "leaked-bytes: $(cat "$OUT")"
assert_eq "$(jq -r '[.findings[].severity] | unique | join(",")' "$OUT")" leak "severities of a leak"
expect_status 0 vdisk check --repair --json "$leak"
[ "$(jq -r .repaired "$OUT")" -ge 1 ] || die "repaired count: $(cat "$OUT")"
expect_status 0 vdisk check "$leak"
assert_eq "$(file_size "$leak")" "$(file_size "$img")" "size after repairing the leak"

# cannot run: exit 1, one line
truncate -s 1M "$SCRATCH/r.raw"
expect_status 1 vdisk check "$SCRATCH/r.raw"
assert_eq "$(wc -l <"$ERR")" 1 "lines of the raw-file error"
grep -q "^vdisk: check: $SCRATCH/r.raw: not a VHDX" "$ERR" || die "raw message: $(cat "$ERR")"
expect_status 1 vdisk check "$SCRATCH/missing.vhdx"
grep -q "No such file" "$ERR" || die "missing-file message: $(cat "$ERR")"
log "ok"
