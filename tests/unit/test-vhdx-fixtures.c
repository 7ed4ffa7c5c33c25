/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Windows-made images of shared/fixtures/windows read through
 * vhdx_pread: the SHA-256 of each whole virtual disk equals the one in
 * SOURCES.md (fixed, dynamic, btrfs; the 10 GiB swap, xfs5 and lvm2 with
 * UNMAPPED blocks are compared with qemu-img's reading unless
 * VDISK_TEST_LARGE=1, which hashes them too and adds xfs), their geometry and BAT states
 * are the documented ones, reading leaves the files byte-identical and
 * vhdx_check finds them clean. The dirty-log image replays in memory on a
 * read-only open and on disk on a writable open of a copy, both giving the
 * documented content. The orphan differencing child opens with
 * VHDX_OPEN_NO_PARENT (locator, bitmaps) and is refused otherwise with a
 * message naming the missing parent. Also checks the SHA-256 helper itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <vdisk/vhdx.h>

#include "helpers.h"
#include "vhdx-int.h"

struct fixture {
	const char *gz;
	const char *file_sha; /* of the decompressed file */
	uint64_t disk_size;
	const char *virt_sha; /* of the virtual disk, SOURCES.md */
	enum vhdx_type type;
	uint32_t block_size;
	uint64_t nfull, nzero, nunmapped;
	const char *creator;
	/*
	 * 0: SHA-256 of the virtual disk; 1: only with VDISK_TEST_LARGE=1 (hundreds of MiB
	 * unpacked); 2: 10 GiB disks, whose hashing takes 5-60 s each depending on the load:
	 * compared with qemu-img's reading (which SOURCES.md matched to the same SHA-256)
	 * unless VDISK_TEST_LARGE=1 asks for the SHA-256 itself.
	 */
	int large;
};

static const struct fixture fx_fixed = {
	"hyperv-win10.0.18363-fixed-10M.vhdx.gz",
	"f2d743755f1872335fb1554116feecda67825719080ebb875b97dfacf7c1f590",
	10485760,
	"bc0be4623b15aa84216fb31ba24e3b621ec7f1c72d198c990ac0eced222d9f62",
	VHDX_TYPE_FIXED, 2 << 20, 5, 0, 0, "Microsoft Windows 10.0.18363.0", 0,
};
static const struct fixture fx_dynamic = {
	"hyperv-win10.0.18363-dynamic-10M.vhdx.gz",
	"72e9aa1af9cc53c84585a8017246f14f7c9f2dd54bb3f52e3b70919b2af600b9",
	10485760,
	"8e2b5e9265d694b42b81819e3bff29770eff4ed0f4f9f311693ff3dbdc93efac",
	VHDX_TYPE_DYNAMIC, 32 << 20, 1, 0, 0, "Microsoft Windows 10.0.18363.0", 0,
};
static const struct fixture fx_btrfs = {
	"discutils-btrfs.vhdx.gz",
	"e1ec34ba6fea6a047e5b97f6b9355798f4bf22e5d9fb120013d912a41babf2a4",
	1073741824,
	"0b959f9cb4e18348ad8b646f152178282542c8304f02fddf765e3fd1a1de6864",
	VHDX_TYPE_DYNAMIC, 32 << 20, 2, 1, 0, "Microsoft Windows 10.0.15063.0", 0,
};
static const struct fixture fx_swap = {
	"discutils-swap.vhdx.gz",
	"e5427cf8e9a9dfc28f2c1f24e2a7294e62b3e48bcff25b458f51871092540582",
	10737418240ULL,
	"60dd30b4c74361427d1089510cabb36e2eeda0cc4747f467ea43173acd358c49",
	VHDX_TYPE_DYNAMIC, 32 << 20, 1, 1, 0, "Microsoft Windows 10.0.14393.0", 2,
};
static const struct fixture fx_xfs5 = {
	"discutils-xfs5.vhdx.gz",
	"df4069a8cb6ca640abac262f2d1809b9eff0cc78b16aca802f9f92746db77aa3",
	10737418240ULL,
	"edc5d630b2da0ddb08992afb58ded06ffb56b884e184b4974fda16e31b7e6817",
	VHDX_TYPE_DYNAMIC, 32 << 20, 5, 50, 0, "Microsoft Windows 10.0.17134.0", 2,
};
static const struct fixture fx_lvm2 = {
	"discutils-lvm2.vhdx.gz",
	"2940b9b677e0754da0438505a41ca5c623fb8d3039940a0460c4acdf3c0cc60c",
	10737418240ULL,
	"f7dc6812a3b12a35f3ec895ce981bd59ff4558270fc80cd812c9cd522bff1295",
	VHDX_TYPE_DYNAMIC, 32 << 20, 18, 39, 25, "Microsoft Windows 10.0.14393.0", 2,
};
static const struct fixture fx_xfs = {
	"discutils-xfs.vhdx.gz",
	"caf6bc9f79ea216b9c5c51335d204b066d747b60f8bd2f4deafc707459d0c2ea",
	10737418240ULL,
	"8ca2bd2d91f1c6ada47128fc2f8d38587e73954ede5a664fe2bb09c19606060e",
	VHDX_TYPE_DYNAMIC, 32 << 20, 20, 58, 0, "Microsoft Windows 10.0.14393.0", 1,
};

#define LOG_REPLAY_GZ "discutils-vhdx-log-replay.vhdx.gz"
#define LOG_REPLAY_FILE_SHA "d0805b6f7cdd3908239442900d73053a013079f839656d69bae00a44948983d6"
#define LOG_REPLAY_VIRT_SHA "3ba3b309425b7ff5e8e0199edceed95226250f880c53b24e8eae93865f3fad5e"
#define ORPHAN_GZ "hyperv-win10.0.17763-differencing-8G-orphan.avhdx.gz"
#define ORPHAN_FILE_SHA "a4bf6f9ccaaf8f90b0e9a5b6f964e2b21ca3a9b1675c3a92e73206b04cfb1fbf"
#define ORPHAN_PARENT "Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx"

/* Decompresses a fixture and verifies the unpacked bytes; fails the test when it is missing. */
static const char *unpack(const char *gz, const char *file_sha, const char *out)
{
	static char path[600];
	const char *p;
	char hex[65];
	struct stat st;

	if (!getenv("VDISK_SHARED"))
		fail_msg("VDISK_SHARED is not set: run through ctest or point it at the shared/ folder");
	if (!test_shared_fixture(gz))
		fail_msg("fixture %s is missing from $VDISK_SHARED/fixtures/windows", gz);
	p = test_gunzip_fixture(gz, out);
	if (!p)
		fail_msg("cannot decompress %s", gz);
	snprintf(path, sizeof(path), "%s", p);
	/* gzip has checked its CRC; hashing hundreds of MiB again is for the small ones only */
	if (stat(path, &st) == 0 && st.st_size <= 100 << 20) {
		assert_int_equal(test_sha256_file(path, hex), 0);
		assert_string_equal(hex, file_sha);
	}
	return path;
}

/*
 * Identifies the bytes of a file: its SHA-256, or for files over 100 MiB the SHA-256 of the
 * first 8 MiB (every structure vdisk could write is there) with size and change time.
 */
static void fingerprint(const char *path, char out[160])
{
	struct stat st;
	char hex[65];

	assert_int_equal(stat(path, &st), 0);
	if (st.st_size <= 100 << 20) {
		assert_int_equal(test_sha256_file(path, hex), 0);
	} else {
		struct test_sha256 s;
		uint8_t *buf = malloc(8 << 20);
		assert_non_null(buf);
		assert_int_equal(test_file_pread(path, buf, 8 << 20, 0), 0);
		test_sha256_init(&s);
		test_sha256_update(&s, buf, 8 << 20);
		test_sha256_final_hex(&s, hex);
		free(buf);
	}
	snprintf(out, 160, "%s %lld %lld.%09ld", hex, (long long)st.st_size,
		 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct check_log {
	unsigned n;
	char last[512];
};

static void report(void *opaque, enum vhdx_check_severity sev, const char *msg)
{
	struct check_log *l = opaque;

	l->n++;
	snprintf(l->last, sizeof(l->last), "%s", msg);
	if (sev == VHDX_CHECK_CORRUPT || sev == VHDX_CHECK_LEAK)
		fprintf(stderr, "check: %s\n", msg);
}

static void assert_checks_clean(const char *path)
{
	struct vhdx_check_result res;
	struct check_log l = { 0 };
	struct vdisk_err err = { 0 };

	assert_int_equal(vhdx_check(path, 0, report, &l, &res, &err), 0);
	assert_true(res.opened);
	assert_int_equal(res.corruptions, 0);
	assert_int_equal(res.leaks, 0);
	assert_false(res.log_was_dirty);
}

/* Bytes of the raw file @fd in [off, off+len) are all zero (holes skipped by SEEK_DATA). */
static void assert_raw_zero(int fd, uint64_t off, uint64_t len, uint8_t *buf, size_t cap)
{
	uint64_t end = off + len;

	while (off < end) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;
		if (d < 0 || (uint64_t)d >= end)
			return;
		h = lseek(fd, d, SEEK_HOLE);
		for (uint64_t p = (uint64_t)d; p < MIN((uint64_t)h, end);) {
			size_t n = (size_t)MIN(cap, MIN((uint64_t)h, end) - p);
			assert_int_equal(pread(fd, buf, n, (off_t)p), (ssize_t)n);
			if (!vdisk_is_zero(buf, n))
				fail_msg("qemu-img reads data at 0x%llx where vdisk reads zeros",
					 (unsigned long long)p);
			p += n;
		}
		off = (uint64_t)h;
	}
}

/*
 * Converts @path with qemu-img (sparse raw) and compares: every DATA extent of ours
 * byte for byte, every ZERO/UNALLOCATED extent against zeros in the raw file.
 */
static void compare_with_qemu(struct vhdx_image *img, const char *path)
{
	const size_t cap = 4 << 20;
	uint8_t *a = malloc(cap), *b = malloc(cap);
	struct vdisk_extent ext[64];
	char raw[600];
	uint64_t off = 0, size = vhdx_disk_size(img), data = 0;
	int fd;

	assert_true(a && b);
	assert_true(test_have_program("qemu-img"));
	snprintf(raw, sizeof(raw), "%s.raw", path);
	assert_int_equal(test_system("qemu-img convert -f vhdx -O raw '%s' '%s'", path, raw), 0);
	fd = open(raw, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	while (off < size) {
		int n = vhdx_translate(img, off, size - off, ext, 64);
		assert_true(n > 0);
		for (int i = 0; i < n; i++) {
			assert_int_equal(ext[i].offset, off);
			if (ext[i].type != VDISK_EXTENT_DATA) {
				assert_raw_zero(fd, off, ext[i].length, a, cap);
			} else {
				for (uint64_t p = 0; p < ext[i].length;) {
					size_t m = (size_t)MIN(cap, ext[i].length - p);
					assert_int_equal(vhdx_pread(img, a, m, off + p), 0);
					assert_int_equal(pread(fd, b, m, (off_t)(off + p)), (ssize_t)m);
					assert_memory_equal(a, b, m);
					p += m;
				}
				data += ext[i].length;
			}
			off += ext[i].length;
		}
	}
	/* 18 FULLY_PRESENT blocks of 32 MiB were compared byte for byte */
	assert_true(data > 0);
	close(fd);
	unlink(raw);
	free(a);
	free(b);
}

static void run_fixture(const struct fixture *f)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vhdx_info *info = calloc(1, sizeof(*info));
	struct vdisk_err err = { 0 };
	const char *path;
	char hex[65], fp1[160], fp2[160];
	double t0;
	bool large = getenv("VDISK_TEST_LARGE") && *getenv("VDISK_TEST_LARGE") == '1';

	assert_non_null(info);
	if (f->large == 1 && !large) {
		free(info);
		skip();
	}
	path = unpack(f->gz, f->file_sha, "fixture.vhdx");
	fingerprint(path, fp1);
	vhdx_open_opts_init(&o, sizeof(o));
	/*
	 * NOLOCK: qemu-img reads the file while it is open here, and qemu cannot open an
	 * image on which anyone holds a whole-file lock, even a read lock (not even with -U)
	 */
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK;
	if (vhdx_open(path, &o, &img, &err) < 0)
		fail_msg("%s", err.msg);
	vhdx_get_info(img, info);
	assert_int_equal(info->type, f->type);
	assert_int_equal(info->disk_size_bytes, f->disk_size);
	assert_int_equal(info->block_size_bytes, f->block_size);
	assert_int_equal(info->logical_sector_bytes, 512);
	assert_int_equal(info->physical_sector_bytes, 4096);
	assert_int_equal(info->blocks_by_state[VHDX_BLOCK_FULLY_PRESENT], f->nfull);
	assert_int_equal(info->blocks_by_state[VHDX_BLOCK_ZERO], f->nzero);
	assert_int_equal(info->blocks_by_state[VHDX_BLOCK_UNMAPPED], f->nunmapped);
	assert_int_equal(info->blocks_by_state[VHDX_BLOCK_PARTIALLY_PRESENT], 0);
	assert_int_equal(info->blocks_total, (f->disk_size + f->block_size - 1) / f->block_size);
	assert_string_equal(info->creator, f->creator);
	assert_false(info->log_replayed);
	assert_true(vdisk_guid_is_zero(&info->log_guid));
	assert_false(info->has_parent);
	assert_int_equal(info->chain_depth, 1);
	assert_int_equal(info->log_offset, 1 << 20);
	assert_int_equal(info->log_length, 1 << 20);
	t0 = now();
	if (f->large == 2 && !large) {
		/* quick mode: the same bytes as qemu-img, compared where either side has data */
		compare_with_qemu(img, path);
	} else {
		assert_int_equal(test_vhdx_sha256(img, hex), 0);
		assert_string_equal(hex, f->virt_sha);
	}
	fprintf(stderr, "%s: %.1f s to read %llu bytes\n", f->gz, now() - t0,
		(unsigned long long)f->disk_size);
	/* a sector of an MBR-formatted disk: 0x55AA at 510 (fixed/dynamic per SOURCES.md) */
	if (f->disk_size == 10485760) {
		uint8_t sec[512];
		assert_int_equal(vhdx_pread(img, sec, sizeof(sec), 0), 0);
		assert_int_equal(sec[510], 0x55);
		assert_int_equal(sec[511], 0xAA);
	}
	assert_int_equal(vhdx_close(img, &err), 0);

	/* reading changed nothing; a writable open + close that writes nothing neither */
	fingerprint(path, fp2);
	assert_string_equal(fp1, fp2);
	if (vhdx_open(path, NULL, &img, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(vhdx_close(img, &err), 0);
	fingerprint(path, fp2);
	assert_string_equal(fp1, fp2);

	assert_checks_clean(path);
	unlink(path);
	free(info);
}

static void test_fixed(void **state)
{
	run_fixture(&fx_fixed);
}

static void test_dynamic(void **state)
{
	run_fixture(&fx_dynamic);
}

static void test_btrfs(void **state)
{
	run_fixture(&fx_btrfs);
}

static void test_swap(void **state)
{
	run_fixture(&fx_swap);
}

static void test_xfs5(void **state)
{
	run_fixture(&fx_xfs5);
}

static void test_lvm2_unmapped(void **state)
{
	run_fixture(&fx_lvm2);
}

static void test_xfs_large(void **state)
{
	run_fixture(&fx_xfs);
}

/* Fixed image: the payload blocks sit contiguously from 4 MiB, in BAT order. */
static void test_fixed_layout(void **state)
{
	const char *path = unpack(fx_fixed.gz, fx_fixed.file_sha, "fixed-layout.vhdx");
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vdisk_extent ext[8];
	struct vdisk_err err = { 0 };
	int n;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY;
	if (vhdx_open(path, &o, &img, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(img->hdr.seq, 7);
	assert_int_equal(img->cur_slot, 1);
	assert_true(img->leave_alloc);
	n = vhdx_translate(img, 0, fx_fixed.disk_size, ext, 8);
	/* five physically contiguous blocks merge into one extent */
	assert_int_equal(n, 1);
	assert_int_equal(ext[0].type, VDISK_EXTENT_DATA);
	assert_int_equal(ext[0].file_offset, 4 << 20);
	assert_int_equal(ext[0].length, fx_fixed.disk_size);
	assert_int_equal(ext[0].layer, 0);
	vhdx_close(img, NULL);
	unlink(path);
}

static void test_log_replay_readonly(void **state)
{
	const char *path = unpack(LOG_REPLAY_GZ, LOG_REPLAY_FILE_SHA, "log-replay.vhdx");
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vhdx_info *info = calloc(1, sizeof(*info));
	struct vdisk_err err = { 0 };
	struct vhdx_check_result res;
	uint8_t sec[512];
	char hex[65];

	assert_non_null(info);
	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY;
	if (vhdx_open(path, &o, &img, &err) < 0)
		fail_msg("%s", err.msg);
	vhdx_get_info(img, info);
	assert_true(info->log_replayed);
	assert_false(vdisk_guid_is_zero(&info->log_guid));
	assert_int_equal(info->disk_size_bytes, 1ULL << 30);
	assert_int_equal(info->block_size_bytes, 32 << 20);
	/* after replay block 0 is FULLY_PRESENT at 4 MiB and sector 0 holds an MBR */
	assert_int_equal(img->bat[0], (4ULL << 20) | VHDX_BLOCK_FULLY_PRESENT);
	assert_int_equal(vhdx_pread(img, sec, sizeof(sec), 0), 0);
	assert_int_equal(sec[510], 0x55);
	assert_int_equal(sec[511], 0xAA);
	assert_int_equal(test_vhdx_sha256(img, hex), 0);
	assert_string_equal(hex, LOG_REPLAY_VIRT_SHA);
	assert_int_equal(vhdx_close(img, &err), 0);
	/* the file is untouched */
	assert_int_equal(test_sha256_file(path, hex), 0);
	assert_string_equal(hex, LOG_REPLAY_FILE_SHA);
	/* check reports the dirty log as a finding, without repairing anything */
	assert_int_equal(vhdx_check(path, 0, NULL, NULL, &res, &err), 0);
	assert_true(res.opened);
	assert_true(res.log_was_dirty);
	assert_true(res.corruptions >= 1);
	assert_int_equal(test_sha256_file(path, hex), 0);
	assert_string_equal(hex, LOG_REPLAY_FILE_SHA);
	unlink(path);
	free(info);
}

static void test_log_replay_writable(void **state)
{
	const char *path = unpack(LOG_REPLAY_GZ, LOG_REPLAY_FILE_SHA, "log-replay-rw.vhdx");
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vhdx_info *info = calloc(1, sizeof(*info));
	struct vdisk_err err = { 0 };
	uint64_t seq;
	char hex[65];

	assert_non_null(info);
	if (vhdx_open(path, NULL, &img, &err) < 0)
		fail_msg("%s", err.msg);
	vhdx_get_info(img, info);
	assert_true(info->log_replayed);
	seq = info->header_sequence;
	/* replayed on disk: the header no longer names a log */
	assert_true(vdisk_guid_is_zero(&img->hdr.log_guid));
	assert_int_equal(test_vhdx_sha256(img, hex), 0);
	assert_string_equal(hex, LOG_REPLAY_VIRT_SHA);
	assert_int_equal(vhdx_close(img, &err), 0);

	/* reopen: clean, same content, and an open+close writes nothing more */
	assert_int_equal(test_sha256_file(path, hex), 0);
	assert_string_not_equal(hex, LOG_REPLAY_FILE_SHA);
	char file_after[65];
	memcpy(file_after, hex, sizeof(hex));
	if (vhdx_open(path, NULL, &img, &err) < 0)
		fail_msg("%s", err.msg);
	vhdx_get_info(img, info);
	assert_false(info->log_replayed);
	assert_true(vdisk_guid_is_zero(&info->log_guid));
	assert_int_equal(info->header_sequence, seq);
	assert_int_equal(vhdx_close(img, &err), 0);
	assert_int_equal(test_sha256_file(path, hex), 0);
	assert_string_equal(hex, file_after);
	assert_checks_clean(path);
	/* qemu-img accepts the replayed file and reads what vdisk reads */
	assert_int_equal(test_system("qemu-img check -q -f vhdx '%s'", path), 0);
	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK;
	if (vhdx_open(path, &o, &img, &err) < 0)
		fail_msg("%s", err.msg);
	compare_with_qemu(img, path);
	vhdx_close(img, NULL);
	unlink(path);
	free(info);
}

static unsigned popcount_buf(const uint8_t *p, size_t len)
{
	unsigned n = 0;

	for (size_t i = 0; i < len; i++)
		n += (unsigned)__builtin_popcount(p[i]);
	return n;
}

static void test_orphan_differencing(void **state)
{
	const char *path = unpack(ORPHAN_GZ, ORPHAN_FILE_SHA, "orphan.avhdx");
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vhdx_info *info = calloc(1, sizeof(*info));
	struct vdisk_err err = { 0 };
	struct vdisk_extent ext[64];
	unsigned bits = 0;
	uint64_t present_run = UINT64_MAX;
	char hex[65];
	int r;

	assert_non_null(info);
	/* a normal open needs the parent: refused, naming it */
	r = vhdx_open(path, NULL, &img, &err);
	assert_int_equal(r, -ENOENT);
	assert_int_equal(err.code, -ENOENT);
	assert_non_null(strstr(err.msg, "parent not found"));
	assert_non_null(strstr(err.msg, ORPHAN_PARENT));
	assert_non_null(strstr(err.msg, "{ff34003b-11ed-4cf8-a166-b2be05e20b80}"));
	vdisk_err_clear(&err);
	o.flags = 0;
	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY;
	r = vhdx_open(path, &o, &img, &err);
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(err.msg, ORPHAN_PARENT));
	vdisk_err_clear(&err);

	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NO_PARENT;
	if (vhdx_open(path, &o, &img, &err) < 0)
		fail_msg("%s", err.msg);
	vhdx_get_info(img, info);
	assert_int_equal(info->type, VHDX_TYPE_DIFFERENCING);
	assert_true(info->has_parent);
	assert_null(info->parent_path);
	assert_null(vhdx_parent(img));
	assert_int_equal(info->disk_size_bytes, 8ULL << 30);
	assert_int_equal(info->block_size_bytes, 2 << 20);
	assert_int_equal(info->chunk_ratio, 2048);
	assert_int_equal(info->blocks_by_state[VHDX_BLOCK_PARTIALLY_PRESENT], 32);
	assert_int_equal(info->blocks_by_state[VHDX_BLOCK_FULLY_PRESENT], 0);
	assert_string_equal(info->creator, "Microsoft Windows 10.0.17763.0");
	assert_int_equal(info->locator_count, 5);
	assert_string_equal(info->locator[0].key, "parent_linkage");
	assert_string_equal(info->locator[0].value, "{ff34003b-11ed-4cf8-a166-b2be05e20b80}");
	assert_string_equal(info->locator[1].key, "absolute_win32_path");
	assert_string_equal(info->locator[1].value,
			    "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual hard disks\\" ORPHAN_PARENT);
	assert_string_equal(info->locator[2].key, "relative_path");
	assert_string_equal(info->locator[2].value, ".\\" ORPHAN_PARENT);
	assert_string_equal(info->locator[3].key, "volume_path");
	assert_true(strncmp(info->locator[3].value, "\\\\?\\Volume{0eba351e-", 20) == 0);
	assert_string_equal(info->locator[4].key, "parent_linkage2");
	assert_string_equal(info->locator[4].value, "{00000000-0000-0000-0000-000000000000}");

	/* two sector bitmaps, present at the BAT indices c*(CR+1)+CR; 6200 sectors in this file */
	assert_int_equal(img->nr_chunks, 2);
	for (uint64_t c = 0; c < img->nr_chunks; c++) {
		assert_int_equal(img->bat[vhdx_sb_index(c, 2048)] & 7, VHDX_SB_PRESENT);
		assert_non_null(img->sbm[c]);
		bits += popcount_buf(img->sbm[c], VHDX_SB_BLOCK_SIZE);
	}
	assert_int_equal(bits, 6200);

	/*
	 * Every sector whose bit is set translates to DATA at the block's offset + the
	 * same offset inside the block; a range with a clear bit needs the parent (-ENOLINK).
	 */
	for (uint64_t b = 0; b < img->nr_blocks && present_run == UINT64_MAX; b++) {
		uint64_t e = img->bat[vhdx_bat_index(b, 2048)];
		if ((e & 7) != VHDX_BLOCK_PARTIALLY_PRESENT)
			continue;
		for (uint64_t s = 0; s < (2 << 20) / 512; s++) {
			uint64_t sec = b * 4096 + s;
			const uint8_t *map = img->sbm[sec >> 23];
			if ((map[(sec & ((1 << 23) - 1)) >> 3] >> (sec & 7)) & 1) {
				present_run = sec;
				r = vhdx_translate(img, sec * 512, 512, ext, 64);
				assert_int_equal(r, 1);
				assert_int_equal(ext[0].type, VDISK_EXTENT_DATA);
				assert_int_equal(ext[0].file_offset,
						 (e & VHDX_BAT_OFFSET_MASK) + s * 512);
				break;
			}
		}
	}
	assert_int_not_equal(present_run, UINT64_MAX);
	r = vhdx_translate(img, 8ULL << 30 >> 1, 4096, ext, 64);
	assert_int_equal(r, -ENOLINK);
	assert_int_equal(vhdx_close(img, &err), 0);
	assert_int_equal(test_sha256_file(path, hex), 0);
	assert_string_equal(hex, ORPHAN_FILE_SHA);
	unlink(path);
	free(info);
}

/* The SHA-256 helper against FIPS 180-4 vectors, sha256sum, and its own portable path. */
static void test_sha256_helper(void **state)
{
	static const struct {
		const char *in, *out;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	const char *path = test_tmp_path("sha-data");
	size_t len = 1000003;
	uint8_t *buf = malloc(len);
	struct test_sha256 s;
	char hex[65], hex2[65], cmd_out[65];
	FILE *f;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		test_sha256_init(&s);
		test_sha256_update(&s, v[i].in, strlen(v[i].in));
		test_sha256_final_hex(&s, hex);
		assert_string_equal(hex, v[i].out);
	}
	assert_non_null(buf);
	test_fill_pattern(buf, len, 77);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
	/* odd split points exercise the buffering */
	test_sha256_init(&s);
	test_sha256_update(&s, buf, 7);
	test_sha256_update(&s, buf + 7, 100);
	test_sha256_update(&s, buf + 107, len - 107);
	test_sha256_final_hex(&s, hex);
	assert_int_equal(test_sha256_file(path, hex2), 0);
	assert_string_equal(hex, hex2);
	assert_int_equal(test_system("sha256sum '%s' | cut -c1-64 > '%s.sum'", path, path), 0);
	char sum_path[600];
	snprintf(sum_path, sizeof(sum_path), "%s.sum", path);
	f = fopen(sum_path, "r");
	assert_non_null(f);
	assert_non_null(fgets(cmd_out, sizeof(cmd_out), f));
	fclose(f);
	assert_string_equal(hex, cmd_out);
	/* the portable code gives the same answers */
	test_sha256_force_portable = 1;
	test_sha256_init(&s);
	test_sha256_update(&s, buf, len);
	test_sha256_final_hex(&s, hex2);
	test_sha256_init(&s);
	test_sha256_update(&s, v[2].in, strlen(v[2].in));
	test_sha256_final_hex(&s, cmd_out);
	test_sha256_force_portable = 0;
	assert_string_equal(hex2, hex);
	assert_string_equal(cmd_out, v[2].out);
	unlink(path);
	unlink(sum_path);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_helper),
		cmocka_unit_test(test_fixed),
		cmocka_unit_test(test_fixed_layout),
		cmocka_unit_test(test_dynamic),
		cmocka_unit_test(test_btrfs),
		cmocka_unit_test(test_log_replay_readonly),
		cmocka_unit_test(test_log_replay_writable),
		cmocka_unit_test(test_orphan_differencing),
		cmocka_unit_test(test_swap),
		cmocka_unit_test(test_xfs5),
		cmocka_unit_test(test_lvm2_unmapped),
		cmocka_unit_test(test_xfs_large),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
