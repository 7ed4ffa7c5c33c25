#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk convert` of a differencing child flattens its chain: VHDX (dynamic and fixed) and
# raw outputs hold exactly the chain's content (shadow, qemu-img compare, libvhdi), are
# base images (no parent), pass qemu-img check, and keep zeros out (a discard in the child
# that hides parent data is not copied as data). A 4096-byte-sector chain keeps its sector
# size. `vdisk checksum` of the child and of every output agree.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../lib.sh"
. "$HERE/helpers.bash"
requires qemu-img --version
requires vhdiinfo -V

size=$((48 * MiB))
d=$SCRATCH/vm
mkdir "$d"
sh=$SCRATCH/shadow.raw
truncate -s "$size" "$sh"
vdisk create --block-size 1M "$d/base.vhdx" "$size" || die "create base"
put "$d/base.vhdx" "$sh" 0 $((16 * MiB)) b1
put "$d/base.vhdx" "$sh" $((40 * MiB)) $((8 * MiB)) b2
vdisk create --parent "$d/base.vhdx" "$d/c1.avhdx" || die "create c1"
put "$d/c1.avhdx" "$sh" $((3 * MiB + 3)) 9999 c1
discard_both "$d/c1.avhdx" "$sh" $((8 * MiB)) $((8 * MiB))  # hides 8 MiB of base data
vdisk create --block-size 8M --parent "$d/c1.avhdx" "$d/c2.avhdx" || die "create c2"
put "$d/c2.avhdx" "$sh" $((24 * MiB)) $((MiB)) c2
put "$d/c2.avhdx" "$sh" $((size - 512)) 512 c3
discard_both "$d/c2.avhdx" "$sh" $((44 * MiB)) 4096
assert_content "$d/c2.avhdx" "$sh" "the chain"
sum=$(vdisk checksum "$d/c2.avhdx" | cut -d' ' -f1)

for spec in "vhdx dynamic" "vhdx fixed" "raw -"; do
	read -r fmt type <<<"$spec"
	out=$SCRATCH/flat-$fmt-$type.$fmt
	opts=(-O "$fmt")
	[ "$type" = - ] || opts+=(--type "$type" --block-size 2M)
	vdisk convert "${opts[@]}" "$d/c2.avhdx" "$out" || die "convert to $fmt $type"
	assert_eq "$(vdisk checksum "$out" | cut -d' ' -f1)" "$sum" "checksum of the $fmt $type output"
	if [ "$fmt" = raw ]; then
		assert_same_file "$out" "$sh" "raw output"
		continue
	fi
	assert_eq "$(vdisk_info_field "$out" .type)" "$type" "type of the output"
	assert_eq "$(vdisk_info_field "$out" '."has-parent" | tostring')" false "has-parent of the output"
	qemu_check "$out"
	qemu_compare "$out" "$sh"
	assert_vhdi "$out" "$sh" "$type output"
	vhdiinfo "$out" | grep -q 'Disk type.*Differential' && die "vhdiinfo says the output is differential"
done
# zeros are not data: the dynamic output holds only blocks with non-zero bytes (2 MiB blocks:
# base 0-16M minus the discarded 8-16M -> 4 blocks, c2 24-25M -> 1, base 40-48M -> 4)
assert_eq "$(vdisk_info_field "$SCRATCH/flat-vhdx-dynamic.vhdx" '."allocated-size"')" $((9 * 2 * MiB)) \
	"allocated bytes of the flattened dynamic image"

# 4096-byte sectors: the flattened image keeps them (qemu cannot open those; libvhdi can)
sh4=$SCRATCH/shadow4.raw
truncate -s $((16 * MiB)) "$sh4"
vdisk create --logical-sector 4096 "$d/b4.vhdx" 16M || die "create 4k base"
put "$d/b4.vhdx" "$sh4" 0 $((4 * MiB)) q1
vdisk create --parent "$d/b4.vhdx" "$d/c4.avhdx" || die "create 4k child"
put "$d/c4.avhdx" "$sh4" 4097 5000 q2
vdisk convert "$d/c4.avhdx" "$SCRATCH/flat4.vhdx" || die "convert the 4k chain"
assert_eq "$(vdisk_info_field "$SCRATCH/flat4.vhdx" '."logical-sector-size"')" 4096 "sector size of the output"
assert_content "$SCRATCH/flat4.vhdx" "$sh4" "flattened 4k chain"
assert_vhdi "$SCRATCH/flat4.vhdx" "$sh4" "flattened 4k chain"
log "ok"
