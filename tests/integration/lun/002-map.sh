#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# vdisk lun map / unmap / show on loop devices: a device named by /dev path, PARTUUID=, UUID=
# or PTUUID= is stored as its most stable identity, never as /dev/loopN; the map file has the
# documented one-line-per-LUN format; read-only mappings say ro; a slot that is taken, a
# device without identity, bad names and slots are refused with clear messages; --map and
# VDISK_LUN_MAP choose the file; concurrent editors (eight at once) lose no edit, and a reader
# running meanwhile never sees a half-written file; show resolves every identity to the
# device it names now.
. "$(dirname "$0")/lib.sh"

make_file a.img 64
make_file b.img 32
make_file c.img 16
make_file d.img 80
new_loop A a.img
new_loop B b.img --sector-size 4096
new_loop C c.img
new_loop D d.img
gpt "$A" 2 20
mkfs.ext4 -q -b 4096 "$B"
gpt "$D" 8 8
PTUUID_D=$(blkid_value "$D" PTUUID)
PARTUUID_A2=$(blkid_value "${A}p2" PART_ENTRY_UUID)
UUID_B=$(blkid_value "$B" UUID)
[ -n "$PTUUID_D" ] && [ -n "$PARTUUID_A2" ] && [ -n "$UUID_B" ] || die "blkid found no identities"

# map by /dev path: stored by identity
expect_status 0 vdisk lun map vm1 0:0:0 "$D"
assert_eq "$(map_line vm1 0:0:0)" "vm1 0:0:0 rw PTUUID=$PTUUID_D" "map line of vm1 0:0:0"
grep -q "/dev/" "$VDISK_LUN_MAP" && die "the map names a /dev path: $(cat "$VDISK_LUN_MAP")"
grep -qx "vm1 0:0:0 rw PTUUID=$PTUUID_D ($D)" "$OUT" || die "map output: $(cat "$OUT")"
# by PARTUUID=, read-only; by UUID= (the 4096-byte disk); by PTUUID= in lower case kind
expect_status 0 vdisk lun map --readonly vm1 0:0:1 "PARTUUID=$PARTUUID_A2"
assert_eq "$(map_line vm1 0:0:1)" "vm1 0:0:1 ro PARTUUID=$PARTUUID_A2" "map line of vm1 0:0:1"
expect_status 0 vdisk lun map vm2 1:0:7 "uuid=$UUID_B"
assert_eq "$(map_line vm2 1:0:7)" "vm2 1:0:7 rw UUID=$UUID_B" "map line of vm2 1:0:7"

# the file: comment header, then VM C:T:L ro|rw KIND=value
head -1 "$VDISK_LUN_MAP" | grep -q '^# vdisk LUN map' || die "no header: $(head -1 "$VDISK_LUN_MAP")"
bad=$(grep -vE '^(#.*|[A-Za-z0-9][A-Za-z0-9._-]* [0-9]+:[0-9]+:[0-9]+ (ro|rw) (WWN|SERIAL|BYID|PTUUID|PARTUUID|UUID)=[^ ]+)$' \
	"$VDISK_LUN_MAP" || :)
[ -z "$bad" ] || die "map lines out of format: $bad"
[ "$(stat -c %a "$VDISK_LUN_MAP")" = 644 ] || die "map mode $(stat -c %a "$VDISK_LUN_MAP")"

# show resolves identities to the devices of now
expect_status 0 vdisk lun show --json
assert_eq "$(jq -r '.luns | length' "$OUT")" 3 "LUNs shown"
assert_eq "$(jq -r '.map' "$OUT")" "$VDISK_LUN_MAP" "map file shown"
assert_eq "$(jq -r '.luns[] | select(.slot == "0:0:1") | .device' "$OUT")" "${A}p2" "device of vm1 0:0:1"
assert_eq "$(jq -r '.luns[] | select(.slot == "0:0:1") | .readonly' "$OUT")" true "readonly of vm1 0:0:1"
assert_eq "$(jq -r '.luns[] | select(.vm == "vm2") | [.controller, .target, .lun, .size] | @tsv' "$OUT")" \
	"1	0	7	$((32 * MiB))" "vm2's slot and size"
expect_status 0 vdisk lun show vm1
assert_eq "$(grep -c '^vm1 ' "$OUT")" 2 "vm1 lines of show vm1"
grep -qE "^vm1 +0:0:0 +rw +PTUUID=$PTUUID_D +$D$" "$OUT" || die "show vm1: $(cat "$OUT")"
grep -q '^vm2' "$OUT" && die "show vm1 shows vm2"

# refusals
expect_fail "vm1 0:0:0 holds PTUUID=$PTUUID_D already: unmap it first" vdisk lun map vm1 0:0:0 "$B"
expect_fail "$C has no stable identity.*write a GPT" vdisk lun map vm3 0:0:0 "$C"
expect_fail "no block device has this identity" vdisk lun map vm3 0:0:0 PTUUID=00000000-1111-2222-3333-444444444444
expect_fail "not a block device" vdisk lun map vm3 0:0:0 "$SCRATCH/a.img"
expect_fail "nosuch: No such file" vdisk lun map vm3 0:0:0 /dev/nosuch
usage() { expect_status 64 "$@"; [ "$(wc -l <"$ERR")" -eq 2 ] || die "'$*': $(cat "$ERR")"; }
usage vdisk lun map vm3 0:0 "$C"
usage vdisk lun map vm3 0:0:16384 "$C"
usage vdisk lun map "bad name" 0:0:0 "$C"
usage vdisk lun map vm3 0:0:0
usage vdisk lun map --json vm3 0:0:0 "$C"
usage vdisk lun unmap vm3
usage vdisk lun show --force
# a re-map of the same device changes only the mode
expect_status 0 vdisk lun map --readonly vm1 0:0:0 "PTUUID=$PTUUID_D"
assert_eq "$(map_line vm1 0:0:0)" "vm1 0:0:0 ro PTUUID=$PTUUID_D" "mode change of vm1 0:0:0"

# unmap
expect_status 0 vdisk lun unmap vm2 1:0:7
grep -qx "unmapped vm2 1:0:7 (UUID=$UUID_B)" "$OUT" || die "unmap output: $(cat "$OUT")"
assert_eq "$(map_line vm2 1:0:7)" "" "vm2 1:0:7 after unmap"
expect_fail "vm2 1:0:7: no LUN mapped there" vdisk lun unmap vm2 1:0:7
assert_eq "$(grep -c . "$ERR")" 1 "lines of an operational error"

# --map beats VDISK_LUN_MAP; both beat the default
expect_status 0 vdisk lun map --map "$SCRATCH/other/luns.conf" vmo 0:0:0 "$B"
assert_eq "$(awk '$1 == "vmo"' "$SCRATCH/other/luns.conf")" "vmo 0:0:0 rw UUID=$UUID_B" "--map file"
assert_eq "$(map_line vmo 0:0:0)" "" "VDISK_LUN_MAP untouched by --map"
[ -e "$SCRATCH/other/luns.conf.lock" ] || die "no lock file next to the map"

# eight editors at once, each a partition of D to its own slot, while a reader keeps reading
# (another map: in the main one D is vm1's)
rm -f "$SCRATCH/other/luns.conf"
(
	while [ ! -e "$SCRATCH/stop" ]; do
		vdisk lun show --map "$SCRATCH/other/luns.conf" >/dev/null 2>"$SCRATCH/reader.err" ||
			{ echo "reader failed: $(cat "$SCRATCH/reader.err")" >"$SCRATCH/reader.fail"; }
	done
) &
reader=$!
pids=()
for i in 1 2 3 4 5 6 7 8; do
	vdisk lun map --map "$SCRATCH/other/luns.conf" vmc "0:0:$i" "${D}p$i" >/dev/null 2>"$SCRATCH/w$i.err" &
	pids+=($!)
done
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" || die "concurrent map $((i + 1)) failed: $(cat "$SCRATCH/w$((i + 1)).err")"
done
touch "$SCRATCH/stop"
wait "$reader"
[ ! -e "$SCRATCH/reader.fail" ] || die "$(cat "$SCRATCH/reader.fail")"
for i in 1 2 3 4 5 6 7 8; do
	want="vmc 0:0:$i rw PARTUUID=$(blkid_value "${D}p$i" PART_ENTRY_UUID)"
	assert_eq "$(awk -v s="0:0:$i" '$2 == s' "$SCRATCH/other/luns.conf")" "$want" "concurrent entry $i"
done
ls "$SCRATCH/other" | grep -q tmp && die "temporary files left: $(ls "$SCRATCH/other")"
log "ok"
