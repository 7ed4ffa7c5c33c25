#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Read-only mounts (the default) refuse writes with EROFS, through every path: open for
# writing, dd, truncate, fallocate; the image is unchanged byte for byte. They take a shared
# lock: a second read-only mount works, a writer (vdisk write, mount --rw) is refused. A
# writable mount takes the exclusive lock; a read-only mount next to it still works, as a
# point-in-time view, with a note saying so, and cannot write either. Files are disks: a
# write at their end fails with ENOSPC and their size cannot change.
. "$(dirname "$0")/lib.sh"
requires python3 --version

img=$SCRATCH/ro.vhdx
mnt=$SCRATCH/mnt
vdisk create --block-size 1M "$img" 64M || die "create failed"
put "$img" "$SCRATCH/shadow" $((3 * MiB)) $((2 * MiB)) ro-data
truncate -s 64M "$SCRATCH/shadow"
before=$(sha256 "$img")

fuse_mount "$img" "$mnt"
assert_eq "$(stat -c %A "$mnt/disk")" "-r--r--r--" "mode of disk on a read-only mount"
assert_same_file "$mnt/disk" "$SCRATCH/shadow" "disk on a read-only mount"
expect_fail 'read-only' dd if=/dev/zero of="$mnt/disk" bs=4096 count=1 conv=notrunc
expect_fail 'read-only' truncate -s 1M "$mnt/disk"
expect_fail 'read-only' fallocate -p -o 0 -l 1M "$mnt/disk"
# open(2) itself, with the errno checked
python3 - "$mnt/disk" <<'PY' || die "open O_RDWR on a read-only mount did not fail with EROFS"
import errno, os, sys
try:
    os.open(sys.argv[1], os.O_RDWR)
except OSError as e:
    sys.exit(0 if e.errno == errno.EROFS else 1)
sys.exit(1)
PY

# a mount point is used once
expect_fail 'vdisk mount already' vdisk mount "$img" "$mnt"

# shared lock: a second read-only mount works; writers are refused
mkdir -p "$SCRATCH/mnt3"
fuse_mount "$img" "$SCRATCH/mnt2"
assert_same_file "$SCRATCH/mnt2/disk" "$SCRATCH/shadow" "disk on a second read-only mount"
expect_fail 'lock|in use' vdisk write "$img" 0 < <(printf 'x')
expect_fail 'in use|lock' vdisk mount --rw "$img" "$SCRATCH/mnt3"
is_mounted "$SCRATCH/mnt3" && die "a refused mount left $SCRATCH/mnt3 mounted"
vdisk umount "$SCRATCH/mnt2" || die "umount of the second mount failed"
vdisk umount "$mnt" || die "umount failed"
assert_eq "$(sha256 "$img")" "$before" "image file after read-only mounts"

# a writable mount: exclusive lock; a read-only mount beside it is a point-in-time view
fuse_mount --rw "$img" "$mnt"
assert_eq "$(stat -c %A "$mnt/disk")" "-rw-r--r--" "mode of disk on a writable mount"
expect_fail 'in use|lock' vdisk mount --rw "$img" "$SCRATCH/mnt3"
mkdir -p "$SCRATCH/mnt2"
cleanup_fn quiet_umount "$SCRATCH/mnt2"
vdisk mount "$img" "$SCRATCH/mnt2" 2>"$SCRATCH/note" || die "read-only mount beside a writer failed"
grep -q 'point-in-time' "$SCRATCH/note" || die "no point-in-time note: $(cat "$SCRATCH/note")"
assert_same_file "$SCRATCH/mnt2/disk" "$SCRATCH/shadow" "point-in-time view"
expect_fail 'read-only' dd if=/dev/zero of="$SCRATCH/mnt2/disk" bs=4096 count=1 conv=notrunc
vdisk umount "$SCRATCH/mnt2" || die "umount of the point-in-time view failed"

# disks do not grow or shrink
expect_fail 'space' dd if=/dev/zero of="$mnt/disk" bs=4096 count=1 seek=$((64 * 256)) conv=notrunc
expect_fail 'invalid' truncate -s 32M "$mnt/disk"
assert_eq "$(file_size "$mnt/disk")" $((64 * MiB)) "size after refused truncate"
# a write that runs past the end is cut at the end (dd reports the short write)
gen_data tail 8192 >"$SCRATCH/tail"
dd if="$SCRATCH/tail" of="$mnt/disk" bs=8192 seek=$((64 * MiB - 4096)) oflag=seek_bytes \
	conv=notrunc status=none 2>/dev/null || :
dd if="$SCRATCH/tail" of="$SCRATCH/shadow" bs=4096 count=1 seek=$((64 * 256 - 1)) conv=notrunc status=none
vdisk umount "$mnt" || die "umount failed"
assert_eq "$(vdisk_raw_sha "$img")" "$(sha256 "$SCRATCH/shadow")" "content after the writable mount"
expect_fail 'not a vdisk mount' vdisk umount "$SCRATCH"
log "ok"
