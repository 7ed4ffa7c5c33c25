#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Differencing chains made by vdisk read the same in vdisk and in libvhdi (vhdimount, which
# follows the parent chain): chains of depth 1 to 5 with 512- and 4096-byte sectors and
# mixed block sizes, each layer written at unaligned offsets, across block boundaries, with
# zeros written as data, with whole-block and partial discards (which must hide the
# parent's data), checked after every layer against a raw shadow (SHA-256). A 4 GiB + 4 MiB
# chain checks the sector bitmaps of two chunks across the chunk boundary, and a child
# larger than its parent reads zeros past the parent's end (libvhdi cannot read there).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires vhdimount -V
requires fusermount -V

# layer_writes IMG SHADOW SEED BS: a mix of changes placed by the block size BS
layer_writes()
{
	local img=$1 sh=$2 s=$3 bs=$4 sz half
	sz=$(file_size "$sh")
	half=$((sz / 2 / bs * bs))
	put "$img" "$sh" $((bs - 700)) 1500 "$s-a"                    # across a block boundary
	put "$img" "$sh" $((3 * bs % sz + 4096)) 8192 "$s-b"          # aligned, inside a block
	put "$img" "$sh" $((5 * MiB + 3)) 77777 "$s-c"                # unaligned both ends
	put "$img" "$sh" $((sz - 3)) 3 "$s-d"                         # the last bytes
	put_zeros "$img" "$sh" $((2 * bs % sz + 512)) 4096             # zeros as data
	discard_both "$img" "$sh" "$half" "$bs"                        # a whole block
	discard_both "$img" "$sh" $((sz / 4 + 4096)) $((3 * 4096))    # part of a block
}

for lsec in 512 4096; do
	dir=$SCRATCH/l$lsec
	mkdir "$dir"
	size=$((96 * MiB))
	sh=$dir/shadow.raw
	truncate -s "$size" "$sh"
	vdisk create --logical-sector "$lsec" --block-size 1M "$dir/base.vhdx" "$size" ||
		die "create base"
	gen_data "base$lsec" "$size" >"$dir/fill"
	# the base: data almost everywhere, so every hole a child leaves shows the parent
	vdisk write "$dir/base.vhdx" 0 <"$dir/fill" || die "write base"
	cp "$dir/fill" "$sh"
	discard_both "$dir/base.vhdx" "$sh" $((20 * MiB)) $((2 * MiB))
	assert_vhdi "$dir/base.vhdx" "$sh" "base ($lsec)"

	parent=$dir/base.vhdx
	n=0
	for bs in 2M 1M 8M 2M 32M; do
		n=$((n + 1))
		child=$dir/c$n.avhdx
		vdisk create --block-size "$bs" --parent "$parent" "$child" || die "create $child"
		assert_eq "$(vdisk_info_field "$child" .type)" differencing "type of $child"
		# a fresh child reads exactly as its parent
		assert_content "$child" "$sh" "fresh child $n ($lsec)"
		layer_writes "$child" "$sh" "l$lsec-$n" "$(numfmt --from=iec "$bs")"
		assert_content "$child" "$sh" "child $n ($lsec)"
		assert_vhdi "$child" "$sh" "child $n ($lsec, depth $((n + 1)))"
		assert_eq "$(vdisk info --chain --json "$child" | jq length)" $((n + 1)) \
			"chain length of child $n"
		parent=$child
	done
	log "sectors $lsec: 5 layers agree with libvhdi"
done

# two sector-bitmap chunks: 2^23 sectors per chunk, so 4 GiB with 512-byte sectors
dir=$SCRATCH/chunk
mkdir "$dir"
size=$((4 * GiB + 4 * MiB))
sh=$dir/shadow.raw
truncate -s "$size" "$sh"
edge=$((4 * GiB))
vdisk create --block-size 1M "$dir/base.vhdx" "$size" || die "create big base"
put "$dir/base.vhdx" "$sh" $((edge - 3 * MiB)) $((6 * MiB)) big-base
vdisk create --parent "$dir/base.vhdx" "$dir/c1.avhdx" || die "create big child"
put "$dir/c1.avhdx" "$sh" $((edge - 1000)) 3000 big-1    # a write across the chunk boundary
put "$dir/c1.avhdx" "$sh" $((edge - 2 * MiB + 512)) 1024 big-2
put "$dir/c1.avhdx" "$sh" $((edge + MiB + 17)) 5000 big-3
discard_both "$dir/c1.avhdx" "$sh" $((edge + 2 * MiB)) 4096
vdisk create --parent "$dir/c1.avhdx" "$dir/c2.avhdx" || die "create big grandchild"
put "$dir/c2.avhdx" "$sh" $((edge - 512)) 1024 big-4
for r in "$((edge - 4 * MiB)) $((8 * MiB))" "0 $MiB" "$((size - MiB)) $MiB"; do
	read -r o l <<<"$r"
	want=$(read_range "$sh" "$o" "$l" | sha256)
	assert_eq "$(vdisk_sha "$dir/c2.avhdx" "$o" "$l")" "$want" "4 GiB chain at $o (vdisk)"
	assert_eq "$(vhdi_sha "$dir/c2.avhdx" "$o" "$l")" "$want" "4 GiB chain at $o (libvhdi)"
done
log "chunk boundary: ok"

# a child larger than its parent: past the parent's end it reads zeros, then its own data
dir=$SCRATCH/grow
mkdir "$dir"
sh=$dir/shadow.raw
truncate -s $((16 * MiB)) "$sh"
vdisk create "$dir/p.vhdx" 8M || die "create small parent"
gen_data grow-p $((8 * MiB)) | vdisk write "$dir/p.vhdx" 0 || die "write parent"
gen_data grow-p $((8 * MiB)) | dd of="$sh" conv=notrunc status=none
vdisk create --parent "$dir/p.vhdx" "$dir/c.avhdx" 16M || die "create larger child"
put "$dir/c.avhdx" "$sh" $((12 * MiB)) 4096 grow-c
assert_content "$dir/c.avhdx" "$sh" "larger child"
# libvhdi fails reads past the parent's end (EIO): compare the part the parent covers
assert_eq "$(vhdi_sha "$dir/c.avhdx" 0 $((8 * MiB)))" "$(read_range "$sh" 0 $((8 * MiB)) | sha256)" \
	"larger child, first 8 MiB (libvhdi vs shadow)"
log "ok"
