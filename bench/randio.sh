#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Random 4 KiB I/O at queue depth 32, O_DIRECT, io_uring: bench/randio on a fully allocated
# VHDX against fio on a raw file of the same size on the same file system. Also runs randio
# --raw on that raw file, which isolates the cost of the VHDX translation from that of the
# I/O engine. Runs alternate between the tools (RUNS rounds) and the mean is printed, with
# the ratio vdisk / fio (1.00 = as fast as fio on raw; the aim is >= 0.9 for reads).
#
# Environment: VDISK_BUILD_DIR (default ./build), BENCH_DIR (scratch, default
# $VDISK_BUILD_DIR/bench-tmp, needs ~2 GiB), SIZE_MIB (default 1024), TIME (seconds per run,
# default 10), RUNS (default 2), DEPTH (default 32), BS (default 4096), WRITES=0 skips writes.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${SIZE_MIB:-1024}
TIME=${TIME:-10}
RUNS=${RUNS:-2}
DEPTH=${DEPTH:-32}
BS=${BS:-4096}
WRITES=${WRITES:-1}

requires fio
requires jq
[ -x "$VDISK" ] || die "$VDISK not found: build the project first"
[ -x "$RANDIO" ] || die "$RANDIO not found: build the project first"
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
	"$RANDIO" -t "$TIME" -d "$DEPTH" -b "$BS" "$@" |
		sed -n 's/^iops=\([0-9.]*\) p50_us=\([0-9.]*\) p99_us=\([0-9.]*\)$/\1 \2 \3/p'
}

# mean of column N over the lines on stdin
mean() {
	awk -v c="$1" '{ s += $c; n++ } END { if (n) printf "%.0f", s / n }'
}

bench_one() { # RW RANDIO-FLAGS
	local rw=$1 flags=$2 f_all="" v_all="" r_all=""
	for ((i = 0; i < RUNS; i++)); do
		f_all+="$(fio_run "$rw")"$'\n'
		# shellcheck disable=SC2086
		v_all+="$(randio_run $flags "$img")"$'\n'
		# shellcheck disable=SC2086
		r_all+="$(randio_run $flags --raw "$raw")"$'\n'
	done
	local f v r
	for n in 1 2 3; do
		f[n]=$(printf '%s' "$f_all" | mean $n)
		v[n]=$(printf '%s' "$v_all" | mean $n)
		r[n]=$(printf '%s' "$r_all" | mean $n)
	done
	printf '%-10s %-22s %9s %8s %8s %9s\n' "$rw" "fio raw (io_uring)" "${f[1]}" "${f[2]}" "${f[3]}" "1.00"
	printf '%-10s %-22s %9s %8s %8s %9s\n' "$rw" "randio raw" "${r[1]}" "${r[2]}" "${r[3]}" "$(ratio "${r[1]}" "${f[1]}")"
	printf '%-10s %-22s %9s %8s %8s %9s\n' "$rw" "randio vhdx (vdisk)" "${v[1]}" "${v[2]}" "${v[3]}" "$(ratio "${v[1]}" "${f[1]}")"
}

echo "bench: ${SIZE_MIB} MiB, bs=$BS, depth=$DEPTH, ${TIME}s x $RUNS runs each, files in $BENCH_DIR ($(df --output=fstype "$BENCH_DIR" | tail -1))"
printf '%-10s %-22s %9s %8s %8s %9s\n' "workload" "target" "IOPS" "p50 us" "p99 us" "vs fio"
bench_one randread ""
if [ "$WRITES" = 1 ]; then
	bench_one randwrite "-w"
fi
