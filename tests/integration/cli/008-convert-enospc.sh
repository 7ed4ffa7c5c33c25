#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk convert` into a file system that fills up (a 6 MiB tmpfs): both output formats
# fail with exit 1 and one line naming the real error (No space left on device), promptly
# (the reader thread and the writes in flight are wound down, nothing hangs).
# Skips (77) only when the machine cannot mount a tmpfs.
. "$(dirname "$0")/../lib.sh"

mnt=$SCRATCH/small
mkdir -p "$mnt"
mount -t tmpfs -o size=6M tmpfs "$mnt" 2>/dev/null || skip "cannot mount a tmpfs here"
cleanup_fn umount "$mnt"

gen_data a $((30 * MiB)) >"$SCRATCH/src.raw"
for fmt in raw vhdx; do
	expect_status 1 timeout 120 "$VDISK_BIN" convert -O "$fmt" "$SCRATCH/src.raw" "$mnt/out.$fmt"
	assert_eq "$(wc -l <"$ERR")" 1 "lines of the -O $fmt error"
	grep -q "^vdisk: convert: $mnt/out.$fmt: .*No space left on device" "$ERR" ||
		die "-O $fmt: $(cat "$ERR")"
	rm -f "$mnt/out.$fmt"
done
log "ok"
