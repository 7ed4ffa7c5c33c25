# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced, not run): locating the build, timing a
# command, dropping the page cache, and printing ratios.

bench_src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${VDISK_BUILD_DIR:-$bench_src/build}
VDISK=${VDISK:-$build/cli/vdisk}
RANDIO=${RANDIO:-$build/bench/randio}
# Scratch files go to BENCH_DIR: it must be on a real file system (O_DIRECT; not tmpfs).
BENCH_DIR=${BENCH_DIR:-$build/bench-tmp}

die() {
	echo "bench: $*" >&2
	exit 1
}

requires() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found (scripts/setup.sh installs it)"
}

# Empties the page cache so that every timed run starts cold. Needs root; without it the
# figures are warm-cache ones and a warning says so.
drop_caches() {
	sync
	if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
		[ -n "${_warned_cache:-}" ] || echo "bench: cannot drop caches (not root?): warm-cache figures" >&2
		_warned_cache=1
	fi
}

now() {
	date +%s.%N
}

# timed VAR CMD...: runs CMD from a cold cache, then sync, and stores the wall time (s) in VAR.
# The sync is inside the timing, so a tool that leaves its output in the page cache pays for it.
timed() {
	local __var=$1 t0 t1
	shift
	drop_caches
	t0=$(now)
	"$@"
	sync
	t1=$(now)
	printf -v "$__var" '%s' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
}

# ratio A B: A / B with two decimals.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'
}

# at_exit CMD ARGS...: runs the command when the script exits (last registered first).
# A single argument is taken as a shell snippet.
_at_exit=()
at_exit() {
	local c
	if [ $# -eq 1 ]; then
		c=$1
	else
		c=$(printf '%q ' "$@")
	fi
	_at_exit=("$c" "${_at_exit[@]}")
	trap _run_at_exit EXIT
}
_run_at_exit() {
	local c
	for c in "${_at_exit[@]}"; do
		eval "$c" || true
	done
}

# use_ramdisk MIB: points BENCH_DIR at a fresh ext4 file system of MIB MiB on a loop device
# backed by /dev/shm (root only), removed at exit. The "device" is then far faster than the
# software, so timings show CPU cost instead of the limits of a virtual disk.
use_ramdisk() {
	requires losetup
	requires mkfs.ext4
	local backing loopdev mnt
	backing=$(mktemp /dev/shm/vdisk-bench.XXXXXX)
	at_exit rm -f "$backing"
	truncate -s "$1"M "$backing"
	loopdev=$(losetup -f --show "$backing")
	at_exit losetup -d "$loopdev"
	mkfs.ext4 -q "$loopdev"
	mnt=$(mktemp -d)
	at_exit rmdir "$mnt"
	mount "$loopdev" "$mnt"
	at_exit umount "$mnt"
	BENCH_DIR=$mnt
}
