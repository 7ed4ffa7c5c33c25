#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# FUSE exports of one VHDX image, side by side: `vdisk mount`, qemu-storage-daemon's FUSE
# export (file driver with aio=io_uring) and libvhdi's vhdimount (read-only), with the raw
# file read directly as the limit. Three workloads, each from a cold page cache (dropped
# before every run), measured by fio on the exported file:
#   seq read   1 MiB reads, one job            (MB/s)
#   seq write  1 MiB writes into a fresh dynamic image, fsync at the end (MB/s)
#   rand read  4 KiB random reads, JOBS jobs   (IOPS)
# The exports take turns (RUNS rounds); the median of each is printed with the ratios
# vdisk/qsd (aim >= 1.2), vdisk/vhdimount (aim >= 1.5) and vdisk/raw (aim >= 0.85 for
# sequential reads). Needs root (drop_caches, mounting).
#
# Environment: VDISK_BUILD_DIR (default ./build), BENCH_DIR (scratch, default
# $VDISK_BUILD_DIR/bench-tmp, needs ~3 x SIZE_MIB), SIZE_MIB (default 1024), RUNS (default 3),
# TIME (seconds per random-read run, default 10), JOBS (default 4), QSD_DIRECT (on|off:
# qemu-storage-daemon's cache.direct, default off, its faster setting in our runs: the page
# cache helps it read, and its writes go to the page cache like ours, with the fsync at the
# end timed). Each mount keeps its own settings: qemu-storage-daemon 7.2's export is served
# by one thread and uses the page cache of its mount (write-through writes); `vdisk mount`
# caches read-only opens and sends the writes of writable opens straight (direct_io).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
TIME=${TIME:-10}
JOBS=${JOBS:-4}
QSD_DIRECT=${QSD_DIRECT:-off}

requires fio
requires jq
requires qemu-storage-daemon
requires vhdimount
requires fusermount3
[ -x "$VDISK" ] || die "$VDISK not found: build the project first"
[ "$(id -u)" -eq 0 ] || echo "bench: not root: caches cannot be dropped" >&2
mkdir -p "$BENCH_DIR"
raw=$BENCH_DIR/fuse.raw
img=$BENCH_DIR/fuse.vhdx
empty=$BENCH_DIR/fuse-empty.vhdx
wimg=$BENCH_DIR/fuse-write.vhdx
mnt=$BENCH_DIR/mnt-vdisk
vhdi=$BENCH_DIR/mnt-vhdi
qsd_file=$BENCH_DIR/qsd-export
mkdir -p "$mnt" "$vhdi"
touch "$qsd_file"

if [ ! -f "$raw" ] || [ "$(stat -c %s "$raw")" -ne $((SIZE_MIB << 20)) ]; then
	echo "bench: writing $raw ($SIZE_MIB MiB of random data)"
	dd if=/dev/urandom of="$raw" bs=1M count="$SIZE_MIB" status=none
	rm -f "$img"
fi
if [ ! -f "$img" ]; then
	echo "bench: converting to $img (dynamic, every block allocated)"
	"$VDISK" convert -O vhdx "$raw" "$img"
fi
"$VDISK" create --overwrite "$empty" "${SIZE_MIB}M" >/dev/null

qsd_pid=
cleanup() {
	set +e
	[ -n "$qsd_pid" ] && kill "$qsd_pid" 2>/dev/null && wait "$qsd_pid" 2>/dev/null
	for d in "$mnt" "$vhdi"; do
		grep -q " $d " /proc/self/mountinfo && { "$VDISK" umount "$d" 2>/dev/null || fusermount3 -u "$d"; }
	done
	rm -f "$wimg" "$BENCH_DIR/fuse-write.raw"
}
trap cleanup EXIT

mounted() {
	grep -q " $1 " /proc/self/mountinfo
}

# ---- exports: each sets EXPORTED to the path of the exported disk ----

EXPORTED=
export_vdisk() { # IMAGE [--rw]
	"$VDISK" mount ${2:-} "$1" "$mnt"
	EXPORTED=$mnt/disk
}

unexport_vdisk() {
	"$VDISK" umount "$mnt"
}

export_qsd() { # IMAGE [writable]
	local w=off
	[ -n "${2:-}" ] && w=on
	qemu-storage-daemon \
		--blockdev "driver=file,node-name=file0,filename=$1,aio=io_uring,cache.direct=$QSD_DIRECT" \
		--blockdev driver=vhdx,node-name=fmt0,file=file0 \
		--export "type=fuse,id=exp0,node-name=fmt0,mountpoint=$qsd_file,writable=$w" \
		>"$BENCH_DIR/qsd.log" 2>&1 &
	qsd_pid=$!
	for _ in $(seq 100); do
		mounted "$qsd_file" && break
		sleep 0.1
	done
	mounted "$qsd_file" || die "qemu-storage-daemon did not export: $(cat "$BENCH_DIR/qsd.log")"
	EXPORTED=$qsd_file
}

unexport_qsd() {
	kill "$qsd_pid"
	wait "$qsd_pid" || :
	qsd_pid=
}

export_vhdi() {
	vhdimount "$1" "$vhdi" >/dev/null
	for _ in $(seq 50); do
		[ -e "$vhdi/vhdi1" ] && break
		sleep 0.1
	done
	EXPORTED=$vhdi/vhdi1
}

unexport_vhdi() {
	fusermount3 -u "$vhdi"
}

export_raw() {
	EXPORTED=$1
}

unexport_raw() {
	:
}

# ---- workloads: each prints one number ----

# fio_json FILE ARGS...: runs one fio job on FILE, JSON on stdout.
fio_json() {
	local f=$1
	shift
	fio --name=b --filename="$f" --ioengine=psync --direct=0 --output-format=json "$@"
}

seq_read() {
	drop_caches
	fio_json "$1" --rw=read --bs=1M --size="${SIZE_MIB}M" |
		jq -r '.jobs[0].read.bw_bytes / 1000000 | floor'
}

seq_write() {
	drop_caches
	fio_json "$1" --rw=write --bs=1M --size="${SIZE_MIB}M" --end_fsync=1 |
		jq -r '(.jobs[0].write.io_bytes / (.jobs[0].job_runtime / 1000)) / 1000000 | floor'
}

rand_read() {
	drop_caches
	fio_json "$1" --rw=randread --bs=4k --size="${SIZE_MIB}M" --numjobs="$JOBS" \
		--group_reporting --runtime="$TIME" --time_based --randrepeat=0 --norandommap |
		jq -r '.jobs[0].read.iops | floor'
}

# run KEY WORKLOAD KIND SOURCE [WRITABLE]: export SOURCE the KIND way, run WORKLOAD on it,
# take the export down, and add the figure to the results under KEY.
declare -A res
run() {
	local key=$1 w=$2 kind=$3 src=$4 v
	"export_$kind" "$src" ${5:+"$5"}
	v=$("$w" "$EXPORTED")
	"unexport_$kind"
	res[$key]+="$v"$'\n'
}

# median of the numbers on stdin (the machine this runs on is shared: a mean would follow
# the one run that another job's I/O slowed down)
median() {
	sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else if (NR) printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

echo "bench: ${SIZE_MIB} MiB image, ${RUNS} rounds, random reads ${TIME}s x ${JOBS} jobs, qsd cache.direct=$QSD_DIRECT, files in $BENCH_DIR ($(df --output=fstype "$BENCH_DIR" | tail -1))"
# the order rotates each round, so that no export always runs right after the same one
# (or first, while another job on the machine is still winding down)
read_kinds=(raw vdisk qsd vhdi)
write_kinds=(raw vdisk qsd)
for ((i = 0; i < RUNS; i++)); do
	for ((k = 0; k < ${#read_kinds[@]}; k++)); do
		kind=${read_kinds[(i + k) % ${#read_kinds[@]}]}
		src=$img
		[ "$kind" = raw ] && src=$raw
		run "seq-read-$kind" seq_read "$kind" "$src"
		run "rand-read-$kind" rand_read "$kind" "$src"
	done
	# writes: a fresh empty dynamic image each time (a fresh raw file for the limit)
	for ((k = 0; k < ${#write_kinds[@]}; k++)); do
		kind=${write_kinds[(i + k) % ${#write_kinds[@]}]}
		if [ "$kind" = raw ]; then
			rm -f "$BENCH_DIR/fuse-write.raw"
			truncate -s "${SIZE_MIB}M" "$BENCH_DIR/fuse-write.raw"
			run seq-write-raw seq_write raw "$BENCH_DIR/fuse-write.raw"
		else
			cp --sparse=always "$empty" "$wimg"
			flag=writable
			[ "$kind" = vdisk ] && flag=--rw
			run "seq-write-$kind" seq_write "$kind" "$wimg" "$flag"
			"$VDISK" check "$wimg" >/dev/null || die "$kind left $wimg inconsistent"
		fi
	done
done

avg() {
	if [ -n "${res[$1]:-}" ]; then
		printf '%s' "${res[$1]}" | median
	else
		echo "n/a"
	fi
}

printf '\n%-16s %9s %9s %9s %9s   %9s %10s %9s\n' "workload" "raw" "vdisk" "qsd" "vhdimount" \
	"vdisk/qsd" "vdisk/vhdi" "vdisk/raw"
for w in seq-read seq-write rand-read; do
	r=$(avg "$w-raw") v=$(avg "$w-vdisk") q=$(avg "$w-qsd") h=$(avg "$w-vhdi")
	unit="MB/s"
	[ "$w" = rand-read ] && unit="IOPS"
	hv="n/a"
	[ "$h" != n/a ] && hv=$(ratio "$v" "$h")
	printf '%-16s %9s %9s %9s %9s   %9s %10s %9s\n' "$w ($unit)" "$r" "$v" "$q" "$h" \
		"$(ratio "$v" "$q")" "$hv" "$(ratio "$v" "$r")"
done
