#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Images are locked: while one `vdisk write` holds an image open (it is still reading its
# stdin from a FIFO), a second writer is refused with a message about the lock, and the
# image is not changed by it; once the first writer ends, its data is all there and a new
# writer succeeds.
. "$(dirname "$0")/../lib.sh"

img=$SCRATCH/l.vhdx
vdisk create --block-size 1M "$img" 16M || die "create failed"

mkfifo "$SCRATCH/fifo"
# shellcheck disable=SC2086
$VDISK_WRAPPER "$VDISK_BIN" write "$img" $((2 * MiB)) <"$SCRATCH/fifo" 2>"$SCRATCH/first.err" &
pid=$!
exec 3>"$SCRATCH/fifo"
cleanup_fn stop_pid "$pid"
gen_data w1 65536 >&3

# wait until the first writer has the image open
held=
for _ in $(seq 200); do
	for fd in /proc/"$pid"/fd/*; do
		[ "$(readlink "$fd" 2>/dev/null || :)" = "$img" ] && held=1
	done
	[ -z "$held" ] || break
	sleep 0.05
done
[ -n "$held" ] || die "the first writer never had $img open while its input was still coming"
sleep 0.2

# a second writer (and a repair, which writes too) is refused, with a clear message
expect_fail 'lock|in use|busy|another|resource temporarily' vdisk write "$img" 0 < <(printf 'second')
expect_fail 'lock|in use|busy|another|resource temporarily' vdisk discard "$img" 0 1M

# the first writer goes on and finishes
gen_data w2 65536 >&3
exec 3>&-
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$SCRATCH/first.err" >&2; die "the first writer exited $rc"; }
assert_eq "$(vdisk read "$img" $((2 * MiB)) 131072 | sha256)" \
	"$({ gen_data w1 65536; gen_data w2 65536; } | sha256)" "data of the first writer"
assert_eq "$(vdisk read "$img" 0 6 | od -An -tx1 | tr -d ' \n')" "000000000000" \
	"bytes at 0 after the refused second write"

# now a second writer may write
printf 'second' | vdisk write "$img" 0 || die "a writer after the first one ended failed"
assert_eq "$(vdisk read "$img" 0 6)" "second" "bytes at 0 after the later write"
expect_status 0 vdisk check "$img"
log "ok"
