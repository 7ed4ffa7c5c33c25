#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk map --json` against the peers, through jq. qemu-img 7.2 has no block-status for
# VHDX (it maps a whole VHDX as data), so the dynamic image is compared with
# `qemu-img map --output=json` of its raw shadow: every data range of the shadow, widened
# to whole blocks, must be exactly the data ranges vdisk reports (the writes are non-zero,
# and a write allocates whole blocks). A discarded block leaves both maps. The map must
# tile the disk from 0 to the virtual size, and each data extent's file offset must be the
# one the BAT (read with od) gives. A fixed image maps as data everywhere, as qemu-img says.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version

# stdin: a map as JSON array of {start, length, data, ...}; prints merged data ranges as
# "start end" lines.
JQ_MERGE='
	sort_by(.s) | reduce .[] as $r ([];
		if length > 0 and .[-1].e >= $r.s
		then .[-1].e = ([.[-1].e, $r.e] | max)
		else . + [$r] end)
	| .[] | "\(.s) \(.e)"'
data_ranges()
{
	jq -r "[.[] | select(.data == true) | {s: .start, e: (.start + .length)}] | $JQ_MERGE"
}
# the same, each range widened to whole blocks of $1 bytes
data_ranges_blocks()
{
	jq -r --argjson b "$1" "[.[] | select(.data == true) |
		{s: ((.start / \$b | floor) * \$b), e: (((.start + .length + \$b - 1) / \$b | floor) * \$b)}]
		| $JQ_MERGE"
}

# checks that a map tiles [0, size) in order
check_tiling()
{
	local map=$1 size=$2 what=$3 v
	v=$(jq -r 'reduce .[] as $e ({next: 0, ok: true};
		{next: ($e.start + $e.length), ok: (.ok and $e.start == .next and $e.length > 0)})
		| "\(.ok) \(.next)"' "$map") || die "$what: map is not a JSON array of extents"
	assert_eq "$v" "true $size" "$what: map tiles the disk (ok, end)"
}

bs=$MiB
size=$((24 * MiB))
img=$SCRATCH/d.vhdx
shadow=$SCRATCH/d.raw
vdisk create --type dynamic --block-size "$bs" "$img" "$size" || die "create failed"
truncate -s "$size" "$shadow"

vdisk map --json "$img" >"$SCRATCH/empty.json" || die "vdisk map --json failed"
check_tiling "$SCRATCH/empty.json" "$size" "new image"
assert_eq "$(data_ranges <"$SCRATCH/empty.json")" "" "data ranges of a new image"

put "$img" "$shadow" 0 "$bs" m0                            # block 0 whole
put "$img" "$shadow" $((2 * bs)) $((3 * bs)) m1            # blocks 2-4
put "$img" "$shadow" $((10 * bs + 4096)) 8192 m2           # part of block 10
put "$img" "$shadow" $((13 * bs - 512)) 1024 m3            # end of 12, start of 13
put "$img" "$shadow" $((size - 4096)) 4096 m4              # last block
discard_both "$img" "$shadow" $((3 * bs)) "$bs"            # block 3 again unallocated
fallocate -p -o $((3 * bs)) -l "$bs" "$shadow"

vdisk map --json "$img" >"$SCRATCH/vdisk.json" || die "vdisk map --json failed"
qemu-img map -f raw --output=json "$shadow" >"$SCRATCH/qemu.json" || die "qemu-img map failed"
check_tiling "$SCRATCH/vdisk.json" "$size" "written image"
v=$(data_ranges <"$SCRATCH/vdisk.json")
q=$(data_ranges_blocks "$bs" <"$SCRATCH/qemu.json")
[ -n "$q" ] || die "qemu-img map of the shadow shows no data"
assert_eq "$v" "$q" "data ranges: vdisk map of the image vs qemu-img map of the shadow"
assert_eq "$v" "0 $bs
$((2 * bs)) $((3 * bs))
$((4 * bs)) $((5 * bs))
$((10 * bs)) $((11 * bs))
$((12 * bs)) $((14 * bs))
$((size - bs)) $size" "data ranges of the written image"

# each data extent lies where the BAT says
mapfile -t ents < <(bat_entries "$img" $((size / bs)))
jq -r '.[] | select(.data == true) | "\(.start) \(.length) \(.offset)"' "$SCRATCH/vdisk.json" |
	while read -r start len off; do
		[ "$off" != null ] || die "data extent at $start has no offset"
		b=$((start / bs))
		e=${ents[b]}
		assert_eq "$off" $(((e >> 20) * MiB + start - b * bs)) "file offset of the extent at $start"
		assert_eq "$(vdisk read "$img" "$start" "$len" | sha256)" \
			"$(read_range "$img" "$off" "$len" | sha256)" "bytes of the extent at $start in the file"
	done

# the plain text map and the JSON one describe the same image
vdisk map "$img" >"$SCRATCH/map.txt" || die "vdisk map failed"
[ -s "$SCRATCH/map.txt" ] || die "vdisk map printed nothing"

# a fixed image: data everywhere, as qemu-img map also says for it
vdisk create --type fixed --block-size 2M "$SCRATCH/f.vhdx" "$size" || die "create fixed failed"
vdisk map --json "$SCRATCH/f.vhdx" >"$SCRATCH/f.json" || die "vdisk map --json (fixed) failed"
qemu-img map -f vhdx --output=json "$SCRATCH/f.vhdx" >"$SCRATCH/fq.json" || die "qemu-img map (fixed)"
check_tiling "$SCRATCH/f.json" "$size" "fixed image"
assert_eq "$(data_ranges <"$SCRATCH/f.json")" "0 $size" "data ranges of the fixed image"
assert_eq "$(data_ranges <"$SCRATCH/f.json")" "$(data_ranges <"$SCRATCH/fq.json")" \
	"fixed image: vdisk map vs qemu-img map"
log "ok"
