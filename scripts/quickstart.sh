#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The quick start (README.md, step 1): installs the dependencies (scripts/setup.sh, apt-get,
# so it needs root), configures and builds vdisk in ./build, then walks through the CLI on a
# small image in build/quickstart/, printing each command before it runs it: create a 64 MiB
# dynamic VHDX, write data, info, map, check, convert to raw, verify with qemu-img check and
# compare, and show that vdisk checksum is the same for the raw file and the VHDX.
# Exits non-zero at the first step that fails. Environment: JOBS (build jobs, default 2),
# SKIP_SETUP=1 (dependencies already installed).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
jobs=${JOBS:-2}
demo=$here/build/quickstart

bold= cyan= plain=
if [ -t 1 ]; then
	bold=$'\033[1m' cyan=$'\033[36m' plain=$'\033[0m'
fi

step()
{
	printf '\n%s== %s%s\n' "$bold" "$*" "$plain"
}

# show TEXT: prints a command line as the user would type it
show()
{
	printf '%s$ %s%s\n' "$cyan" "$*" "$plain"
}

# run CMD...: prints the command (with build/cli/vdisk shown as vdisk), then runs it
run()
{
	local shown=$*
	shown=${shown//$here\/build\/cli\/vdisk/vdisk}
	show "$shown"
	"$@"
}

if [ "${SKIP_SETUP:-0}" != 1 ]; then
	step "1. Install the build and test dependencies (scripts/setup.sh)"
	if [ "$(id -u)" -ne 0 ]; then
		echo "quickstart: scripts/setup.sh installs packages with apt-get: run this as root (sudo $0)" >&2
		exit 1
	fi
	scripts/setup.sh
fi

step "2. Configure and build (cmake, build directory ./build)"
cmake -S . -B build >/dev/null
cmake --build build -j "$jobs" >build/quickstart-build.log 2>&1 || {
	tail -40 build/quickstart-build.log >&2
	echo "quickstart: build failed (log: build/quickstart-build.log)" >&2
	exit 1
}
echo "built: build/cli/vdisk, build/libvdisk.so ($(build/cli/vdisk --version))"

rm -rf "$demo"
mkdir -p "$demo"
cd "$demo"
vdisk()
{
	run "$here/build/cli/vdisk" "$@"
}
vdisk_q()
{
	"$here/build/cli/vdisk" "$@"
}

step "3. Create a 64 MiB dynamic VHDX (in build/quickstart/)"
vdisk create --type dynamic --block-size 2M disk.vhdx 64M
ls -ls disk.vhdx

step "4. Write data into the virtual disk: a text at 0, 3 MiB of random bytes at 10 MiB"
printf 'Hello from vdisk\n' >hello.txt
head -c 3M /dev/urandom >random.bin
show 'vdisk write disk.vhdx 0 < hello.txt'
vdisk_q write disk.vhdx 0 <hello.txt
show 'vdisk write disk.vhdx 10M < random.bin'
vdisk_q write disk.vhdx 10M <random.bin
vdisk read disk.vhdx 0 17

step "5. Inspect it: info, map, check"
vdisk info disk.vhdx
vdisk map disk.vhdx
vdisk check disk.vhdx

step "6. Convert to a raw disk image"
vdisk convert -p -O raw disk.vhdx disk.raw
ls -ls disk.raw

step "7. Cross-check with qemu-img, the reference implementation"
run qemu-img check -f vhdx disk.vhdx
run qemu-img compare -f vhdx -F raw disk.vhdx disk.raw
show 'cmp <(vdisk read disk.vhdx 10M 3M) random.bin'
cmp <(vdisk_q read disk.vhdx 10M 3M) random.bin
echo "random.bin reads back byte for byte"

step "8. Same content, same checksum (XXH3-128 of the virtual disk)"
vdisk checksum disk.raw disk.vhdx
a=$(vdisk_q checksum disk.raw)
b=$(vdisk_q checksum disk.vhdx)
if [ "${a%% *}" != "${b%% *}" ]; then
	echo "quickstart: the checksums differ" >&2
	exit 1
fi

step "Done"
cat <<EOF
The walkthrough files are in build/quickstart/. vdisk is build/cli/vdisk; its manual is
docs/vdisk.1 (man -l docs/vdisk.1). Next: scripts/test.sh runs the test suite.
EOF
