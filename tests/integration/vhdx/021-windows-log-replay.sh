#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The DiscUtils image with a dirty log (../shared/fixtures/windows): read-only uses of vdisk
# (read, convert -O raw, checksum, info) see the disk as it is after log replay (SHA-256 from
# SOURCES.md, equal to qemu-img's after `qemu-img check -r all` on a copy) and leave the
# file byte-identical; a writable open replays the log into the file, after which qemu-img
# opens it clean and libvhdi (which ignores logs) reads the replayed content too.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires vhdimount -V
requires fusermount -V
requires_fixture discutils-vhdx-log-replay.vhdx.gz

name=discutils-vhdx-log-replay
img=$(fixture_unpack "$name")
size=$(fixture_field "$name" raw-size)
want=$(fixture_field "$name" raw-sha)
cp "$img" "$SCRATCH/pristine"

# the peer's view first (on a copy): qemu-img refuses read-only, replays with check -r all
rc=0
qemu-img info -f vhdx "$img" >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || die "qemu-img opened the dirty image read-only (is it still dirty?)"
cp "$img" "$SCRATCH/q.vhdx"
qemu-img check -r all -f vhdx "$SCRATCH/q.vhdx" >/dev/null 2>&1 || true
assert_eq "$(qemu_raw_sha "$SCRATCH/q.vhdx")" "$want" "qemu-img after replay vs SOURCES.md"
rm -f "$SCRATCH/q.vhdx"

# read-only: the replayed content, the file unchanged
assert_eq "$(vdisk read "$img" 510 2 | od -An -tx1 | tr -d ' \n')" 55aa "MBR signature (replayed)"
assert_eq "$(vdisk_raw_sha "$img")" "$want" "SHA-256 of vdisk read (read-only replay)"
assert_same_file "$img" "$SCRATCH/pristine" "dirty image after vdisk read"
vdisk convert -O raw "$img" "$SCRATCH/v.raw" || die "vdisk convert -O raw failed"
assert_eq "$(sha256 "$SCRATCH/v.raw")" "$want" "SHA-256 of vdisk convert -O raw"
assert_same_file "$img" "$SCRATCH/pristine" "dirty image after vdisk convert"
sum=$(vdisk checksum "$SCRATCH/v.raw")
assert_eq "$(vdisk checksum "$img")" "${sum%%  *}  $img" "vdisk checksum of the dirty image vs its raw"
vdisk info "$img" >/dev/null || die "vdisk info failed"
vdisk map --json "$img" >"$SCRATCH/map.json" || die "vdisk map failed"
assert_eq "$(jq '[.[] | select(.data == true) | .length] | add // 0' "$SCRATCH/map.json")" \
	$((32 * MiB)) "bytes mapped as data after replay (block 0)"
assert_same_file "$img" "$SCRATCH/pristine" "dirty image after checksum, info and map"
rm -f "$SCRATCH/v.raw"

# a writable open that writes nothing still replays the log into the file
vdisk write "$img" 0 </dev/null || die "writable open of the dirty image failed"
! cmp -s "$img" "$SCRATCH/pristine" || die "a writable open did not replay the log into the file"
qemu_check "$img"
assert_eq "$(qemu_raw_sha "$img")" "$want" "qemu-img convert after vdisk replayed the log"
assert_eq "$(vdisk_raw_sha "$img")" "$want" "vdisk read after replay on disk"
expect_status 0 vdisk check "$img"
fuse_mount_vhdi "$img" "$SCRATCH/mnt"
assert_eq "$(sha256 "$SCRATCH/mnt/vhdi1")" "$want" "vhdimount (no log support) after the replay"
fuse_umount "$SCRATCH/mnt"

# check --repair replays too, and a write after replay lands
cp "$SCRATCH/pristine" "$img"
expect_status 0 vdisk check --repair "$img"
expect_status 0 vdisk check "$img"
qemu_check "$img"
printf 'after-replay' | vdisk write "$img" 1000 || die "write after replay failed"
assert_eq "$(vdisk read "$img" 1000 12)" after-replay "bytes written after replay"
assert_eq "$(vdisk read "$img" 510 2 | od -An -tx1 | tr -d ' \n')" 55aa "MBR signature after the write"
qemu_check "$img"
log "ok"
