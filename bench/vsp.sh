#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# vsp-storage against qemu-storage-daemon, on the same image, in one run:
#   (a) vhost-user-blk, driven by tests/vsp's vsp-driver (no guest in between), one queue;
#   (b) NBD over a UNIX socket, driven by fio's nbd engine;
#   (c) fio io_uring, O_DIRECT, on the raw file: the local limit every ratio refers to.
# Workloads: 4 KiB random read and write at depth 1 and 32, 128 KiB sequential read and
# write at depth 8, and "mixf": 4 KiB random reads and writes at depth 32 with a flush after
# every 8 writes (NBD only; IOPS count reads and writes). Images: a raw file, a dynamic VHDX already allocated (converted from the
# raw file), and a dynamic VHDX being filled (a fresh 1 MiB-block image for every write run,
# so writes allocate). qemu-storage-daemon uses aio=io_uring, cache.direct=on.
#
# Prints one line per run and a table of ratios to the local limit; the last columns compare
# vsp-storage with qemu-storage-daemon directly. Latencies are submission to completion.
#
# Environment: VDISK_BUILD_DIR (default ./build), BENCH_DIR (scratch, ~3 GiB, default
# $VDISK_BUILD_DIR/bench-tmp), SIZE_MIB (1024), TIME (seconds per run, 5), IMAGES
# ("raw vhdx vhdx-fill"), WORKLOADS (all seven: rr1 rr32 rw1 rw32 sr sw mixf), RAMDISK (0; 1:
# files on a /dev/shm-backed ext4, see below), TARGETS
# ("vsp-vu qsd-vu vsp-nbd qsd-nbd").
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SIZE_MIB=${SIZE_MIB:-1024}
TIME=${TIME:-5}
IMAGES=${IMAGES:-raw vhdx vhdx-fill}
WORKLOADS=${WORKLOADS:-rr1 rr32 rw1 rw32 sr sw mixf}
TARGETS=${TARGETS:-vsp-vu qsd-vu vsp-nbd qsd-nbd}
VSP=${VSP:-$build/vsp-storage/vsp-storage}
DRV=${DRV:-$build/vsp-storage/vsp-driver}

requires fio
requires jq
requires qemu-storage-daemon
[ -x "$VSP" ] || die "$VSP not found: build the project first"
[ -x "$DRV" ] || die "$DRV not found: build the project first"
[ -x "$VDISK" ] || die "$VDISK not found: build the project first"
# RAMDISK=1: the files on ext4 on a loop device backed by /dev/shm (root; ~3 x SIZE_MIB of
# memory), so the figures show the servers' CPU cost rather than this machine's disk
[ "${RAMDISK:-0}" != 1 ] || use_ramdisk $((SIZE_MIB * 3 + 512))
mkdir -p "$BENCH_DIR"
raw=$BENCH_DIR/vsp.raw
alloc=$BENCH_DIR/vsp-alloc.vhdx
fill=$BENCH_DIR/vsp-fill.vhdx
sock=$BENCH_DIR/vsp-vu.sock
nsock=$BENCH_DIR/vsp-nbd.sock
results=$BENCH_DIR/vsp-results.txt
: >"$results"

if [ ! -f "$raw" ] || [ "$(stat -c %s "$raw")" -ne $((SIZE_MIB << 20)) ]; then
	echo "bench: writing $raw ($SIZE_MIB MiB of random data)"
	dd if=/dev/urandom of="$raw" bs=1M count="$SIZE_MIB" status=none
	rm -f "$alloc"
fi
[ -f "$alloc" ] || "$VDISK" convert -O vhdx "$raw" "$alloc"
# On a virtual machine the host caches the disk image: read both files once so that the
# first run (the local limit) does not pay for a cold host cache the others do not see.
dd if="$raw" of=/dev/null bs=1M iflag=direct status=none
dd if="$alloc" of=/dev/null bs=1M iflag=direct status=none

# workload NAME: "rw bs depth"
workload() {
	case $1 in
	rr1) echo "randread 4096 1" ;;
	rr32) echo "randread 4096 32" ;;
	rw1) echo "randwrite 4096 1" ;;
	rw32) echo "randwrite 4096 32" ;;
	sr) echo "read 131072 8" ;;
	sw) echo "write 131072 8" ;;
	# half reads, half writes, a flush after every 8 writes (fio's nbd and io_uring engines;
	# vsp-driver has no mixed mode, so no vhost-user figures)
	mixf) echo "randrw 4096 32 --fsync=8" ;;
	esac
}

# fio_json prints "iops mibs p50_us p99_us" from fio's JSON on stdin.
# Latency is fio's total latency (submission to completion, lat_ns): with io_uring its
# clat alone leaves out requests completed inside the submitting system call.
fio_json() {
	# IOPS and bandwidth of reads and writes together (mixed runs); latency of the reads when
	# there are any
	sed -n '/^{/,$p' | jq -r '.jobs[0] | (.read.iops + .write.iops) as $iops |
		((.read.bw_bytes + .write.bw_bytes) / 1048576) as $mibs |
		(if .read.io_bytes > 0 then .read else .write end) |
		"\($iops) \($mibs) \(.lat_ns.percentile["50.000000"] / 1000) \(.lat_ns.percentile["99.000000"] / 1000)"'
}

fio_common() { # RW BS DEPTH [FIO-ARGS...]
	echo --name=b --rw="$1" --bs="$2" --iodepth="$3" "${@:4}" --runtime="$TIME" --time_based \
		--randrepeat=0 --norandommap --size=$((SIZE_MIB << 20)) --output-format=json \
		--lat_percentiles=1 --clat_percentiles=0
}

image_path() { # IMAGE -> file (a fresh one for vhdx-fill)
	case $1 in
	raw) echo "$raw" ;;
	vhdx) echo "$alloc" ;;
	vhdx-fill)
		rm -f "$fill"
		"$VDISK" create --block-size 1M "$fill" "${SIZE_MIB}M" >/dev/null
		echo "$fill"
		;;
	esac
}

wait_sock() {
	for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
	die "no socket $1"
}

start_vsp() { # IMAGE-FILE
	rm -f "$sock" "$nsock"
	"$VSP" -q --vhost-user-blk "$sock" --nbd "unix:$nsock" --queues 1 "$1" &
	daemon=$!
	wait_sock "$sock"
	wait_sock "$nsock"
}

start_qsd() { # IMAGE-FILE FORMAT
	rm -f "$sock" "$nsock"
	qemu-storage-daemon \
		--blockdev "driver=file,node-name=file0,filename=$1,aio=io_uring,cache.direct=on" \
		--blockdev "driver=$2,node-name=disk0,file=file0" \
		--export "type=vhost-user-blk,id=vu0,node-name=disk0,addr.type=unix,addr.path=$sock,writable=on,num-queues=1" \
		--nbd-server "addr.type=unix,addr.path=$nsock" \
		--export "type=nbd,id=nbd0,node-name=disk0,name=disk,writable=on" &
	daemon=$!
	wait_sock "$sock"
	wait_sock "$nsock"
}

stop_daemon() {
	kill -TERM "$daemon" 2>/dev/null || :
	wait "$daemon" 2>/dev/null || :
}

run_one() { # IMAGE WORKLOAD TARGET: prints "iops mibs p50 p99"
	local img=$1 wl=$2 tgt=$3 rw bs depth extra file fmt=vhdx out
	read -r rw bs depth extra < <(workload "$wl")
	if [ "$img" = vhdx-fill ] && [[ $rw != *write* ]]; then
		return 1 # reads of an empty image measure nothing
	fi
	if [[ $tgt == *-vu && $rw == randrw ]]; then
		return 1
	fi
	file=$(image_path "$img")
	[ "$img" = raw ] && fmt=raw
	drop_caches
	case $tgt in
	local)
		[ "$img" = raw ] || return 1
		# shellcheck disable=SC2046
		fio $(fio_common "$rw" "$bs" "$depth" $extra) --filename="$file" --ioengine=io_uring \
			--direct=1 | fio_json
		return 0
		;;
	vsp-*) start_vsp "$file" ;;
	qsd-*) start_qsd "$file" "$fmt" ;;
	esac
	case $tgt in
	*-vu)
		out=$("$DRV" bench "$sock" --rw "$rw" --bs "$bs" --depth "$depth" --time "$TIME" \
			--size $((SIZE_MIB << 20)) | tail -1)
		echo "$out" | awk '{ print $2, $4, $6, $8 }'
		;;
	*-nbd)
		local uri="nbd+unix:///?socket=$nsock"
		[[ $tgt == qsd-* ]] && uri="nbd+unix:///disk?socket=$nsock"
		# shellcheck disable=SC2046
		fio $(fio_common "$rw" "$bs" "$depth" $extra) --ioengine=nbd --uri="$uri" | fio_json
		;;
	esac
	stop_daemon
}

printf '%-9s %-5s %-8s %10s %9s %9s %9s\n' image load target iops MiB/s p50_us p99_us
for wl in $WORKLOADS; do
	# the local limit: fio on the raw file
	if r=$(run_one raw "$wl" local); then
		read -r iops mibs p50 p99 <<<"$r"
		printf '%-9s %-5s %-8s %10.0f %9.1f %9.0f %9.0f\n' raw "$wl" local "$iops" "$mibs" "$p50" "$p99"
		echo "local $wl $iops $p50 $p99" >>"$results"
	fi
	for img in $IMAGES; do
		for tgt in $TARGETS; do
			r=$(run_one "$img" "$wl" "$tgt") || continue
			read -r iops mibs p50 p99 <<<"$r"
			printf '%-9s %-5s %-8s %10.0f %9.1f %9.0f %9.0f\n' "$img" "$wl" "$tgt" "$iops" "$mibs" "$p50" "$p99"
			echo "$img $wl $tgt $iops $p50 $p99" >>"$results"
		done
	done
done

echo
echo "ratios to the local limit (fio io_uring on the raw file), and vsp-storage / qemu-storage-daemon:"
printf '%-9s %-5s %8s %8s %8s %8s %9s %9s\n' image load vsp-vu qsd-vu vsp-nbd qsd-nbd "vu:vsp/qsd" "nbd:vsp/qsd"
for wl in $WORKLOADS; do
	lim=$(awk -v w="$wl" '$1 == "local" && $2 == w { print $3 }' "$results")
	for img in $IMAGES; do
		get() { awk -v i="$img" -v w="$wl" -v t="$1" '$1 == i && $2 == w && $3 == t { print $4 }' "$results"; }
		a=$(get vsp-vu) b=$(get qsd-vu) c=$(get vsp-nbd) d=$(get qsd-nbd)
		[ -n "$a$b$c$d" ] || continue
		rat() { if [ -n "$1" ] && [ -n "$2" ]; then ratio "$1" "$2"; else echo -; fi; }
		printf '%-9s %-5s %8s %8s %8s %8s %9s %9s\n' "$img" "$wl" "$(rat "$a" "$lim")" \
			"$(rat "$b" "$lim")" "$(rat "$c" "$lim")" "$(rat "$d" "$lim")" \
			"$(rat "$a" "$b")" "$(rat "$c" "$d")"
	done
done
