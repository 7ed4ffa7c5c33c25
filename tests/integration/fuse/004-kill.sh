#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Crash safety of a writable mount: the serving process is killed (SIGKILL) while a writer
# is in the middle of a large write. Afterwards the mount point is recoverable (vdisk umount
# on the dead mount); the image's log is dirty (check says so, and nothing else is corrupt);
# a writable open replays it, after which qemu-img check is clean and `vdisk check` finds no
# corruption (space allocated by the interrupted write may be leaked, and repair gives it
# back); data fsync'ed before the kill reads back intact; the image mounts and writes again.
. "$(dirname "$0")/lib.sh"
requires qemu-img --version

img=$SCRATCH/k.vhdx
mnt=$SCRATCH/mnt
vdisk create --block-size 1M "$img" 512M || die "create failed"
mkdir -p "$mnt"
cleanup_fn quiet_umount "$mnt"
# shellcheck disable=SC2086
$VDISK_WRAPPER "$VDISK_BIN" mount --rw -f "$img" "$mnt" 2>"$SCRATCH/mount.err" &
pid=$!
cleanup_fn stop_pid "$pid"
for _ in $(seq 100); do
	[ -e "$mnt/disk" ] && break
	sleep 0.1
done
[ -e "$mnt/disk" ] || die "the mount did not come up: $(cat "$SCRATCH/mount.err")"

# durable: written and fsync'ed through the mount
gen_data durable $((6 * MiB + 4096)) >"$SCRATCH/durable"
dd if="$SCRATCH/durable" of="$mnt/disk" bs=1M seek=10 conv=notrunc,fsync status=none ||
	die "durable write failed"

# in flight: a long write, killed in the middle
gen_data inflight $((300 * MiB)) >"$SCRATCH/inflight"
dd if="$SCRATCH/inflight" of="$mnt/disk" bs=64K seek=$((100 * 16)) conv=notrunc \
	2>"$SCRATCH/dd.err" &
wpid=$!
for _ in $(seq 200); do
	# kill once the writer is well into it
	[ "$(stat -c %s "$img")" -ge $((120 * MiB)) ] && break
	sleep 0.05
done
{ kill -9 "$pid" && wait "$pid"; } 2>/dev/null || :
rc=0
wait "$wpid" || rc=$?
[ "$rc" -ne 0 ] || die "the writer finished before the kill: make the write longer"
grep -qiE 'not connected|abort|input/output' "$SCRATCH/dd.err" ||
	die "the writer failed oddly: $(cat "$SCRATCH/dd.err")"
log "killed mount process $pid at image file size $(stat -c %s "$img")"

# the mount point is dead but recoverable
is_mounted "$mnt" || die "the dead mount vanished by itself"
expect_fail 'not connected' ls "$mnt"
vdisk umount "$mnt" || die "vdisk umount of the dead mount failed"
is_mounted "$mnt" && die "$mnt still mounted after vdisk umount"
ls "$mnt" >/dev/null || die "$mnt not usable after recovery"

# the image: the log is dirty (a commit happened in this session); check replays it in
# memory and reports that as its one corruption, the rest is at most leaked space
assert_ne "$(vdisk_info_field "$img" '."log-guid"')" "00000000-0000-0000-0000-000000000000" \
	"log GUID after the kill (expected a dirty log)"
rc=0
vdisk check --json "$img" >"$OUT" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || { cat "$OUT" >&2; die "vdisk check after the kill: exit $rc, expected 2 (dirty log)"; }
assert_eq "$(jq '."log-was-dirty"' "$OUT")" true "log state seen by check"
assert_eq "$(jq '[.findings[] | select(.severity == "corruption")] | length' "$OUT")" 1 \
	"corruptions after the kill"
jq -r '.findings[] | select(.severity == "corruption") | .message' "$OUT" | grep -q 'log is dirty' ||
	die "unexpected corruption: $(cat "$OUT")"
cmp "$SCRATCH/durable" <(vdisk read "$img" $((10 * MiB)) "$(file_size "$SCRATCH/durable")") ||
	die "fsync'ed data lost by the kill"

# a writable open replays the log for good; then the peers and our check are clean
fuse_mount --rw "$img" "$mnt"
cmp "$SCRATCH/durable" <(read_range "$mnt/disk" $((10 * MiB)) "$(file_size "$SCRATCH/durable")") ||
	die "fsync'ed data differs through a new mount"
gen_data after $((2 * MiB)) >"$SCRATCH/after"
dd if="$SCRATCH/after" of="$mnt/disk" bs=1M seek=50 conv=notrunc status=none || die "write after recovery failed"
vdisk umount "$mnt" || die "umount failed"
assert_eq "$(vdisk_info_field "$img" '."log-guid"')" "00000000-0000-0000-0000-000000000000" \
	"log GUID after a clean unmount"
qemu_check "$img"
rc=0
vdisk check --json "$img" >"$OUT" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || { cat "$OUT" >&2; die "vdisk check after replay: exit $rc"; }
assert_eq "$(jq .corruptions "$OUT")" 0 "corruptions after replay"
log "after replay: $(jq .leaks "$OUT") leaked MiB (blocks of the interrupted write)"
rc=0
vdisk check --repair "$img" >"$OUT" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || { cat "$OUT" >&2; die "vdisk check --repair: exit $rc"; }
expect_status 0 vdisk check "$img"
qemu_check "$img"
cmp "$SCRATCH/after" <(vdisk read "$img" $((50 * MiB)) $((2 * MiB))) || die "data written after recovery differs"
cmp "$SCRATCH/durable" <(vdisk read "$img" $((10 * MiB)) "$(file_size "$SCRATCH/durable")") ||
	die "fsync'ed data differs at the end"
log "ok"
