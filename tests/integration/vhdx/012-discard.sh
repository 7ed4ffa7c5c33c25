#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk discard`: discarded ranges read as zeros (whole blocks and partial ones, across
# blocks), the rest is untouched (raw shadow), qemu-img check/compare agree; in a dynamic
# image whole discarded blocks give their space back to the file system and leave the map;
# in a fixed image blocks stay FULLY_PRESENT; a discarded block can be written again.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version

run_case()
{
	local name=$1 type=$2 bs=$3
	local img=$SCRATCH/$name.vhdx shadow=$SCRATCH/$name.raw size=$((16 * bs))
	log "$name: $type, block size $bs"
	vdisk create --type "$type" --block-size "$bs" "$img" "$size" || die "$name: create failed"
	truncate -s "$size" "$shadow"
	put "$img" "$shadow" 0 "$size" "$name-full"
	sync "$img"
	local before
	before=$(allocated_bytes "$img")

	discard_both "$img" "$shadow" $((2 * bs)) $((3 * bs))          # blocks 2-4 whole
	discard_both "$img" "$shadow" $((8 * bs + 4096)) 8192           # inside block 8
	discard_both "$img" "$shadow" $((10 * bs - 512)) $((bs + 1024)) # end of 9, all of 10, start of 11
	assert_range "$img" "$shadow" 0 "$size"
	qemu_check "$img"
	qemu_compare "$img" "$shadow"
	expect_status 0 vdisk check "$img"

	vdisk map --json "$img" >"$SCRATCH/map.json" || die "$name: map failed"
	local b e ents
	mapfile -t ents < <(bat_entries "$img" 16)
	for b in 2 3 4; do
		e=${ents[b]}
		if [ "$type" = fixed ]; then
			assert_eq $((e & 7)) 6 "$name: BAT state of discarded block $b (fixed)"
		else
			[ $((e & 7)) -le 3 ] || die "$name: discarded block $b has BAT state $((e & 7))"
			jq -e --argjson s $((b * bs)) --argjson l "$bs" \
				'any(.[]; .start <= $s and .start + .length >= $s + $l and .data == false)' \
				"$SCRATCH/map.json" >/dev/null || die "$name: block $b is still data in vdisk map"
		fi
	done
	if [ "$type" = dynamic ]; then
		sync "$img"
		[ "$(allocated_bytes "$img")" -le $((before - 3 * bs)) ] ||
			die "$name: discarding 3 blocks freed only $((before - $(allocated_bytes "$img"))) bytes"
	fi

	# write into the discarded blocks again
	put "$img" "$shadow" $((3 * bs + 100)) 5000 "$name-again"
	assert_range "$img" "$shadow" 0 "$size"
	qemu_check "$img"
	qemu_compare "$img" "$shadow"
	rm -f "$img" "$shadow"
}

run_case dyn1 dynamic $MiB
run_case dyn2 dynamic $((2 * MiB))
run_case fix1 fixed $MiB

# out of range
vdisk create "$SCRATCH/r.vhdx" 8M || die "create failed"
expect_fail 'range|beyond|size|invalid|offset' vdisk discard "$SCRATCH/r.vhdx" $((8 * MiB - 512)) 1024
log "ok"
