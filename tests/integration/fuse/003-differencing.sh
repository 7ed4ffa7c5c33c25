#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A differencing child's mount shows the merged view of its chain: the parent's data where
# the child has none, the child's where it has. Writes through a writable mount of the child
# (aligned, unaligned, across block boundaries) land in the child only: the parent's content
# is unchanged. The merged view is checked against a raw shadow, a fresh child's view against
# libvhdi's own reading of the chain (vhdimount), and the parent stays mountable read-only
# while the child is mounted writable (the chain holds only a shared lock on it).
. "$(dirname "$0")/lib.sh"
requires vhdimount -V

base=$SCRATCH/base.vhdx
child=$SCRATCH/child.avhdx
mnt=$SCRATCH/mnt
vdisk create --block-size 2M "$base" 48M || die "create base failed"
truncate -s 48M "$SCRATCH/shadow"
put "$base" "$SCRATCH/shadow" 0 $((5 * MiB)) base-a
put "$base" "$SCRATCH/shadow" $((20 * MiB + 512)) $((3 * MiB)) base-b
put "$base" "$SCRATCH/shadow" $((40 * MiB)) $((2 * MiB)) base-c
cp "$SCRATCH/shadow" "$SCRATCH/base-shadow"
base_sha=$(sha256 "$base")
vdisk create --parent "$base" "$child" || die "create child failed"

fuse_mount "$child" "$mnt"
assert_same_file "$mnt/disk" "$SCRATCH/shadow" "fresh child's mount (parent's content)"
vdisk umount "$mnt" || die "umount failed"

# writes through the child's mount, mirrored into the shadow
fuse_mount --rw "$child" "$mnt"
# the parent, held shared by the child's chain, mounts read-only with a note
mkdir -p "$SCRATCH/base-mnt"
cleanup_fn quiet_umount "$SCRATCH/base-mnt"
vdisk mount "$base" "$SCRATCH/base-mnt" 2>"$SCRATCH/note" || die "mount of the parent in use failed"
grep -q 'in use by other programs.*read-only' "$SCRATCH/note" || die "no note: $(cat "$SCRATCH/note")"
w()
{
	gen_data "$3" "$2" >"$SCRATCH/w"
	dd if="$SCRATCH/w" of="$mnt/disk" bs=1M oflag=seek_bytes seek="$1" conv=notrunc status=none ||
		die "write at $1 through the mount failed"
	dd if="$SCRATCH/w" of="$SCRATCH/shadow" bs=1M oflag=seek_bytes seek="$1" conv=notrunc status=none
}
w $((1 * MiB)) $((1 * MiB)) c1                    # inside a block the parent has
w $((2 * MiB - 4096)) 8192 c2                      # across a block boundary
w $((20 * MiB + 1000)) 3000 c3                     # unaligned, partial sectors
w $((30 * MiB)) $((4 * MiB)) c4                    # where the parent has nothing
w $((41 * MiB + 17)) 1 c5                          # one byte
assert_same_file "$mnt/disk" "$SCRATCH/shadow" "child's mount after writes"
assert_same_file "$SCRATCH/base-mnt/disk" "$SCRATCH/base-shadow" "parent's mount meanwhile"
vdisk umount "$SCRATCH/base-mnt" || die "umount of the parent failed"
vdisk umount "$mnt" || die "umount of the child failed"

assert_eq "$(sha256 "$base")" "$base_sha" "parent file after writing through the child"
assert_eq "$(vdisk_raw_sha "$child")" "$(sha256 "$SCRATCH/shadow")" "child (vdisk read vs shadow)"

# the merged view reads the same through a read-only mount and through `vdisk read`
fuse_mount "$child" "$mnt"
assert_same_file "$mnt/disk" "$SCRATCH/shadow" "child's read-only mount"
vdisk umount "$mnt" || die "umount failed"

# libvhdi resolves the chain on its own: a fresh child of the same parent reads through our
# mount exactly as through vhdimount (parent data all the way down)
vdisk create --parent "$base" "$SCRATCH/fresh.avhdx" || die "create fresh child failed"
fuse_mount "$SCRATCH/fresh.avhdx" "$mnt"
fuse_mount_vhdi "$SCRATCH/fresh.avhdx" "$SCRATCH/vhdi"
assert_eq "$(sha256 "$SCRATCH/vhdi/vhdi1")" "$(sha256 "$mnt/disk")" \
	"fresh child (vhdimount vs vdisk mount)"
assert_same_file "$mnt/disk" "$SCRATCH/base-shadow" "fresh child's mount"
vdisk umount "$mnt" || die "umount failed"

expect_status 0 vdisk check "$child"
log "ok"
