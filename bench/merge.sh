#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Merge benchmark: `vdisk merge` of a differencing child holding DATA_MIB (default 1 GiB) of
# scattered data (EXTENT_KIB extents at random, non-overlapping, aligned places of a SIZE_GIB
# disk, so the child's blocks are mostly PARTIALLY_PRESENT with sector bitmaps) into an empty
# dynamic parent, against the sequential copy speed of the same file system measured in the
# same run: `dd` of a DATA_MIB file with 4 MiB requests and a final fdatasync. Both start
# from a cold page cache (when root) and include the final sync. The merge is verified
# outside the timing (the parent's checksum must equal the child's before the merge).
# Prints MiB/s of each and the ratio merge / dd (1.00 = as fast as a plain copy; aim >= 0.7).
#
# Environment: VDISK_BUILD_DIR (default ./build), BENCH_DIR (scratch, default
# $VDISK_BUILD_DIR/bench-tmp, needs ~4 x DATA_MIB), SIZE_GIB (default 16), DATA_MIB (default
# 1024), EXTENT_KIB (default 512), RUNS (default 2), VERIFY=0 skips the check.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZE_GIB=${SIZE_GIB:-16}
DATA_MIB=${DATA_MIB:-1024}
EXTENT_KIB=${EXTENT_KIB:-512}
RUNS=${RUNS:-2}
VERIFY=${VERIFY:-1}
t_dd="" t_merge="" # set by timed()

[ -x "$VDISK" ] || die "$VDISK not found: build the project first"
mkdir -p "$BENCH_DIR"
pool=$BENCH_DIR/merge-pool.raw
base0=$BENCH_DIR/merge-base.pristine.vhdx
child0=$BENCH_DIR/merge-child.pristine.avhdx
stamp=$BENCH_DIR/merge-setup.$SIZE_GIB-$DATA_MIB-$EXTENT_KIB
run=$BENCH_DIR/merge-run
copy=$BENCH_DIR/merge-dd.out
trap 'rm -rf "$run" "$copy"' EXIT

extent=$((EXTENT_KIB * 1024))
n_ext=$((DATA_MIB * 1024 / EXTENT_KIB))
slots=$((SIZE_GIB * 1024 * 1024 / EXTENT_KIB))
[ "$n_ext" -le "$slots" ] || die "DATA_MIB does not fit in SIZE_GIB"

if [ ! -f "$stamp" ]; then
	rm -f "$BENCH_DIR"/merge-setup.* "$base0" "$child0" "$pool"
	echo "bench: writing $child0: $n_ext extents of $EXTENT_KIB KiB at random places of $SIZE_GIB GiB"
	dd if=/dev/urandom of="$pool" bs=1M count="$DATA_MIB" status=none
	"$VDISK" create "$base0" "${SIZE_GIB}G"
	"$VDISK" create --parent "$base0" "$child0"
	# distinct random slots, written in random order (seeded: the same layout every setup)
	i=0
	while read -r slot; do
		dd if="$pool" bs="$extent" skip="$i" count=1 status=none |
			"$VDISK" write "$child0" $((slot * extent))
		i=$((i + 1))
	done < <(seq 0 $((slots - 1)) | shuf -n "$n_ext" --random-source=<(yes))
	touch "$stamp"
fi
want=$("$VDISK" checksum "$child0" | cut -d' ' -f1)
alloc=$("$VDISK" info --json "$child0" | sed -n 's/^ *"allocated-size": \([0-9]*\).*/\1/p')

# fresh: the pristine pair into $run (not timed)
fresh() {
	rm -rf "$run"
	mkdir "$run"
	cp --sparse=always "$base0" "$run/base.vhdx"
	cp --sparse=always "$child0" "$run/child.avhdx"
	"$VDISK" rebase --unsafe --parent "$run/base.vhdx" "$run/child.avhdx"
}

mibs() { # SECONDS -> MiB/s of DATA_MIB
	awk -v s="$1" -v m="$DATA_MIB" 'BEGIN { if (s > 0) printf "%.0f", m / s; else print "n/a" }'
}

echo "bench: $("$VDISK" --version | head -1); child: $DATA_MIB MiB in $n_ext extents of $EXTENT_KIB KiB over $SIZE_GIB GiB ($((alloc >> 20)) MiB of allocated blocks); files in $BENCH_DIR ($(df --output=fstype "$BENCH_DIR" | tail -1))"
printf '%-4s %-26s %8s %8s %10s\n' "run" "operation" "seconds" "MiB/s" "merge/dd"
for ((r = 1; r <= RUNS; r++)); do
	rm -f "$copy"
	timed t_dd dd if="$pool" of="$copy" bs=4M conv=fdatasync status=none
	rm -f "$copy"
	fresh
	timed t_merge "$VDISK" merge "$run/child.avhdx"
	printf '%-4s %-26s %8s %8s %10s\n' "$r" "dd (sequential copy)" "$t_dd" "$(mibs "$t_dd")" ""
	printf '%-4s %-26s %8s %8s %10s\n' "$r" "vdisk merge" "$t_merge" "$(mibs "$t_merge")" \
		"$(ratio "$t_dd" "$t_merge")"
	if [ "$VERIFY" = 1 ]; then
		got=$("$VDISK" checksum "$run/base.vhdx" | cut -d' ' -f1)
		[ "$got" = "$want" ] || die "the merged parent does not read as the child did"
		[ ! -e "$run/child.avhdx" ] || die "the merged child is still there"
	fi
done
