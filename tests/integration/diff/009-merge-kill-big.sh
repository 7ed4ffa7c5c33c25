#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `kill -9` of a running merge of a big child (256 MiB of scattered data, partly in
# PARTIALLY_PRESENT blocks, over a 2 GiB disk) at random moments: after each kill the
# grandchild still reads its content and the child, while it exists, too; running the merge
# again finishes it, the parent then reads as the child did and passes qemu-img check.
# The moments are chosen by the merge's own progress.
# Environment: VDISK_KILLS (default 6), VDISK_KILL_SEED (default: random, printed).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires qemu-img --version

kills=${VDISK_KILLS:-6}
seed=${VDISK_KILL_SEED:-$RANDOM}
RANDOM=$seed
log "VDISK_KILL_SEED=$seed"

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

# Each merge is killed when its progress (`merge -p`, by offset in the 2 GiB disk, which the data
# spans evenly) passes a random mark between 2% and 98%: a moment chosen by progress, not by the
# clock, so a loaded machine still kills it mid-way.
percent() { # FILE: the last percentage the progress bar drew, as an integer
	tr '\r' '\n' <"$1" | awk '/%$/ { v = $NF } END { sub(/%/, "", v); print int(v) }'
}

killed=0
for ((k = 1; k <= kills; k++)); do
	fresh
	mark=$((2 + RANDOM % 97))
	"$VDISK_BIN" merge -p "$w/mid.avhdx" 2>"$SCRATCH/progress" &
	pid=$!
	while kill -0 "$pid" 2>/dev/null && [ "$(percent "$SCRATCH/progress")" -lt "$mark" ]; do
		sleep 0.005
	done
	at=$(percent "$SCRATCH/progress")
	if kill -9 "$pid" 2>/dev/null; then
		killed=$((killed + 1))
	fi
	wait "$pid" 2>/dev/null || :
	finish "kill -9 at ${at}% (mark ${mark}%)"
	log "kill $k at ${at}% (mark ${mark}%): recovered"
done
[ "$killed" -ge $((kills / 2)) ] || die "only $killed of $kills merges were still running when killed"
log "ok ($killed merges killed)"
