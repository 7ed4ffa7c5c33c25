#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The daemon's command line and `vdisk serve`: --help and --version, usage errors (exit 2,
# one message), a configuration file error naming file and line, an image that cannot be
# opened (exit 1), and `vdisk serve` exec'ing the daemon, which serves a raw file over NBD,
# writes its pidfile, and on SIGTERM exits 0 with the file's bytes intact.
. "$(dirname "$0")/../lib.sh"
VSP=$VDISK_BUILD_DIR/vsp-storage/vsp-storage
[ -x "$VSP" ] || die "vsp-storage not built: $VSP"
requires nbdinfo --version

expect_status 0 "$VSP" --help
grep -q -- "--vhost-user-blk SOCKET" "$OUT" || die "--help lacks --vhost-user-blk"
expect_status 0 "$VSP" --version
grep -qE '^vsp-storage [0-9]+\.[0-9]+' "$OUT" || die "--version: $(cat "$OUT")"
expect_status 2 "$VSP" x.raw
grep -q "nothing to serve" "$ERR" || die "no-transport message: $(cat "$ERR")"
expect_status 2 "$VSP" --queues 0 --nbd unix:s x.raw
expect_status 2 "$VSP" --io-engine bogus --nbd unix:s x.raw
expect_status 2 "$VSP" --poll-us 1001 --nbd unix:s x.raw
grep -q -- "--poll-us" "$ERR" || die "--poll-us range message: $(cat "$ERR")"
expect_status 2 "$VSP" --nbd unix:s
printf '[export a]\nimage = /nonexistent\nnbd = unix:%s/a.sock\nqueues = many\n' "$SCRATCH" >bad.conf
expect_fail "bad.conf:4: bad value for 'queues'" "$VSP" --config bad.conf
printf '[export a]\nimage = /nonexistent\nnbd = unix:%s/a.sock\npoll-us = -1\n' "$SCRATCH" >bad.conf
expect_fail "bad.conf:4: bad value for 'poll-us'" "$VSP" --config bad.conf
expect_fail "No such file" "$VSP" --nbd "unix:$SCRATCH/n.sock" "$SCRATCH/missing.raw"

gen_data serve $((4 * MiB)) >d.raw
cp d.raw d.orig
"$VDISK_BIN" serve --nbd "unix:$SCRATCH/n.sock" --pidfile "$SCRATCH/pid" --readonly d.raw \
	>/dev/null 2>serve.log &
pid=$!
cleanup_fn stop_pid "$pid"
for _ in $(seq 50); do [ -S n.sock ] && [ -s pid ] && break; sleep 0.1; done
[ -S n.sock ] || die "vdisk serve did not start the daemon: $(cat serve.log)"
assert_eq "$(cat pid)" "$pid" "pidfile (vdisk serve execs the daemon in place)"
assert_eq "$(nbdinfo --size "nbd+unix:///?socket=$SCRATCH/n.sock")" $((4 * MiB)) "size over NBD"
assert_eq "$(nbdcopy "nbd+unix:///?socket=$SCRATCH/n.sock" - | sha256)" "$(sha256 d.orig)" "content"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
assert_eq "$rc" 0 "exit status after SIGTERM"
[ ! -e pid ] || die "pidfile left behind"
[ ! -e n.sock ] || die "socket left behind"
assert_same_file d.raw d.orig "the served file"
log "ok"
