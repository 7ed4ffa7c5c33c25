#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Conversion benchmark: `vdisk convert` against `qemu-img convert`, raw -> VHDX and VHDX -> raw,
# on a SIZE raw file (default 2 GiB) that is half data: a random 1 MiB chunk at every other MiB,
# holes in between. VHDX -> raw runs both tools on each tool's own VHDX, so every converter
# also reads the other's output. Every run starts from a cold page cache and its time
# includes a final sync; each conversion runs RUNS times (default 3), alternating tools, and
# the median is printed. Outputs are verified (cmp / qemu-img compare) before the timings.
# Prints seconds and the ratio qemu-img / vdisk (> 1: vdisk is faster).
#
# Environment: VDISK_BUILD_DIR (default ./build), BENCH_DIR (scratch, default
# $VDISK_BUILD_DIR/bench-tmp, needs ~7 GiB), SIZE_MIB (default 2048), VERIFY=0 skips checks.
# RAMDISK=1 works on ext4 on a loop device backed by /dev/shm (root; needs 4 x SIZE_MIB of
# memory) so that the figures show CPU cost rather than the limits of the disk.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${SIZE_MIB:-2048}
VERIFY=${VERIFY:-1}
RUNS=${RUNS:-3}

requires qemu-img
requires cmp
[ -x "$VDISK" ] || die "$VDISK not found: build the project first"
[ "${RAMDISK:-0}" != 1 ] || use_ramdisk $((SIZE_MIB * 4 + 512))
mkdir -p "$BENCH_DIR"
src=$BENCH_DIR/convert-src.raw
vd=$BENCH_DIR/convert-vdisk.vhdx
qm=$BENCH_DIR/convert-qemu.vhdx
out=$BENCH_DIR/convert-out.raw
at_exit rm -f "$vd" "$qm" "$out"

if [ ! -f "$src" ] || [ "$(stat -c %s "$src")" -ne $((SIZE_MIB << 20)) ]; then
	echo "bench: writing $src ($SIZE_MIB MiB, random 1 MiB chunks at every other MiB)"
	rm -f "$src"
	for ((i = 0; i < SIZE_MIB; i += 2)); do
		dd if=/dev/urandom of="$src" bs=1M count=1 seek=$i conv=notrunc status=none
	done
	truncate -s $((SIZE_MIB << 20)) "$src"
fi

verify_raw() { # FILE: must equal the source
	[ "$VERIFY" = 1 ] || return 0
	cmp "$src" "$1" || die "$1 differs from the source"
}

verify_vhdx() { # FILE: must read as the source
	[ "$VERIFY" = 1 ] || return 0
	qemu-img compare -q -f raw -F vhdx "$src" "$1" || die "$1 does not read as the source"
}


row() {
	printf '%-34s %10s %10s %8s\n' "$1" "$2" "$3" "$(ratio "$3" "$2")"
}

median_of() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2];
		else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# pair LABEL DST VDISK-ARGS... -- QEMU-IMG-ARGS...: RUNS alternating rounds, median times.
pair() {
	local label=$1 dst=$2 vargs=() qargs=() tv=() tq=() t i
	shift 2
	while [ "$1" != -- ]; do
		vargs+=("$1")
		shift
	done
	shift
	qargs=("$@")
	for ((i = 0; i < RUNS; i++)); do
		rm -f "$dst"
		timed t "$VDISK" convert "${vargs[@]}" "$dst"
		tv+=("$t")
		rm -f "$dst"
		timed t qemu-img convert "${qargs[@]}" "$dst"
		tq+=("$t")
	done
	rm -f "$dst"
	row "$label" "$(median_of "${tv[@]}")" "$(median_of "${tq[@]}")"
}

# Outputs first, once, checked: a fast converter that is wrong is no result.
"$VDISK" convert -O vhdx "$src" "$vd"
qemu-img convert -f raw -O vhdx "$src" "$qm"
verify_vhdx "$vd"
verify_vhdx "$qm"
for img in "$vd" "$qm"; do
	"$VDISK" convert -O raw "$img" "$out"
	verify_raw "$out"
	rm -f "$out"
	qemu-img convert -f vhdx -O raw "$img" "$out"
	verify_raw "$out"
	rm -f "$out"
done

echo "bench: $("$VDISK" --version 2>/dev/null | head -1); $(qemu-img --version | head -1)"
echo "bench: $SIZE_MIB MiB, median of $RUNS rounds, files in $BENCH_DIR" \
	"($(df --output=fstype,source "$BENCH_DIR" | tail -1 | tr -s ' '))"
printf '%-34s %10s %10s %8s\n' "conversion" "vdisk s" "qemu-img s" "qemu/vdisk"

# Then the timings. Each tool writes VHDX with its default block size.
pair "raw -> vhdx" "$out" -O vhdx "$src" -- -f raw -O vhdx "$src"
pair "vhdx (vdisk's) -> raw" "$out" -O raw "$vd" -- -f vhdx -O raw "$vd"
pair "vhdx (qemu's) -> raw" "$out" -O raw "$qm" -- -f vhdx -O raw "$qm"
