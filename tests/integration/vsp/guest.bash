# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
# Helpers for the QEMU guest tests of vsp-storage (sourced after ../lib.sh; not a test itself):
# build_initramfs DIR OUT makes a busybox initramfs holding Debian's virtio modules and an
# /init that runs the script given in the initramfs as /test.sh, printing "VSP-..." lines on
# the serial console and powering off (files given after OUT are put in its /data); run_guest
# SOCKET INITRD LOG runs it under TCG with vhost-user-blk-pci,num-queues=2 on SOCKET, and
# run_guest_disks INITRD LOG APPEND SOCKET... with one such device per SOCKET (vda, vdb, ...
# in that order of PCI slots; the guest can tell them apart by /sys/block/vdX/serial).

KVER=${KVER:-$(basename "$(ls -1 /boot/vmlinuz-* | sort -V | tail -1)" | sed 's/^vmlinuz-//')}
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER/kernel/drivers

requires qemu-system-x86_64 --version
requires busybox true
requires cpio --version
[ -r "$KERNEL" ] || die "no kernel at $KERNEL (linux-image-amd64)"

# build_initramfs TESTSCRIPT OUT [FILE...]: the FILEs go to /data in the guest.
build_initramfs()
{
	local script=$1 out=$2 root m f
	shift 2
	root=$SCRATCH/initramfs
	rm -rf "$root"
	mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,mod,data}
	for f in "$@"; do
		cp "$f" "$root/data/"
	done
	cp "$(command -v busybox)" "$root/bin/busybox"
	for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
		f=$(find "$MODDIR" -name "$m.ko*" | head -1)
		[ -n "$f" ] || die "module $m not found under $MODDIR"
		case $f in
		*.xz) xz -dc "$f" >"$root/mod/$m.ko" ;;
		*.zst) zstd -qdc "$f" >"$root/mod/$m.ko" ;;
		*) cp "$f" "$root/mod/$m.ko" ;;
		esac
	done
	cp "$script" "$root/test.sh"
	cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
	insmod /mod/$m.ko || echo "VSP-ERROR insmod $m"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || echo "VSP-ERROR no /dev/vda"
echo "VSP-QUEUES $(ls /sys/block/vda/mq 2>/dev/null | wc -l)"
sh /test.sh 2>&1
echo "VSP-DONE"
sync
poweroff -f
INIT
	chmod +x "$root/init" "$root/test.sh"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
}

# run_guest SOCKET INITRD LOG [APPEND]: boots, waits for power-off (timeout 240 s). The
# front end reconnects to SOCKET when the daemon restarts (reconnect=1). A reboot inside the
# guest reboots the VM (same QEMU); power-off ends it.
run_guest()
{
	run_guest_disks "$2" "$3" "${4:-}" "$1"
}

# run_guest_disks INITRD LOG APPEND SOCKET...: run_guest with one disk per SOCKET.
run_guest_disks()
{
	local initrd=$1 log=$2 append=$3 i=0 sock disks=()
	shift 3
	for sock in "$@"; do
		disks+=(-chardev "socket,id=vub$i,path=$sock,reconnect=1"
			-device "vhost-user-blk-pci,chardev=vub$i,num-queues=2")
		i=$((i + 1))
	done
	timeout 240 qemu-system-x86_64 -machine q35,accel=tcg -cpu max -smp 2 -m 256 \
		-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
		"${disks[@]}" \
		-kernel "$KERNEL" -initrd "$initrd" \
		-append "console=ttyS0 quiet panic=-1 $append" \
		-display none -serial file:"$log" -monitor none ||
		die "qemu failed or timed out (see $log: $(tail -5 "$log" | tr '\n' ' '))"
}
