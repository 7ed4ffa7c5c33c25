#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Random 4 KiB I/O at queue depth 32, O_DIRECT, io_uring: bench/randio on a fully allocated
# VHDX against fio on a raw file of the same size on the same file system. Also runs randio
# --raw on that raw file, which isolates the cost of the VHDX translation from that of the
# I/O engine. The three alternate for RUNS rounds; the medians are printed, with the median
# of the per-round ratios to fio's IOPS (1.00 = as fast as fio on raw; aim: >= 0.9 for reads).
#
# Environment: VDISK_BUILD_DIR (default ./build), BENCH_DIR (scratch, default
# $VDISK_BUILD_DIR/bench-tmp, needs ~2 GiB), SIZE_MIB (default 1024), TIME (seconds per run,
# default 10), RUNS (default 3), DEPTH (default 32), BS (default 4096), WRITES=0 skips writes.
# RAMDISK=1 puts the files on an ext4 file system on a loop device backed by /dev/shm (root
# only): the device is then much faster than the software, so the figures show CPU cost
# per request rather than the disk's limit.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${SIZE_MIB:-1024}
TIME=${TIME:-10}
RUNS=${RUNS:-3}
DEPTH=${DEPTH:-32}
BS=${BS:-4096}
WRITES=${WRITES:-1}
RAMDISK=${RAMDISK:-0}

requires fio
requires jq
[ -x "$VDISK" ] || die "$VDISK not found: build the project first"
[ -x "$RANDIO" ] || die "$RANDIO not found: build the project first"

errlog=$(mktemp)
# randio's warnings, once each
# shellcheck disable=SC2016 # expanded at exit
at_exit 'sort -u "$errlog" >&2; rm -f "$errlog"'
[ "$RAMDISK" != 1 ] || use_ramdisk $((SIZE_MIB * 2 + 256))
mkdir -p "$BENCH_DIR"
raw=$BENCH_DIR/randio.raw
img=$BENCH_DIR/randio.vhdx

if [ ! -f "$raw" ] || [ "$(stat -c %s "$raw")" -ne $((SIZE_MIB << 20)) ]; then
	echo "bench: writing $raw ($SIZE_MIB MiB of random data)"
	dd if=/dev/urandom of="$raw" bs=1M count="$SIZE_MIB" status=none
	rm -f "$img"
fi
if [ ! -f "$img" ]; then
	echo "bench: converting to $img (every block allocated)"
	"$VDISK" convert -O vhdx "$raw" "$img"
fi

# fio_run RW: prints "iops p50_us p99_us".
fio_run() {
	local dir=read
	[ "$1" = randwrite ] && dir="write"
	drop_caches
	fio --name=bench --filename="$raw" --ioengine=io_uring --direct=1 --rw="$1" --bs="$BS" \
		--iodepth="$DEPTH" --runtime="$TIME" --time_based --randrepeat=0 --norandommap \
		--output-format=json |
		jq -r --arg d "$dir" '.jobs[0][$d] | "\(.iops) \(.clat_ns.percentile["50.000000"] / 1000) \(.clat_ns.percentile["99.000000"] / 1000)"'
}

# randio_run ARGS...: prints "iops p50_us p99_us".
randio_run() {
	drop_caches
	"$RANDIO" -t "$TIME" -d "$DEPTH" -b "$BS" "$@" 2>>"$errlog" |
		sed -n 's/^iops=\([0-9.]*\) p50_us=\([0-9.]*\) p99_us=\([0-9.]*\)$/\1 \2 \3/p'
}

# median of the numbers on stdin, one a line
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.0f", v[(NR + 1) / 2];
		else printf "%.0f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

median2() { # same with two decimals
	sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2];
		else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

row() { # RW TARGET "iops p50 p99 lines" RATIO
	local col=() n
	for n in 1 2 3; do
		col[n]=$(awk -v c="$n" '{ print $c }' <<<"$3" | median)
	done
	printf '%-10s %-22s %9s %8s %8s %9s\n' "$1" "$2" "${col[1]}" "${col[2]}" "${col[3]}" "$4"
}

bench_one() { # RW RANDIO-FLAGS
	local rw=$1 flags=$2 f v r fa="" va="" ra="" vr="" rr="" i
	for ((i = 0; i < RUNS; i++)); do
		f=$(fio_run "$rw")
		# shellcheck disable=SC2086
		v=$(randio_run $flags "$img")
		# shellcheck disable=SC2086
		r=$(randio_run $flags --raw "$raw")
		if [ -z "$f" ] || [ -z "$v" ] || [ -z "$r" ]; then
			die "a $rw run failed"
		fi
		fa+="$f"$'\n' va+="$v"$'\n' ra+="$r"$'\n'
		vr+="$(ratio "${v%% *}" "${f%% *}")"$'\n'
		rr+="$(ratio "${r%% *}" "${f%% *}")"$'\n'
	done
	row "$rw" "fio raw (io_uring)" "$fa" "1.00"
	row "$rw" "randio raw" "$ra" "$(printf '%s' "$rr" | median2)"
	row "$rw" "randio vhdx (vdisk)" "$va" "$(printf '%s' "$vr" | median2)"
}

echo "bench: ${SIZE_MIB} MiB, bs=$BS, depth=$DEPTH, ${TIME}s x $RUNS rounds, files in $BENCH_DIR" \
	"($(df --output=fstype,source "$BENCH_DIR" | tail -1 | tr -s ' '))"
printf '%-10s %-22s %9s %8s %8s %9s\n' "workload" "target" "IOPS" "p50 us" "p99 us" "vs fio"
bench_one randread ""
if [ "$WRITES" = 1 ]; then
	bench_one randwrite "-w"
fi
