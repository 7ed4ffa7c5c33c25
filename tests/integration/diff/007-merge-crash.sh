#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A merge interrupted at any step leaves a chain that opens with the right content, and
# running the merge again finishes it. The chain base <- mid <- top is merged (mid into base,
# top re-linked to base), from a fresh copy each time, and stopped:
#  1. by VDISK_FAULT_INJECT_WRITES=N (the Nth metadata write of each image fails with EIO
#     and that image writes nothing more), N = 1, 2, ... until the merge gets through;
#  2. by SIGKILL at the Nth call of each syscall that changes a file (strace -e inject),
#     for every N up to the count a whole merge makes.
# After each stop: top reads as before; mid, while it exists, reads as before; once mid is
# gone base reads as mid did. Then the merge is run again and must succeed, leaving base
# (checked with qemu-img check) with mid's content and top linked to base's new identity.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires qemu-img --version
requires strace -V

# Hundreds of merges, each with ~20 fdatasync: on tmpfs when there is one.
work=$(fast_scratch merge-crash)
[ "$work" = "$SCRATCH" ] || cleanup_fn rm -rf "$work"
orig=$work/orig
mkdir "$orig"
vdisk create --block-size 1M "$orig/base.vhdx" 16M || die "create base"
gen_data base $((4 * MiB)) | vdisk write "$orig/base.vhdx" 0 || die "write base"
gen_data base2 $((MiB)) | vdisk write "$orig/base.vhdx" $((12 * MiB)) || die "write base"
vdisk create --parent "$orig/base.vhdx" "$orig/mid.avhdx" || die "create mid"
gen_data mid1 300000 | vdisk write "$orig/mid.avhdx" 1000001 || die "write mid"
gen_data mid2 $((2 * MiB)) | vdisk write "$orig/mid.avhdx" $((6 * MiB)) || die "write mid"
vdisk discard "$orig/mid.avhdx" $((3 * MiB)) $((MiB)) || die "discard in mid"
vdisk discard "$orig/mid.avhdx" $((12 * MiB + 8192)) 4096 || die "discard in mid"
vdisk create --parent "$orig/mid.avhdx" "$orig/top.avhdx" || die "create top"
gen_data top $((MiB)) | vdisk write "$orig/top.avhdx" $((4 * MiB + 512)) || die "write top"
want_mid=$(vsum "$orig/mid.avhdx")
want_top=$(vsum "$orig/top.avhdx")
want_base=$(vsum "$orig/base.vhdx")
assert_ne "$want_mid" "$want_base" "mid vs base before the merge"

w=$work/w
fresh()
{
	rm -rf "$w"
	cp -a --sparse=always "$orig" "$w"
}

# after_stop WHAT: the state after an interrupted merge reads right; then finish the merge
after_stop()
{
	local what=$1
	assert_eq "$(vsum "$w/top.avhdx")" "$want_top" "top after $what"
	if [ -e "$w/mid.avhdx" ]; then
		assert_eq "$(vsum "$w/mid.avhdx")" "$want_mid" "mid after $what"
		vdisk merge "$w/mid.avhdx" >/dev/null 2>"$SCRATCH/rerun.err" ||
			die "merge again after $what: $(cat "$SCRATCH/rerun.err")"
	fi
	[ ! -e "$w/mid.avhdx" ] || die "mid still exists after the merge was finished ($what)"
	assert_eq "$(vsum "$w/base.vhdx")" "$want_mid" "base after finishing ($what)"
	assert_eq "$(vsum "$w/top.avhdx")" "$want_top" "top after finishing ($what)"
	assert_eq "$(locator_of "$w/top.avhdx" parent_linkage)" "{$(guid_of "$w/base.vhdx" data-write-guid)}" \
		"top's parent_linkage after finishing ($what)"
	qemu_check "$w/base.vhdx"
}

# 1. failed metadata writes
n=0
while :; do
	n=$((n + 1))
	[ "$n" -le 500 ] || die "the merge still fails with VDISK_FAULT_INJECT_WRITES=$n"
	fresh
	rc=0
	VDISK_FAULT_INJECT_WRITES=$n vdisk merge "$w/mid.avhdx" >/dev/null 2>"$SCRATCH/fi.err" || rc=$?
	if [ "$rc" -eq 0 ]; then
		after_stop "a merge with VDISK_FAULT_INJECT_WRITES=$n that got through"
		break
	fi
	assert_eq "$rc" 1 "exit status of a merge whose write $n failed"
	grep -qi "input/output error" "$SCRATCH/fi.err" || die "merge error at write $n: $(cat "$SCRATCH/fi.err")"
	after_stop "metadata write $n failed"
done
log "VDISK_FAULT_INJECT_WRITES: $((n - 1)) stops, all recovered"

# 2. SIGKILL at every call of every syscall that changes files
fresh
strace_count "$SCRATCH/trace" "$VDISK_BIN" merge "$w/mid.avhdx" || die "traced merge failed"
after_stop "a traced merge"
kills=0
for s in "${CHANGE_SYSCALLS[@]}"; do
	calls=$(grep -cE "^[0-9]+ +$s\(" "$SCRATCH/trace" || :)
	for ((k = 1; k <= calls; k++)); do
		fresh
		rc=0
		strace_kill "$s" "$k" "$VDISK_BIN" merge "$w/mid.avhdx" || rc=$?
		assert_eq "$rc" 137 "exit status of a merge killed at $s #$k"
		after_stop "SIGKILL at $s #$k"
		kills=$((kills + 1))
	done
done
[ "$kills" -ge 20 ] || die "only $kills kill points: the trace did not work ($(head -3 "$SCRATCH/trace"))"
log "SIGKILL at $kills syscalls, all recovered"
log "ok"
