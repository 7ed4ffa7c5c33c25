#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A Linux guest (Debian's kernel, virtio modules from the package, a busybox initramfs built
# here) boots under QEMU TCG with two vCPUs and vhost-user-blk-pci,num-queues=2 on a VHDX
# differencing child served by vsp-storage. In the guest: O_DIRECT writes (one of them from
# each CPU at once, so both queues carry data), a partial overwrite of the parent's data,
# reads back, discard; the guest's own checksums must match. The guest restarts (a new QEMU,
# the same daemon), reboots once inside that QEMU (the device is reset and its rings
# restarted), and reads everything again, in a loop during which the daemon is killed
# with SIGKILL and started again: QEMU reconnects, the requests in flight are resubmitted from
# the inflight region, and the guest's reads and a final write go on unharmed. After SIGTERM
# the daemon exits cleanly, `vdisk check` finds the child clean, the host reads the same
# bytes the guest wrote, and the parent file is byte-for-byte unchanged.
. "$(dirname "$0")/../lib.sh"
. "$VDISK_SOURCE_DIR/tests/integration/vsp/guest.bash"
VSP=$VDISK_BUILD_DIR/vsp-storage/vsp-storage
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"

vdisk create parent.vhdx 64M >/dev/null
truncate -s 64M shadow.raw
put parent.vhdx shadow.raw 0 $((4 * MiB)) parent-data
parent_sha=$(sha256 parent.vhdx)
vdisk create --parent parent.vhdx child.vhdx >/dev/null

start_daemon()
{
	rm -f vu.sock
	"$VSP" --vhost-user-blk "$SCRATCH/vu.sock" --queues 2 child.vhdx >/dev/null 2>>daemon.log &
	vsp_pid=$!
	cleanup_fn stop_pid "$vsp_pid"
	for _ in $(seq 50); do [ -S vu.sock ] && break; sleep 0.1; done
	[ -S vu.sock ] || die "vsp-storage did not create its socket: $(cat daemon.log)"
}
start_daemon

cat >phase1.sh <<'G'
sha() { sha256sum | cut -d' ' -f1; }
rd() { dd if=/dev/vda bs=64k skip=$(($1 / 65536)) count=$(($2 / 65536)) iflag=direct 2>/dev/null | sha; }
echo "VSP-PARENT $(rd 0 4194304)"
dd if=/dev/urandom of=/tmp/a bs=1M count=4 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=1M count=2 2>/dev/null
dd if=/dev/urandom of=/tmp/c bs=1M count=2 2>/dev/null
dd if=/dev/urandom of=/tmp/p bs=64k count=1 2>/dev/null
echo "VSP-DATA-A $(sha </tmp/a)"
echo "VSP-DATA-B $(sha </tmp/b)"
echo "VSP-DATA-C $(sha </tmp/c)"
echo "VSP-DATA-P $(sha </tmp/p)"
dd if=/tmp/a of=/dev/vda bs=1M seek=8 oflag=direct conv=fsync 2>/dev/null || echo "VSP-ERROR write a"
taskset -c 0 dd if=/tmp/b of=/dev/vda bs=64k seek=256 oflag=direct conv=fsync 2>/dev/null &
taskset -c 1 dd if=/tmp/c of=/dev/vda bs=64k seek=384 oflag=direct conv=fsync 2>/dev/null &
wait
dd if=/tmp/p of=/dev/vda bs=64k seek=16 oflag=direct 2>/dev/null || echo "VSP-ERROR write p"
blkdiscard -o 33554432 -l 1048576 /dev/vda || echo "VSP-ERROR discard"
# fsync of the block device: a virtio FLUSH, which commits the image's metadata
dd if=/tmp/p of=/dev/vda bs=64k seek=16 oflag=direct conv=fsync 2>/dev/null || echo "VSP-ERROR flush"
echo "VSP-READ-A $(rd 8388608 4194304)"
echo "VSP-READ-B $(rd 16777216 2097152)"
echo "VSP-READ-C $(rd 25165824 2097152)"
echo "VSP-READ-P $(rd 1048576 65536)"
echo "VSP-READ-D $(rd 33554432 1048576)"
G
build_initramfs phase1.sh initrd1.gz
log "guest boot 1"
run_guest "$SCRATCH/vu.sock" initrd1.gz guest1.log
grep -q VSP-DONE guest1.log || die "guest 1 did not finish: $(tail -20 guest1.log)"
! grep VSP-ERROR guest1.log || die "errors in guest 1"
val() { sed -n "s/^VSP-$2 //p" "$1" | head -1 | tr -d '\r'; }
assert_eq "$(val guest1.log QUEUES)" 2 "blk-mq hardware queues in the guest"
zero_mib=$(head -c $MiB /dev/zero | sha256)
assert_eq "$(val guest1.log PARENT)" "$(read_range shadow.raw 0 $((4 * MiB)) | sha256)" \
	"parent data seen through the child"
for k in A B C P; do
	[ -n "$(val guest1.log DATA-$k)" ] || die "no checksum for $k"
	assert_eq "$(val guest1.log READ-$k)" "$(val guest1.log DATA-$k)" "guest read-back of $k"
done
assert_eq "$(val guest1.log READ-D)" "$zero_mib" "discarded range reads zeros"

cat >phase2.sh <<'G'
sha() { sha256sum | cut -d' ' -f1; }
rd() { dd if=/dev/vda bs=64k skip=$(($1 / 65536)) count=$(($2 / 65536)) iflag=direct 2>/dev/null | sha; }
# first boot of this VM: leave a mark on the disk and reboot (a device reset under QEMU)
if [ "$(dd if=/dev/vda bs=512 skip=122880 count=1 iflag=direct 2>/dev/null | head -c 8)" != REBOOTED ]; then
	printf REBOOTED | dd of=/dev/vda bs=512 seek=122880 conv=sync,fsync oflag=direct 2>/dev/null
	echo "VSP-REBOOT"
	reboot -f
fi
echo "VSP-READ-A $(rd 8388608 4194304)"
echo "VSP-READ-B $(rd 16777216 2097152)"
echo "VSP-READ-C $(rd 25165824 2097152)"
echo "VSP-READ-P $(rd 1048576 65536)"
echo "VSP-READ-MIXED $(rd 0 4194304)"
echo "VSP-LOOP-START"
i=0
while [ $i -lt 5 ]; do
	taskset -c 0 sh -c 'dd if=/dev/vda bs=64k skip=128 count=64 iflag=direct 2>/dev/null | sha256sum | cut -d" " -f1 > /tmp/l0' &
	taskset -c 1 sh -c 'dd if=/dev/vda bs=64k skip=256 count=32 iflag=direct 2>/dev/null | sha256sum | cut -d" " -f1 > /tmp/l1' &
	wait
	echo "VSP-LOOP-A $(cat /tmp/l0)"
	echo "VSP-LOOP-B $(cat /tmp/l1)"
	i=$((i + 1))
done
dd if=/dev/urandom of=/tmp/e bs=1M count=1 2>/dev/null
echo "VSP-DATA-E $(sha </tmp/e)"
dd if=/tmp/e of=/dev/vda bs=1M seek=40 oflag=direct conv=fsync 2>/dev/null || echo "VSP-ERROR write e"
sync
echo "VSP-READ-E $(rd 41943040 1048576)"
G
build_initramfs phase2.sh initrd2.gz
log "guest boot 2 (same daemon, then SIGKILL and restart of the daemon under load)"
run_guest "$SCRATCH/vu.sock" initrd2.gz guest2.log &
qemu_pid=$!
for _ in $(seq 1200); do grep -q VSP-LOOP-START guest2.log 2>/dev/null && break; sleep 0.1; done
grep -q VSP-LOOP-START guest2.log || die "guest 2 never reached its read loop: $(tail -5 guest2.log)"
sleep 1
kill -KILL "$vsp_pid"
wait "$vsp_pid" 2>/dev/null || :
log "daemon killed during the guest's reads; restarting it"
sleep 1
start_daemon
wait "$qemu_pid" || die "guest 2 failed"
grep -q VSP-DONE guest2.log || die "guest 2 did not finish: $(tail -20 guest2.log)"
! grep VSP-ERROR guest2.log || die "errors in guest 2"
assert_eq "$(grep -c '^VSP-REBOOT' guest2.log)" 1 "reboots inside the second VM"
for k in A B C P; do
	assert_eq "$(val guest2.log READ-$k)" "$(val guest1.log DATA-$k)" "after guest restart: $k"
done
n=$(grep -c '^VSP-LOOP-A' guest2.log)
assert_eq "$n" 5 "read loop iterations across the daemon restart"
bad=$(grep '^VSP-LOOP-A' guest2.log | tr -d '\r' | grep -vc " $(val guest1.log DATA-A)\$" || :)
assert_eq "$bad" 0 "loop reads of A that differ"
bad=$(grep '^VSP-LOOP-B' guest2.log | tr -d '\r' | grep -vc " $(val guest1.log DATA-B)\$" || :)
assert_eq "$bad" 0 "loop reads of B that differ"
assert_eq "$(val guest2.log READ-E)" "$(val guest2.log DATA-E)" "write after the daemon restart"
grep -q "resubmitting\|front end connected" daemon.log || die "no reconnection in the daemon log"

kill -TERM "$vsp_pid"
rc=0
wait "$vsp_pid" || rc=$?
assert_eq "$rc" 0 "vsp-storage exit status after SIGTERM"
grep -q "stopped cleanly" daemon.log || die "no clean stop: $(tail -5 daemon.log)"

expect_status 0 vdisk check child.vhdx
host() { vdisk read child.vhdx "$1" "$2" | sha256; }
assert_eq "$(host $((8 * MiB)) $((4 * MiB)))" "$(val guest1.log DATA-A)" "host read of A"
assert_eq "$(host $((16 * MiB)) $((2 * MiB)))" "$(val guest1.log DATA-B)" "host read of B"
assert_eq "$(host $((24 * MiB)) $((2 * MiB)))" "$(val guest1.log DATA-C)" "host read of C"
assert_eq "$(host $MiB 65536)" "$(val guest1.log DATA-P)" "host read of P"
assert_eq "$(host 0 $MiB)" "$(read_range shadow.raw 0 $MiB | sha256)" "parent data around P"
assert_eq "$(host $((MiB + 65536)) $((3 * MiB - 65536)))" \
	"$(read_range shadow.raw $((MiB + 65536)) $((3 * MiB - 65536)) | sha256)" "parent data after P"
assert_eq "$(host $((32 * MiB)) $MiB)" "$zero_mib" "host read of the discarded range"
assert_eq "$(host $((40 * MiB)) $MiB)" "$(val guest2.log DATA-E)" "host read of E"
# parent, child, parent extents in one guest request path vs the library's own reads
assert_eq "$(val guest2.log READ-MIXED)" "$(host 0 $((4 * MiB)))" "guest read across P and parent data"
assert_eq "$(sha256 parent.vhdx)" "$parent_sha" "parent file unchanged"
log "ok"
