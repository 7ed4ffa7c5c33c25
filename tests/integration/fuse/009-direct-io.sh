#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Writable opens of a `vdisk mount --rw` disk use direct_io (FOPEN_DIRECT_IO), and the INIT
# reply adds FUSE_DIRECT_IO_ALLOW_MMAP so that they can still be mapped MAP_SHARED. On a fresh
# dynamic image, bytes written at aligned, unaligned, block-crossing, overlapping and
# end-of-disk offsets through one writable fd read back exactly (checked against a raw shadow
# file carrying the same writes) through that fd, through a read-only fd whose cached pages
# were read just before the writes (no stale data), and through new fds; writes at or past
# the end fail with ENOSPC, one crossing it is cut short, the size never changes. Writes
# through a MAP_SHARED mapping of a writable fd reach the disk after msync; a pwrite over a
# mapped range (one page also dirtied through the mapping) is seen by two mappings once it
# returns. After `vdisk umount` the image reads as the shadow (vdisk read, vdisk checksum vs
# xxhsum -H2, qemu-img compare) and qemu-img check is clean. All of it again with
# VDISK_FUSE_DIRECT_IO=0 (cached write-through writes); and with VDISK_FUSE_KFLAGS=0 a
# writable MAP_SHARED mapping fails with ENODEV unless VDISK_FUSE_DIRECT_IO=0 too, which
# shows both knobs reach the serving process.
. "$(dirname "$0")/lib.sh"
requires python3 --version
requires qemu-img --version
requires xxhsum -V

SIZE=$((64 * MiB))

cat >"$SCRATCH/dio.py" <<'PY'
import errno, mmap, os, platform, random, re, sys

MiB = 1 << 20
PAGE = mmap.PAGESIZE
disk, shadow_path, phase, mode, seed = sys.argv[1:6]


def fail(msg):
    sys.exit("%s/%s: %s" % (phase, mode, msg))


def data(tag, n):
    return random.Random("%s-%s-%s" % (seed, phase, tag)).randbytes(n)


def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


def same(got, want, what):
    if got != want:
        i = first_diff(got, want)
        fail("%s: %d bytes differ from the shadow's %d, first at +%d (got %r, want %r)"
             % (what, len(got), len(want), i, got[i:i + 8], want[i:i + 8]))


def pread_all(fd, n, off):
    out = bytearray()
    while len(out) < n:
        b = os.pread(fd, n - len(out), off + len(out))
        if not b:
            break
        out += b
    return bytes(out)


sh = os.open(shadow_path, os.O_RDWR)
size = os.fstat(sh).st_size
if os.stat(disk).st_size != size:
    fail("size of disk %d, shadow %d" % (os.stat(disk).st_size, size))


def shadow(off, n):
    return pread_all(sh, n, off)


def check_size(fd, what):
    for s, w in ((os.fstat(fd).st_size, "fstat"), (os.stat(disk).st_size, "stat")):
        if s != size:
            fail("%s: %s size %d, expected %d" % (what, w, s, size))


def check_whole(fd, what):
    pos = 0
    while pos < size:
        n = min(8 * MiB, size - pos)
        same(pread_all(fd, n, pos), shadow(pos, n), "%s at %d" % (what, pos))
        pos += n


def phase_rw():
    # (offset, length): unaligned, page- and block-crossing (1 MiB blocks), more than one
    # FUSE request (max_write 1 MiB), overlapping an earlier write, the last bytes of the disk
    writes = [
        (0, 1), (1, 4095), (4097, 9000), (MiB - 3, 7), (5 * MiB + 511, 70000),
        (5 * MiB + 600, 100), (9 * MiB + 123, 2 * MiB + 1000), (20 * MiB, 4096),
        (20 * MiB + 4094, 4), (size - 512 - 7, 13), (size - 4103, 4103), (size - 1, 1),
    ]
    rfd = os.open(disk, os.O_RDONLY)       # opened before the writer and the writes
    wfd = os.open(disk, os.O_RDWR)
    # fill the read-only fd's page cache over every range (a fresh disk: zeros)
    for i, (off, n) in enumerate(writes):
        lo = off - off % PAGE
        hi = min(size, -(-(off + n) // PAGE) * PAGE)
        same(pread_all(rfd, hi - lo, lo), shadow(lo, hi - lo), "read-only fd before write %d" % i)
    for i, (off, n) in enumerate(writes):
        buf = data(i, n)
        got = os.pwrite(wfd, buf, off)
        if got != n:
            fail("pwrite of %d bytes at %d returned %d" % (n, off, got))
        if os.pwrite(sh, buf, off) != n:
            fail("short write to the shadow")
        # read right after the write returned, wider than the write
        lo = max(0, off - 100)
        hi = min(size, off + n + 100)
        same(pread_all(wfd, hi - lo, lo), shadow(lo, hi - lo), "writer fd after write %d" % i)
        same(pread_all(rfd, hi - lo, lo), shadow(lo, hi - lo),
             "read-only fd opened before write %d (stale cache?)" % i)
    # the end of the disk: ENOSPC at and past it, a write across it is cut short
    for off in (size, size + 1, size + MiB):
        try:
            got = os.pwrite(wfd, b"x" * 4096, off)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                fail("pwrite at %d: %s, expected ENOSPC" % (off, os.strerror(e.errno)))
        else:
            fail("pwrite at %d (end of disk %d) returned %d, expected ENOSPC" % (off, size, got))
        check_size(wfd, "after a write at %d" % off)
    buf = data("cross", 8192)
    got = os.pwrite(wfd, buf, size - 4096)
    if got != 4096:
        fail("pwrite of 8192 bytes at end-4096 returned %d, expected 4096" % got)
    os.pwrite(sh, buf[:4096], size - 4096)
    check_size(wfd, "after a write across the end")
    if os.pread(wfd, 10, size) != b"" or os.pread(rfd, 10, size) != b"":
        fail("read at the end of the disk returned data")
    same(pread_all(rfd, 8192, size - 8192), shadow(size - 8192, 8192), "read-only fd at the end")
    # every range again through the three kinds of fd, then the whole disk through new ones
    nro = os.open(disk, os.O_RDONLY)
    nrw = os.open(disk, os.O_RDWR)
    for i, (off, n) in enumerate(writes):
        want = shadow(off, n)
        same(pread_all(wfd, n, off), want, "writer fd, range %d" % i)
        same(pread_all(rfd, n, off), want, "read-only fd opened before the writes, range %d" % i)
        same(pread_all(nro, n, off), want, "new read-only fd, range %d" % i)
        same(pread_all(nrw, n, off), want, "new writable fd, range %d" % i)
    check_whole(rfd, "read-only fd opened before the writes")
    check_whole(nrw, "new writable fd")
    os.fsync(wfd)
    for fd in (rfd, wfd, nro, nrw):
        os.close(fd)
    nro = os.open(disk, os.O_RDONLY)
    check_whole(nro, "read-only fd opened after closing the writer")
    os.close(nro)


def shared_map(fd, length, off, prot):
    return mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=prot, offset=off)


def phase_mmap():
    kver = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", platform.release()).groups())
    if mode == "direct" and kver < (6, 6):
        # no FUSE_DIRECT_IO_ALLOW_MMAP before Linux 6.6: the documented ENODEV
        wfd = os.open(disk, os.O_RDWR)
        try:
            shared_map(wfd, PAGE, 0, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as e:
            if e.errno == errno.ENODEV:
                print("# Linux < 6.6: MAP_SHARED of a writable fd fails with ENODEV, as documented")
                return
            raise
        fail("MAP_SHARED of a direct_io fd worked on Linux < 6.6")
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    # writes through a mapping of a writable fd, msync, munmap, read through plain fds
    base, length = 24 * MiB, 4 * MiB
    wfd = os.open(disk, os.O_RDWR)
    m = shared_map(wfd, length, base, rw)
    same(m[:], shadow(base, length), "mapping before writing to it")
    for i, (rel, n) in enumerate([(0, 100), (PAGE - 1, 2), (MiB - 10, 20), (3 * MiB + 7, 50000),
                                  (length - 3, 3)]):
        buf = data("map%d" % i, n)
        m[rel:rel + n] = buf
        os.pwrite(sh, buf, base + rel)
    m.flush()
    m.close()
    nro = os.open(disk, os.O_RDONLY)
    same(pread_all(nro, length, base), shadow(base, length), "new fd after msync and munmap")
    same(pread_all(wfd, length, base), shadow(base, length), "writer fd after msync and munmap")
    os.close(nro)
    # pwrite over a range mapped twice (writable fd, read-only fd), one page dirtied
    # through the mapping first: both mappings see the new bytes once pwrite returns
    base, length = 40 * MiB, MiB
    rfd = os.open(disk, os.O_RDONLY)
    m1 = shared_map(wfd, length, base, rw)
    m2 = shared_map(rfd, length, base, mmap.PROT_READ)
    same(m1[:], shadow(base, length), "first mapping before pwrite")
    same(m2[:], shadow(base, length), "second mapping before pwrite")
    buf = data("dirty", 5)
    m1[10:15] = buf
    os.pwrite(sh, buf, base + 10)
    same(m2[:PAGE], shadow(base, PAGE), "second mapping after a store through the first")
    for i, (rel, n) in enumerate([(12, 3088), (PAGE * 7 + 5, 2 * PAGE), (length - 9, 9)]):
        buf = data("over%d" % i, n)
        if os.pwrite(wfd, buf, base + rel) != n:
            fail("short pwrite over a mapped range")
        os.pwrite(sh, buf, base + rel)
        same(m1[rel:rel + n], buf, "first mapping right after pwrite %d" % i)
        same(m2[rel:rel + n], buf, "second mapping right after pwrite %d" % i)
    same(m1[:], shadow(base, length), "first mapping after the pwrites")
    same(m2[:], shadow(base, length), "second mapping after the pwrites")
    nro = os.open(disk, os.O_RDONLY)
    same(pread_all(nro, length, base), shadow(base, length), "new fd after the pwrites")
    os.close(nro)
    m1.flush()
    m1.close()
    m2.close()
    os.close(rfd)
    os.fsync(wfd)
    os.close(wfd)
    nro = os.open(disk, os.O_RDONLY)
    check_whole(nro, "new fd after the mapping tests")
    os.close(nro)


def phase_nomap():
    # VDISK_FUSE_KFLAGS=0: MAP_SHARED of a writable fd is ENODEV for direct_io files only
    wfd = os.open(disk, os.O_RDWR)
    try:
        m = shared_map(wfd, PAGE, 0, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as e:
        if mode == "direct" and e.errno == errno.ENODEV:
            m = None
        else:
            fail("MAP_SHARED of a writable fd: %s" % os.strerror(e.errno))
    else:
        if mode == "direct":
            fail("MAP_SHARED of a writable direct_io fd worked without FUSE_DIRECT_IO_ALLOW_MMAP")
        buf = data("nomap", 7)
        m[3:10] = buf
        os.pwrite(sh, buf, 3)
        m.flush()
        m.close()
    # a read-only fd (cached) maps; writes through the fd still work
    rfd = os.open(disk, os.O_RDONLY)
    r = shared_map(rfd, PAGE, 0, mmap.PROT_READ)
    buf = data("kflags", 300)
    if os.pwrite(wfd, buf, 100) != 300:
        fail("short pwrite")
    os.pwrite(sh, buf, 100)
    same(r[:], shadow(0, PAGE), "read-only mapping after pwrite")
    r.close()
    os.close(rfd)
    os.close(wfd)


{"rw": phase_rw, "mmap": phase_mmap, "nomap": phase_nomap}[phase]()
PY

# after_umount IMG SHADOW: the closed image reads as the shadow, peers agree, checks clean.
after_umount()
{
	local img=$1 shadow=$2 line want
	assert_eq "$(vdisk_raw_sha "$img")" "$(sha256 "$shadow")" "vdisk read of $img vs the shadow"
	line=$(vdisk checksum "$img") || die "vdisk checksum $img failed"
	want=$(xxhsum -H2 "$shadow")
	assert_eq "${line%%  *}" "${want%%  *}" "vdisk checksum of $img vs xxhsum -H2 of the shadow"
	qemu_compare "$img" "$shadow"
	qemu_check "$img"
	expect_status 0 vdisk check "$img"
}

# run_pass NAME MODE PHASES... : fresh image, mounted --rw in the caller's environment,
# PHASES of dio.py (MODE direct|cached: what writable opens are expected to be), umount,
# then the checks of the closed image.
run_pass()
{
	local name=$1 mode=$2 img=$SCRATCH/$1.vhdx shadow=$SCRATCH/$1.raw mnt=$SCRATCH/mnt-$1 p
	shift 2
	vdisk create --block-size 1M "$img" "$SIZE" || die "create $img failed"
	truncate -s "$SIZE" "$shadow"
	fuse_mount --rw "$img" "$mnt"
	for p in "$@"; do
		python3 "$SCRATCH/dio.py" "$mnt/disk" "$shadow" "$p" "$mode" "$name" ||
			die "$name: phase $p failed"
	done
	vdisk umount "$mnt" || die "$name: vdisk umount failed"
	is_mounted "$mnt" && die "$name: $mnt still mounted after vdisk umount"
	after_umount "$img" "$shadow"
	log "$name ($mode writable opens): ok"
}

unset VDISK_FUSE_DIRECT_IO VDISK_FUSE_KFLAGS
run_pass direct direct rw mmap
VDISK_FUSE_DIRECT_IO=0 run_pass cached cached rw mmap
VDISK_FUSE_KFLAGS=0 run_pass nokflags direct nomap
VDISK_FUSE_KFLAGS=0 VDISK_FUSE_DIRECT_IO=0 run_pass nokflags-cached cached nomap
log "ok"
