#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# vdisk lun list shows the devices as the peers see them: for loop devices this test makes
# (a 512-byte disk with a GPT and two partitions, one holding a labelled ext4; a 4096-byte
# sector disk holding ext4 directly; an empty disk), the geometry agrees with `lsblk --json`
# and the content identities (PTTYPE, PTUUID, PARTUUID, TYPE, UUID, LABEL) with `blkid -p`;
# the chosen identity is the most stable one (PTUUID for a partitioned disk, PARTUUID for a
# partition, the filesystem UUID when that is all there is, none for an empty disk); the
# backing file is shown; a mounted partition shows as busy, with its disk.
. "$(dirname "$0")/lib.sh"

make_file a.img 64
make_file b.img 32
make_file c.img 16
new_loop A a.img
new_loop B b.img --sector-size 4096
new_loop C c.img
gpt "$A" 2 20
mkfs.ext4 -q -L pt-label "${A}p1"
mkfs.ext4 -q -b 4096 -L whole-b "$B"
log "A=$A B=$B C=$C"

lun_list_json
lsblk --json -b -o NAME,PATH,MAJ:MIN,SIZE,LOG-SEC,PHY-SEC,MIN-IO,OPT-IO,ALIGNMENT,DISC-GRAN,DISC-MAX,ROTA,RO,RM,TYPE,PKNAME \
	"$A" "$B" "$C" >"$SCRATCH/lsblk.json" || die "lsblk failed"

# geometry: every column lsblk reports, for the disks and the partitions
for dev in "$A" "${A}p1" "${A}p2" "$B" "$C"; do
	mine=$(dev_field "$dev" '{name, "maj:min", size, "log-sec", "phy-sec", "min-io", "opt-io",
		alignment, "disc-gran", "disc-max", rota, ro, rm, type, pkname}')
	[ -n "$mine" ] || die "vdisk lun list does not show $dev"
	theirs=$(jq --arg p "$dev" '[.blockdevices[] | ., (.children // [])[]] | .[] |
		select(.path == $p) | {name, "maj:min", size, "log-sec", "phy-sec", "min-io",
		"opt-io", alignment, "disc-gran", "disc-max", rota, ro, rm, type, pkname}' \
		"$SCRATCH/lsblk.json")
	[ -n "$theirs" ] || die "lsblk does not show $dev"
	assert_eq "$(jq -cS . <<<"$mine")" "$(jq -cS . <<<"$theirs")" "geometry of $dev (vdisk vs lsblk)"
done
assert_eq "$(dev_field "$A" .size)" $((64 * MiB)) "size of $A"
assert_eq "$(dev_field "${A}p1" .size)" $((20 * MiB)) "size of ${A}p1"
assert_eq "$(dev_field "$B" '."log-sec"')" 4096 "logical sector of $B"
assert_eq "$(dev_field "${A}p1" .start)" $((1 * MiB)) "start of ${A}p1"

# content identities: the same values as blkid's low-level probe
for dev in "$A" "${A}p1" "${A}p2" "$B" "$C"; do
	for pair in pttype:PTTYPE ptuuid:PTUUID partuuid:PART_ENTRY_UUID partlabel:PART_ENTRY_NAME \
		fstype:TYPE uuid:UUID label:LABEL; do
		key=${pair%%:*}
		tag=${pair#*:}
		assert_eq "$(dev_field "$dev" ".$key // \"\"")" "$(blkid_value "$dev" "$tag")" "$key of $dev (vdisk vs blkid -p)"
	done
done
[ -n "$(blkid_value "$A" PTUUID)" ] || die "blkid -p finds no PTUUID on $A"
assert_eq "$(dev_field "${A}p1" .label)" pt-label "label of ${A}p1"
assert_eq "$(dev_field "$B" .fstype)" ext4 "fstype of $B"

# the identity each would be mapped by
assert_eq "$(dev_field "$A" .identity)" "PTUUID=$(blkid_value "$A" PTUUID)" "identity of $A"
assert_eq "$(dev_field "${A}p1" .identity)" "PARTUUID=$(blkid_value "${A}p1" PART_ENTRY_UUID)" "identity of ${A}p1"
assert_eq "$(dev_field "$B" .identity)" "UUID=$(blkid_value "$B" UUID)" "identity of $B"
assert_eq "$(dev_field "$C" .identity)" null "identity of the empty $C"
assert_eq "$(dev_field "$A" '."back-file"')" "$(readlink -f a.img)" "backing file of $A"
assert_eq "$(dev_field "$C" '."in-use"')" false "in-use of $C"
assert_eq "$(dev_field "${A}p2" .reason)" null "reason of ${A}p2"

# the human form names the same devices and identities
vdisk lun list >"$SCRATCH/list.txt" || die "vdisk lun list failed"
grep -qE "^${A#/dev/}p1 +20 MiB +512/512 .* ext4 +PARTUUID=$(blkid_value "${A}p1" PART_ENTRY_UUID) +-$" \
	"$SCRATCH/list.txt" || die "human list: $(grep "${A#/dev/}p1" "$SCRATCH/list.txt")"
grep -qE "^${B#/dev/} +32 MiB +4096/4096 " "$SCRATCH/list.txt" || die "human list: no $B line"

# a mounted partition is busy, and so is its disk
mkdir mnt
mount "${A}p1" mnt || die "mount ${A}p1 failed"
cleanup_fn umount_if "$SCRATCH/mnt"
lun_list_json
assert_eq "$(dev_field "${A}p1" '.busy.mounted')" true "mounted flag of ${A}p1"
assert_eq "$(dev_field "${A}p1" '.busy.mountpoint')" "$SCRATCH/mnt" "mountpoint of ${A}p1"
assert_eq "$(dev_field "$A" '.busy.mounted')" true "mounted flag of the disk $A"
assert_eq "$(dev_field "$A" '.busy.mountpoint')" "${A#/dev/}p1:$SCRATCH/mnt" "mountpoint of $A"
assert_eq "$(dev_field "${A}p2" '."in-use"')" false "in-use of ${A}p2 (a sibling)"
umount mnt

# usage errors
expect_status 64 vdisk lun list extra
expect_status 64 vdisk lun list --readonly
expect_status 64 vdisk lun
expect_status 64 vdisk lun frobnicate
grep -q "unknown action 'frobnicate'" "$ERR" || die "message: $(cat "$ERR")"
log "ok"
