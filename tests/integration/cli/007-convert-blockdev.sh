#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk convert -O raw` onto a block device (a loop device over a file full of random
# bytes): the device is zeroed first, since the copy skips zeros, so it must read exactly
# as the source afterwards; a device smaller than the source is refused before any write.
# Skips (77) only when the machine has no loop devices.
. "$(dirname "$0")/../lib.sh"
requires losetup --version

img=$SCRATCH/a.vhdx
vdisk create --block-size 1M "$img" 24M || die "create failed"
gen_data a $((3 * MiB + 100)) | vdisk write "$img" $((5 * MiB + 1)) || die "write failed"
gen_data b 4096 | vdisk write "$img" $((24 * MiB - 4096)) || die "write failed"

gen_data junk $((32 * MiB)) >"$SCRATCH/dev.img"
dev=$(losetup -f --show "$SCRATCH/dev.img" 2>/dev/null) || skip "no loop device available"
cleanup_fn losetup -d "$dev"
vdisk convert -O raw "$img" "$dev" || die "convert onto $dev failed"
assert_eq "$(head -c $((24 * MiB)) "$dev" | sha256)" "$(vdisk_raw_sha "$img")" "device content"
assert_eq "$(tail -c $((8 * MiB)) "$dev" | sha256)" "$(gen_data junk $((32 * MiB)) | tail -c $((8 * MiB)) | sha256)" \
	"bytes of the device past the source"

gen_data junk $((8 * MiB)) >"$SCRATCH/small.img"
small=$(losetup -f --show "$SCRATCH/small.img") || die "second loop device"
cleanup_fn losetup -d "$small"
expect_status 1 vdisk convert -O raw "$img" "$small"
grep -q "the device has" "$ERR" || die "small device message: $(cat "$ERR")"
assert_eq "$(sha256 "$small")" "$(gen_data junk $((8 * MiB)) | sha256)" "the small device after the refusal"
log "ok"
