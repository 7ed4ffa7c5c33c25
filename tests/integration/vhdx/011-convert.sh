#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk convert`: raw -> vhdx -> raw gives back the identical file (dynamic and fixed,
# several block sizes, 4096-byte sectors kept); the VHDX files pass qemu-img check and
# compare; vhdx -> vhdx changes type and block size; -O vhdx of a qemu-made image passes
# qemu-img check and reads the same; zeros are skipped (a dynamic target holds only blocks
# with data); -p prints progress on stderr and nothing on stdout; DST is replaced.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version

size=$((40 * MiB + 4096))
raw=$SCRATCH/src.raw
truncate -s "$size" "$raw"
gen_data v1 $((2 * MiB)) | dd of="$raw" bs=1M seek=0 conv=notrunc status=none
gen_data v2 700000 | dd of="$raw" bs=1 seek=$((13 * MiB + 3)) conv=notrunc status=none
gen_data v3 $((6 * MiB)) | dd of="$raw" bs=1M seek=30 conv=notrunc status=none
gen_data v4 4096 | dd of="$raw" bs=4096 seek=$((size / 4096 - 1)) conv=notrunc status=none
want=$(sha256 "$raw")
data_ranges=("0 $((2 * MiB))" "$((13 * MiB + 3)) 700000" "$((30 * MiB)) $((6 * MiB))" "$((size - 4096)) 4096")

# blocks_with_data BS: how many blocks of BS bytes hold some of the data above
blocks_with_data()
{
	local r o l b
	declare -A seen=()
	for r in "${data_ranges[@]}"; do
		read -r o l <<<"$r"
		for ((b = o / $1; b <= (o + l - 1) / $1; b++)); do
			seen[$b]=1
		done
	done
	echo "${#seen[@]}"
}

n=0
for spec in "32M" "1M --type dynamic --block-size 1M" "256M --type dynamic --block-size 256M" \
	"2M --type fixed --block-size 2M" "8M --type fixed --block-size 8M"; do
	n=$((n + 1))
	read -r bs opts <<<"$spec"
	bs=$(numfmt --from=iec "$bs")
	v=$SCRATCH/c$n.vhdx
	back=$SCRATCH/c$n.raw
	log "raw -> vhdx $opts -> raw"
	# shellcheck disable=SC2086
	vdisk convert -O vhdx $opts "$raw" "$v" || die "convert $opts raw -> vhdx failed"
	qemu_check "$v"
	qemu_compare "$v" "$raw"
	assert_eq "$(vdisk_info_field "$v" '."virtual-size"')" "$size" "virtual size after convert $opts"
	vdisk convert -O raw "$v" "$back" || die "convert $opts vhdx -> raw failed"
	assert_same_file "$back" "$raw" "raw -> vhdx $opts -> raw"
	# zeros are skipped: a dynamic target holds only the blocks with data, a fixed one all
	nb=$(((size + bs - 1) / bs))
	[[ "$opts" == *fixed* ]] || nb=$(blocks_with_data "$bs")
	assert_eq "$(vdisk_info_field "$v" '."allocated-size"')" $((nb * bs)) "allocated size after convert $opts"
	assert_eq "$(vdisk_info_field "$v" '."cluster-size"')" "$bs" "block size after convert $opts"
	[ "$(file_size "$v")" -le $((nb * bs + 8 * MiB)) ] ||
		die "convert $opts: a $(file_size "$v") byte file for $nb blocks of $bs"
	rm -f "$back"
done

# vhdx -> vhdx, other type and block size
vdisk convert -O vhdx --type fixed --block-size 4M "$SCRATCH/c2.vhdx" "$SCRATCH/x.vhdx" ||
	die "convert vhdx -> vhdx failed"
qemu_check "$SCRATCH/x.vhdx"
qemu_compare "$SCRATCH/x.vhdx" "$raw"
assert_eq "$(qemu_info_field "$SCRATCH/x.vhdx" '."cluster-size"')" $((4 * MiB)) "block size of x.vhdx"
fp=$(meta_item_offset "$SCRATCH/x.vhdx" "$GUID_META_FILE_PARAMETERS")
assert_eq "$(le_uint "$SCRATCH/x.vhdx" $((fp + 4)) 4)" 1 "x.vhdx is fixed (LeaveBlockAllocated)"

# 4096-byte logical sectors are kept through a vhdx -> vhdx convert
vdisk create --logical-sector 4096 "$SCRATCH/s4k.vhdx" "$size" || die "create 4k failed"
vdisk write "$SCRATCH/s4k.vhdx" 0 <"$raw" || die "write 4k failed"
vdisk convert -O vhdx "$SCRATCH/s4k.vhdx" "$SCRATCH/s4k-b.vhdx" || die "convert 4k failed"
assert_eq "$(meta_u32 "$SCRATCH/s4k-b.vhdx" "$GUID_META_LOGICAL_SECTOR")" 4096 "logical sector after convert"
assert_eq "$(vdisk_raw_sha "$SCRATCH/s4k-b.vhdx")" "$want" "content of the converted 4k image"

# a qemu-made image converted by vdisk to VHDX passes qemu-img check and reads the same
qemu-img convert -f raw -O vhdx -o subformat=dynamic,block_size=8M "$raw" "$SCRATCH/q.vhdx" ||
	die "qemu-img convert failed"
vdisk convert -O vhdx "$SCRATCH/q.vhdx" "$SCRATCH/q2.vhdx" || die "vdisk convert of the qemu image failed"
qemu_check "$SCRATCH/q2.vhdx"
qemu_compare "$SCRATCH/q2.vhdx" "$raw"
assert_eq "$(vdisk_raw_sha "$SCRATCH/q2.vhdx")" "$want" "content of q2.vhdx"
qemu-img convert -f vhdx -O vhdx -o subformat=fixed "$SCRATCH/c1.vhdx" "$SCRATCH/qf.vhdx" ||
	die "qemu-img convert of a vdisk image failed"
vdisk convert -O raw "$SCRATCH/qf.vhdx" "$SCRATCH/qf.raw" || die "vdisk convert qf.vhdx failed"
assert_same_file "$SCRATCH/qf.raw" "$raw" "qemu-made fixed image as converted by vdisk"

# -p: progress on stderr, stdout stays clean, same result
vdisk convert -p -O vhdx "$raw" "$SCRATCH/p.vhdx" >"$OUT" 2>"$ERR" || die "convert -p failed"
[ ! -s "$OUT" ] || die "convert -p printed on stdout: $(head -c 200 "$OUT")"
[ -s "$ERR" ] || die "convert -p printed no progress on stderr"
qemu_compare "$SCRATCH/p.vhdx" "$raw"

# an existing DST is replaced (vdisk(1), as qemu-img convert does), SRC = DST is refused,
# a missing source is an error
vdisk convert -O vhdx --block-size 1M "$SCRATCH/qf.vhdx" "$SCRATCH/p.vhdx" || die "convert over p.vhdx failed"
assert_eq "$(vdisk_info_field "$SCRATCH/p.vhdx" '."cluster-size"')" "$MiB" "block size of the replaced p.vhdx"
qemu_compare "$SCRATCH/p.vhdx" "$raw"
cp "$SCRATCH/p.vhdx" "$SCRATCH/p.ref"
expect_fail 'same' vdisk convert -O vhdx "$SCRATCH/p.vhdx" "$SCRATCH/p.vhdx"
assert_same_file "$SCRATCH/p.vhdx" "$SCRATCH/p.ref" "p.vhdx after convert onto itself"
expect_fail 'no such|not found|cannot|open' vdisk convert -O vhdx "$SCRATCH/none.raw" "$SCRATCH/n.vhdx"
[ ! -e "$SCRATCH/n.vhdx" ] || die "a failed convert left its target behind"
log "ok"
