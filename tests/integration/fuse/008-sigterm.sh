#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# SIGTERM (or SIGINT) to the serving process ends a mount cleanly: the mount goes away, the
# image is closed with its metadata committed (log GUID cleared, qemu-img check and vdisk
# check clean) and data written without any fsync is all there. Both for a foreground mount
# (-f, the process we started) and a background one (its pid from user.vdisk.pid).
. "$(dirname "$0")/lib.sh"
requires qemu-img --version
requires python3 --version

img=$SCRATCH/t.vhdx
mnt=$SCRATCH/mnt
vdisk create --block-size 1M "$img" 64M || die "create failed"
truncate -s 64M "$SCRATCH/shadow"
mkdir -p "$mnt"
cleanup_fn quiet_umount "$mnt"

# write_some OFFSET SEED: 3 MiB + 5 bytes at OFFSET through the mount (no fsync), and the shadow
write_some()
{
	gen_data "$2" $((3 * MiB + 5)) >"$SCRATCH/w"
	dd if="$SCRATCH/w" of="$mnt/disk" bs=1M oflag=seek_bytes seek="$1" conv=notrunc status=none ||
		die "write through the mount failed"
	dd if="$SCRATCH/w" of="$SCRATCH/shadow" bs=1M oflag=seek_bytes seek="$1" conv=notrunc status=none
}

# wait_gone PID: the process exits within 30 s
wait_gone()
{
	for _ in $(seq 300); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	die "process $1 still running 30 s after SIGTERM"
}

assert_clean()
{
	is_mounted "$mnt" && die "$mnt still mounted after $1"
	assert_eq "$(vdisk_info_field "$img" '."log-guid"')" "00000000-0000-0000-0000-000000000000" \
		"log GUID after $1"
	qemu_check "$img"
	expect_status 0 vdisk check "$img"
	assert_eq "$(vdisk_raw_sha "$img")" "$(sha256 "$SCRATCH/shadow")" "content after $1"
}

# foreground
# shellcheck disable=SC2086
$VDISK_WRAPPER "$VDISK_BIN" mount --rw -f "$img" "$mnt" 2>"$SCRATCH/fg.err" &
pid=$!
cleanup_fn stop_pid "$pid"
for _ in $(seq 100); do
	[ -e "$mnt/disk" ] && break
	sleep 0.1
done
write_some $((5 * MiB + 100)) fg
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
assert_eq "$rc" 0 "exit status of the foreground mount after SIGTERM ($(cat "$SCRATCH/fg.err"))"
assert_clean "SIGTERM (foreground)"

# background: the pid comes from the mount's root
fuse_mount --rw "$img" "$mnt"
bpid=$(python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.vdisk.pid").decode())' "$mnt")
[ "$bpid" -gt 1 ] || die "no pid from user.vdisk.pid: '$bpid'"
grep -q vdisk "/proc/$bpid/cmdline" || die "pid $bpid is not a vdisk process"
assert_eq "$(python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.vdisk.image").decode())' "$mnt")" \
	"$img" "user.vdisk.image"
write_some $((40 * MiB + 3)) bg
kill -TERM "$bpid"
wait_gone "$bpid"
assert_clean "SIGTERM (background)"
log "ok"
