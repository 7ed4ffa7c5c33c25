#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk merge`: a child merged into its parent (data, zeros written as data, discards that
# hide the parent's data), into an older ancestor (--into, every layer between folded in),
# with --keep-child; children of the merged image, in its folder and in --search-dir
# folders, are re-linked to the target and read the same (vdisk and libvhdi); only what the
# child holds is copied (allocation of the target); the target passes qemu-img check and
# compare once it is a base image; a target with another child is refused unless --force;
# a base, a non-ancestor and a missing file are clear errors.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires qemu-img --version
requires vhdimount -V

size=$((64 * MiB))
d=$SCRATCH/vm
other=$SCRATCH/elsewhere
mkdir "$d" "$other"

# base <- mid <- top <- {dep (same folder), dep2 (another folder)}
vdisk create --block-size 1M "$d/base.vhdx" "$size" || die "create base"
truncate -s "$size" "$SCRATCH/base.raw"
put "$d/base.vhdx" "$SCRATCH/base.raw" 0 $((10 * MiB)) b1
put "$d/base.vhdx" "$SCRATCH/base.raw" $((40 * MiB)) $((4 * MiB)) b2
vdisk create --parent "$d/base.vhdx" "$d/mid.avhdx" || die "create mid"
cp "$SCRATCH/base.raw" "$SCRATCH/mid.raw"
put "$d/mid.avhdx" "$SCRATCH/mid.raw" $((5 * MiB + 100)) 5000 m1
discard_both "$d/mid.avhdx" "$SCRATCH/mid.raw" $((40 * MiB)) $((2 * MiB)) # hides base data
vdisk create --parent "$d/mid.avhdx" "$d/top.avhdx" || die "create top"
cp "$SCRATCH/mid.raw" "$SCRATCH/top.raw"
put "$d/top.avhdx" "$SCRATCH/top.raw" 7 70000 t1
put_zeros "$d/top.avhdx" "$SCRATCH/top.raw" $((MiB)) 8192
discard_both "$d/top.avhdx" "$SCRATCH/top.raw" $((3 * MiB)) $((MiB))
discard_both "$d/top.avhdx" "$SCRATCH/top.raw" $((8 * MiB + 4096)) 4096
put "$d/top.avhdx" "$SCRATCH/top.raw" $((60 * MiB - 1)) 3 t2
for dep in "$d/dep.avhdx" "$other/dep2.avhdx"; do
	vdisk create --parent "$d/top.avhdx" "$dep" || die "create $dep"
	n=$(basename "$dep" .avhdx)
	cp "$SCRATCH/top.raw" "$SCRATCH/$n.raw"
	put "$dep" "$SCRATCH/$n.raw" $((20 * MiB)) 4096 "$n"
done
base_guid=$(guid_of "$d/base.vhdx" data-write-guid)
mid_guid=$(guid_of "$d/mid.avhdx" data-write-guid)

# top into mid, with progress; dep and dep2 follow
expect_status 0 vdisk merge -p --search-dir "$other" "$d/top.avhdx"
[ ! -s "$OUT" ] || die "merge printed on stdout: $(cat "$OUT")"
grep -q '100.0%' "$ERR" || die "no progress bar with -p: $(cat "$ERR")"
[ ! -e "$d/top.avhdx" ] || die "the merged child still exists"
assert_content "$d/mid.avhdx" "$SCRATCH/top.raw" "mid after merging top"
assert_content "$d/base.vhdx" "$SCRATCH/base.raw" "base after merging top into mid"
new_mid=$(guid_of "$d/mid.avhdx" data-write-guid)
assert_ne "$new_mid" "$mid_guid" "DataWriteGuid of mid after the merge"
assert_eq "$(guid_of "$d/base.vhdx" data-write-guid)" "$base_guid" "DataWriteGuid of base"
for dep in "$d/dep.avhdx" "$other/dep2.avhdx"; do
	n=$(basename "$dep" .avhdx)
	assert_eq "$(locator_of "$dep" parent_linkage)" "{$new_mid}" "parent_linkage of $n"
	assert_eq "$(vdisk info --chain --json "$dep" | jq -r '.[0]."full-backing-filename"')" \
		"$d/mid.avhdx" "parent of $n"
	assert_content "$dep" "$SCRATCH/$n.raw" "$n after the merge"
done
# (vhdimount looks for a parent only in the child's own folder: dep, not dep2)
assert_vhdi "$d/dep.avhdx" "$SCRATCH/dep.raw" "dep after the merge"
assert_eq "$(locator_of "$other/dep2.avhdx" relative_path)" '..\vm\mid.avhdx' \
	"relative_path of dep2 in another folder"
log "merge into the parent, dependents re-linked: ok"

# another child of the target: refused (it would read changed data), then --force
vdisk create --parent "$d/mid.avhdx" "$d/sibling.avhdx" || die "create sibling"
before=$(vdisk_sha "$d/mid.avhdx")
expect_fail "mid.avhdx has another child, .*(dep|dep2|sibling).avhdx.*--force" vdisk merge "$d/dep.avhdx"
assert_eq "$(vdisk_sha "$d/mid.avhdx")" "$before" "mid after a refused merge"
[ -e "$d/dep.avhdx" ] || die "a refused merge removed the child"
expect_status 0 vdisk merge --force "$other/dep2.avhdx" --into "$d/mid.avhdx"
assert_content "$d/mid.avhdx" "$SCRATCH/dep2.raw" "mid after the forced merge"
log "other children: refused, then forced: ok"

# --into an older ancestor: base <- a <- b <- c, c merged into base, every layer folded in
rm -f "$d"/*.avhdx
vdisk create --parent "$d/base.vhdx" "$d/a.avhdx" || die "create a"
cp "$SCRATCH/base.raw" "$SCRATCH/c.raw"
put "$d/a.avhdx" "$SCRATCH/c.raw" $((30 * MiB)) $((3 * MiB)) a1
vdisk create --block-size 4M --parent "$d/a.avhdx" "$d/b.avhdx" || die "create b"
put "$d/b.avhdx" "$SCRATCH/c.raw" $((31 * MiB + 512)) 512 b1
discard_both "$d/b.avhdx" "$SCRATCH/c.raw" $((4 * MiB)) $((4 * MiB))
vdisk create --parent "$d/b.avhdx" "$d/c.avhdx" || die "create c"
put "$d/c.avhdx" "$SCRATCH/c.raw" $((63 * MiB)) $MiB c1
expect_status 0 vdisk merge "$d/c.avhdx" --into "$d/base.vhdx"
for f in a b c; do
	[ ! -e "$d/$f.avhdx" ] || die "merge --into left $f.avhdx"
done
assert_content "$d/base.vhdx" "$SCRATCH/c.raw" "base after merging c --into base"
qemu_check "$d/base.vhdx"
qemu_compare "$d/base.vhdx" "$SCRATCH/c.raw"
cp "$SCRATCH/c.raw" "$SCRATCH/base.raw"
log "merge --into the base: ok"

# only what the child holds is copied: a 4 KiB write allocates one block of an empty base
vdisk create --block-size 1M "$d/empty.vhdx" "$size" || die "create empty"
vdisk create --parent "$d/empty.vhdx" "$d/small.avhdx" || die "create small"
truncate -s "$size" "$SCRATCH/small.raw"
put "$d/small.avhdx" "$SCRATCH/small.raw" $((33 * MiB)) 4096 s1
vdisk merge "$d/small.avhdx" || die "merge small"
assert_eq "$(vdisk_info_field "$d/empty.vhdx" '."allocated-size"')" "$MiB" \
	"allocated bytes of the target after merging one 4 KiB write"
assert_content "$d/empty.vhdx" "$SCRATCH/small.raw" "target of the small merge"
qemu_check "$d/empty.vhdx"

# --keep-child: the child stays and still reads the same through the merged parent
vdisk create --parent "$d/base.vhdx" "$d/k.avhdx" || die "create k"
cp "$SCRATCH/base.raw" "$SCRATCH/k.raw"
put "$d/k.avhdx" "$SCRATCH/k.raw" $((12 * MiB + 3)) 100000 k1
vdisk merge --keep-child "$d/k.avhdx" || die "merge --keep-child"
[ -e "$d/k.avhdx" ] || die "--keep-child removed the child"
assert_content "$d/k.avhdx" "$SCRATCH/k.raw" "kept child"
assert_content "$d/base.vhdx" "$SCRATCH/k.raw" "base after merge --keep-child"
assert_eq "$(locator_of "$d/k.avhdx" parent_linkage)" "{$(guid_of "$d/base.vhdx" data-write-guid)}" \
	"parent_linkage of the kept child (the parent's new identity)"
qemu_check "$d/base.vhdx"
assert_vhdi "$d/k.avhdx" "$SCRATCH/k.raw" "kept child"

# errors
expect_fail "base.vhdx has no parent" vdisk merge "$d/base.vhdx"
vdisk create --parent "$d/base.vhdx" "$d/x.avhdx" || die "create x"
expect_fail "empty.vhdx is not an ancestor of .*x.avhdx" vdisk merge "$d/x.avhdx" --into "$d/empty.vhdx"
expect_fail "missing.avhdx" vdisk merge "$d/missing.avhdx"
expect_status 64 vdisk merge
expect_status 64 vdisk merge --search-dir "$SCRATCH/nope" "$d/x.avhdx"
expect_status 64 vdisk merge "$d/x.avhdx" "$d/base.vhdx"
log "ok"
