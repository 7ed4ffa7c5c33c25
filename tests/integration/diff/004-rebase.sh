#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk rebase`: the safe mode onto a different base keeps the child's content (vdisk and
# libvhdi), after which the old parent can go; onto the grandparent it drops the middle
# layer; onto a smaller parent the rest reads as before. --unsafe repairs a child whose
# parent moved and only rewrites the link (content then follows the new parent). A new
# parent with other sector sizes, a cycle (the image itself or its own descendant), a base
# image and a missing --parent are refused with clear messages and change nothing.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires vhdimount -V

size=$((32 * MiB))
d=$SCRATCH/vm
mkdir "$d"

vdisk create --block-size 1M "$d/old.vhdx" "$size" || die "create old base"
truncate -s "$size" "$SCRATCH/old.raw"
put "$d/old.vhdx" "$SCRATCH/old.raw" 0 $((12 * MiB)) o1
put "$d/old.vhdx" "$SCRATCH/old.raw" $((20 * MiB + 5)) $((MiB)) o2
vdisk create --block-size 2M "$d/new.vhdx" "$size" || die "create new base"
truncate -s "$size" "$SCRATCH/new.raw"
put "$d/new.vhdx" "$SCRATCH/new.raw" $((4 * MiB)) $((10 * MiB)) n1
put "$d/new.vhdx" "$SCRATCH/new.raw" $((30 * MiB)) $((MiB)) n2
vdisk create --parent "$d/old.vhdx" "$d/child.avhdx" || die "create child"
cp "$SCRATCH/old.raw" "$SCRATCH/child.raw"
put "$d/child.avhdx" "$SCRATCH/child.raw" $((6 * MiB + 1)) 3000 c1
discard_both "$d/child.avhdx" "$SCRATCH/child.raw" $((8 * MiB)) $((2 * MiB))
put "$d/child.avhdx" "$SCRATCH/child.raw" $((31 * MiB)) 4096 c2

# safe: content unchanged, parent is new.vhdx, old.vhdx no longer needed
expect_status 0 vdisk rebase -p --parent "$d/new.vhdx" "$d/child.avhdx"
[ ! -s "$OUT" ] || die "rebase printed on stdout"
assert_eq "$(locator_of "$d/child.avhdx" relative_path)" '.\new.vhdx' "relative_path after rebase"
assert_eq "$(locator_of "$d/child.avhdx" parent_linkage)" "{$(guid_of "$d/new.vhdx" data-write-guid)}" \
	"parent_linkage after rebase"
mv "$d/old.vhdx" "$SCRATCH/old-away.vhdx"
assert_content "$d/child.avhdx" "$SCRATCH/child.raw" "child after a safe rebase"
assert_vhdi "$d/child.avhdx" "$SCRATCH/child.raw" "child after a safe rebase"
assert_content "$d/new.vhdx" "$SCRATCH/new.raw" "the new parent (untouched)"
log "safe rebase: ok"

# safe onto the grandparent: the middle layer can then be deleted
vdisk create --parent "$d/child.avhdx" "$d/gc.avhdx" || die "create gc"
cp "$SCRATCH/child.raw" "$SCRATCH/gc.raw"
put "$d/gc.avhdx" "$SCRATCH/gc.raw" $((MiB)) 512 g1
vdisk rebase --parent "$d/new.vhdx" "$d/gc.avhdx" || die "rebase onto the grandparent"
assert_eq "$(vdisk info --chain --json "$d/gc.avhdx" | jq length)" 2 "chain length after dropping a layer"
mv "$d/child.avhdx" "$SCRATCH/child-away.avhdx"
assert_content "$d/gc.avhdx" "$SCRATCH/gc.raw" "grandchild without the middle layer"
mv "$SCRATCH/child-away.avhdx" "$d/child.avhdx"

# safe onto a smaller parent: past its end the child keeps reading what it read before
vdisk create "$d/small.vhdx" 16M || die "create small"
gen_data small $((16 * MiB)) | vdisk write "$d/small.vhdx" 0 || die "write small"
vdisk rebase --parent "$d/small.vhdx" "$d/gc.avhdx" || die "rebase onto a smaller parent"
assert_content "$d/gc.avhdx" "$SCRATCH/gc.raw" "grandchild over a smaller parent"

# unsafe: the parent moved away; the link is repaired and nothing is copied
mkdir "$SCRATCH/moved"
mv "$d/new.vhdx" "$SCRATCH/moved/new.vhdx"
expect_fail "parent not found.*new.vhdx" vdisk read "$d/child.avhdx" 0 512
alloc=$(vdisk_info_field "$d/child.avhdx" '."allocated-size"')
expect_status 0 vdisk rebase --unsafe --parent "$SCRATCH/moved/new.vhdx" "$d/child.avhdx"
assert_content "$d/child.avhdx" "$SCRATCH/child.raw" "child after an unsafe rebase to the moved parent"
assert_eq "$(vdisk_info_field "$d/child.avhdx" '."allocated-size"')" "$alloc" "allocation after --unsafe"
assert_eq "$(locator_of "$d/child.avhdx" relative_path)" '..\moved\new.vhdx' "relative_path after --unsafe"

# unsafe onto other content: the child then reads the other parent where it holds nothing
vdisk create "$d/other.vhdx" "$size" || die "create other"
truncate -s "$size" "$SCRATCH/other.raw"
put "$d/other.vhdx" "$SCRATCH/other.raw" 0 $size oth
want=$(vdisk_sha "$d/child.avhdx")
vdisk rebase --unsafe --parent "$d/other.vhdx" "$d/child.avhdx" || die "unsafe rebase to other"
got=$(vdisk_sha "$d/child.avhdx")
assert_ne "$got" "$want" "content after an unsafe rebase onto different data"
# [22M, 30M): zeros in both old bases, so neither the child nor the safe rebase wrote there
assert_eq "$(vdisk_sha "$d/child.avhdx" $((22 * MiB)) $((8 * MiB)))" \
	"$(read_range "$SCRATCH/other.raw" $((22 * MiB)) $((8 * MiB)) | sha256)" \
	"unsafe rebase: the range the child does not hold comes from the new parent"

# refusals change nothing
before=$(vdisk_sha "$d/child.avhdx")
vdisk create --logical-sector 4096 "$d/s4k.vhdx" "$size" || die "create 4k"
expect_fail "s4k.vhdx has 4096-byte sectors, .*child.avhdx 512" vdisk rebase --parent "$d/s4k.vhdx" "$d/child.avhdx"
expect_fail "the new parent .*child.avhdx is the image itself" vdisk rebase --parent "$d/child.avhdx" "$d/child.avhdx"
vdisk create --parent "$d/child.avhdx" "$d/desc.avhdx" || die "create desc"
expect_fail "new parent .*desc.avhdx has the image in its own chain.*cycle" \
	vdisk rebase --unsafe --parent "$d/desc.avhdx" "$d/child.avhdx"
expect_fail "small.vhdx: not a differencing image" vdisk rebase --parent "$d/other.vhdx" "$d/small.vhdx"
expect_fail "missing.vhdx" vdisk rebase --parent "$d/missing.vhdx" "$d/child.avhdx"
assert_eq "$(vdisk_sha "$d/child.avhdx")" "$before" "child after refused rebases"
assert_content "$d/desc.avhdx" <(vdisk read "$d/child.avhdx" 0 "$size") "descendant after refused rebases"
expect_status 64 vdisk rebase "$d/child.avhdx"
grep -q -- "--parent" "$ERR" || die "usage error does not name --parent: $(cat "$ERR")"
expect_status 64 vdisk rebase --parent "$d/other.vhdx"
log "ok"
