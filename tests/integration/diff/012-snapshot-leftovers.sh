#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What interrupted snapshot operations leave behind, and how the next one deals with it.
# 1. `snapshot create` (and `revert`) killed (SIGKILL at the Nth call of a file-changing
#    syscall, strace -e inject) before its rename leaves FILE.vdisk-tmp-PID: the next snapshot
#    operation on FILE, whichever of create, list, revert and delete, removes it, says so in
#    one stderr line naming it, and then does its own job exactly. Only that exact pattern,
#    beside FILE, of a process that is gone and not a layer of FILE's chain is removed.
# 2. `snapshot delete` killed at every kill point: the snapshot being deleted is listed with
#    status "deleting" (table and JSON) whenever its file no longer reads as taken, revert to
#    it is refused, libvhdi still opens the marked layer and reads the image through it as
#    vdisk does (qemu-img opens no differencing VHDX at all), and running the delete again
#    finishes it, leaving the expected snapshots, files and content (also when the kill came
#    after the merge re-linked the live image, leaving only the merged layer's removal).
#
# Every kill point takes minutes (more under ASan), so by default the frequent data
# syscalls (pwrite64, write, fdatasync, fsync, ftruncate, fallocate) are sampled: their
# first and last call and every VDISK_KILL_STRIDE-th (default 4) in between; the rare ones
# (rename, link, unlink, chmod: where the states change) are all killed. slow-012-*.sh runs
# it with a stride of 1 (ctest -L slow).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires strace -V
requires vhdiinfo -V
requires vhdimount -V

snapshot_fixture snapshot-leftovers

KILL_STRIDE=${VDISK_KILL_STRIDE:-4}

# kill_here SYSCALL K CALLS: whether to kill at call K of CALLS of SYSCALL (see the top)
kill_here()
{
	case $1 in
	pwrite64 | write | fdatasync | fsync | ftruncate | fallocate)
		[ "$2" -eq 1 ] || [ "$2" -eq "$3" ] || [ $(($2 % KILL_STRIDE)) -eq 0 ] ;;
	*) true ;;
	esac
}

fresh()
{
	rm -rf "$w"
	cp -a --sparse=always "$orig" "$w"
}

# dead_pid: a process id that was just used and whose process is gone (reaped)
dead_pid()
{
	local p
	(exit 0) &
	p=$!
	wait "$p"
	echo "$p"
}

# listing: "name:status ..." of vm.vhdx's snapshots, newest first
listing()
{
	vdisk snapshot list --json "$w/vm.vhdx" | jq -r 'map("\(.name):\(.status)") | join(" ")' ||
		die "snapshot list failed"
}

# check_snapshots WHAT [SKIP]: every listed snapshot but SKIP is ready and reads as taken
check_snapshots()
{
	local n f s
	while read -r n f s; do
		[ -n "$n" ] && [ "$n" != "${2:-}" ] || continue
		assert_eq "$s" ready "status of snapshot $n after $1"
		assert_eq "$(vsum "$f")" "${want[$n]}" "snapshot $n ($f) after $1"
	done < <(vdisk snapshot list --json "$w/vm.vhdx" | jq -r '.[] | "\(.name) \(.file) \(.status)"')
}

# assert_files WHAT: the folder holds vm.vhdx and the listed snapshots' files, nothing else,
# and the snapshots' files are read-only again
assert_files()
{
	local expect f
	expect=$( (echo vm.vhdx
		vdisk snapshot list --json "$w/vm.vhdx" | jq -r '.[].file | split("/") | last') | sort)
	assert_eq "$(ls -A "$w" | sort | tr '\n' ' ')" "$(echo "$expect" | tr '\n' ' ')" "files after $1"
	for f in $expect; do
		[ "$f" = vm.vhdx ] || assert_eq "$(stat -c %a "$w/$f")" 444 "mode of $f after $1"
	done
}

# ---- 1. leftovers of a killed create, removed by each verb in turn ----

args=(snapshot create --name s3 "$w/vm.vhdx")
fresh
strace_count "$SCRATCH/trace" "$VDISK_BIN" "${args[@]}" >/dev/null || die "traced create failed"
verbs=(list create revert delete)
declare -A used
left=0
for s in "${CHANGE_SYSCALLS[@]}"; do
	calls=$(grep -cE "^[0-9]+ +$s\(" "$SCRATCH/trace" || :)
	for ((k = 1; k <= calls; k++)); do
		kill_here "$s" "$k" "$calls" || continue
		fresh
		rc=0
		strace_kill "$s" "$k" "$VDISK_BIN" "${args[@]}" || rc=$?
		assert_eq "$rc" 137 "exit status of create killed at $s #$k"
		tmps=$(cd "$w" && ls -A | grep -E '^vm\.vhdx\.vdisk-tmp-' || :)
		[ -n "$tmps" ] || continue
		what="create killed at $s #$k"
		assert_eq "$(echo "$tmps" | wc -l)" 1 "temporary files after $what"
		[[ $tmps =~ ^vm\.vhdx\.vdisk-tmp-[1-9][0-9]*$ ]] || die "temporary file $tmps after $what"
		# the rename did not happen: the image is the old one, with the old snapshots
		assert_eq "$(vsum "$w/vm.vhdx")" "$live" "content after $what"
		verb=${verbs[$((left % 4))]}
		left=$((left + 1))
		used[$verb]=1
		case $verb in
		list) cmd=(snapshot list "$w/vm.vhdx") ;;
		create) cmd=(snapshot create --name s3 "$w/vm.vhdx") ;;
		revert) cmd=(snapshot revert "$w/vm.vhdx" s1) ;;
		delete) cmd=(snapshot delete "$w/vm.vhdx" s2) ;;
		esac
		expect_status 0 vdisk "${cmd[@]}"
		assert_eq "$(wc -l <"$ERR")" 1 "stderr lines of '$verb' after $what"
		grep -qE "^vdisk: snapshot: removed $w/$tmps, left by an interrupted snapshot operation \(process [0-9]+ is gone\)$" \
			"$ERR" || die "'$verb' after $what: stderr does not name $tmps: $(cat "$ERR")"
		[ ! -e "$w/$tmps" ] || die "'$verb' after $what left $tmps"
		case $verb in
		list) assert_eq "$(listing)" "s2:ready s1:ready" "snapshots after list ($what)"
			content=$live ;;
		create) assert_eq "$(listing)" "s3:ready s2:ready s1:ready" "snapshots after create ($what)"
			content=$live ;;
		revert) assert_eq "$(listing)" "s1:ready" "snapshots after revert ($what)"
			content=${want[s1]} ;;
		delete) assert_eq "$(listing)" "s1:ready" "snapshots after delete ($what)"
			content=$live ;;
		esac
		assert_eq "$(vsum "$w/vm.vhdx")" "$content" "content after '$verb' ($what)"
		check_snapshots "'$verb' ($what)"
		# (a create killed between its link and its rename also leaves vm@s3.avhdx, a second
		# name of the image itself, which the next create of s3 takes up)
		[ "$verb" = create ] || rm -f "$w/vm@s3.avhdx"
		assert_files "'$verb' ($what)"
		# and a second operation has nothing to say
		expect_status 0 vdisk snapshot list "$w/vm.vhdx"
		[ ! -s "$ERR" ] || die "second list after $what printed: $(cat "$ERR")"
	done
done
for verb in "${verbs[@]}"; do
	[ -n "${used[$verb]:-}" ] || die "no kill of create left a temporary file for '$verb' ($left did)"
done
log "create: $left kill points left a temporary file, each removed by the next operation"

# a revert killed at its rename leaves one too
fresh
rc=0
strace_kill rename 1 "$VDISK_BIN" snapshot revert "$w/vm.vhdx" s1 || rc=$?
assert_eq "$rc" 137 "exit status of revert killed at its rename"
tmps=$(cd "$w" && ls -A | grep -E '^vm\.vhdx\.vdisk-tmp-[1-9][0-9]*$' || :)
[ -n "$tmps" ] || die "revert killed at its rename left no temporary file: $(ls -A "$w")"
expect_status 0 vdisk snapshot revert "$w/vm.vhdx" s1
grep -q "removed $w/$tmps," "$ERR" || die "revert again: stderr does not name $tmps: $(cat "$ERR")"
assert_eq "$(listing)" "s1:ready" "snapshots after the revert"
assert_eq "$(vsum "$w/vm.vhdx")" "${want[s1]}" "content after the revert"
assert_files "the second revert"

# only the exact pattern, beside FILE, of a gone process, not in the chain, is removed
fresh
d1=$(dead_pid)
d2=$(dead_pid)
d3=$(dead_pid)
keep=("vm.vhdx.vdisk-tmp-$$" "vm.vhdx.vdisk-tmp-1" "vm.vhdx.vdisk-tmp-0$d1"
	"vm.vhdx.vdisk-tmp-${d1}x" "vm.vhdx.vdisk-tmp-" "vm.vhdx.vdisk-tmp-+$d1"
	"vm.vhdx.vdisk-tmp-99999999999" "vm.vhdx.vdisk-tmp-$d1.bak" "other.vhdx.vdisk-tmp-$d1"
	"avm.vhdx.vdisk-tmp-$d1" "vm.vhdx.vdisk-temp-$d1" "vm.vhdx.vdisk-tmp-$d2")
for f in "${keep[@]}"; do
	echo keep >"$w/$f"
done
rm "$w/vm.vhdx.vdisk-tmp-$d2"
ln -s "vm@s1.avhdx" "$w/vm.vhdx.vdisk-tmp-$d2" # a symbolic link: not a file vdisk made
mkdir "$w/vm.vhdx.vdisk-tmp-$d3" "$w/sub"
keep+=("vm.vhdx.vdisk-tmp-$d3")
echo keep >"$w/sub/vm.vhdx.vdisk-tmp-$d1"
echo gone >"$w/vm.vhdx.vdisk-tmp-$d1"
expect_status 0 vdisk snapshot list "$w/vm.vhdx"
assert_eq "$(cat "$ERR")" \
	"vdisk: snapshot: removed $w/vm.vhdx.vdisk-tmp-$d1, left by an interrupted snapshot operation (process $d1 is gone)" \
	"stderr of list with planted files"
[ ! -e "$w/vm.vhdx.vdisk-tmp-$d1" ] || die "the leftover of process $d1 is still there"
for f in "${keep[@]}" sub/vm.vhdx.vdisk-tmp-$d1; do
	[ -e "$w/$f" ] || [ -L "$w/$f" ] || die "$f was removed"
done
assert_eq "$(listing)" "s2:ready s1:ready" "snapshots with planted files"
# a relative FILE: the message names the file as the user would
list_here()
(
	cd "$w" && echo gone >"vm.vhdx.vdisk-tmp-$d1" && vdisk snapshot list vm.vhdx
)
expect_status 0 list_here
assert_eq "$(cat "$ERR")" \
	"vdisk: snapshot: removed vm.vhdx.vdisk-tmp-$d1, left by an interrupted snapshot operation (process $d1 is gone)" \
	"stderr of list with a relative path"
# a layer of the chain is never removed, even when named like a leftover
vdisk create --block-size 1M "$w/c.vhdx.vdisk-tmp-$d1" 4M || die "create the odd parent"
gen_data p $((MiB)) | vdisk write "$w/c.vhdx.vdisk-tmp-$d1" 0 || die "write the odd parent"
vdisk create --parent "$w/c.vhdx.vdisk-tmp-$d1" "$w/c.vhdx" || die "create its child"
pc=$(vsum "$w/c.vhdx")
expect_status 0 vdisk snapshot list "$w/c.vhdx"
[ ! -s "$ERR" ] || die "list of c.vhdx printed: $(cat "$ERR")"
[ -e "$w/c.vhdx.vdisk-tmp-$d1" ] || die "the parent of c.vhdx was removed"
vdisk snapshot create --name x "$w/c.vhdx" >/dev/null 2>"$ERR" || die "snapshot of c.vhdx"
[ ! -s "$ERR" ] || die "snapshot create of c.vhdx printed: $(cat "$ERR")"
[ -e "$w/c.vhdx.vdisk-tmp-$d1" ] || die "the parent of c.vhdx was removed by create"
assert_eq "$(vsum "$w/c.vhdx")" "$pc" "content of c.vhdx"
log "only leftovers of gone processes, in the exact pattern, are removed"

# ---- 2. an interrupted delete is listed as such and finishes when run again ----

total=0
for op in delete-newest delete-older; do
	case $op in
	delete-newest) name=s2 rest="s1:ready" ;;
	delete-older) name=s1 rest="s2:ready" ;;
	esac
	args=(snapshot delete "$w/vm.vhdx" "$name")
	fresh
	strace_count "$SCRATCH/trace" "$VDISK_BIN" "${args[@]}" >/dev/null || die "traced $op failed"
	kills=0 deleting=0 refused=0 orphans=0
	for s in "${CHANGE_SYSCALLS[@]}"; do
		calls=$(grep -cE "^[0-9]+ +$s\(" "$SCRATCH/trace" || :)
		for ((k = 1; k <= calls; k++)); do
			kill_here "$s" "$k" "$calls" || continue
			fresh
			rc=0
			strace_kill "$s" "$k" "$VDISK_BIN" "${args[@]}" || rc=$?
			what="$op killed at $s #$k"
			assert_eq "$rc" 137 "exit status of $what"
			kills=$((kills + 1))
			assert_eq "$(vsum "$w/vm.vhdx")" "$live" "content after $what"
			check_snapshots "$what" "$name"
			st=$(vdisk snapshot list --json "$w/vm.vhdx" |
				jq -r --arg n "$name" '(.[] | select(.name == $n) | .status) // "gone"')
			case $st in
			ready) # nothing of the delete is visible: the snapshot reads as taken
				f=$(vdisk snapshot list --json "$w/vm.vhdx" |
					jq -r --arg n "$name" '.[] | select(.name == $n) | .file')
				assert_eq "$(vsum "$f")" "${want[$name]}" \
					"snapshot $name listed as ready after $what" ;;
			deleting)
				deleting=$((deleting + 1))
				expect_status 0 vdisk snapshot list "$w/vm.vhdx"
				grep -qE "^$name .*  deleting$" "$OUT" ||
					die "table after $what: $(cat "$OUT")"
				grep -qE "^${rest%%:*} .*  ready$" "$OUT" ||
					die "table after $what: $(cat "$OUT")"
				# the marked layer: the live image, or the newer snapshot's file
				if [ "$op" = delete-newest ]; then
					marked=$w/vm.vhdx
				else
					marked=$w/vm@s2.avhdx
				fi
				vhdiinfo "$marked" >"$OUT" 2>&1 || die "vhdiinfo $marked after $what: $(cat "$OUT")"
				grep -q "Differential" "$OUT" || die "vhdiinfo $marked after $what: $(cat "$OUT")"
				if [ "$refused" = 0 ]; then
					# libvhdi follows the chain through the marked layer
					assert_eq "$(vhdi_sha "$w/vm.vhdx")" "$(vdisk_sha "$w/vm.vhdx")" \
						"vm.vhdx read by libvhdi vs vdisk after $what"
					expect_fail "snapshot \"$name\" is being deleted" \
						vdisk snapshot revert "$w/vm.vhdx" "$name"
					assert_eq "$(vsum "$w/vm.vhdx")" "$live" "content after the refused revert"
					refused=1
				fi ;;
			gone) ;;
			*) die "status of $name after $what: '$st'" ;;
			esac
			if [ "$st" != gone ]; then
				vdisk snapshot delete "$w/vm.vhdx" "$name" || die "delete $name again after $what"
			elif [ "$(ls -A "$w" | wc -l)" -gt 2 ]; then
				# killed after the merge re-linked vm.vhdx, before it removed the merged
				# layer: running the delete again removes it
				orphans=$((orphans + 1))
				vdisk snapshot delete "$w/vm.vhdx" "$name" ||
					die "delete $name again after $what (merged layer left)"
			else
				expect_fail "no snapshot named \"$name\"" vdisk snapshot delete "$w/vm.vhdx" "$name"
			fi
			assert_eq "$(listing)" "$rest" "snapshots after finishing ($what)"
			assert_eq "$(vsum "$w/vm.vhdx")" "$live" "content after finishing ($what)"
			check_snapshots "finishing ($what)"
			assert_files "finishing ($what)"
		done
	done
	[ "$deleting" -ge 3 ] || die "$op: listed as deleting after only $deleting of $kills kills"
	[ "$op" = delete-newest ] || [ "$orphans" -ge 1 ] ||
		die "$op: no kill fell between the re-link and the removal of the merged layer"
	log "$op: killed at $kills syscalls, listed as deleting after $deleting, merged layer left after $orphans, all finished"
	total=$((total + kills))
done
log "ok ($total delete kill points)"
