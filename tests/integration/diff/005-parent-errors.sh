#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Parents that cannot be used give clear errors naming both files and the GUIDs: a missing
# parent (found again with --search-dir), another file in its place, a parent written to
# after the child was made, a cycle, a chain deeper than the limit. The Hyper-V checkpoint
# fixture (its parent is not shipped) shows its whole parent locator in `vdisk info` (text
# and JSON) while reads, `info --chain` and convert fail naming the missing parent.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires_fixture hyperv-win10.0.17763-differencing-8G-orphan.avhdx.gz

d=$SCRATCH/vm
mkdir "$d" "$SCRATCH/away"
vdisk create "$d/base.vhdx" 8M || die "create base"
printf 'base data' | vdisk write "$d/base.vhdx" 0 || die "write base"
vdisk create --parent "$d/base.vhdx" "$d/child.avhdx" || die "create child"
printf 'child' | vdisk write "$d/child.avhdx" 4096 || die "write child"
link=$(locator_of "$d/child.avhdx" parent_linkage)
base_guid=$(guid_of "$d/base.vhdx" data-write-guid)
assert_eq "$link" "{$base_guid}" "parent_linkage of a new child"

# missing: every command that reads fails, naming the child, the parent and the GUID
mv "$d/base.vhdx" "$SCRATCH/away/"
for cmd in "read $d/child.avhdx 0 512" "info --chain $d/child.avhdx" "convert $d/child.avhdx $SCRATCH/x.vhdx" \
	"checksum $d/child.avhdx" "merge $d/child.avhdx" "snapshot list $d/child.avhdx"; do
	# shellcheck disable=SC2086 # word splitting of the command on purpose
	expect_fail "child.avhdx.*parent not found \\(parent_linkage \\$link; looked for .*base.vhdx" vdisk $cmd
done
expect_status 0 vdisk info "$d/child.avhdx" # without --chain the parent is not needed
# found through --search-dir
expect_status 0 vdisk info --chain --json --search-dir "$SCRATCH/away" "$d/child.avhdx"
assert_eq "$(jq -r '.[1].filename' "$OUT")" "$SCRATCH/away/base.vhdx" "parent found in the search folder"
assert_eq "$(jq -r '.[1]."data-write-guid"' "$OUT")" "$base_guid" "GUID of the found parent"
expect_status 64 vdisk info --search-dir "$SCRATCH/away" "$d/child.avhdx" # needs --chain
mv "$SCRATCH/away/base.vhdx" "$d/"
log "missing parent: ok"

# another file in the parent's place: a mismatch naming both files and both GUIDs
mv "$d/base.vhdx" "$SCRATCH/away/real.vhdx"
vdisk create "$d/base.vhdx" 8M || die "create impostor"
imp=$(guid_of "$d/base.vhdx" data-write-guid)
expect_fail "child.avhdx: parent .*base.vhdx does not match: the child's parent_linkage is \\$link but the parent's DataWriteGuid is \\{$imp\\}" \
	vdisk read "$d/child.avhdx" 0 512
mv "$SCRATCH/away/real.vhdx" "$d/base.vhdx"
assert_eq "$(vdisk read "$d/child.avhdx" 4096 5)" child "child after the parent came back"

# a parent written to after the child was made: its DataWriteGuid changed
cp "$d/base.vhdx" "$SCRATCH/base-copy.vhdx"
printf 'changed' | vdisk write "$d/base.vhdx" 100 || die "write the parent"
new=$(guid_of "$d/base.vhdx" data-write-guid)
assert_ne "$new" "$base_guid" "DataWriteGuid after a write"
expect_fail "does not match: the child's parent_linkage is \\$link but the parent's DataWriteGuid is \\{$new\\}" \
	vdisk read "$d/child.avhdx" 0 512
cp "$SCRATCH/base-copy.vhdx" "$d/base.vhdx"
log "mismatched parents: ok"

# a cycle: p.vhdx <- A <- B, then p.vhdx replaced by (a hard link to) B
vdisk create "$d/p.vhdx" 1M || die "create p"
vdisk create --parent "$d/p.vhdx" "$d/A.avhdx" || die "create A"
vdisk create --parent "$d/A.avhdx" "$d/B.avhdx" || die "create B"
plink=$(locator_of "$d/A.avhdx" parent_linkage)
rm "$d/p.vhdx"
ln "$d/B.avhdx" "$d/p.vhdx"
expect_fail "A.avhdx: parent .*p.vhdx \\(parent_linkage \\$plink\\) is already in the chain: the chain has a cycle" \
	vdisk read "$d/B.avhdx" 0 512
expect_fail "cycle" vdisk info --chain "$d/B.avhdx"
log "cycle: ok"

# deeper than the limit: 64 parents open, 65 do not
prev=$d/base.vhdx
for i in $(seq 1 65); do
	vdisk create --parent "$prev" "$d/deep$i.avhdx" || die "create deep$i"
	prev=$d/deep$i.avhdx
done
assert_eq "$(vdisk info --chain --json "$d/deep64.avhdx" | jq length)" 65 "a chain of 64 parents opens"
expect_fail "deep1.avhdx: the chain has more than the limit of 64 parents" vdisk read "$d/deep65.avhdx" 0 512
log "depth limit: ok"

# the Hyper-V checkpoint whose parent is absent
orphan=$(fixture_unpack hyperv-win10.0.17763-differencing-8G-orphan)
pname='Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx'
expect_status 0 vdisk info --json "$orphan"
assert_eq "$(jq -r .type "$OUT")" differencing "type of the checkpoint"
assert_eq "$(jq -r '."has-parent"' "$OUT")" true "has-parent of the checkpoint"
assert_eq "$(jq -r '."virtual-size"' "$OUT")" $((8 * GiB)) "size of the checkpoint"
assert_eq "$(jq -r '."parent-locator" | keys_unsorted | join(",")' "$OUT")" \
	"parent_linkage,absolute_win32_path,relative_path,volume_path,parent_linkage2" "locator keys, in file order"
assert_eq "$(jq -r '."parent-locator".parent_linkage' "$OUT")" "{ff34003b-11ed-4cf8-a166-b2be05e20b80}" parent_linkage
assert_eq "$(jq -r '."parent-locator".absolute_win32_path' "$OUT")" \
	"C:\\Users\\Public\\Documents\\Hyper-V\\Virtual hard disks\\$pname" absolute_win32_path
assert_eq "$(jq -r '."parent-locator".relative_path' "$OUT")" ".\\$pname" relative_path
vol=$(jq -r '."parent-locator".volume_path' "$OUT")
[[ $vol == '\\?\Volume{0eba351e-'*"}\\Users\\Public\\Documents\\Hyper-V\\Virtual hard disks\\$pname" ]] ||
	die "volume_path: $vol"
assert_eq "$(jq -r '."parent-locator".parent_linkage2' "$OUT")" "{00000000-0000-0000-0000-000000000000}" parent_linkage2
assert_eq "$(jq -r '."backing-filename"' "$OUT")" ".\\$pname" "backing-filename"
expect_status 0 vdisk info "$orphan"
for k in parent_linkage absolute_win32_path relative_path volume_path parent_linkage2; do
	grep -qE "^  $k +[^ ]" "$OUT" || die "vdisk info does not show $k: $(cat "$OUT")"
done
grep -qF "$vol" "$OUT" || die "vdisk info does not show the whole volume_path"
for cmd in "read $orphan 0 512" "info --chain $orphan" "convert $orphan $SCRATCH/flat.vhdx" "checksum $orphan"; do
	# shellcheck disable=SC2086
	expect_fail "parent not found \\(parent_linkage \\{ff34003b-11ed-4cf8-a166-b2be05e20b80\\}; looked for .*$pname" vdisk $cmd
done
[ ! -e "$SCRATCH/flat.vhdx" ] || die "a failed convert left its output"
# an unrelated image under the parent's name: a mismatch naming both GUIDs
vdisk create "$SCRATCH/$pname" 8G || die "create an impostor parent"
imp=$(guid_of "$SCRATCH/$pname" data-write-guid)
expect_fail "does not match: the child's parent_linkage is \\{ff34003b-11ed-4cf8-a166-b2be05e20b80\\} but the parent's DataWriteGuid is \\{$imp\\}" \
	vdisk read "$orphan" 0 512
log "ok"
