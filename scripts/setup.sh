#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs every build and test dependency of vdisk on Debian 12 with apt-get.
# Idempotent: packages already present are left alone.
set -euo pipefail

PKGS=(
	# build
	build-essential cmake pkg-config clang llvm lld libclang-rt-14-dev
	liburing-dev libaio-dev libxxhash-dev libfuse3-dev libblkid-dev libcmocka-dev
	# runtime / tools the tests use
	fuse3 jq util-linux fdisk e2fsprogs kmod xxhash openssl dmsetup perl-base python3 strace
	# peers
	qemu-utils libvhdi-utils qemu-system-x86 qemu-system-common qemu-block-extra
	fio nbdkit busybox-static cpio linux-image-amd64 valgrind libnbd-bin
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	echo "setup: all dependencies present"
fi
