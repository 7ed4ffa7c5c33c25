# SPDX-License-Identifier: LGPL-2.1-or-later
# Helpers of the differencing-chain tests (tests/integration/diff/*.sh), sourced after
# ../lib.sh. Not named *.sh so ctest does not run it as a test.

# Mounts are made in command substitutions (subshells), whose cleanup_fn would be lost:
# every folder $SCRATCH/vhdi.* still mounted at exit is unmounted from the main shell.
_vhdi_umount_all()
{
	local d
	for d in "$SCRATCH"/vhdi.*; do
		[ -d "$d" ] && fuse_umount "$d"
	done
	return 0
}
cleanup_fn _vhdi_umount_all

# vhdi_leaf IMG DIR: mounts IMG with vhdimount (which follows the parent chain) and prints
# the path of the leaf layer, the highest-numbered DIR/vhdiN.
#
# libvhdi (20210425, and its current sources) misreads a child's chunk that has no sector
# bitmap block: it takes the BAT entry's FileOffsetMB (0) as the bitmap's place without
# looking at the SB_BLOCK_NOT_PRESENT state, so the first payload block of such a chunk gets
# the bits of the file identifier ("vhdxfile"...) as its bitmap and reads header bytes.
# Hyper-V allocates bitmap blocks on the first write into a chunk, as vdisk does (the
# Windows checkpoint fixture has them interleaved with payload blocks), so a fresh checkpoint
# of either reads wrong in libvhdi. Compare with libvhdi only children that have written
# into every chunk.
vhdi_leaf()
{
	local img=$1 dir=$2 leaf i
	mkdir -p "$dir"
	vhdimount "$img" "$dir" >/dev/null || die "vhdimount $img $dir failed"
	for i in $(seq 50); do
		[ -e "$dir/vhdi1" ] && break
		sleep 0.1
	done
	leaf=$(find "$dir" -mindepth 1 -maxdepth 1 -name 'vhdi[0-9]*' -printf '%f\n' | sort -V | tail -1)
	[ -n "$leaf" ] || die "vhdimount $img: no vhdiN file in $dir"
	echo "$dir/$leaf"
}

# vhdi_sha IMG [OFFSET LENGTH]: SHA-256 of the leaf as libvhdi reads it (all of it, or a range).
vhdi_sha()
{
	local img=$1 mnt leaf
	mnt=$(mktemp -d "$SCRATCH/vhdi.XXXXXX")
	leaf=$(vhdi_leaf "$img" "$mnt")
	if [ $# -ge 3 ]; then
		read_range "$leaf" "$2" "$3" | sha256
	else
		sha256 "$leaf"
	fi
	fuse_umount "$mnt"
	rmdir "$mnt"
}

# vdisk_sha IMG [OFFSET LENGTH]: SHA-256 of what `vdisk read` returns.
vdisk_sha()
{
	local img=$1 off=${2:-0} len=${3:-}
	[ -n "$len" ] || len=$(vdisk_info_field "$img" '."virtual-size"')
	vdisk read "$img" "$off" "$len" | sha256 || die "vdisk read $img $off $len failed"
}

# vsum IMG: XXH3-128 of the content (vdisk checksum: the fastest whole-disk compare here).
vsum()
{
	local v
	v=$(vdisk checksum "$1") || die "vdisk checksum $1 failed"
	echo "${v%% *}"
}

# fast_scratch NAME: prints a new scratch folder on tmpfs when there is one (the caller removes it),
# else $SCRATCH. For tests that run hundreds of fdatasync-heavy operations; a kill is not a
# power loss, so the page cache is what the next process sees either way.
fast_scratch()
{
	local d
	if [ -d /dev/shm ] && [ -w /dev/shm ] && d=$(mktemp -d "/dev/shm/vdisk-$1.XXXXXX"); then
		echo "$d"
	else
		echo "$SCRATCH"
	fi
}

# The syscalls that change files: the kill points of the strace crash tests.
CHANGE_SYSCALLS=(pwrite64 write ftruncate fallocate fdatasync fsync rename renameat renameat2 link
	linkat unlink unlinkat fchmod fchmodat)

# strace_count TRACE CMD...: runs CMD under strace, logging every CHANGE_SYSCALLS call to TRACE.
# (LeakSanitizer cannot run under ptrace.)
strace_count()
{
	local trace=$1
	shift
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o "$trace" \
		-e trace="$(IFS=,; echo "${CHANGE_SYSCALLS[*]}")" "$@"
}

# strace_kill SYSCALL N CMD...: runs CMD, killed (SIGKILL) at its Nth call of SYSCALL; returns
# CMD's exit status (137 when the kill happened). Output is discarded.
strace_kill()
{
	local s=$1 n=$2
	shift 2
	# (in a subshell, so the shell's "Killed" notice goes to /dev/null too)
	(ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f -o /dev/null \
		-e trace="$s" -e inject="$s:signal=KILL:when=$n" "$@"; exit $?) >/dev/null 2>&1
}

# assert_content IMG SHADOW [WHAT]: vdisk read of IMG equals the raw SHADOW, whole disk.
assert_content()
{
	assert_eq "$(vdisk_sha "$1")" "$(sha256 "$2")" "${3:-content of $1} (vdisk read vs shadow)"
}

# assert_vhdi IMG SHADOW [WHAT]: libvhdi reads IMG's leaf as exactly the raw SHADOW.
assert_vhdi()
{
	assert_eq "$(vhdi_sha "$1")" "$(sha256 "$2")" "${3:-content of $1} (libvhdi vs shadow)"
}

# guid_of IMG KEY: a GUID of `vdisk info --json` (data-write-guid, file-write-guid...).
guid_of()
{
	vdisk_info_field "$1" ".\"$2\""
}

# locator_of IMG KEY: a parent locator entry of IMG.
locator_of()
{
	vdisk_info_field "$1" ".\"parent-locator\".\"$2\""
}

# snapshot_fixture NAME: in a fast scratch folder NAME, $orig/vm.vhdx with snapshots s1 and s2
# and more data after s2; sets work, orig, w (a working copy's folder, not made yet), the
# virtual checksums want[s1], want[s2] and want[s3] (the live image) and live.
snapshot_fixture()
{
	work=$(fast_scratch "$1")
	[ "$work" = "$SCRATCH" ] || cleanup_fn rm -rf "$work"
	orig=$work/orig
	w=$work/w
	mkdir "$orig"
	vdisk create --block-size 1M "$orig/vm.vhdx" 12M || die "create"
	gen_data a $((3 * MiB)) | vdisk write "$orig/vm.vhdx" 0 || die "write"
	declare -gA want
	want[s1]=$(vsum "$orig/vm.vhdx")
	vdisk snapshot create --name s1 "$orig/vm.vhdx" >/dev/null || die "snapshot s1"
	gen_data b 400000 | vdisk write "$orig/vm.vhdx" $((MiB + 7)) || die "write"
	vdisk discard "$orig/vm.vhdx" $((2 * MiB)) $((MiB)) || die "discard"
	want[s2]=$(vsum "$orig/vm.vhdx")
	vdisk snapshot create --name s2 "$orig/vm.vhdx" >/dev/null || die "snapshot s2"
	gen_data c $((MiB)) | vdisk write "$orig/vm.vhdx" $((6 * MiB)) || die "write"
	live=$(vsum "$orig/vm.vhdx")
	want[s3]=$live
}
