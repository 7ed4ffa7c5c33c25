#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Passthrough LUN speed (issue: "disk performance on par with physical disk"): 4 KiB random
# read and write at queue depth 32 on a loop device backed by a file in /dev/shm, in one run:
#   direct    fio (io_uring, O_DIRECT) on the device itself: the limit every ratio refers to;
#   vsp-vu    vsp-storage serving the device as a passthrough LUN (vdisk serve --map --vm) over
#             vhost-user-blk, driven by tests/vsp's vsp-driver (what QEMU's vhost-user-blk
#             device does for a guest, without a guest in between);
#   qsd-vu    qemu-storage-daemon's vhost-user-blk export of the same device (host_device,
#             aio=io_uring, cache.direct=on), same driver: the peer;
#   vsp-nbd   the same LUN over NBD, driven by fio's nbd engine;
#   qsd-nbd   qemu-storage-daemon's NBD export, same fio engine: the peer. fio's nbd engine
#             (libnbd, one connection) tops out far below the device, so these two compare
#             servers with each other, not with the device.
# Prints IOPS per target and the ratios to direct and to the peer (medians over ROUNDS).
# Usage: bench/passthrough.sh   (root; SIZE_MIB=1024 TIME=5 ROUNDS=3 TARGETS="vsp-vu qsd-vu
# vsp-nbd qsd-nbd" by default)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
requires fio
requires jq
requires losetup
requires qemu-storage-daemon
[ "$(id -u)" -eq 0 ] || die "needs root (loop devices)"
VSP=${VSP:-$build/vsp-storage/vsp-storage}
DRV=${DRV:-$build/vsp-storage/vsp-driver}
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
[ -x "$DRV" ] || die "vsp-driver not built: $DRV"
size_mib=${SIZE_MIB:-1024}
time_s=${TIME:-5}
rounds=${ROUNDS:-3}
TARGETS=${TARGETS:-vsp-vu qsd-vu vsp-nbd qsd-nbd}

stop_daemon() {
	[ -n "$daemon" ] || return 0
	kill -TERM "$daemon" 2>/dev/null || :
	wait "$daemon" 2>/dev/null || :
	daemon=""
}

work=$(mktemp -d /dev/shm/vdisk-pt-bench.XXXXXX)
at_exit rm -rf "$work"
head -c $((size_mib << 20)) /dev/urandom >"$work/back.img"
dev=$(losetup -f --show --direct-io=on "$work/back.img")
at_exit losetup -d "$dev"
# a GPT gives the loop device a stable identity (PTUUID) for the LUN map
printf 'label: gpt\nsize=%dMiB\n' $((size_mib - 2)) | sfdisk -q "$dev" >/dev/null 2>&1 || :
sfdisk -d "$dev" >"$work/gpt" 2>/dev/null
daemon=""
at_exit 'stop_daemon'
export VDISK_LUN_MAP=$work/luns.conf
"$VDISK" lun map bench 0:0:0 "$dev" >/dev/null
vu=$work/vu.sock
nbd=$work/nbd.sock

wait_sock() {
	for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
	die "no socket $1"
}

start() { # vsp|qsd: serves the device on $vu (vhost-user-blk) and $nbd (NBD)
	rm -f "$vu"* "$nbd"*
	# random writes over the whole disk (vsp-driver) wipe the GPT: put it back, same PTUUID
	sfdisk -q "$dev" <"$work/gpt" >/dev/null 2>&1 || :
	case $1 in
	vsp)
		"$VSP" -q --map "$VDISK_LUN_MAP" --vm bench --queues 1 --vhost-user-blk "$vu" \
			--nbd "unix:$nbd" &
		daemon=$!
		wait_sock "$vu.0-0-0"
		wait_sock "$nbd.0-0-0"
		ln -s "$vu.0-0-0" "$vu"
		ln -s "$nbd.0-0-0" "$nbd"
		;;
	qsd)
		qemu-storage-daemon \
			--blockdev "driver=host_device,node-name=d0,filename=$dev,aio=io_uring,cache.direct=on" \
			--export "type=vhost-user-blk,id=vu0,node-name=d0,addr.type=unix,addr.path=$vu,writable=on,num-queues=1" \
			--nbd-server "addr.type=unix,addr.path=$nbd" \
			--export "type=nbd,id=nbd0,node-name=d0,name=bench-0.0.0,writable=on" &
		daemon=$!
		wait_sock "$vu"
		wait_sock "$nbd"
		;;
	esac
}

fio_iops() { # RW ARGS...: fio IOPS of a 4 KiB random job at QD32
	local rw=$1
	shift
	fio --name=pt --rw="$rw" --bs=4k --iodepth=32 --direct=1 --time_based --runtime="$time_s" \
		--size=$(((size_mib - 4) << 20)) --offset=2M --output-format=json "$@" 2>/dev/null |
		sed -n '/^{/,$p' | jq -r ".jobs[0].${rw#rand}.iops | floor"
}

drv_iops() { # RW
	"$DRV" bench "$vu" --rw "$1" --bs 4096 --depth 32 --time "$time_s" | awk '{ print $2 }'
}

busy_ticks() { # CPU time of the whole machine not idle, in USER_HZ ticks
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}

# run ROUND RW TARGET FN ARGS...: one measurement, appended to the results as
# "round rw target iops cpu_us_per_io" (CPU time of all CPUs, daemons and kernel threads
# included, per request).
run() {
	local round=$1 rw=$2 t=$3 b0 b1 iops
	shift 3
	b0=$(busy_ticks)
	iops=$("$@")
	b1=$(busy_ticks)
	echo "$round $rw $t $iops $(awk -v b=$((b1 - b0)) -v hz="$(getconf CLK_TCK)" -v i="$iops" \
		-v s="$time_s" 'BEGIN { printf "%.2f", (i > 0 ? b / hz * 1e6 / (i * s) : 0) }')" >>"$res"
}

# The machine's speed drifts (other guests on the host), so each round measures the device
# directly before and after the daemons and every ratio is taken within its round; the
# table shows the median over the rounds.
res=$work/results # round rw target iops cpu_us_per_io
: >"$res"
for ((round = 1; round <= rounds; round++)); do
	for rw in randread randwrite; do
		run "$round" "$rw" direct fio_iops "$rw" --ioengine=io_uring --filename="$dev"
	done
	for daemon_kind in vsp qsd; do
		[[ " $TARGETS " == *" $daemon_kind-"* ]] || continue
		start "$daemon_kind"
		for rw in randread randwrite; do
			[[ " $TARGETS " != *" $daemon_kind-vu "* ]] ||
				run "$round" "$rw" "$daemon_kind-vu" drv_iops "$rw"
			[[ " $TARGETS " != *" $daemon_kind-nbd "* ]] ||
				run "$round" "$rw" "$daemon_kind-nbd" fio_iops "$rw" --ioengine=nbd \
					--uri="nbd+unix:///bench-0.0.0?socket=$nbd"
		done
		stop_daemon
	done
	for rw in randread randwrite; do
		run "$round" "$rw" direct fio_iops "$rw" --ioengine=io_uring --filename="$dev"
	done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# per-round values of target T for RW: its IOPS, or its ratio to direct / to the peer
iops_of() { awk -v rw="$1" -v t="$2" '$2 == rw && $3 == t { print $4 }' "$res" | median; }
cpu_of() { awk -v rw="$1" -v t="$2" '$2 == rw && $3 == t { print $5 }' "$res" | median; }
ratio_of() { # RW T REF(direct|peer)
	awk -v rw="$1" -v t="$2" -v ref="$3" '
		$2 != rw { next }
		$3 == "direct" { d[$1] += $4; nd[$1]++ }
		$3 == t { v[$1] = $4 }
		$3 == "qsd-" substr(t, 5) { p[$1] = $4 }
		END { for (r in v) { b = ref == "direct" ? (nd[r] ? d[r] / nd[r] : 0) : p[r]; if (b > 0) printf "%.3f\n", v[r] / b } }' "$res" |
		median
}

echo "passthrough LUN on a /dev/shm-backed loop device ($dev), 4 KiB QD32, ${time_s}s per run, $rounds rounds"
echo "(medians over the rounds; each ratio is taken within its round)"
echo "(CPU us/IO: busy time of all $(nproc) CPUs per request, every process and kernel thread)"
printf '%-10s %-8s %10s %10s %10s %11s\n' workload target IOPS /direct /peer "CPU us/IO"
for rw in randread randwrite; do
	printf '%-10s %-8s %10.0f %10s %10s %11.1f\n' "$rw" direct "$(iops_of "$rw" direct)" - - \
		"$(cpu_of "$rw" direct)"
	for t in $TARGETS; do
		printf '%-10s %-8s %10.0f %10.2f %10s %11.1f\n' "$rw" "$t" "$(iops_of "$rw" "$t")" \
			"$(ratio_of "$rw" "$t" direct)" \
			"$([[ $t == vsp-* ]] && printf '%.2f' "$(ratio_of "$rw" "$t" peer)" || echo -)" \
			"$(cpu_of "$rw" "$t")"
	done
done
