#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Identities are resolved when used, not when mapped: a disk and a partition mapped while on
# one loop number, detached and re-attached on other numbers (as a reboot renames /dev/sdX),
# still resolve to the right devices in `vdisk lun show` and are flagged as mapped by
# `vdisk lun list`, with the map file unchanged; a detached disk shows as missing; a byte
# copy of a disk (same PTUUID on two devices) is ambiguous and cannot be mapped.
. "$(dirname "$0")/lib.sh"

make_file a.img 48
make_file b.img 32
new_loop A a.img
new_loop B b.img --sector-size 4096
gpt "$A" 2 16
mkfs.ext4 -q -b 4096 "$B"
PTUUID_A=$(blkid_value "$A" PTUUID)
PARTUUID_A2=$(blkid_value "${A}p2" PART_ENTRY_UUID)
UUID_B=$(blkid_value "$B" UUID)

expect_status 0 vdisk lun map vmr 0:0:0 "$B"
expect_status 0 vdisk lun map --readonly vmr 0:0:1 "${A}p2"
cp "$VDISK_LUN_MAP" map.before
assert_eq "$(map_line vmr 0:0:0)" "vmr 0:0:0 rw UUID=$UUID_B" "map line of B"

# detach both; fillers take the old numbers, so the re-attached devices get new ones
old_a=$A old_b=$B
loop_detach "$A" "$(readlink -f a.img)"
loop_detach "$B" "$(readlink -f b.img)"
expect_status 0 vdisk lun show --json
assert_eq "$(jq -r '[.luns[].state] | join(" ")' "$OUT")" "missing missing" "states while detached"
new_loop_avoiding A a.img "$old_a $old_b"
new_loop_avoiding B b.img "$old_a $old_b" --sector-size 4096
partx -a "$A" 2>/dev/null || partx -u "$A"
wait_for_node "${A}p2"
log "A: $old_a -> $A, B: $old_b -> $B"
[ "$A" != "$old_a" ] && [ "$B" != "$old_b" ] || die "the devices kept their numbers; the test proves nothing"

expect_status 0 vdisk lun show --json
assert_eq "$(jq -r '.luns[] | select(.slot == "0:0:0") | .device' "$OUT")" "$B" "vmr 0:0:0 after the rename"
assert_eq "$(jq -r '.luns[] | select(.slot == "0:0:1") | .device' "$OUT")" "${A}p2" "vmr 0:0:1 after the rename"
assert_eq "$(jq -r '.luns[] | select(.slot == "0:0:0") | .size' "$OUT")" $((32 * MiB)) "size of vmr 0:0:0"
assert_same_file "$VDISK_LUN_MAP" map.before "map file after the rename"
lun_list_json
assert_eq "$(dev_field "$B" .busy.mapped)" "vmr 0:0:0" "list: B mapped"
assert_eq "$(dev_field "${A}p2" .busy.mapped)" "vmr 0:0:1" "list: A2 mapped"
if losetup -n -O BACK-FILE "$old_b" 2>/dev/null | grep -q "/filler-"; then
	assert_eq "$(dev_field "$old_b" .busy.mapped)" null "list: the filler on B's old number"
fi
# mapping B again elsewhere is still refused under its new name
expect_fail "refusing $B: already mapped to vmr 0:0:0" vdisk lun map vmx 0:0:0 "$B"

# a byte copy of A: its PTUUID (and PARTUUIDs) now name two devices
cp --sparse=always a.img clone.img
new_loop K clone.img
expect_status 0 vdisk lun show --json
assert_eq "$(jq -r '.luns[] | select(.slot == "0:0:1") | .state' "$OUT")" "present" \
	"A2 while the clone has no partition devices"
partx -a "$K" 2>/dev/null || partx -u "$K"
wait_for_node "${K}p2"
expect_status 0 vdisk lun show --json
assert_eq "$(jq -r '.luns[] | select(.slot == "0:0:1") | .state' "$OUT")" "ambiguous" "A2 with a clone"
assert_eq "$(jq -r '.luns[] | select(.slot == "0:0:1") | .device' "$OUT")" null "device of an ambiguous LUN"
expect_fail "PTUUID=$PTUUID_A names 2 devices \((${A#/dev/}, ${K#/dev/}|${K#/dev/}, ${A#/dev/})\): refusing to guess" \
	vdisk lun map vmy 0:0:0 "PTUUID=$PTUUID_A"
expect_fail "has no stable identity" vdisk lun map vmy 0:0:0 "$A"
log "ok"
