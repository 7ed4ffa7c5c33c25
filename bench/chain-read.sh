#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Chain read benchmark: 4 KiB random reads (O_DIRECT, io_uring, queue depth DEPTH) through a
# differencing chain of depth 8 against the same content flattened into one image. The base
# holds SIZE_MIB of random data; each of the 7 children gets WRITE_SECS of 4 KiB random writes
# from bench/randio -w (so its blocks are PARTIALLY_PRESENT and every read of the top is
# resolved through the sector bitmaps of up to 8 layers); the flat image is `vdisk convert`
# of the top. Both are read by bench/randio (translate, then the I/O engine); runs alternate,
# RUNS each, and the mean IOPS is printed with the ratio chain / flat (aim >= 0.8). The two
# must read the same (vdisk checksum), checked outside the timings.
#
# Two modes (MODES, default "direct buffered"): direct reads from a cold cache with O_DIRECT
# (while VHDX_OPEN_DIRECT fails, randio reads only the top image through an O_DIRECT fd of
# its own; the parents are then read through the page cache), and buffered reads from a warm
# page cache, where the disk is out of the picture and the cost of resolving the chain shows.
#
# Environment: VDISK_BUILD_DIR (default ./build), BENCH_DIR (scratch, default
# $VDISK_BUILD_DIR/bench-tmp, needs ~3 x SIZE_MIB), SIZE_MIB (default 1024), WRITE_SECS
# (default 2), TIME (seconds per run, default 10), RUNS (default 2), DEPTH (default 32),
# MODES (default "direct buffered"), ENGINE (io_uring or libaio, default io_uring).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${SIZE_MIB:-1024}
WRITE_SECS=${WRITE_SECS:-2}
TIME=${TIME:-10}
RUNS=${RUNS:-2}
DEPTH=${DEPTH:-32}
MODES=${MODES:-direct buffered}
ENGINE=${ENGINE:-io_uring}
LAYERS=8

[ -x "$VDISK" ] || die "$VDISK not found: build the project first"
[ -x "$RANDIO" ] || die "$RANDIO not found: build the project first"
mkdir -p "$BENCH_DIR"
d=$BENCH_DIR/chain
stamp=$d/setup.$SIZE_MIB-$WRITE_SECS
top=$d/c$((LAYERS - 1)).avhdx
flat=$d/flat.vhdx

if [ ! -f "$stamp" ]; then
	rm -rf "$d"
	mkdir -p "$d"
	echo "bench: base: $SIZE_MIB MiB of random data"
	dd if=/dev/urandom of="$d/base.raw" bs=1M count="$SIZE_MIB" status=none
	"$VDISK" convert -O vhdx "$d/base.raw" "$d/c0.vhdx"
	rm "$d/base.raw"
	prev=$d/c0.vhdx
	for ((i = 1; i < LAYERS; i++)); do
		"$VDISK" create --parent "$prev" "$d/c$i.avhdx"
		"$RANDIO" -w -t "$WRITE_SECS" -d "$DEPTH" --seed "$i" "$d/c$i.avhdx" |
			sed -n "s/^iops=\([0-9.]*\).*/bench: layer $i: \1 writes\/s for ${WRITE_SECS}s/p"
		prev=$d/c$i.avhdx
	done
	echo "bench: flattening into $flat"
	"$VDISK" convert -O vhdx "$top" "$flat"
	touch "$stamp"
fi
a=$("$VDISK" checksum "$top" | cut -d' ' -f1)
b=$("$VDISK" checksum "$flat" | cut -d' ' -f1)
[ "$a" = "$b" ] || die "the chain and the flat image do not read the same"
depth=$("$VDISK" info --chain --json "$top" | grep -c '"filename"')
[ "$depth" -eq "$LAYERS" ] || die "the chain has $depth images, not $LAYERS"

# randio_run MODE FILE: prints "iops p50_us p99_us"
randio_run() {
	local opt=()
	if [ "$1" = direct ]; then
		drop_caches
	else
		opt=(--buffered)
		cat "$d"/c*.*vhdx "$flat" >/dev/null # warm: every layer in the page cache
	fi
	"$RANDIO" "${opt[@]}" -e "$ENGINE" -t "$TIME" -d "$DEPTH" -b 4096 "$2" 2>/dev/null |
		sed -n 's/^iops=\([0-9.]*\) p50_us=\([0-9.]*\) p99_us=\([0-9.]*\)$/\1 \2 \3/p'
}

mean() { # column N of the lines on stdin
	awk -v c="$1" '{ s += $c; n++ } END { if (n) printf "%.0f", s / n }'
}

echo "bench: $("$VDISK" --version | head -1); $SIZE_MIB MiB, chain of $LAYERS images, 4 KiB random reads, $ENGINE, depth $DEPTH, ${TIME}s x $RUNS runs; files in $d ($(df --output=fstype "$BENCH_DIR" | tail -1))"
printf '%-9s %-18s %9s %8s %8s %9s\n' "mode" "target" "IOPS" "p50 us" "p99 us" "vs flat"
for mode in $MODES; do
	f_all="" c_all=""
	for ((r = 0; r < RUNS; r++)); do
		f_all+="$(randio_run "$mode" "$flat")"$'\n'
		c_all+="$(randio_run "$mode" "$top")"$'\n'
	done
	flat_iops=$(printf '%s' "$f_all" | mean 1)
	chain_iops=$(printf '%s' "$c_all" | mean 1)
	printf '%-9s %-18s %9s %8s %8s %9s\n' "$mode" "flat" "$flat_iops" \
		"$(printf '%s' "$f_all" | mean 2)" "$(printf '%s' "$f_all" | mean 3)" "1.00"
	printf '%-9s %-18s %9s %8s %8s %9s\n' "$mode" "chain (depth $LAYERS)" "$chain_iops" \
		"$(printf '%s' "$c_all" | mean 2)" "$(printf '%s' "$c_all" | mean 3)" \
		"$(ratio "$chain_iops" "$flat_iops")"
done
