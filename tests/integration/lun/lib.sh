# SPDX-License-Identifier: LGPL-2.1-or-later
# Helpers for the passthrough LUN scripts (tests/integration/lun/NNN-what.sh), sourced after
# ../lib.sh. They make loop devices over files in the scratch folder (detached at exit, with
# their partitions), write GPTs with sfdisk and add the partitions with partx (this kernel does
# not scan partition tables itself), and point VDISK_LUN_MAP at a map in the scratch folder so
# no test touches the host's /var/lib/vdisk. Every device a test uses is one it made: other
# loop devices on the machine belong to other people.
#
# Loop devices need root: without it the scripts skip (77), the one thing the machine may
# truly lack. Missing tools are failures (scripts/setup.sh installs util-linux, fdisk,
# e2fsprogs).

. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

[ "$(id -u)" -eq 0 ] || skip "loop devices need root"
requires losetup --version
requires blkid --version
requires lsblk --version
requires sfdisk --version
requires partx --version
requires mkfs.ext4 -V
requires mkswap --version
[ -e /dev/loop-control ] || skip "no loop device support (/dev/loop-control missing)"

export VDISK_LUN_MAP=$SCRATCH/luns.conf

# loop_detach DEV: removes DEV's partitions and detaches it, if it is still ours.
loop_detach()
{
	local dev=$1 file=$2
	# only detach when DEV is still backed by our file (the number may have been reused)
	if [ -b "$dev" ] && losetup -n -O BACK-FILE "$dev" 2>/dev/null | grep -qxF "$file"; then
		partx -d "$dev" >/dev/null 2>&1 || :
		losetup -d "$dev" || :
	fi
}

# new_loop VAR FILE [LOSETUP-ARGS...]: attaches FILE and sets VAR to the device, which is
# detached at exit. (Not a $(...) function: the cleanup must be registered in this shell.)
new_loop()
{
	local var=$1 file=$2 dev
	shift 2
	dev=$(losetup -f --show "$@" "$file") || die "losetup $* $file failed"
	cleanup_fn loop_detach "$dev" "$(readlink -f "$file")"
	printf -v "$var" %s "$dev"
}

# new_loop_avoiding VAR FILE AVOID-DEVS [LOSETUP-ARGS...]: like new_loop, but VAR never lands on
# one of the space-separated AVOID-DEVS. Free numbers among them are first taken by small
# filler files attached to them by name; if a parallel test frees one afterwards and FILE lands
# there anyway, that attachment is undone, a filler takes the number, and FILE is tried again.
new_loop_avoiding()
{
	local var=$1 file=$2 avoid=$3 dev i
	shift 3
	for dev in $avoid; do
		_occupy "$dev"
	done
	for ((i = 0; i < 20; i++)); do
		new_loop "$var" "$file" "$@"
		dev=${!var}
		case " $avoid " in
		*" $dev "*) ;;
		*) return 0 ;;
		esac
		loop_detach "$dev" "$(readlink -f "$file")"
		_occupy "$dev"
	done
	die "$file kept landing on one of $avoid"
}

# _occupy DEV: attaches a fresh 1 MiB filler file to DEV by name, if DEV is free.
_occupy()
{
	local filler
	filler=$SCRATCH/filler-${1##*/}-$RANDOM.img
	truncate -s 1M "$filler"
	if losetup "$1" "$filler" 2>/dev/null; then
		cleanup_fn loop_detach "$1" "$(readlink -f "$filler")"
	fi
}

# umount_if DIR: unmounts DIR when it is mounted (a cleanup).
umount_if()
{
	if mountpoint -q "$1"; then
		umount "$1" || umount -l "$1"
	fi
}

# swapoff_if DEV: swapoff DEV when it is active swap (a cleanup).
swapoff_if()
{
	if awk 'NR > 1 { print $1 }' /proc/swaps | grep -qxF "$1"; then
		swapoff "$1"
	fi
}

# make_file FILE SIZE-MIB: a sparse file.
make_file()
{
	rm -f "$1"
	truncate -s "$(($2 * MiB))" "$1"
}

# gpt DEV NPARTS SIZE-MIB: writes a GPT with NPARTS partitions of SIZE-MIB each and makes the
# kernel add them (partx -a); prints nothing.
gpt()
{
	local dev=$1 n=$2 size=$3 i script="label: gpt"$'\n'
	for ((i = 0; i < n; i++)); do
		script+="size=${size}MiB"$'\n'
	done
	sfdisk -q "$dev" <<<"$script" >/dev/null 2>&1 || :
	# sfdisk's re-read fails without partition scanning; the table is written all the same
	[ "$(blkid -p -s PTTYPE -o value "$dev")" = gpt ] || die "sfdisk wrote no GPT on $dev"
	partx -a "$dev" 2>/dev/null || partx -u "$dev" || die "partx -a $dev failed"
	for ((i = 1; i <= n; i++)); do
		wait_for_node "${dev}p$i"
	done
}

# wait_for_node DEV: devtmpfs makes nodes asynchronously.
wait_for_node()
{
	local i
	for i in $(seq 50); do
		[ -b "$1" ] && return 0
		sleep 0.1
	done
	die "$1 did not appear"
}

# blkid_value DEV TAG: what libblkid's low-level probe (blkid -p) finds, "" when nothing.
blkid_value()
{
	blkid -p -o export "$1" 2>/dev/null | sed -n "s/^$2=//p" | head -1
}

# lun_list_json: vdisk lun list --json, kept in $SCRATCH/list.json.
lun_list_json()
{
	vdisk lun list --json >"$SCRATCH/list.json" || die "vdisk lun list --json failed"
	jq -e '.blockdevices | type == "array"' "$SCRATCH/list.json" >/dev/null ||
		die "vdisk lun list --json: no blockdevices array"
}

# dev_field DEV JQ-FIELD: a field of DEV's entry in the last lun_list_json.
dev_field()
{
	jq -r --arg p "$1" ".blockdevices[] | select(.path == \$p) | $2" "$SCRATCH/list.json"
}

# map_line VM SLOT: the line of the map file for VM SLOT ("" when none).
map_line()
{
	awk -v vm="$1" -v slot="$2" '$1 == vm && $2 == slot' "$VDISK_LUN_MAP"
}
