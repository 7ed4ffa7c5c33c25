#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `kill -9` of a running merge of a big child (256 MiB of scattered data, partly in
# PARTIALLY_PRESENT blocks, over a 2 GiB disk) at random moments: after each kill the
# grandchild still reads its content and the child, while it exists, too; running the merge
# again finishes it, the parent then reads as the child did and passes qemu-img check.
# The moments are spread over the length of an uninterrupted merge measured first.
# Environment: VDISK_KILLS (default 6), VDISK_KILL_SEED (default: random, printed).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires qemu-img --version

kills=${VDISK_KILLS:-6}
seed=${VDISK_KILL_SEED:-$RANDOM}
RANDOM=$seed
log "VDISK_KILL_SEED=$seed"

vsum()
{
	local v
	v=$(vdisk checksum "$1") || die "vdisk checksum $1 failed"
	echo "${v%% *}"
}

orig=$SCRATCH/orig
w=$SCRATCH/w
mkdir "$orig"
vdisk create "$orig/base.vhdx" 2G || die "create base"
gen_data base $((64 * MiB)) | vdisk write "$orig/base.vhdx" 0 || die "write base"
vdisk create --parent "$orig/base.vhdx" "$orig/mid.avhdx" || die "create mid"
gen_data mid $((256 * MiB)) >"$SCRATCH/pool"
for i in $(seq 0 63); do
	# 4 MiB pieces at distinct 32 MiB slots, starting mid-block (sector-aligned)
	off=$(((i * 37 % 64) * 32 * MiB + (i % 7) * 512 * 1024 + (i % 3) * 4096))
	dd if="$SCRATCH/pool" bs=4M skip="$i" count=1 status=none | vdisk write "$orig/mid.avhdx" "$off" ||
		die "write mid piece $i"
done
rm "$SCRATCH/pool"
vdisk discard "$orig/mid.avhdx" $((8 * MiB)) $((8 * MiB)) || die "discard in mid"
vdisk create --parent "$orig/mid.avhdx" "$orig/top.avhdx" || die "create top"
gen_data top $((MiB)) | vdisk write "$orig/top.avhdx" $((33 * MiB + 4096)) || die "write top"
want_mid=$(vsum "$orig/mid.avhdx")
want_top=$(vsum "$orig/top.avhdx")

fresh()
{
	rm -rf "$w"
	cp -a --sparse=always "$orig" "$w"
	sync
}

finish()
{
	local what=$1
	assert_eq "$(vsum "$w/top.avhdx")" "$want_top" "top after $what"
	if [ -e "$w/mid.avhdx" ]; then
		assert_eq "$(vsum "$w/mid.avhdx")" "$want_mid" "mid after $what"
		vdisk merge "$w/mid.avhdx" || die "merge again after $what"
	fi
	[ ! -e "$w/mid.avhdx" ] || die "mid still there after finishing ($what)"
	assert_eq "$(vsum "$w/base.vhdx")" "$want_mid" "base after finishing ($what)"
	assert_eq "$(vsum "$w/top.avhdx")" "$want_top" "top after finishing ($what)"
	qemu_check "$w/base.vhdx"
}

# the length of a whole merge, in milliseconds
fresh
t0=$(date +%s%N)
vdisk merge "$w/mid.avhdx" || die "merge"
t1=$(date +%s%N)
full_ms=$(((t1 - t0) / 1000000))
finish "an uninterrupted merge"
log "an uninterrupted merge takes $full_ms ms"

killed=0
for ((k = 1; k <= kills; k++)); do
	fresh
	# a moment between 2% and 98% of the merge's length
	at=$((full_ms * (2 + RANDOM % 97) / 100))
	"$VDISK_BIN" merge "$w/mid.avhdx" 2>/dev/null &
	pid=$!
	sleep "$(awk -v m="$at" 'BEGIN { printf "%.3f", m / 1000 }')"
	if kill -9 "$pid" 2>/dev/null; then
		killed=$((killed + 1))
	fi
	wait "$pid" 2>/dev/null || :
	finish "kill -9 after $at ms"
	log "kill $k at $at ms: recovered"
done
[ "$killed" -ge $((kills / 2)) ] || die "only $killed of $kills merges were still running when killed"
log "ok ($killed merges killed)"
