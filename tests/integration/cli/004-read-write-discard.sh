#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Byte-exact scripting access: `vdisk write` (stdin until EOF, any alignment, a pipe that
# delivers in small pieces), `vdisk read` (to stdout) and `vdisk discard`, on a VHDX and on a
# raw file, each checked against a raw shadow written with dd, with qemu-img compare and
# qemu-img check after the writes. Sizes take suffixes; a range past the end of the disk is
# an operational error (exit 1, one line) that changes nothing.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version

size=$((12 * MiB))
img=$SCRATCH/a.vhdx
shadow=$SCRATCH/a.raw
vdisk create --block-size 1M "$img" 12M || die "create failed"
truncate -s "$size" "$shadow"

put "$img" "$shadow" 0 1 s1
put "$img" "$shadow" 511 2 s2
put "$img" "$shadow" $((MiB - 100)) 300 s3            # across a block boundary
put "$img" "$shadow" $((3 * MiB + 7)) $((5 * MiB)) s4 # several blocks, unaligned both ends
put "$img" "$shadow" $((size - 5)) 5 s5               # the last bytes
put_zeros "$img" "$shadow" $((4 * MiB)) 4096
for r in "0 1" "0 4096" "510 4" "$((MiB - 200)) 600" "$((3 * MiB)) $((6 * MiB))" \
	"$((size - 10)) 10" "0 $size"; do
	assert_range "$img" "$shadow" $r
done
qemu_check "$img"
qemu_compare "$img" "$shadow"

# suffixes, and an empty read
assert_eq "$(vdisk read "$img" 3M 1K | sha256)" "$(read_range "$shadow" $((3 * MiB)) 1024 | sha256)" \
	"read with suffixes"
assert_eq "$(vdisk read "$img" 1K 0 | wc -c)" 0 "bytes of an empty read"

# a pipe that delivers the data in pieces: still one contiguous write
{
	printf 'first-'
	sleep 0.2
	printf 'second'
} | vdisk write "$img" 2M || die "write from a slow pipe failed"
printf 'first-second' | dd of="$shadow" bs=1M oflag=seek_bytes seek=$((2 * MiB)) conv=notrunc status=none
assert_eq "$(vdisk read "$img" 2M 12)" "first-second" "data from a slow pipe"

# empty stdin changes nothing
before=$(vdisk_raw_sha "$img")
vdisk write "$img" 5M </dev/null || die "empty write failed"
assert_eq "$(vdisk_raw_sha "$img")" "$before" "content after an empty write"

# discard: whole blocks and partial ones read as zeros afterwards
discard_both "$img" "$shadow" $((6 * MiB)) $((2 * MiB))
discard_both "$img" "$shadow" $((MiB + 4096)) 8192
assert_range "$img" "$shadow" 0 "$size"
qemu_check "$img"
qemu_compare "$img" "$shadow"

# past the end: exit 1, one line, nothing changed
before=$(vdisk_raw_sha "$img")
expect_status 1 vdisk read "$img" $((size - 1)) 2
assert_eq "$(wc -l <"$ERR")" 1 "lines of the read error"
grep -q "beyond the end" "$ERR" || die "read error: $(cat "$ERR")"
expect_status 1 vdisk write "$img" $((size - 2)) < <(printf 'abc')
expect_status 1 vdisk discard "$img" "$size" 1
expect_status 1 vdisk read "$img" 18446744073709551615 2
assert_eq "$(vdisk_raw_sha "$img")" "$before" "content after the failed commands"

# the same commands on a raw file
raw=$SCRATCH/b.raw
truncate -s 3M "$raw"
cp "$raw" "$SCRATCH/b-shadow.raw"
put "$raw" "$SCRATCH/b-shadow.raw" 1000 100000 r1
discard_both "$raw" "$SCRATCH/b-shadow.raw" 4096 8192
assert_same_file "$raw" "$SCRATCH/b-shadow.raw" "raw file after write and discard"
assert_range "$raw" "$SCRATCH/b-shadow.raw" 999 100002
log "ok"
