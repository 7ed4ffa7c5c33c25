#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Passthrough disks have no snapshots (as in Hyper-V): `vdisk snapshot create`, `vdisk
# snapshot list` and `vdisk merge` given a passthrough LUN (a block device, mapped or not)
# fail with a message that says so, not with a VHDX parse error, and leave the device's
# bytes alone. The commands get this from pt_refuse_snapshot() (include/vdisk/passthrough.h).
. "$(dirname "$0")/lib.sh"

make_file a.img 32
new_loop A a.img
gpt "$A" 1 8
expect_status 0 vdisk lun map vms 0:0:0 "$A"
before=$(sha256 "$A")

for cmd in "snapshot create" "snapshot list" "merge"; do
	# shellcheck disable=SC2086 # the sub-command is two words on purpose
	vdisk help ${cmd%% *} >/dev/null 2>&1 || die "vdisk has no ${cmd%% *} command"
	# shellcheck disable=SC2086
	expect_fail "passthrough disks have no snapshots" vdisk $cmd "$A"
	grep -qF "$A" "$ERR" || die "vdisk $cmd: the message does not name $A: $(cat "$ERR")"
	grep -qi "not a VHDX\|signature" "$ERR" &&
		die "vdisk $cmd: a VHDX parse error instead of the passthrough refusal (cli/cmd-snapshot.c and cli/cmd-merge.c should call pt_refuse_snapshot() first): $(cat "$ERR")"
done
assert_eq "$(sha256 "$A")" "$before" "content of $A after the refused commands"
ls "$SCRATCH" | grep -qiE 'avhdx|snapshot' && die "a snapshot file was made: $(ls "$SCRATCH")"
log "ok"
