# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# Helpers for the `vdisk mount` scripts (tests/integration/fuse/NNN-what.sh), sourced after
# ../lib.sh: mounting with an unmount registered for exit, loop devices and file-system mounts
# torn down in reverse order, partition geometry as libblkid (partx) and libfdisk (sfdisk)
# see it, and a wait for a mount to appear. Loop devices and mount(8) need root: scripts that
# use them call requires_root, which skips (77) on a machine where the test runs unprivileged.

# shellcheck source=tests/integration/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

requires fusermount3 --version

requires_root()
{
	[ "$(id -u)" -eq 0 ] || skip "needs root (loop devices, mount)"
	[ -w /dev/loop-control ] || skip "no /dev/loop-control"
}

# is_mounted DIR: DIR is a mount point (also when its FUSE process died and stat fails).
is_mounted()
{
	awk -v d="$1" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# quiet_umount MNT: at exit, take down a vdisk mount that a failing test left behind.
quiet_umount()
{
	if is_mounted "$1"; then
		vdisk umount "$1" >/dev/null 2>&1 || fusermount3 -u -z "$1" 2>/dev/null || :
	fi
}

# fuse_mount [OPTIONS] IMAGE MNT: `vdisk mount`, which must succeed; unmounted at exit.
fuse_mount()
{
	local mnt=${*: -1}
	mkdir -p "$mnt"
	cleanup_fn quiet_umount "$mnt"
	vdisk mount "$@" || die "vdisk mount $* failed"
	mountpoint -q "$mnt" || die "vdisk mount $* returned but $mnt is not a mount point"
}

# loop_attach VAR FILE [LOSETUP-OPTIONS...]: binds FILE to a loop device, detached at exit,
# and stores its path in VAR (not printed: a command substitution would lose the cleanup).
loop_attach()
{
	local __var=$1 __file=$2 __dev
	shift 2
	__dev=$(losetup --find --show "$@" "$__file") || die "losetup $* $__file failed"
	cleanup_fn loop_detach "$__dev"
	printf -v "$__var" '%s' "$__dev"
}

# loop_detach DEV: detaches DEV if it is still bound.
loop_detach()
{
	losetup "$1" >/dev/null 2>&1 && losetup -d "$1"
	return 0
}

# fs_mount DEV DIR [MOUNT-OPTIONS]: mount(8), unmounted at exit.
fs_mount()
{
	mkdir -p "$2"
	cleanup_fn umount -q "$2"
	mount ${3:+-o "$3"} "$1" "$2" || die "mount $1 $2 failed"
}

# tree_sums DIR: "sha256  ./path" of every file under DIR, sorted.
tree_sums()
{
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# blkid_parts FILE-OR-DEV: "NR START_BYTES SIZE_BYTES" lines, as libblkid (partx) finds them
# (partx counts in 512-byte units whatever the sector size).
blkid_parts()
{
	partx -g -o NR,START,SECTORS "$1" | awk '{ printf "%d %d %d\n", $1, $2 * 512, $3 * 512 }'
}

# mount_sizes MNT: "NR SIZE_BYTES" of the pN files of a vdisk mount, by number.
mount_sizes()
{
	local f
	for f in "$1"/p*; do
		[ -e "$f" ] || continue
		echo "${f##*/p} $(file_size "$f")"
	done | sort -n
}

# assert_part_content MNT NR START: pNR reads exactly as `disk` from byte START on.
assert_part_content()
{
	local mnt=$1 nr=$2 start=$3 size
	size=$(file_size "$mnt/p$nr")
	cmp -n "$size" "$mnt/p$nr" <(dd if="$mnt/disk" bs=1M iflag=skip_bytes,count_bytes \
		skip="$start" count="$size" status=none) ||
		die "p$nr differs from disk at $start (size $size)"
}
