#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# `vdisk serve --map FILE --vm VM`: every LUN the map gives the VM is resolved by identity,
# claimed O_EXCL and served as its own export (SOCKET.C-T-L); data written over NBD and
# vhost-user-blk lands byte-exact on the devices; a served device cannot be claimed by
# another program (mkfs) or mapped to another VM slot; SIGTERM releases them. A mounted
# device is refused by `vdisk serve /dev/DEVICE`.
. "$(dirname "$0")/lib.sh"
VSP=$VDISK_BUILD_DIR/vsp-storage/vsp-storage
DRV=$VDISK_BUILD_DIR/vsp-storage/vsp-driver
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
[ -x "$DRV" ] || die "vsp-driver not built: $DRV"
requires qemu-io --version

make_file "$SCRATCH/a.img" 16
make_file "$SCRATCH/b.img" 16
new_loop A "$SCRATCH/a.img"
new_loop B "$SCRATCH/b.img" --sector-size 4096
gpt "$A" 1 8
gpt "$B" 1 8
partx -d "$A" >/dev/null 2>&1 || :
partx -d "$B" >/dev/null 2>&1 || :
vdisk lun map vm1 0:0:0 "$A" || die "map A failed"
vdisk lun map vm1 0:0:1 "$B" || die "map B failed"

"$VSP" --map "$VDISK_LUN_MAP" --vm vm1 --nbd "unix:$SCRATCH/n.sock" \
	--vhost-user-blk "$SCRATCH/v.sock" --queues 2 >/dev/null 2>"$SCRATCH/daemon.log" &
pid=$!
cleanup_fn stop_pid "$pid"
for _ in $(seq 100); do [ -S "$SCRATCH/v.sock.0-0-1" ] && break; sleep 0.1; done
[ -S "$SCRATCH/v.sock.0-0-0" ] && [ -S "$SCRATCH/n.sock.0-0-1" ] ||
	die "daemon did not serve both LUNs: $(cat "$SCRATCH/daemon.log")"
grep -q "4096-byte sectors" "$SCRATCH/daemon.log" ||
	die "the 4096-byte device was not served with its sector size: $(cat "$SCRATCH/daemon.log")"

# NBD into LUN 0 (past the GPT), vhost-user-blk into LUN 1
qemu-io -f raw -c "write -P 0x5a 2M 1M" -c flush \
	"nbd+unix:///vm1-0.0.0?socket=$SCRATCH/n.sock.0-0-0" >"$SCRATCH/qio.out" 2>&1 ||
	die "qemu-io: $(cat "$SCRATCH/qio.out")"
gen_data lun1 $((2 * MiB)) >"$SCRATCH/w.bin"
"$DRV" write "$SCRATCH/v.sock.0-0-1" $((4 * MiB)) <"$SCRATCH/w.bin" || die "vsp-driver write failed"

# while served: the devices are claimed
! mkfs.ext4 -q -F "$A" >/dev/null 2>&1 || die "mkfs.ext4 could format a served LUN"
expect_fail 'mapped|slot|vm1' vdisk lun map vm2 0:0:0 "$A"

stop_pid "$pid" || :
head -c $MiB /dev/zero | tr '\0' '\132' >"$SCRATCH/five.bin"
cmp -s <(dd if="$SCRATCH/a.img" bs=1M skip=2 count=1 status=none) "$SCRATCH/five.bin" ||
	die "NBD write did not land on LUN 0's device"
cmp -s <(dd if="$SCRATCH/b.img" bs=1M skip=4 count=2 status=none) "$SCRATCH/w.bin" ||
	die "vhost-user-blk write did not land on LUN 1's device"

# a mounted device is refused
mkfs.ext4 -q -F "$A" >/dev/null 2>&1 || die "mkfs.ext4 failed after the daemon stopped"
mkdir -p "$SCRATCH/mnt"
mount "$A" "$SCRATCH/mnt" || die "mount failed"
cleanup_fn umount_if "$SCRATCH/mnt"
if "$VSP" --nbd "unix:$SCRATCH/m.sock" "$A" >/dev/null 2>"$SCRATCH/m.log"; then
	die "vsp-storage served a mounted device"
fi
grep -qi 'mount' "$SCRATCH/m.log" || die "refusal does not say mounted: $(cat "$SCRATCH/m.log")"
log "ok"
