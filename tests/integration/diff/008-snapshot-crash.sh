#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Snapshot operations interrupted at any step: `snapshot create`, `delete` of the newest and
# of an older snapshot, and `revert`, each run from a fresh copy of vm.vhdx with snapshots
# s1 and s2, and killed with SIGKILL at the Nth call of each syscall that changes a file
# (strace -e inject), for every N; delete also stopped by VDISK_FAULT_INJECT_WRITES=N.
# After each stop the image path exists and opens, reads either its content before or after
# the operation (create and delete do not change it), every listed snapshot reads exactly
# its own content (except the one being deleted: its file is the merge target, so until the
# delete is finished it holds a mix), and running the operation again (when it had not
# completed) succeeds and leaves the expected snapshots.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires strace -V

snapshot_fixture snapshot-crash

fresh()
{
	rm -rf "$w"
	cp -a --sparse=always "$orig" "$w"
}

# names IMG: the snapshot names, newest first
names()
{
	vdisk snapshot list --json "$1" | jq -r 'map(.name) | join(" ")' || die "snapshot list $1 failed"
}

# check_snapshots WHAT [SKIP]: every listed snapshot (but SKIP, the one being deleted, whose
# file the merge is changing) reads as it was taken
check_snapshots()
{
	local n f
	while read -r n f; do
		[ -n "$n" ] && [ "$n" != "${2:-}" ] || continue
		assert_eq "$(vsum "$f")" "${want[$n]}" "snapshot $n ($f) after $1"
	done < <(vdisk snapshot list --json "$w/vm.vhdx" | jq -r '.[] | "\(.name) \(.file)"')
}

# after_stop OP WHAT: the state after an interrupted OP, then OP again, then the end state
after_stop()
{
	local op=$1 what=$2 got
	[ -e "$w/vm.vhdx" ] || die "vm.vhdx is missing after $what"
	got=$(vsum "$w/vm.vhdx")
	case $op in
	revert) [ "$got" = "$live" ] || [ "$got" = "${want[s1]}" ] ||
		die "content after $what is neither the old one nor s1's" ;;
	*) assert_eq "$got" "$live" "content after $what" ;;
	esac
	case $op in
	delete-newest) check_snapshots "$what" s2 ;;
	delete-older) check_snapshots "$what" s1 ;;
	*) check_snapshots "$what" ;;
	esac
	case $op in
	create) [[ " $(names "$w/vm.vhdx") " == *" s3 "* ]] ||
		vdisk snapshot create --name s3 "$w/vm.vhdx" >/dev/null ||
		die "create again after $what"
		assert_eq "$(names "$w/vm.vhdx")" "s3 s2 s1" "snapshots after create ($what)" ;;
	delete-newest) [[ " $(names "$w/vm.vhdx") " != *" s2 "* ]] ||
		vdisk snapshot delete "$w/vm.vhdx" s2 || die "delete s2 again after $what"
		assert_eq "$(names "$w/vm.vhdx")" "s1" "snapshots after deleting s2 ($what)" ;;
	delete-older) [[ " $(names "$w/vm.vhdx") " != *" s1 "* ]] ||
		vdisk snapshot delete "$w/vm.vhdx" s1 || die "delete s1 again after $what"
		assert_eq "$(names "$w/vm.vhdx")" "s2" "snapshots after deleting s1 ($what)" ;;
	revert) vdisk snapshot revert "$w/vm.vhdx" s1 || die "revert again after $what"
		assert_eq "$(names "$w/vm.vhdx")" "s1" "snapshots after the revert ($what)"
		live_after=${want[s1]} ;;
	esac
	assert_eq "$(vsum "$w/vm.vhdx")" "${live_after:-$live}" "content after finishing ($what)"
	check_snapshots "finishing ($what)"
	live_after=
}

total=0
for op in create delete-newest delete-older revert; do
	case $op in
	create) args=(snapshot create --name s3 "$w/vm.vhdx") ;;
	delete-newest) args=(snapshot delete "$w/vm.vhdx" s2) ;;
	delete-older) args=(snapshot delete "$w/vm.vhdx" s1) ;;
	revert) args=(snapshot revert "$w/vm.vhdx" s1) ;;
	esac
	fresh
	strace_count "$SCRATCH/trace" "$VDISK_BIN" "${args[@]}" >/dev/null || die "traced $op failed"
	kills=0
	for s in "${CHANGE_SYSCALLS[@]}"; do
		calls=$(grep -cE "^[0-9]+ +$s\(" "$SCRATCH/trace" || :)
		for ((k = 1; k <= calls; k++)); do
			fresh
			rc=0
			strace_kill "$s" "$k" "$VDISK_BIN" "${args[@]}" || rc=$?
			assert_eq "$rc" 137 "exit status of $op killed at $s #$k"
			after_stop "$op" "$op killed at $s #$k"
			kills=$((kills + 1))
		done
	done
	[ "$kills" -ge 3 ] || die "$op: only $kills kill points"
	log "$op: killed at $kills syscalls, all recovered"
	total=$((total + kills))
done

# delete (a merge) stopped by failed metadata writes
for op in delete-newest delete-older; do
	n=0
	while :; do
		n=$((n + 1))
		[ "$n" -le 300 ] || die "$op still fails with VDISK_FAULT_INJECT_WRITES=$n"
		fresh
		rc=0
		name=s2
		[ "$op" = delete-newest ] || name=s1
		VDISK_FAULT_INJECT_WRITES=$n vdisk snapshot delete "$w/vm.vhdx" "$name" 2>/dev/null || rc=$?
		after_stop "$op" "$op with VDISK_FAULT_INJECT_WRITES=$n"
		[ "$rc" -ne 0 ] || break
	done
	log "$op: $((n - 1)) failed metadata writes, all recovered"
done
log "ok ($total kill points)"
