#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The test command: configures and builds vdisk when needed, then runs the default test
# suite (ctest -LE slow: unit, fuzz-replay and integration tests) and prints ctest's summary.
# --sanitize builds and tests in build-asan with ASan+UBSan and -Werror. Skipped tests are
# listed; with --strict (set by CI) any skip fails the run, since scripts/setup.sh installs
# every peer and a skip would only hide a broken machine.
#
# usage: scripts/test.sh [--sanitize] [--strict] [--build-dir DIR] [-j N] [-DVAR=VALUE...]
#                        [-- CTEST-ARGS...]
#   -DVAR=VALUE   passed to cmake when configuring (e.g. -DVDISK_WERROR=ON)
#   -- ARGS       extra ctest arguments, e.g. -- -L unit, -- -R vhdx/005
# Environment: JOBS (default 2), VDISK_WRAPPER (run the CLI under e.g. valgrind).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

sanitize=0
strict=${VDISK_TEST_STRICT:-0}
build=
jobs=${JOBS:-2}
cmake_args=()
ctest_args=()

usage()
{
	sed -n '/^# usage:/,/^# Environment/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--sanitize) sanitize=1 ;;
	--strict) strict=1 ;;
	--build-dir) build=$2; shift ;;
	--build-dir=*) build=${1#*=} ;;
	-j) jobs=$2; shift ;;
	-j*) jobs=${1#-j} ;;
	-D*) cmake_args+=("$1") ;;
	--) shift; ctest_args+=("$@"); break ;;
	-h | --help) usage ;;
	*) echo "test.sh: unknown argument: $1" >&2; usage ;;
	esac
	shift
done

if [ "$sanitize" = 1 ]; then
	build=${build:-build-asan}
	cmake_args=(-DVDISK_SANITIZE=address,undefined -DVDISK_WERROR=ON "${cmake_args[@]}")
	# stop at the first report, and make every report a failure
	export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
	build=${build:-build}
fi

for tool in cmake ctest; do
	command -v "$tool" >/dev/null || { echo "test.sh: $tool not found: run scripts/setup.sh first" >&2; exit 1; }
done

mkdir -p "$build"
echo "== configure $build ${cmake_args[*]}"
cmake -S . -B "$build" "${cmake_args[@]}" >"$build/configure.log" 2>&1 || {
	cat "$build/configure.log" >&2
	echo "test.sh: cmake configure failed" >&2
	exit 1
}
echo "== build $build (-j$jobs)"
cmake --build "$build" -j "$jobs" >"$build/build.log" 2>&1 || {
	grep -E -B2 -A8 'error|warning' "$build/build.log" | head -150 >&2 || tail -60 "$build/build.log" >&2
	echo "test.sh: build failed (full log: $build/build.log)" >&2
	exit 1
}

echo "== ctest in $build: ctest -LE slow -j$jobs ${ctest_args[*]}"
log=$build/ctest.log
rc=0
ctest --test-dir "$build" -LE slow --output-on-failure -j "$jobs" "${ctest_args[@]}" 2>&1 |
	tee "$log" || rc=$?

# ctest marks a test that exited 77 as "***Skipped" (not a failure) and one whose command
# could not start as "***Not Run"; list them, and fail on them with --strict.
skipped=$(grep -E '\*\*\*(Skipped|Not Run)' "$log" | sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: +//; s/ \.+/ /' || true)
if [ -n "$skipped" ]; then
	echo "== tests that did not run:"
	echo "$skipped"
	if [ "$strict" = 1 ]; then
		echo "test.sh: $(echo "$skipped" | wc -l) test(s) expected to run were skipped or not run" >&2
		[ "$rc" -ne 0 ] || rc=1
	fi
fi
if ! grep -qE '^[0-9]+% tests passed' "$log"; then
	echo "test.sh: ctest printed no summary" >&2
	[ "$rc" -ne 0 ] || rc=1
fi
if grep -qE 'No tests were found' "$log"; then
	echo "test.sh: no tests found in $build" >&2
	[ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
