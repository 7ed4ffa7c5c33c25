#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Data written with `vdisk write` (aligned and unaligned, inside one block, across block
# boundaries, overwriting, zeros, the last byte of the disk) reads back the same through
# `vdisk read`, through qemu-img (compare against a raw shadow that got the same writes,
# check finds the image clean) and through libvhdi's vhdimount (FUSE); for dynamic and fixed
# images and several block sizes.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires vhdimount -V
requires fusermount -V
requires qemu-io --version

run_case()
{
	local name=$1 size=$2 bs=$3
	shift 3
	local img=$SCRATCH/$name.vhdx shadow=$SCRATCH/$name.raw
	log "$name: vdisk create $* --block-size $bs $size"
	vdisk create "$@" --block-size "$bs" "$img" "$size" || die "$name: create failed"
	truncate -s "$size" "$shadow"

	put "$img" "$shadow" 0 4096 "$name-a"                          # first sector(s)
	put "$img" "$shadow" 1000 3000 "$name-b"                       # unaligned, inside
	put "$img" "$shadow" $((bs - 700)) 1900 "$name-c"              # crosses block 0/1
	put "$img" "$shadow" $((3 * bs + 12345)) $((2 * bs)) "$name-d" # spans three blocks
	put "$img" "$shadow" $((3 * bs + 20000)) 5000 "$name-e"        # overwrite in place
	put_zeros "$img" "$shadow" $((3 * bs + 100)) 70000              # zeros as data
	put "$img" "$shadow" $((size - 513)) 513 "$name-f"             # up to the last byte
	put "$img" "$shadow" $((size / 2)) 1 "$name-g"                 # one byte

	# reads of single ranges and of the whole disk
	assert_range "$img" "$shadow" 0 8192
	assert_range "$img" "$shadow" $((bs - 1000)) 3000
	assert_range "$img" "$shadow" $((3 * bs)) $((2 * bs + 65536))
	assert_range "$img" "$shadow" $((size - 4096)) 4096
	assert_range "$img" "$shadow" 0 "$size"
	expect_fail 'range|beyond|size|invalid|offset' vdisk read "$img" $((size - 1)) 2

	# the peers
	qemu_check "$img"
	qemu_compare "$img" "$shadow"
	fuse_mount_vhdi "$img" "$SCRATCH/mnt-$name"
	assert_same_file "$SCRATCH/mnt-$name/vhdi1" "$shadow" "$name as read by vhdimount"
	fuse_umount "$SCRATCH/mnt-$name"
	rm -f "$img" "$shadow"
}

# Beyond the first chunk: with 512-byte sectors a sector-bitmap entry follows every 4 GiB of
# payload entries in the BAT, so blocks past 4 GiB test that interleave. Constant patterns
# are written by vdisk and verified by qemu-io (read -P) and vhdimount range by range.
big_case()
{
	local img=$SCRATCH/big.vhdx size=$((9 * GiB)) bs=$((32 * MiB)) spec off len pat
	log "big: 9 GiB dynamic, writes around 4 and 8 GiB"
	vdisk create --block-size "$bs" "$img" "$size" || die "big: create failed"
	local specs=("$((4 * GiB - 4096)) 8192 0x3c" "$((4 * GiB + bs)) 65536 0x4d"
		"$((8 * GiB + 512)) $((2 * MiB)) 0x5e" "$((size - 4096)) 4096 0x6f" "0 4096 0x71")
	for spec in "${specs[@]}"; do
		read -r off len pat <<<"$spec"
		{ head -c "$len" /dev/zero || :; } | tr '\0' "\\$(printf '%03o' "$pat")" |
			vdisk write "$img" "$off" || die "big: write at $off failed"
	done
	qemu_check "$img"
	fuse_mount_vhdi "$img" "$SCRATCH/mnt-big"
	for spec in "${specs[@]}" "$((4 * GiB + 4096)) 65536 0" "$((5 * GiB)) 4096 0"; do
		read -r off len pat <<<"$spec"
		qemu-io -f vhdx -r -c "read -P $pat $off $len" "$img" >"$OUT" 2>&1 ||
			{ cat "$OUT" >&2; die "big: qemu-io does not read $pat at $off+$len"; }
		assert_eq "$(vdisk read "$img" "$off" "$len" | od -An -v -tx1 | tr -s ' \n' '\n\n' | sort -u | grep .)" \
			"$(printf '%02x' "$pat")" "big: bytes vdisk reads at $off+$len"
		assert_eq "$(read_range "$SCRATCH/mnt-big/vhdi1" "$off" "$len" | od -An -v -tx1 | tr -s ' \n' '\n\n' | sort -u | grep .)" \
			"$(printf '%02x' "$pat")" "big: bytes vhdimount reads at $off+$len"
	done
	fuse_umount "$SCRATCH/mnt-big"
	rm -f "$img"
}

big_case
run_case dyn1m $((40 * MiB)) $((1 * MiB)) --type dynamic
run_case dyn32m $((200 * MiB)) $((32 * MiB)) --type dynamic --physical-sector 512
run_case fix2m $((24 * MiB)) $((2 * MiB)) --type fixed
run_case fix1m $((12 * MiB + 512)) $((1 * MiB)) --type fixed
log "ok"
