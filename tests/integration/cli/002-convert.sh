#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk convert` against the peers: raw -> VHDX (dynamic and fixed, several block sizes),
# VHDX -> raw, VHDX -> VHDX, a differencing chain flattened, a qemu-made VHDX read. Every
# output must read as the source (qemu-img compare, cmp, vdisk checksum against xxhsum -H2),
# pass qemu-img check, and stay sparse: data written as zeros, holes and zero extents must
# not be allocated in the output. A raw size that is not a whole sector is rounded up.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires xxhsum --version

size=$((40 * MiB))
src=$SCRATCH/src.raw
truncate -s "$size" "$src"
# data at unaligned places, a 3 MiB stretch of explicit zeros (not a hole), data at the end
gen_data a 1000000 | dd of="$src" bs=1M oflag=seek_bytes seek=12345 conv=notrunc status=none
dd if=/dev/zero of="$src" bs=1M seek=8 count=3 conv=notrunc status=none
gen_data b $((5 * MiB)) | dd of="$src" bs=1M seek=20 conv=notrunc status=none
gen_data c 4096 | dd of="$src" bs=4096 seek=$((size / 4096 - 1)) conv=notrunc status=none
want=$(xxhsum -H2 "$src" | cut -d' ' -f1)

# vdisk_sum FILE: the hash part of `vdisk checksum FILE`
vdisk_sum()
{
	local l
	l=$(vdisk checksum "$1") || die "vdisk checksum $1 failed"
	echo "${l%% *}"
}

# data_bytes IMG: bytes in data extents according to `vdisk map --json`
data_bytes()
{
	vdisk map --json "$1" | jq '[.[] | select(.data) | .length] | add // 0'
}

assert_eq "$(vdisk_sum "$src")" "$want" "vdisk checksum vs xxhsum -H2 of the source"

for spec in "dynamic 1M" "dynamic 32M" "fixed 2M" "dynamic default"; do
	read -r type bs <<<"$spec"
	out=$SCRATCH/out-$type-$bs.vhdx
	args=(--type "$type")
	[ "$bs" = default ] || args+=(--block-size "$bs")
	log "raw -> vhdx ${args[*]}"
	vdisk convert -O vhdx "${args[@]}" "$src" "$out" || die "convert ${args[*]} failed"
	qemu_check "$out"
	qemu_compare "$out" "$src"
	assert_eq "$(vdisk_sum "$out")" "$want" "checksum of $out"
	assert_eq "$(vdisk_info_field "$out" .type)" "$type" "type of $out"
	if [ "$bs" != default ]; then
		assert_eq "$(vdisk_info_field "$out" '."cluster-size"')" \
			"$(numfmt --from=iec "$bs")" "block size of $out"
	fi
done

# sparseness: with 1 MiB blocks, only blocks holding non-zero data are allocated
out=$SCRATCH/out-dynamic-1M.vhdx
# non-zero MiB blocks: [0,1M) (a: 12345..1012345), [20M,25M) (b), the last one (c)
assert_eq "$(vdisk_info_field "$out" '."allocated-size"')" $((7 * MiB)) "allocated bytes of $out"
assert_eq "$(data_bytes "$out")" $((7 * MiB)) "data bytes in the map of $out"

# VHDX -> raw: identical bytes, and the explicit zeros became a hole
raw=$SCRATCH/back.raw
vdisk convert -O raw "$out" "$raw" || die "convert to raw failed"
assert_same_file "$raw" "$src" "vhdx -> raw"
[ "$(allocated_bytes "$raw")" -le $((7 * MiB)) ] ||
	die "raw output holds $(allocated_bytes "$raw") bytes, expected at most 7 MiB"

# VHDX -> VHDX keeps the logical sector size; a raw size of 1000 sectors + 100 bytes rounds up
vdisk create --logical-sector 4096 --block-size 1M "$SCRATCH/s4k.vhdx" 8M || die "create failed"
gen_data d 8192 | vdisk write "$SCRATCH/s4k.vhdx" 40960 || die "write failed"
vdisk convert "$SCRATCH/s4k.vhdx" "$SCRATCH/s4k-copy.vhdx" || die "convert vhdx -> vhdx failed"
assert_eq "$(vdisk_info_field "$SCRATCH/s4k-copy.vhdx" '."logical-sector-size"')" 4096 "sector size"
assert_eq "$(vdisk_sum "$SCRATCH/s4k-copy.vhdx")" "$(vdisk_sum "$SCRATCH/s4k.vhdx")" "4K copy"
gen_data e $((1000 * 512 + 100)) >"$SCRATCH/odd.raw"
vdisk convert "$SCRATCH/odd.raw" "$SCRATCH/odd.vhdx" || die "convert of an odd-sized raw failed"
assert_eq "$(vdisk_info_field "$SCRATCH/odd.vhdx" '."virtual-size"')" $((1001 * 512)) "rounded size"
assert_eq "$(vdisk read "$SCRATCH/odd.vhdx" 0 $((1000 * 512 + 100)) | sha256)" \
	"$(sha256 "$SCRATCH/odd.raw")" "content of the odd-sized conversion"
assert_eq "$(vdisk read "$SCRATCH/odd.vhdx" $((1000 * 512 + 100)) 412 | tr -d '\0' | wc -c)" 0 \
	"padding of the odd-sized conversion"

# a differencing chain is flattened
vdisk create --block-size 1M "$SCRATCH/base.vhdx" 16M || die "create base failed"
gen_data f $((3 * MiB)) | vdisk write "$SCRATCH/base.vhdx" $((MiB + 7)) || die "write base failed"
# a child has its parent's sector sizes and at least its size: others are refused
expect_status 1 vdisk create --parent "$SCRATCH/base.vhdx" "$SCRATCH/child.avhdx" 8M
grep -q "smaller than the parent" "$ERR" || die "create --parent with a smaller size: $(cat "$ERR")"
expect_status 1 vdisk create --parent "$SCRATCH/base.vhdx" --logical-sector 4096 "$SCRATCH/child.avhdx"
[ ! -e "$SCRATCH/child.avhdx" ] || die "a refused create left a file"
vdisk create --parent "$SCRATCH/base.vhdx" "$SCRATCH/child.avhdx" 16M || die "create child failed"
gen_data g 1536 | vdisk write "$SCRATCH/child.avhdx" $((2 * MiB - 512)) || die "write child failed"
vdisk discard "$SCRATCH/child.avhdx" $((14 * MiB)) $((2 * MiB)) || die "discard child failed"
vdisk convert -O raw "$SCRATCH/child.avhdx" "$SCRATCH/flat.raw" || die "flatten failed"
assert_eq "$(sha256 "$SCRATCH/flat.raw")" "$(vdisk_raw_sha "$SCRATCH/child.avhdx")" "flattened chain"
assert_eq "$(vdisk_sum "$SCRATCH/child.avhdx")" "$(xxhsum -H2 "$SCRATCH/flat.raw" | cut -d' ' -f1)" \
	"checksum of the chain vs xxhsum of its flattening"
vdisk convert "$SCRATCH/child.avhdx" "$SCRATCH/flat.vhdx" || die "flatten to vhdx failed"
qemu_compare "$SCRATCH/flat.vhdx" "$SCRATCH/flat.raw"

# the writer on the other I/O engine
VDISK_IO_ENGINE=libaio vdisk convert --block-size 1M "$src" "$SCRATCH/aio.vhdx" ||
	die "convert with libaio failed"
qemu_compare "$SCRATCH/aio.vhdx" "$src"
VDISK_IO_ENGINE=libaio vdisk convert -O raw "$SCRATCH/aio.vhdx" "$SCRATCH/aio.raw" ||
	die "convert to raw with libaio failed"
assert_same_file "$SCRATCH/aio.raw" "$src" "vhdx -> raw with libaio"

# a qemu-made VHDX as the source
qemu-img convert -f raw -O vhdx "$src" "$SCRATCH/q.vhdx" || die "qemu-img convert failed"
vdisk convert -p -O raw "$SCRATCH/q.vhdx" "$SCRATCH/q.raw" 2>"$SCRATCH/progress" ||
	die "convert of the qemu-made image failed"
assert_same_file "$SCRATCH/q.raw" "$src" "qemu-made vhdx -> raw"
grep -q '100.0%' "$SCRATCH/progress" || die "-p drew no progress bar: $(head -c 200 "$SCRATCH/progress")"

# DST is replaced; SRC as DST is refused before anything is touched
vdisk convert -O raw "$out" "$raw" || die "convert over an existing file failed"
assert_same_file "$raw" "$src" "converted over an existing file"
expect_status 64 vdisk convert -O raw "$raw" "$raw"
assert_same_file "$raw" "$src" "source after convert SRC SRC"
expect_fail "missing|No such file" vdisk convert "$SCRATCH/none.raw" "$SCRATCH/none.vhdx"
[ ! -e "$SCRATCH/none.vhdx" ] || die "a failed convert left its output"
log "ok"
