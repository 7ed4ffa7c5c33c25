#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk snapshot`: create keeps the image's path (its content unchanged, now a differencing
# child of the frozen BASE@NAME.avhdx, which libvhdi reads too), later writes leave the
# snapshot exact; list (table and --json: name, ISO-8601 time, file, size, parent, newest
# first); the default name is a UTC timestamp; revert throws away what came after (and newer
# snapshots' files); delete of the newest, a middle and the oldest snapshot keeps the live
# content and every other snapshot exact. Bad names, unknown snapshots and bad usage fail
# with clear messages.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires vhdimount -V
requires qemu-img --version

# snap_file IMG NAME: the frozen file holding snapshot NAME, as `snapshot list` says
snap_file()
{
	local f
	f=$(vdisk snapshot list --json "$1" | jq -er --arg n "$2" '.[] | select(.name == $n) | .file') ||
		die "snapshot $2 of $1 is not listed"
	echo "$f"
}

size=$((40 * MiB))
img=$SCRATCH/vm.vhdx
live=$SCRATCH/live.raw
truncate -s "$size" "$live"
vdisk create --block-size 2M "$img" "$size" || die "create"
put "$img" "$live" 0 $((3 * MiB + 5)) d0
put "$img" "$live" $((20 * MiB)) 4096 d1
cp "$live" "$SCRATCH/s1.raw"
ino=$(stat -c %i "$img")

# create: the path stays, its content too, and it is now a child of the frozen file
expect_status 0 vdisk snapshot create --name s1 "$img"
grep -q "vm@s1.avhdx" "$OUT" || die "create did not name the frozen file: $(cat "$OUT")"
[ -f "$SCRATCH/vm@s1.avhdx" ] || die "no frozen file vm@s1.avhdx"
assert_eq "$(vdisk_info_field "$img" .type)" differencing "type of the image after a snapshot"
assert_eq "$(vdisk_info_field "$SCRATCH/vm@s1.avhdx" .type)" dynamic "type of the frozen file"
assert_ne "$(stat -c %i "$img")" "$ino" "inode of the image (a new file took the path)"
assert_eq "$(stat -c %i "$SCRATCH/vm@s1.avhdx")" "$ino" "inode of the frozen file (the old image)"
[ ! -w "$SCRATCH/vm@s1.avhdx" ] || [ "$(id -u)" = 0 ] || die "frozen file is writable"
assert_eq "$(stat -c %a "$SCRATCH/vm@s1.avhdx")" 444 "mode of the frozen file"
assert_eq "$(locator_of "$img" relative_path)" '.\vm@s1.avhdx' "relative_path of the child"
assert_eq "$(locator_of "$img" parent_linkage)" "{$(guid_of "$SCRATCH/vm@s1.avhdx" data-write-guid)}" \
	"parent_linkage vs the frozen file's DataWriteGuid"
assert_content "$img" "$live" "image after snapshot s1"
# (no libvhdi check of the fresh child: see vhdi_leaf in helpers.bash)
ls "$SCRATCH" | grep -q 'vdisk-tmp' && die "a temporary file was left: $(ls "$SCRATCH")"

# writes after the snapshot go to the child only
put "$img" "$live" $((MiB - 1)) 2 w1
discard_both "$img" "$live" 0 $((2 * MiB))
put "$img" "$live" $((30 * MiB + 7)) 100000 w2
assert_content "$img" "$live" "image after writes"
assert_content "$SCRATCH/vm@s1.avhdx" "$SCRATCH/s1.raw" "snapshot s1 after writes"
assert_vhdi "$img" "$live" "image after writes"
qemu_check "$SCRATCH/vm@s1.avhdx"
cp "$live" "$SCRATCH/s2.raw"

# a default name: the UTC time, ISO 8601 basic form
expect_status 0 vdisk snapshot create "$img"
s2=$(sed -n 's/^snapshot \([^:]*\): .*/\1/p' "$OUT")
[[ $s2 =~ ^[0-9]{8}T[0-9]{6}Z$ ]] || die "default snapshot name '$s2'"
put "$img" "$live" $((10 * MiB)) 5000 w3
cp "$live" "$SCRATCH/s3.raw"
vdisk snapshot create --name s3 "$img" >/dev/null || die "create s3"
put "$img" "$live" $((11 * MiB)) 5000 w4

# list: newest first
expect_status 0 vdisk snapshot list --json "$img"
assert_eq "$(jq -r 'map(.name) | join(" ")' "$OUT")" "s3 $s2 s1" "snapshot names, newest first"
assert_eq "$(jq -r '.[2].file' "$OUT")" "$SCRATCH/vm@s1.avhdx" "file of s1"
assert_eq "$(jq -r '.[2].parent' "$OUT")" null "parent of s1 (the base)"
assert_eq "$(jq -r '.[1].parent' "$OUT")" "$SCRATCH/vm@s1.avhdx" "parent of $s2"
assert_eq "$(jq -r '.[0]."virtual-size"' "$OUT")" "$size" "size of s3"
created=$(jq -r '.[0].created' "$OUT")
[[ $created =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] ||
	die "created is not ISO 8601: $created"
epoch=$(jq -r '.[0]."created-epoch"' "$OUT")
assert_eq "$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" "$created" "created vs created-epoch"
now=$(date +%s)
[ $((now - epoch)) -ge 0 ] && [ $((now - epoch)) -lt 600 ] || die "created-epoch $epoch is not now ($now)"
expect_status 0 vdisk snapshot list "$img"
grep -qE "^s3 +[0-9-]+T[0-9:]+Z +40 MiB +$SCRATCH/vm@s3.avhdx" "$OUT" ||
	die "table line of s3: $(cat "$OUT")"
assert_eq "$(grep -c avhdx "$OUT")" 3 "table lines"
assert_eq "$(vdisk info --chain --json "$img" | jq length)" 4 "chain length with 3 snapshots"
assert_vhdi "$img" "$live" "image with 3 snapshots"
for s in s1 s3; do
	assert_content "$SCRATCH/vm@$s.avhdx" "$SCRATCH/$s.raw" "snapshot $s"
done
assert_content "$SCRATCH/vm@$s2.avhdx" "$SCRATCH/s2.raw" "snapshot $s2"

# errors: a bad name, an existing name, an unknown snapshot, bad usage
expect_fail 'snapshot name .*/x' vdisk snapshot create --name ../x "$img"
expect_fail 'exists' vdisk snapshot create --name s1 "$img"
expect_fail 'no snapshot named "nope"' vdisk snapshot revert "$img" nope
expect_fail 'no snapshot named "nope"' vdisk snapshot delete "$img" nope
expect_status 64 vdisk snapshot create "$img" extra
expect_status 64 vdisk snapshot revert "$img"
expect_status 64 vdisk snapshot list --name x "$img"
expect_status 64 vdisk snapshot frobnicate "$img"
expect_status 1 vdisk snapshot list "$SCRATCH/missing.vhdx"
grep -q "missing.vhdx" "$ERR" || die "message does not name the file: $(cat "$ERR")"
assert_content "$img" "$live" "image after the failed commands"

# revert to s2: the newest snapshot's file goes, the live data since s2 too; s2 stays
expect_status 0 vdisk snapshot revert "$img" "$s2"
[ ! -e "$SCRATCH/vm@s3.avhdx" ] || die "revert kept the newer snapshot s3's file"
cp "$SCRATCH/s2.raw" "$live"
assert_content "$img" "$live" "image after revert to $s2"
assert_eq "$(vdisk snapshot list --json "$img" | jq -r 'map(.name) | join(" ")')" "$s2 s1" \
	"snapshots after revert"
# and it can be reverted to again after more writes
put "$img" "$live" $((5 * MiB)) 3000 w5
vdisk snapshot revert "$img" "$s2" || die "second revert"
assert_content "$img" "$SCRATCH/s2.raw" "image after the second revert"
cp "$SCRATCH/s2.raw" "$live"

# delete the newest snapshot (the live image is merged into it): content stays, s1 exact
put "$img" "$live" $((25 * MiB + 1)) 4096 w6
cp "$live" "$SCRATCH/live-before.raw"
expect_status 0 vdisk snapshot delete "$img" "$s2"
[ ! -e "$SCRATCH/vm@$s2.avhdx" ] || die "delete kept $s2's file"
assert_content "$img" "$live" "image after deleting the newest snapshot"
assert_content "$SCRATCH/vm@s1.avhdx" "$SCRATCH/s1.raw" "s1 after deleting $s2"
assert_eq "$(vdisk snapshot list --json "$img" | jq -r 'map(.name) | join(" ")')" "s1" \
	"snapshots after deleting $s2"
assert_vhdi "$img" "$live" "image after deleting $s2"

# three snapshots again, delete the middle one then the oldest. Deleting a snapshot merges
# the next newer layer into its file, so that file then holds the newer snapshot: files are
# found through the list.
for s in m1 m2 m3; do
	put "$img" "$live" $((RANDOM % 30 * MiB + RANDOM)) 20000 "x$s"
	cp "$live" "$SCRATCH/$s.raw"
	vdisk snapshot create --name "$s" "$img" >/dev/null || die "create $s"
done
put "$img" "$live" $((7 * MiB)) 9999 last
vdisk snapshot delete "$img" m2 || die "delete the middle snapshot"
assert_content "$img" "$live" "image after deleting m2"
for s in m1 m3 s1; do
	assert_content "$(snap_file "$img" "$s")" "$SCRATCH/$s.raw" "snapshot $s after deleting m2"
done
vdisk snapshot delete "$img" s1 || die "delete the oldest snapshot"
assert_content "$img" "$live" "image after deleting s1"
for s in m1 m3; do
	assert_content "$(snap_file "$img" "$s")" "$SCRATCH/$s.raw" "snapshot $s after deleting s1"
done
assert_eq "$(vdisk snapshot list --json "$img" | jq -r 'map(.name) | join(" ")')" "m3 m1" \
	"snapshots after deleting m2 and s1"
assert_eq "$(vdisk info --chain --json "$img" | jq length)" 3 "chain length at the end"
# no stray files: the image and one file per snapshot
assert_eq "$(find "$SCRATCH" -maxdepth 1 -name '*.*vhdx' | wc -l)" 3 "image files at the end"
assert_vhdi "$img" "$live" "image at the end"
log "ok"
