#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Passthrough LUN speed (issue: "disk performance on par with physical disk"): fio 4 KiB random
# read and write at queue depth 32 directly on a loop device backed by a file in /dev/shm, and
# through vsp-storage serving that device as a passthrough LUN (vdisk serve --map --vm) to
# fio's nbd engine, in the same run. Prints IOPS and the ratio vsp/direct (aim: 0.95).
# Usage: bench/passthrough.sh   (root; SIZE_MIB=1024 TIME=10 by default)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
requires fio
requires jq
requires losetup
[ "$(id -u)" -eq 0 ] || die "needs root (loop devices)"
VSP=${VSP:-$build/vsp-storage/vsp-storage}
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
size_mib=${SIZE_MIB:-1024}
time_s=${TIME:-10}

work=$(mktemp -d /dev/shm/vdisk-pt-bench.XXXXXX)
dev=""
pid=""
finish() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	[ -n "$dev" ] && losetup -d "$dev" 2>/dev/null
	rm -rf "$work"
}
trap finish EXIT

head -c $((size_mib << 20)) /dev/urandom >"$work/back.img"
dev=$(losetup -f --show --direct-io=on "$work/back.img")
printf 'label: gpt\nsize=%dMiB\n' $((size_mib - 2)) | sfdisk -q "$dev" >/dev/null 2>&1 || :
export VDISK_LUN_MAP=$work/luns.conf
"$VDISK" lun map bench 0:0:0 "$dev" >/dev/null

iops() { # RW ENGINE-ARGS...: fio IOPS of a 4 KiB random job at QD32
	local rw=$1
	shift
	fio --name=pt --rw="$rw" --bs=4k --iodepth=32 --direct=1 --time_based --runtime="$time_s" \
		--size=$(((size_mib - 4) << 20)) --offset=2M --output-format=json "$@" 2>/dev/null |
		sed -n '/^{/,$p' | jq -r ".jobs[0].${rw#rand}.iops | floor"
}

declare -A direct via
for rw in randread randwrite; do
	direct[$rw]=$(iops "$rw" --ioengine=io_uring --filename="$dev")
done
"$VSP" --map "$VDISK_LUN_MAP" --vm bench --nbd "unix:$work/n.sock" -q &
pid=$!
for _ in $(seq 100); do [ -S "$work/n.sock.0-0-0" ] && break; sleep 0.1; done
for rw in randread randwrite; do
	via[$rw]=$(iops "$rw" --ioengine=nbd --uri="nbd+unix:///bench-0.0.0?socket=$work/n.sock.0-0-0")
done
echo "passthrough LUN on a /dev/shm-backed loop device, 4 KiB QD32, ${time_s}s each"
printf '%-10s %12s %16s %8s\n' workload "direct IOPS" "vsp-storage IOPS" ratio
for rw in randread randwrite; do
	printf '%-10s %12s %16s %8s\n' "$rw" "${direct[$rw]}" "${via[$rw]}" \
		"$(awk -v a="${via[$rw]}" -v b="${direct[$rw]}" 'BEGIN { printf "%.2f", b ? a / b : 0 }')"
done
