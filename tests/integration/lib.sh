# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared helpers for the integration scripts (tests/integration/<area>/NNN-what.sh), sourced
# as `. "$(dirname "$0")/../lib.sh"`. It sets strict mode, a per-test scratch folder that is
# removed on exit, cleanup_fn traps, `requires` (a missing peer program is a FAILURE, since
# scripts/setup.sh installs every peer), a `vdisk` function that runs the CLI under test as
# `$VDISK_WRAPPER $VDISK_BUILD_DIR/cli/vdisk` (so CI can rerun everything under valgrind),
# assertions, shadow-file helpers (every write goes to the image and to a raw shadow) and
# access to the Windows-made fixtures in $VDISK_SHARED/fixtures/windows (decompressed into
# the scratch folder, never copied into the repository).
#
# Environment: VDISK_BUILD_DIR (default SOURCE/build), VDISK_SOURCE_DIR, VDISK_SHARED
# (default SOURCE/../shared), VDISK_WRAPPER (e.g. "valgrind --error-exitcode=99 -q"),
# VDISK_TEST_TMPDIR (where scratch folders go, default $TMPDIR or /tmp), VDISK_KEEP_SCRATCH=1
# (keep the scratch folder for inspection). Exit codes: 0 pass, 1 fail, 77 skip.

set -euo pipefail
shopt -s inherit_errexit

TEST_NAME=${TEST_NAME:-$(basename "$(dirname "$0")")/$(basename "$0" .sh)}
VDISK_SOURCE_DIR=${VDISK_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
VDISK_BUILD_DIR=${VDISK_BUILD_DIR:-$VDISK_SOURCE_DIR/build}
VDISK_SHARED=${VDISK_SHARED:-$VDISK_SOURCE_DIR/../shared}
VDISK_WRAPPER=${VDISK_WRAPPER:-}
# relative paths given by hand keep working after the cd into the scratch folder
[ ! -d "$VDISK_BUILD_DIR" ] || VDISK_BUILD_DIR=$(cd "$VDISK_BUILD_DIR" && pwd)
[ ! -d "$VDISK_SHARED" ] || VDISK_SHARED=$(cd "$VDISK_SHARED" && pwd)
VDISK_BIN=$VDISK_BUILD_DIR/cli/vdisk
FIXTURES_WIN=$VDISK_SHARED/fixtures/windows

MiB=$((1024 * 1024))
GiB=$((1024 * MiB))

# ---- messages and exits ----

log()
{
	echo "# $*"
}

die()
{
	echo "FAIL: $TEST_NAME: $*" >&2
	exit 1
}

skip()
{
	echo "SKIP: $TEST_NAME: $*" >&2
	exit 77
}

# ---- cleanup and scratch space ----

_cleanup_fns=()

# cleanup_fn CMD [ARGS...]: run CMD ARGS at exit (last registered runs first).
cleanup_fn()
{
	local q
	printf -v q '%q ' "$@"
	_cleanup_fns+=("$q")
}

_on_exit()
{
	local rc=$? i
	set +e
	for ((i = ${#_cleanup_fns[@]} - 1; i >= 0; i--)); do
		eval "${_cleanup_fns[i]}"
	done
	if [ -n "${SCRATCH:-}" ] && [ -d "$SCRATCH" ]; then
		if [ "${VDISK_KEEP_SCRATCH:-0}" = 1 ]; then
			echo "# scratch kept: $SCRATCH" >&2
		else
			rm -rf "$SCRATCH"
		fi
	fi
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		echo "# $TEST_NAME: exit status $rc" >&2
	fi
	exit "$rc"
}
trap _on_exit EXIT
trap 'exit 130' INT TERM

_scratch_base=${VDISK_TEST_TMPDIR:-${TMPDIR:-/tmp}}
mkdir -p "$_scratch_base"
SCRATCH=$(mktemp -d "$_scratch_base/vdisk-${TEST_NAME//\//-}.XXXXXX")
cd "$SCRATCH"

# stop_pid PID: ends a background process this test started, if it still runs.
stop_pid()
{
	kill "$1" 2>/dev/null && wait "$1" 2>/dev/null
	return 0
}

# ---- requirements ----

# requires CMD [ARGS...]: CMD ARGS must run and exit 0, else the test FAILS (no skip: every
# peer is installed by scripts/setup.sh, so a missing one is a broken install).
requires()
{
	if ! "$@" >/dev/null 2>&1; then
		die "required program not usable: '$*' failed (install the peers with scripts/setup.sh)"
	fi
}

requires_vdisk()
{
	[ -x "$VDISK_BIN" ] || die "the CLI under test is missing: $VDISK_BIN (build first, or set VDISK_BUILD_DIR)"
}

# requires_fixture NAME.gz: the Windows fixture must be there (CI lays shared/ beside the clone).
requires_fixture()
{
	[ -r "$FIXTURES_WIN/$1" ] || die "fixture missing: $FIXTURES_WIN/$1 (VDISK_SHARED=$VDISK_SHARED)"
}

# ---- the program under test ----

vdisk()
{
	# shellcheck disable=SC2086 # VDISK_WRAPPER is a command line on purpose
	$VDISK_WRAPPER "$VDISK_BIN" "$@"
}

# ---- assertions ----

# assert_eq ACTUAL EXPECTED [WHAT]
assert_eq()
{
	[ "$1" = "$2" ] || die "${3:-value}: got '$1', expected '$2'"
}

# assert_ne A B [WHAT]
assert_ne()
{
	[ "$1" != "$2" ] || die "${3:-value}: both are '$1', expected them to differ"
}

# assert_ge A B [WHAT]: integer A >= B
assert_ge()
{
	[ "$1" -ge "$2" ] || die "${3:-value}: got $1, expected at least $2"
}

# assert_same_file A B [WHAT]: byte-identical files.
assert_same_file()
{
	cmp "$1" "$2" >/dev/null || die "${3:-files}: $1 and $2 differ ($(cmp "$1" "$2" 2>&1 | head -1))"
}

# expect_status CODE CMD [ARGS...]: CMD must exit with CODE; its stdout goes to $OUT and its
# stderr to $ERR (files in the scratch folder) for later checks.
OUT=$SCRATCH/.out
ERR=$SCRATCH/.err
expect_status()
{
	local want=$1 rc=0
	shift
	"$@" >"$OUT" 2>"$ERR" || rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "--- stdout of '$*':" >&2
		head -c 4000 "$OUT" >&2
		echo "--- stderr:" >&2
		head -c 4000 "$ERR" >&2
		die "'$*' exited with $rc, expected $want"
	fi
}

# expect_fail REGEX CMD [ARGS...]: CMD must exit non-zero (not by a signal or a sanitizer)
# and print a message matching the extended REGEX (case-insensitive) on stderr.
expect_fail()
{
	local re=$1 rc=0
	shift
	"$@" >"$OUT" 2>"$ERR" || rc=$?
	[ "$rc" -ne 0 ] || die "'$*' succeeded, expected a failure matching /$re/"
	[ "$rc" -lt 128 ] || { cat "$ERR" >&2; die "'$*' died with status $rc"; }
	if grep -qE 'AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$ERR"; then
		cat "$ERR" >&2
		die "'$*': sanitizer report"
	fi
	grep -qiE "$re" "$ERR" || {
		cat "$ERR" >&2
		die "'$*' failed (status $rc) without a message matching /$re/"
	}
}

# ---- data, hashes and shadows ----

# sha256 [FILE]: hex SHA-256 of FILE or stdin. openssl is several times faster than
# sha256sum here; for a FILE, python3's hashlib (OpenSSL inside) walks the holes with
# SEEK_DATA/SEEK_HOLE and hashes them from a zero buffer instead of reading them, which
# matters for the 10 GiB sparse disks of the Windows fixtures.
_SPARSE_SHA256='
import hashlib, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
h = hashlib.sha256()
zero = memoryview(bytes(1 << 24))
pos = 0
while pos < size:
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        data = size
    while pos < data:
        n = min(data - pos, len(zero))
        h.update(zero[:n])
        pos += n
    if pos >= size:
        break
    try:
        hole = os.lseek(fd, pos, os.SEEK_HOLE)
    except OSError:
        hole = size
    while pos < hole:
        b = os.pread(fd, min(hole - pos, 1 << 24), pos)
        if not b:
            sys.exit("sha256: short read at %d" % pos)
        h.update(b)
        pos += len(b)
print(h.hexdigest())
'
sha256()
{
	if [ $# -gt 0 ] && [ -f "$1" ] && command -v python3 >/dev/null; then
		python3 -c "$_SPARSE_SHA256" "$1"
	elif command -v openssl >/dev/null; then
		openssl dgst -sha256 -r "$@" | cut -d' ' -f1
	else
		sha256sum "$@" | cut -d' ' -f1
	fi
}

# gen_data SEED LEN: LEN deterministic pseudo-random bytes (AES-CTR keystream) to stdout.
gen_data()
{
	# openssl dies of SIGPIPE when head has enough: not an error here
	{ openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$1" </dev/zero 2>/dev/null || :; } |
		head -c "$2"
}

file_size()
{
	stat -c %s "$1"
}

# allocated_bytes FILE: bytes the file system really holds for FILE.
allocated_bytes()
{
	echo $(($(stat -c %b "$1") * $(stat -c %B "$1")))
}

# put IMG SHADOW OFFSET LEN SEED: writes LEN bytes of gen_data SEED at OFFSET through
# `vdisk write` into IMG and with dd into the raw SHADOW.
put()
{
	local img=$1 shadow=$2 off=$3 len=$4 seed=$5
	gen_data "$seed" "$len" >"$SCRATCH/.put"
	[ "$(file_size "$SCRATCH/.put")" -eq "$len" ] || die "gen_data made a short buffer"
	vdisk write "$img" "$off" <"$SCRATCH/.put" || die "vdisk write $img $off ($len bytes) failed"
	dd if="$SCRATCH/.put" of="$shadow" bs=1M oflag=seek_bytes seek="$off" conv=notrunc \
		status=none
}

# put_zeros IMG SHADOW OFFSET LEN: writes LEN zero bytes (as data, through `vdisk write`).
put_zeros()
{
	local img=$1 shadow=$2 off=$3 len=$4
	{ head -c "$len" /dev/zero || :; } | vdisk write "$img" "$off" || die "vdisk write of zeros failed"
	dd if=/dev/zero of="$shadow" bs=1M oflag=seek_bytes seek="$off" count="$len" \
		iflag=count_bytes conv=notrunc status=none
}

# discard_both IMG SHADOW OFFSET LEN: `vdisk discard` on IMG, zeros in SHADOW.
discard_both()
{
	local img=$1 shadow=$2 off=$3 len=$4
	vdisk discard "$img" "$off" "$len" || die "vdisk discard $img $off $len failed"
	dd if=/dev/zero of="$shadow" bs=1M oflag=seek_bytes seek="$off" count="$len" \
		iflag=count_bytes conv=notrunc status=none
}

# read_range FILE OFFSET LEN: the bytes of a raw file (the shadow) to stdout.
read_range()
{
	dd if="$1" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none
}

# assert_range IMG SHADOW OFFSET LEN: `vdisk read` of the range equals the shadow's bytes.
assert_range()
{
	local a b
	a=$(vdisk read "$1" "$3" "$4" | sha256) || die "vdisk read $1 $3 $4 failed"
	b=$(read_range "$2" "$3" "$4" | sha256)
	assert_eq "$a" "$b" "content of $1 at $3+$4 (vdisk read vs shadow)"
}

# qemu_check IMG: qemu-img check must find the VHDX image clean (exit 0).
qemu_check()
{
	local rc=0
	qemu-img check -f vhdx "$1" >"$OUT" 2>&1 || rc=$?
	[ "$rc" -eq 0 ] || { cat "$OUT" >&2; die "qemu-img check $1: exit $rc"; }
}

# qemu_compare IMG RAW: qemu-img compare says the VHDX reads exactly as RAW.
qemu_compare()
{
	local rc=0
	qemu-img compare -f vhdx -F raw "$1" "$2" >"$OUT" 2>&1 || rc=$?
	[ "$rc" -eq 0 ] || { cat "$OUT" >&2; die "qemu-img compare $1 $2: exit $rc"; }
	assert_eq "$(qemu_info_field "$1" '."virtual-size"')" "$(file_size "$2")" \
		"virtual size of $1 (qemu-img info) vs size of $2"
}

# qemu_info_field IMG JQ-FILTER: one field of `qemu-img info --output=json`.
qemu_info_field()
{
	local v
	v=$(qemu-img info -f "${3:-vhdx}" --output=json "$1" | jq -er "$2") ||
		die "qemu-img info $1: no '$2'"
	echo "$v"
}

# qemu_raw_sha IMG [FMT]: SHA-256 of the whole virtual disk as qemu-img converts it to raw.
qemu_raw_sha()
{
	local out=$SCRATCH/.qemu-raw
	qemu-img convert -f "${2:-vhdx}" -O raw "$1" "$out" || die "qemu-img convert $1 failed"
	sha256 "$out"
	rm -f "$out"
}

# vdisk_raw_sha IMG: SHA-256 of the whole virtual disk as `vdisk read` returns it.
vdisk_raw_sha()
{
	local size
	size=$(vdisk_info_field "$1" '."virtual-size"')
	vdisk read "$1" 0 "$size" | sha256 || die "vdisk read $1 0 $size failed"
}

# vdisk_info_field IMG JQ-FILTER: one field of `vdisk info --json`.
vdisk_info_field()
{
	local v
	v=$(vdisk info --json "$1" | jq -er "$2") || die "vdisk info --json $1: no '$2'"
	echo "$v"
}

# vhdiinfo_field IMG LABEL: a value printed by libvhdi's vhdiinfo, e.g. "Bytes per sector".
vhdiinfo_field()
{
	vhdiinfo "$1" | sed -n "s/^[[:space:]]*$2[[:space:]]*:[[:space:]]*//p" | head -1
}

# ---- raw VHDX structures, read and poked with od/dd, independent of vdisk ----

GUID_REGION_BAT=6677c22d23f600429d64115e9bfd4a08
GUID_REGION_METADATA=06a27c8b90479a4bb8fe575f050f886e
GUID_META_FILE_PARAMETERS=3767a1ca36fa434db3b633f0aa44e76b
GUID_META_DISK_SIZE=2442a52f1bcd7648b2115dbed83bf4b8
GUID_META_LOGICAL_SECTOR=1dbf41816fa90947ba47f233a8faab5f
GUID_META_PHYSICAL_SECTOR=c748a3cd5d4471449cc9e9885251c556
REGION_TABLE_1=$((192 * 1024))
REGION_TABLE_2=$((256 * 1024))

# le_uint FILE OFFSET BYTES: little-endian unsigned integer (BYTES = 1, 2, 4 or 8).
le_uint()
{
	od -An -v -t "u$3" --endian=little -j "$2" -N "$3" "$1" | tr -d ' \n'
}

# hex_at FILE OFFSET LEN: the bytes as lower-case hex, no spaces.
hex_at()
{
	od -An -v -t x1 -j "$2" -N "$3" "$1" | tr -d ' \n'
}

# put_le FILE OFFSET BYTES VALUE: overwrites an unsigned little-endian integer in place.
put_le()
{
	local f=$1 off=$2 n=$3 v=$4 i esc=
	for ((i = 0; i < n; i++)); do
		esc+=$(printf '\\x%02x' $(((v >> (8 * i)) & 255)))
	done
	printf "$esc" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}

# region_entry FILE GUID [TABLE]: "OFFSET LENGTH" of a region in region table 1 (or TABLE).
region_entry()
{
	local f=$1 guid=$2 t=${3:-$REGION_TABLE_1} n i hex
	[ "$(hex_at "$f" "$t" 4)" = 72656769 ] || die "$f: no region table signature at $t"
	n=$(le_uint "$f" $((t + 8)) 4)
	[ "$n" -le 2047 ] || die "$f: region table at $t has $n entries"
	hex=$(hex_at "$f" $((t + 16)) $((32 * n)))
	for ((i = 0; i < n; i++)); do
		if [ "${hex:64*i:32}" = "$guid" ]; then
			echo "$(le_uint "$f" $((t + 16 + 32 * i + 16)) 8) $(le_uint "$f" $((t + 16 + 32 * i + 24)) 4)"
			return 0
		fi
	done
	die "$f: region $guid not in the region table at $t"
}

# meta_item_offset FILE GUID: file offset of a metadata item's data.
meta_item_offset()
{
	local f=$1 guid=$2 m n i hex
	read -r m _ < <(region_entry "$f" "$GUID_REGION_METADATA")
	[ "$(hex_at "$f" "$m" 8)" = 6d65746164617461 ] || die "$f: no metadata table at $m"
	n=$(le_uint "$f" $((m + 10)) 2)
	[ "$n" -le 2047 ] || die "$f: metadata table has $n entries"
	hex=$(hex_at "$f" $((m + 32)) $((32 * n)))
	for ((i = 0; i < n; i++)); do
		if [ "${hex:64*i:32}" = "$guid" ]; then
			echo $((m + $(le_uint "$f" $((m + 32 + 32 * i + 16)) 4)))
			return 0
		fi
	done
	die "$f: metadata item $guid not found"
}

# meta_u32 FILE GUID / meta_u64 FILE GUID: value of a fixed-size metadata item.
meta_u32()
{
	local o
	o=$(meta_item_offset "$1" "$2")
	le_uint "$1" "$o" 4
}

meta_u64()
{
	local o
	o=$(meta_item_offset "$1" "$2")
	le_uint "$1" "$o" 8
}

# bat_geometry FILE: "BAT-OFFSET CHUNK-RATIO BLOCK-SIZE" (dynamic or fixed images: a
# sector-bitmap entry follows every chunk-ratio payload entries, MS-VHDX 2.5).
bat_geometry()
{
	local f=$1 b bs ls
	read -r b _ < <(region_entry "$f" "$GUID_REGION_BAT")
	bs=$(meta_u32 "$f" "$GUID_META_FILE_PARAMETERS")
	ls=$(meta_u32 "$f" "$GUID_META_LOGICAL_SECTOR")
	echo "$b $(((1 << 23) * ls / bs)) $bs"
}

# bat_entry_offset FILE BLOCK: file offset of payload block BLOCK's BAT entry.
bat_entry_offset()
{
	local b cr
	read -r b cr _ < <(bat_geometry "$1")
	echo $((b + 8 * ($2 + $2 / cr)))
}

# bat_entries FILE NBLOCKS: the BAT entries of payload blocks 0..NBLOCKS-1, one per line
# (state = value & 7, file offset = (value >> 20) MiB), read with one od call.
bat_entries()
{
	local f=$1 nb=$2 b cr
	read -r b cr _ < <(bat_geometry "$f")
	od -An -v -t u8 --endian=little -j "$b" -N $((8 * (nb + (nb - 1) / cr))) "$f" |
		tr -s ' ' '\n' | grep . | awk -v cr="$cr" 'NR % (cr + 1) != 0'
}

# ---- Windows fixtures (read in place, decompressed into the scratch folder) ----

# fixture_field NAME FIELD: facts listed in SOURCES.md for the fixture NAME (without .vhdx.gz):
# FIELD = gz-sha | file-sha (uncompressed file) | raw-size | raw-sha (virtual disk content).
fixture_field()
{
	local name=$1 field=$2 src=$FIXTURES_WIN/SOURCES.md v=
	[ -r "$src" ] || die "missing $src"
	case $field in
	gz-sha) v=$(awk -v n="$name" '$1 ~ "^" n "\\.a?vhdx\\.gz$" && $3 == "/" { print $2 }' "$src") ;;
	file-sha) v=$(awk -v n="$name" '$1 ~ "^" n "\\.a?vhdx\\.gz$" && $3 == "/" { print $4 }' "$src") ;;
	raw-size | raw-sha)
		v=$(awk -v n="$name" -v f="$field" '
			$1 == n && $(NF - 1) == "bytes" && $NF ~ /^[0-9a-f]+$/ {
				print (f == "raw-sha" ? $NF : $(NF - 2)) }' "$src")
		;;
	esac
	[ -n "$v" ] || die "SOURCES.md lists no $field for fixture $name"
	echo "$v"
}

# fixture_unpack NAME [DEST]: decompresses NAME.vhdx.gz (or .avhdx.gz) into the scratch
# folder, checks the SHA-256 of the result against SOURCES.md and prints the path.
fixture_unpack()
{
	local name=$1 gz= dest f
	for f in "$FIXTURES_WIN/$name".vhdx.gz "$FIXTURES_WIN/$name".avhdx.gz; do
		[ -r "$f" ] && gz=$f
	done
	[ -n "$gz" ] || die "fixture $name not found in $FIXTURES_WIN"
	dest=${2:-$SCRATCH/$(basename "$gz" .gz)}
	gzip -dc "$gz" >"$dest" || die "cannot decompress $gz"
	assert_eq "$(sha256 "$dest")" "$(fixture_field "$name" file-sha)" "SHA-256 of unpacked $name"
	echo "$dest"
}

# ---- FUSE ----

# fuse_mount_vhdi IMG DIR: mounts IMG with vhdimount (unmounted at exit); the disk appears as
# DIR/vhdi1.
fuse_mount_vhdi()
{
	mkdir -p "$2"
	vhdimount "$1" "$2" >/dev/null || die "vhdimount $1 $2 failed"
	cleanup_fn fuse_umount "$2"
	local i
	for i in $(seq 50); do
		[ -e "$2/vhdi1" ] && return 0
		sleep 0.1
	done
	die "vhdimount: $2/vhdi1 did not appear"
}

# fuse_umount DIR: unmounts DIR if it is mounted.
fuse_umount()
{
	if mountpoint -q "$1"; then
		fusermount -u "$1" || fusermount -u -z "$1"
	fi
}

requires_vdisk
requires jq --version
requires cmp --version
requires openssl version
