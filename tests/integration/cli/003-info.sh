#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk info` against qemu-img info (--output=json, the keys both share), vhdiinfo and the
# facts SOURCES.md lists for the Windows-made fixtures: fixed and dynamic Hyper-V images, an
# orphaned differencing image (info must work without its parent and show the locator), a
# dirty-log image (info reports it dirty and replays in memory only: the file is unchanged).
# Raw files are shown as raw. File names that need JSON escaping give valid JSON.
. "$(dirname "$0")/../lib.sh"
requires qemu-img --version
requires vhdiinfo -V

# same_keys IMG FMT KEYS...: vdisk info --json and qemu-img info agree on KEYS
same_keys()
{
	local img=$1 fmt=$2 k
	shift 2
	vdisk info --json "$img" >"$SCRATCH/v.json" || die "vdisk info --json $img failed"
	qemu-img info -f "$fmt" --output=json "$img" >"$SCRATCH/q.json" || die "qemu-img info $img"
	for k in "$@"; do
		[ "$(jq -c ".\"$k\"" "$SCRATCH/q.json")" != null ] || die "qemu-img info has no $k"
		assert_eq "$(jq -c ".\"$k\"" "$SCRATCH/v.json")" "$(jq -c ".\"$k\"" "$SCRATCH/q.json")" \
			"$img: $k (vdisk vs qemu-img)"
	done
}

# raw file
truncate -s $((5 * MiB + 512)) "$SCRATCH/r.raw"
gen_data r 70000 | dd of="$SCRATCH/r.raw" bs=4096 seek=3 conv=notrunc status=none
same_keys "$SCRATCH/r.raw" raw virtual-size format actual-size filename
assert_eq "$(vdisk_info_field "$SCRATCH/r.raw" '."file-size"')" $((5 * MiB + 512)) "raw file-size"
vdisk info "$SCRATCH/r.raw" >"$OUT" || die "vdisk info raw failed"
grep -qE '^format: +raw$' "$OUT" || die "human info of a raw file: $(cat "$OUT")"

# vdisk-made and qemu-made VHDX
vdisk create --block-size 8M "$SCRATCH/v.vhdx" 100M || die "create failed"
gen_data v $((3 * MiB)) | vdisk write "$SCRATCH/v.vhdx" $((9 * MiB)) || die "write failed"
same_keys "$SCRATCH/v.vhdx" vhdx virtual-size format cluster-size actual-size filename dirty-flag
assert_eq "$(vdisk_info_field "$SCRATCH/v.vhdx" '."allocated-size"')" $((8 * MiB)) "allocated"
assert_eq "$(vdisk_info_field "$SCRATCH/v.vhdx" '."block-states"."fully-present"')" 1 "blocks"
assert_eq "$(vdisk_info_field "$SCRATCH/v.vhdx" '."total-blocks"')" 13 "total blocks"
# qemu-img 7.2 opens only 512-byte-sector VHDX: compare a 4K one with vhdiinfo
vdisk create --logical-sector 4096 "$SCRATCH/4k.vhdx" 8M || die "create 4K failed"
assert_eq "$(vdisk_info_field "$SCRATCH/4k.vhdx" '."logical-sector-size"')" 4096 "logical sector"
assert_eq "$(vhdiinfo_field "$SCRATCH/4k.vhdx" 'Bytes per sector')" "4096 bytes" "vhdiinfo sector"
assert_eq "$(vdisk_info_field "$SCRATCH/v.vhdx" '."data-write-guid"')" \
	"$(vhdiinfo_field "$SCRATCH/v.vhdx" Identifier)" "data write GUID vs vhdiinfo Identifier"
qemu-img create -q -f vhdx -o block_size=16M "$SCRATCH/q.vhdx" 48M || die "qemu-img create failed"
same_keys "$SCRATCH/q.vhdx" vhdx virtual-size format cluster-size actual-size dirty-flag

# Windows fixtures
requires_fixture hyperv-win10.0.18363-fixed-10M.vhdx.gz
fixed=$(fixture_unpack hyperv-win10.0.18363-fixed-10M)
same_keys "$fixed" vhdx virtual-size format cluster-size actual-size
vdisk info --json "$fixed" >"$SCRATCH/f.json" || die "info of the fixed fixture failed"
assert_eq "$(jq -c '[.type, ."cluster-size", ."leave-blocks-allocated", ."block-states"."fully-present",
	."logical-sector-size", ."physical-sector-size", ."header-sequence", .creator, ."has-parent"]' \
	"$SCRATCH/f.json")" \
	'["fixed",2097152,true,5,512,4096,7,"Microsoft Windows 10.0.18363.0",false]' "fixed fixture facts"

requires_fixture hyperv-win10.0.17763-differencing-8G-orphan.avhdx.gz
orphan=$(fixture_unpack hyperv-win10.0.17763-differencing-8G-orphan)
vdisk info --json "$orphan" >"$SCRATCH/o.json" || die "info of the orphan failed: $(cat "$ERR" 2>/dev/null)"
assert_eq "$(jq -c '[.type, ."virtual-size", ."cluster-size", ."has-parent",
	."block-states"."partially-present", (."parent-locator" | keys_unsorted)]' "$SCRATCH/o.json")" \
	'["differencing",8589934592,2097152,true,32,["parent_linkage","absolute_win32_path","relative_path","volume_path","parent_linkage2"]]' \
	"orphan facts"
assert_eq "$(jq -r '."parent-locator".parent_linkage' "$SCRATCH/o.json")" \
	"{ff34003b-11ed-4cf8-a166-b2be05e20b80}" "orphan parent_linkage"
assert_eq "$(jq -r '."backing-filename"' "$SCRATCH/o.json")" \
	"$(jq -r '."parent-locator".relative_path' "$SCRATCH/o.json")" "backing-filename"
jq -r '."backing-filename"' "$SCRATCH/o.json" | grep -q '^\.\\Generation 1_' ||
	die "backing-filename: $(jq -r '."backing-filename"' "$SCRATCH/o.json")"
vdisk info "$orphan" >"$OUT" || die "human info of the orphan failed"
grep -q 'relative_path' "$OUT" || die "human info shows no locator: $(cat "$OUT")"
# reading it needs the parent: one line, exit 1
expect_status 1 vdisk read "$orphan" 0 512
assert_eq "$(wc -l <"$ERR")" 1 "lines of the missing-parent error"
grep -qi 'parent' "$ERR" || die "missing-parent error does not say parent: $(cat "$ERR")"

requires_fixture discutils-vhdx-log-replay.vhdx.gz
dirty=$(fixture_unpack discutils-vhdx-log-replay)
before=$(sha256 "$dirty")
vdisk info --json "$dirty" >"$SCRATCH/d.json" || die "info of the dirty image failed"
assert_eq "$(jq -c '[."dirty-flag", ."log-replayed"]' "$SCRATCH/d.json")" '[true,true]' "dirty image"
assert_ne "$(jq -r '."log-guid"' "$SCRATCH/d.json")" "00000000-0000-0000-0000-000000000000" "log GUID"
assert_eq "$(vdisk read "$dirty" 510 2 | od -An -tx1 | tr -d ' \n')" 55aa "MBR signature after replay"
assert_eq "$(sha256 "$dirty")" "$before" "the dirty image after read-only commands"

# names that need escaping; invalid UTF-8 becomes U+FFFD, the JSON stays valid
name=$'we "ird"\\ name\t\x01.vhdx'
vdisk create "$SCRATCH/$name" 1M || die "create of a weird name failed"
vdisk info --json "$SCRATCH/$name" >"$SCRATCH/w.json" || die "info of a weird name failed"
assert_eq "$(jq -r .filename "$SCRATCH/w.json")" "$SCRATCH/$name" "escaped file name"
bad=$'bad\xff.raw'
truncate -s 1M "$SCRATCH/$bad"
vdisk info --json "$SCRATCH/$bad" >"$SCRATCH/b.json" || die "info of a non-UTF-8 name failed"
assert_eq "$(jq -r .filename "$SCRATCH/b.json")" "$SCRATCH/bad"$'\xef\xbf\xbd'".raw" "U+FFFD"
log "ok"
