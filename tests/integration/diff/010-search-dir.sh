#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# --search-dir on every command that opens a chain. A child whose parent moved to another
# folder (so its relative_path and the file name in its own folder both miss): read, write,
# discard, map, checksum, convert, check, mount and serve all fail naming the child, its
# parent_linkage and the missing base.vhdx; with --search-dir (or the daemon's search-dir
# key) each works and the bytes are right: vdisk read and convert against a raw shadow,
# checksum against the shadow's, map's layers, the mount's disk file, NBD reads (nbdcopy,
# qemu-img compare) from `vdisk serve` and from a configuration file. A search folder with
# another image under the parent's name is refused (GUID mismatch, both named), and a later
# folder holding the real parent still wins. Bad --search-dir values are usage errors.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../fuse/lib.sh"
. "$HERE/helpers.bash"
VSP=$VDISK_BUILD_DIR/vsp-storage/vsp-storage
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
requires nbdcopy --version
requires qemu-img --version

size=$((16 * MiB))
vm=$SCRATCH/vm
gold=$SCRATCH/golden
bad=$SCRATCH/bad
child=$vm/child.avhdx
mkdir "$vm" "$gold" "$bad" "$SCRATCH/mnt"
vdisk create --block-size 1M "$vm/base.vhdx" "$size" || die "create base"
truncate -s "$size" shadow.raw
put "$vm/base.vhdx" shadow.raw 0 $((3 * MiB)) base-a
put "$vm/base.vhdx" shadow.raw $((9 * MiB + 512)) $((2 * MiB)) base-b
vdisk create --parent "$vm/base.vhdx" "$child" || die "create child"
put "$child" shadow.raw $((1 * MiB)) $((MiB + 4096)) child-a # over the parent's data
put "$child" shadow.raw $((12 * MiB + 1000)) 70000 child-b   # where the parent has none
link=$(locator_of "$child" parent_linkage)
mv "$vm/base.vhdx" "$gold/"
base_sha=$(sha256 "$gold/base.vhdx")

# ---- without --search-dir: every command names the child, the linkage and the parent ----
missing="child.avhdx: parent not found \\(parent_linkage \\$link; looked for .*base.vhdx"
printf 'data' >w.bin
expect_fail "$missing" vdisk read "$child" 0 512
expect_fail "$missing" vdisk write "$child" 0 <w.bin
expect_fail "$missing" vdisk discard "$child" 0 $((1 * MiB))
expect_fail "$missing" vdisk map "$child"
expect_fail "$missing" vdisk checksum "$child"
expect_fail "$missing" vdisk convert "$child" flat.vhdx
[ ! -e flat.vhdx ] || die "a failed convert left its output"
expect_status 1 vdisk check "$child"
grep -qE "$missing" "$ERR" || die "check: $(cat "$ERR")"
expect_fail "$missing" vdisk mount "$child" "$SCRATCH/mnt"
! is_mounted "$SCRATCH/mnt" || die "a failed mount left a mount point"
expect_fail "$missing" vdisk serve --nbd "unix:$SCRATCH/x.sock" --readonly "$child"
expect_status 0 vdisk check --search-dir "$gold" "$child" # nothing was written meanwhile
log "without --search-dir: refused"

# ---- with --search-dir: the right bytes everywhere ----
assert_eq "$(vdisk read --search-dir "$gold" "$child" 0 "$size" | sha256)" "$(sha256 shadow.raw)" \
	"vdisk read --search-dir vs shadow"
want_sum=$(vsum shadow.raw)
sum=$(vdisk checksum --search-dir "$bad" --search-dir "$gold" "$child") || die "checksum --search-dir failed"
assert_eq "${sum%% *}" "$want_sum" "vdisk checksum --search-dir vs the shadow's"
expect_status 0 vdisk map --json --search-dir "$gold" "$child"
assert_eq "$(jq '[.[] | .length] | add' "$OUT")" "$size" "map covers the disk"
assert_eq "$(jq -c '[.[] | select(.data and .depth == 1) | .start] | .[0]' "$OUT")" 0 \
	"map: the parent's data at 0 (depth 1)"
assert_eq "$(jq -c '[.[] | select(.data and .depth == 0) | .start] | .[0]' "$OUT")" "$MiB" \
	"map: the child's data at 1 MiB (depth 0)"
expect_status 0 vdisk convert -O raw --search-dir "$gold" "$child" flat.raw
assert_same_file flat.raw shadow.raw "convert --search-dir to raw vs shadow"
# writes and discards into the child; the parent stays as it was
put_w() { gen_data "$3" "$2" >w.bin; vdisk write --search-dir "$gold" "$child" "$1" <w.bin ||
	die "write --search-dir at $1"; dd if=w.bin of=shadow.raw bs=1M oflag=seek_bytes seek="$1" \
	conv=notrunc status=none; }
put_w $((2 * MiB + 7)) 5000 w1
put_w $((6 * MiB)) $((MiB)) w2
expect_status 0 vdisk discard --search-dir "$gold" "$child" $((6 * MiB)) $((MiB))
dd if=/dev/zero of=shadow.raw bs=1M oflag=seek_bytes seek=$((6 * MiB)) count=$((MiB)) \
	iflag=count_bytes conv=notrunc status=none
assert_eq "$(vdisk read --search-dir "$gold" "$child" 0 "$size" | sha256)" "$(sha256 shadow.raw)" \
	"read after write and discard with --search-dir"
assert_eq "$(sha256 "$gold/base.vhdx")" "$base_sha" "the parent file is untouched"
expect_status 0 vdisk check --search-dir "$gold" "$child"
log "read, write, discard, map, checksum, convert, check: ok"

# mount: a relative search folder works too (the serving process runs in /)
fuse_mount --search-dir golden "$child" "$SCRATCH/mnt"
assert_same_file "$SCRATCH/mnt/disk" shadow.raw "the mount's disk file vs shadow"
vdisk umount "$SCRATCH/mnt" || die "umount"
log "mount: ok"

# serve: `vdisk serve --search-dir`, then the daemon's configuration key
wait_sock()
{
	local _
	for _ in $(seq 100); do [ -S "$1" ] && return 0; kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
	die "the daemon did not listen on $1: $(cat serve.log)"
}
nbd_check()
{
	local uri="nbd+unix:///?socket=$1"
	assert_eq "$(nbdcopy "$uri" - | sha256)" "$(sha256 shadow.raw)" "$2: nbdcopy vs shadow"
	qemu-img compare -f raw -F raw "$uri" shadow.raw >/dev/null || die "$2: qemu-img compare"
}
stop_daemon()
{
	local rc=0
	kill -TERM "$1"
	wait "$1" || rc=$?
	assert_eq "$rc" 0 "daemon exit status after SIGTERM"
}
"$VDISK_BIN" serve --nbd "unix:$SCRATCH/n.sock" --readonly --search-dir "$bad" --search-dir "$gold" \
	"$child" >/dev/null 2>serve.log &
pid=$!
cleanup_fn stop_pid "$pid"
wait_sock "$SCRATCH/n.sock" "$pid"
nbd_check "$SCRATCH/n.sock" "vdisk serve --search-dir"
stop_daemon "$pid"
cat >vsp.conf <<CONF
[export child]
image = $child
nbd = unix:$SCRATCH/c.sock
readonly = yes
search-dir = $bad
search-dir = $gold
CONF
"$VSP" --config vsp.conf >/dev/null 2>serve.log &
pid=$!
cleanup_fn stop_pid "$pid"
wait_sock "$SCRATCH/c.sock" "$pid"
nbd_check "$SCRATCH/c.sock" "search-dir in the configuration file"
stop_daemon "$pid"
sed -i "/^search-dir =/d" vsp.conf
expect_fail "\\[child\\] .*$missing" "$VSP" --config vsp.conf
log "serve: ok"

# ---- a search folder with another image under the parent's name ----
vdisk create "$bad/base.vhdx" "$size" || die "create the impostor"
imp=$(guid_of "$bad/base.vhdx" data-write-guid)
mismatch="child.avhdx: parent .*bad/base.vhdx does not match: the child's parent_linkage is \\$link but the parent's DataWriteGuid is \\{$imp\\}"
expect_fail "$mismatch" vdisk read --search-dir "$bad" "$child" 0 512
expect_fail "$mismatch" vdisk write --search-dir "$bad" "$child" 0 <w.bin
expect_fail "$mismatch" vdisk discard --search-dir "$bad" "$child" 0 $((1 * MiB))
expect_fail "$mismatch" vdisk map --search-dir "$bad" "$child"
expect_fail "$mismatch" vdisk checksum --search-dir "$bad" "$child"
expect_fail "$mismatch" vdisk convert --search-dir "$bad" "$child" flat.vhdx
expect_status 1 vdisk check --search-dir "$bad" "$child"
grep -qE "$mismatch" "$ERR" || die "check with the impostor: $(cat "$ERR")"
expect_fail "$mismatch" vdisk mount --search-dir "$bad" "$child" "$SCRATCH/mnt"
! is_mounted "$SCRATCH/mnt" || die "a refused mount left a mount point"
expect_fail "$mismatch" vdisk serve --nbd "unix:$SCRATCH/x.sock" --readonly --search-dir "$bad" "$child"
# the real parent in a later folder still wins
assert_eq "$(vdisk read --search-dir "$bad" --search-dir "$gold" "$child" 0 "$size" | sha256)" \
	"$(sha256 shadow.raw)" "read with the impostor's folder first"
assert_eq "$(sha256 "$gold/base.vhdx")" "$base_sha" "the parent file after everything"
log "impostor: ok"

# ---- usage errors ----
for cmd in "read $child 0 1" "write $child 0" "discard $child 0 512" "map $child" "checksum $child" \
	"convert $child flat.vhdx" "check $child" "mount $child $SCRATCH/mnt"; do
	# shellcheck disable=SC2086 # word splitting of the command on purpose
	expect_status 64 vdisk ${cmd%% *} --search-dir "$SCRATCH/none" ${cmd#* } </dev/null
	grep -q -- "--search-dir: '$SCRATCH/none' is not a folder" "$ERR" || die "$cmd: $(cat "$ERR")"
done
expect_status 2 "$VSP" --search-dir "$SCRATCH/none" --nbd "unix:$SCRATCH/x.sock" "$child"
grep -q -- "--search-dir: not a folder" "$ERR" || die "vsp-storage --search-dir: $(cat "$ERR")"
printf '[export a]\nimage = %s\nnbd = unix:%s/a.sock\nsearch-dir = %s/none\n' "$child" "$SCRATCH" \
	"$SCRATCH" >bad.conf
expect_fail "bad.conf:4: bad value for 'search-dir'" "$VSP" --config bad.conf
log "ok"
