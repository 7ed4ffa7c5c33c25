#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk map` and `vdisk checksum` against the peers. Map: on raw files the data ranges must
# be those of `qemu-img map --output=json` (jq), every map tiles the disk, a differencing
# chain reports each data range at the depth of the image holding it, and the text form
# lists the same ranges as the JSON one. Checksum: equal to `xxhsum -H2` on raw files of
# awkward sizes (empty, one byte, sparse), equal between a raw file, a VHDX and a chain with
# the same content, and a failing file does not stop the others.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires xxhsum --version

# merged data ranges of a map on stdin, "start end" per line
data_ranges()
{
	jq -r '[.[] | select(.data) | {s: .start, e: (.start + .length)}] | sort_by(.s)
		| reduce .[] as $r ([]; if length > 0 and .[-1].e == $r.s
			then .[-1].e = $r.e else . + [$r] end) | .[] | "\(.s) \(.e)"'
}

# tiling MAP SIZE: the extents cover [0, SIZE) in order
tiling()
{
	assert_eq "$(jq -r 'reduce .[] as $e ({n: 0, ok: true};
		{n: ($e.start + $e.length), ok: (.ok and $e.start == .n and $e.length > 0)})
		| "\(.ok) \(.n)"' "$1")" "true $2" "$1 tiles the disk"
}

raw=$SCRATCH/r.raw
truncate -s 20M "$raw"
gen_data a $((2 * MiB)) | dd of="$raw" bs=1M seek=3 conv=notrunc status=none
gen_data b 4096 | dd of="$raw" bs=4096 seek=2000 conv=notrunc status=none
vdisk map --json "$raw" >"$SCRATCH/rv.json" || die "vdisk map raw failed"
qemu-img map -f raw --output=json "$raw" >"$SCRATCH/rq.json" || die "qemu-img map failed"
tiling "$SCRATCH/rv.json" $((20 * MiB))
[ -n "$(data_ranges <"$SCRATCH/rq.json")" ] || die "qemu-img map found no data"
assert_eq "$(data_ranges <"$SCRATCH/rv.json")" "$(data_ranges <"$SCRATCH/rq.json")" \
	"data ranges of a raw file: vdisk map vs qemu-img map"

# a chain: base data at depth 1, child data at depth 0, the rest unallocated at depth 1
base=$SCRATCH/base.vhdx
child=$SCRATCH/child.avhdx
vdisk create --block-size 1M "$base" 8M || die "create base failed"
gen_data c $MiB | vdisk write "$base" 0 || die "write base failed"
vdisk create --parent "$base" "$child" || die "create child failed"
gen_data d 4096 | vdisk write "$child" 8192 || die "write child failed"
vdisk map --json "$child" >"$SCRATCH/c.json" || die "vdisk map of the chain failed"
tiling "$SCRATCH/c.json" $((8 * MiB))
assert_eq "$(jq -c '[.[] | [.start, .length, .depth, .present, .data]]' "$SCRATCH/c.json")" \
	"[[0,8192,1,true,true],[8192,4096,0,true,true],[12288,$((MiB - 12288)),1,true,true],[$MiB,$((7 * MiB)),1,false,false]]" \
	"map of the chain"
# the text form: same ranges and kinds
vdisk map "$child" >"$SCRATCH/c.txt" || die "vdisk map (text) failed"
assert_eq "$(tail -n +2 "$SCRATCH/c.txt" | while read -r o l t _; do printf '%d %d %s\n' "$o" "$l" "$t"; done)" \
	"$(jq -r '.[] | "\(.start) \(.length) \(if .data then "data" elif .present then "zero" else "unallocated" end)"' \
		"$SCRATCH/c.json")" "text map vs JSON map"
grep -q "base.vhdx$" "$SCRATCH/c.txt" || die "text map does not name the parent file: $(cat "$SCRATCH/c.txt")"

# checksum vs xxhsum -H2 on raw files of awkward sizes
: >"$SCRATCH/empty.raw"
printf 'x' >"$SCRATCH/one.raw"
gen_data e $((4 * MiB + 1)) >"$SCRATCH/odd.raw"
truncate -s 100M "$SCRATCH/sparse.raw"
gen_data f 3 | dd of="$SCRATCH/sparse.raw" bs=1 seek=$((100 * MiB - 3)) conv=notrunc status=none
for f in empty one odd sparse r; do
	assert_eq "$(vdisk checksum "$SCRATCH/$f.raw")" "$(xxhsum -H2 "$SCRATCH/$f.raw")" "checksum of $f.raw"
done

# equal content, equal hash: the chain, the same bytes laid out with dd, a qemu-made VHDX
truncate -s 8M "$SCRATCH/flat.raw"
gen_data c $MiB | dd of="$SCRATCH/flat.raw" conv=notrunc status=none
gen_data d 4096 | dd of="$SCRATCH/flat.raw" bs=4096 seek=2 conv=notrunc status=none
want=$(xxhsum -H2 "$SCRATCH/flat.raw" | cut -d' ' -f1)
assert_eq "$(vdisk checksum "$child")" "$want  $child" "checksum of the chain"
qemu-img convert -f raw -O vhdx "$SCRATCH/flat.raw" "$SCRATCH/q.vhdx" || die "qemu-img convert failed"
assert_eq "$(vdisk checksum "$SCRATCH/q.vhdx")" "$want  $SCRATCH/q.vhdx" "checksum of a qemu-made VHDX"

# several files, one missing: the others are printed, exit 1
expect_status 1 vdisk checksum "$SCRATCH/one.raw" "$SCRATCH/missing.raw" "$child"
assert_eq "$(cat "$OUT")" "$(xxhsum -H2 "$SCRATCH/one.raw")
$want  $child" "output around a failing file"
grep -q "missing.raw" "$ERR" || die "no message for the missing file: $(cat "$ERR")"

# a Windows image: checksum equals xxhsum of qemu-img's raw conversion
requires_fixture hyperv-win10.0.18363-dynamic-10M.vhdx.gz
win=$(fixture_unpack hyperv-win10.0.18363-dynamic-10M)
qemu-img convert -f vhdx -O raw "$win" "$SCRATCH/win.raw" || die "qemu-img convert of the fixture"
assert_eq "$(sha256 "$SCRATCH/win.raw")" "$(fixture_field hyperv-win10.0.18363-dynamic-10M raw-sha)" \
	"qemu-img's reading of the fixture"
assert_eq "$(vdisk checksum "$win" | cut -d' ' -f1)" "$(xxhsum -H2 "$SCRATCH/win.raw" | cut -d' ' -f1)" \
	"checksum of the Windows fixture"
log "ok"
