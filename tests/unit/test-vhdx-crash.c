/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Crash safety. VDISK_FAULT_INJECT_WRITES=N makes the Nth metadata write of
 * a writable open (header, log entry or in-place page) fail with -EIO and
 * the image stop writing; vhdx_abandon() then drops it like a crash. For
 * every N up to the number of metadata writes of the whole scenario (writes,
 * flush, allocating writes and a discard, flush, more, flush), the crashed
 * file is reopened read-only (log replayed in memory, file left
 * byte-identical) and writable (replayed on disk): every write made before
 * the last successful flush reads back intact, later ones read old or new,
 * vhdx_check finds no corruption (its repair then removes the leaks) and
 * qemu-img check accepts the file. An image stopped between its log write
 * and the in-place writes reads the same through vdisk's read-only replay
 * and after qemu-img check -r all. Also: locks (one writer, many readers,
 * -EBUSY with a clear message), opens that write nothing leave the file
 * byte-identical, and close reports an earlier failure.
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
#include <unistd.h>

#include <cmocka.h>

#include <vdisk/vhdx.h>

#include "helpers.h"
#include "vhdx-int.h"

#define MB (1ULL << 20)
#define DISK (2ULL << 30) /* 1 MiB blocks: four BAT pages are touched below */


/* ---- the scenario ---- */

enum op_kind { W, DISCARD, FLUSH };

struct op {
	enum op_kind kind;
	uint64_t off;
	uint32_t len;
	uint64_t seed;
};

/*
 * Three phases, each ending in a flush. Writes stay inside one 1 MiB block so each reads
 * back either entirely old or entirely new after a crash. Blocks 0, 600, 1100 and 1700
 * sit in four different BAT pages.
 */
static const struct op script[] = {
	{ W, 0, 65536, 1 },
	{ W, 600 * MB + 4096, 8192, 2 },
	{ W, 3 * MB + 100, 5000, 3 }, /* unaligned: read-modify-write of two sectors */
	{ W, 5 * MB, MB, 4 },
	{ FLUSH, 0, 0, 0 },
	{ W, 1100 * MB, 4096, 5 },
	{ W, 0, 4096, 6 },            /* in place */
	{ DISCARD, 5 * MB, MB, 0 },   /* whole block */
	{ W, 1700 * MB + MB - 4096, 4096, 7 },
	{ W, 6 * MB, 700000, 8 },
	{ FLUSH, 0, 0, 0 },
	{ W, 7 * MB, 4096, 9 },
	{ W, 1101 * MB, 12288, 10 },
	{ W, 600 * MB + 4096, 512, 11 }, /* in place */
	{ FLUSH, 0, 0, 0 },
};

#define NOPS (sizeof(script) / sizeof(script[0]))

/* Virtual ranges the script touches, with a private shadow for each. */
struct region {
	uint64_t off;
	uint32_t len;
};

static const struct region regions[] = {
	{ 0, 8 * MB }, { 600 * MB, MB }, { 1100 * MB, 2 * MB }, { 1700 * MB, MB },
};

#define NREG (sizeof(regions) / sizeof(regions[0]))

static uint8_t *region_shadow(uint8_t *const sh[NREG], uint64_t off, uint32_t len)
{
	for (size_t i = 0; i < NREG; i++)
		if (off >= regions[i].off && off + len <= regions[i].off + regions[i].len)
			return sh[i] + (off - regions[i].off);
	fail_msg("offset %#llx outside the tracked regions", (unsigned long long)off);
	return NULL;
}

static void shadow_apply(uint8_t *const sh[NREG], const struct op *o)
{
	uint8_t *p = region_shadow(sh, o->off, o->len);

	if (o->kind == W)
		test_fill_fast(p, o->len, o->seed);
	else if (o->kind == DISCARD)
		memset(p, 0, o->len);
}

/* What the regions hold before the script: zeros, or a child's parent content. */
static uint8_t *base_content[NREG];

static void shadows_alloc(uint8_t *sh[NREG])
{
	for (size_t i = 0; i < NREG; i++) {
		sh[i] = calloc(1, regions[i].len);
		assert_non_null(sh[i]);
		if (base_content[i])
			memcpy(sh[i], base_content[i], regions[i].len);
	}
}

static void shadows_free(uint8_t *sh[NREG])
{
	for (size_t i = 0; i < NREG; i++)
		free(sh[i]);
}

/*
 * Runs the script on @img until an operation fails. Returns the index of the first op not
 * known durable: every op before the last successful flush is durable.
 */
static unsigned run_script(struct vhdx_image *img, unsigned *ret_failed_at)
{
	unsigned durable = 0;
	uint8_t *buf = malloc(MB);

	assert_non_null(buf);
	*ret_failed_at = NOPS;
	for (unsigned i = 0; i < NOPS; i++) {
		const struct op *o = &script[i];
		int r;

		if (o->kind == W) {
			test_fill_fast(buf, o->len, o->seed);
			r = vhdx_pwrite(img, buf, o->len, o->off);
		} else if (o->kind == DISCARD) {
			r = vhdx_discard(img, o->off, o->len);
		} else {
			r = vhdx_flush(img);
			if (r == 0)
				durable = i + 1;
		}
		if (r < 0) {
			assert_int_equal(r, -EIO);
			*ret_failed_at = i;
			break;
		}
	}
	free(buf);
	return durable;
}

/*
 * After a crash: ops before @durable read back exactly; for every op after, the block it
 * touched reads either as before that op or as after it (nothing else).
 */
static void verify(struct vhdx_image *img, unsigned durable, unsigned attempted)
{
	uint8_t *sh[NREG], *got = malloc(8 * MB);

	assert_non_null(got);
	shadows_alloc(sh);
	for (unsigned i = 0; i < durable; i++)
		shadow_apply(sh, &script[i]);
	/* everything the script touches, compared where no later op could have landed */
	for (size_t r = 0; r < NREG; r++) {
		assert_int_equal(vhdx_pread(img, got, regions[r].len, regions[r].off), 0);
		for (uint64_t b = 0; b < regions[r].len; b += MB) {
			uint64_t v = regions[r].off + b;
			bool touched_later = false;
			for (unsigned i = durable; i < attempted; i++)
				if (script[i].kind != FLUSH && script[i].off < v + MB &&
				    v < script[i].off + script[i].len)
					touched_later = true;
			if (touched_later)
				continue;
			if (memcmp(got + b, sh[r] + b, MB) != 0)
				fail_msg("block at %#llx lost data written before the last successful flush (op %u)",
					 (unsigned long long)v, durable);
		}
	}
	/* each later op: its range is old or new */
	for (unsigned i = durable; i < attempted; i++) {
		const struct op *o = &script[i];
		uint8_t *before, *after;
		if (o->kind == FLUSH)
			continue;
		before = malloc(o->len);
		after = malloc(o->len);
		assert_true(before && after);
		memcpy(before, region_shadow(sh, o->off, o->len), o->len);
		shadow_apply(sh, o);
		memcpy(after, region_shadow(sh, o->off, o->len), o->len);
		assert_int_equal(vhdx_pread(img, got, o->len, o->off), 0);
		if (memcmp(got, after, o->len) != 0 && memcmp(got, before, o->len) != 0) {
			/* ops after the crash point may overlap each other: accept any later state */
			bool ok = false;
			for (unsigned j = i + 1; j < attempted && !ok; j++) {
				shadow_apply(sh, &script[j]);
				ok = memcmp(got, region_shadow(sh, o->off, o->len), o->len) == 0;
			}
			if (!ok)
				fail_msg("op %u (%s %u at %#llx) reads neither its old nor its new content",
					 i, o->kind == W ? "write" : "discard", o->len,
					 (unsigned long long)o->off);
			free(before);
			free(after);
			break;
		}
		free(before);
		free(after);
	}
	/* nothing appeared outside */
	assert_int_equal(vhdx_pread(img, got, MB, 100 * MB), 0);
	assert_true(vdisk_is_zero(got, MB));
	assert_int_equal(vhdx_pread(img, got, MB, DISK - MB), 0);
	assert_true(vdisk_is_zero(got, MB));
	shadows_free(sh);
	free(got);
}

static struct vhdx_image *open_with_fault(const char *path, int n)
{
	char v[32];
	struct vhdx_image *img;

	snprintf(v, sizeof(v), "%d", n);
	setenv("VDISK_FAULT_INJECT_WRITES", v, 1);
	img = test_open_image(path, 0);
	unsetenv("VDISK_FAULT_INJECT_WRITES");
	return img;
}

static void check_no_corruption(const char *path, bool repair_leaks)
{
	struct vhdx_check_result res;
	struct vdisk_err err = { 0 };

	assert_int_equal(vhdx_check(path, 0, NULL, NULL, &res, &err), 0);
	assert_true(res.opened);
	assert_false(res.log_was_dirty);
	assert_int_equal(res.corruptions, 0);
	if (repair_leaks && res.leaks) {
		assert_int_equal(vhdx_check(path, VHDX_CHECK_REPAIR, NULL, NULL, &res, &err), 0);
		assert_int_equal(res.corruptions, 0);
		assert_int_equal(res.leaks, 0);
	}
}

/*
 * Crashes the script at every metadata write of @pristine (a copy each time) and checks
 * what a read-only and a writable reopen see. @parent: the child's parent, which must not
 * change; qemu-img cannot open children, so it only checks the others.
 */
static void fault_loop(const char *pristine, const char *parent)
{
	char crashed[700], ro[700], ph1[65], ph2[65];
	struct vhdx_image *img;
	unsigned failed_at, durable, total, runs = 0, dirty_runs = 0;
	char h1[65], h2[65];

	/* the copies live next to the pristine file, so a child finds its parent */
	snprintf(crashed, sizeof(crashed), "%s.crashed", pristine);
	snprintf(ro, sizeof(ro), "%s.ro", pristine);
	if (parent)
		assert_int_equal(test_sha256_file(parent, ph1), 0);

	/* how many metadata writes the whole scenario makes */
	unlink(crashed);
	assert_int_equal(test_copy_file(pristine, crashed), 0);
	img = open_with_fault(crashed, 1000000);
	durable = run_script(img, &failed_at);
	assert_int_equal(failed_at, NOPS);
	assert_int_equal(durable, NOPS);
	total = (unsigned)(1000000 - img->fail_after_writes);
	vhdx_abandon(img);
	fprintf(stderr, "the scenario makes %u metadata writes\n", total);
	assert_true(total >= 12);

	for (unsigned n = 1; n <= total + 1; n++) {
		unlink(crashed);
		assert_int_equal(test_copy_file(pristine, crashed), 0);
		img = open_with_fault(crashed, (int)n);
		durable = run_script(img, &failed_at);
		vhdx_abandon(img);
		if (n <= total)
			assert_int_not_equal(failed_at, NOPS);
		/* the attempted ops: up to and including the failing one */
		unsigned attempted = failed_at < NOPS ? failed_at + 1 : NOPS;

		/* read-only: replayed in memory, the file stays as the crash left it */
		unlink(ro);
		assert_int_equal(test_copy_file(crashed, ro), 0);
		assert_int_equal(test_sha256_file(ro, h1), 0);
		img = test_open_image(ro, VHDX_OPEN_RDONLY);
		dirty_runs += img->log_replayed;
		verify(img, durable, attempted);
		vhdx_close(img, NULL);
		assert_int_equal(test_sha256_file(ro, h2), 0);
		assert_string_equal(h1, h2);

		/* writable: replayed on disk; then clean, and the same content */
		img = test_open_image(crashed, 0);
		verify(img, durable, attempted);
		assert_int_equal(vhdx_close(img, NULL), 0);
		check_no_corruption(crashed, false);
		img = test_open_image(crashed, VHDX_OPEN_RDONLY);
		assert_false(img->log_replayed);
		verify(img, durable, attempted);
		vhdx_close(img, NULL);
		if (!parent && test_system("qemu-img check -q -f vhdx '%s'", crashed) != 0)
			fail_msg("qemu-img check fails after a crash at metadata write %u", n);
		/* leaks (space allocated but never mapped) go away with repair, content stays */
		check_no_corruption(crashed, true);
		img = test_open_image(crashed, VHDX_OPEN_RDONLY);
		verify(img, durable, attempted);
		vhdx_close(img, NULL);
		runs++;
	}
	fprintf(stderr, "%u crash points verified, %u left a log to replay\n", runs, dirty_runs);
	assert_true(dirty_runs > 0);
	if (parent) {
		assert_int_equal(test_sha256_file(parent, ph2), 0);
		assert_string_equal(ph1, ph2);
	}
	unlink(crashed);
	unlink(ro);
}

static void test_fault_injection(void **state)
{
	char pristine[700];

	snprintf(pristine, sizeof(pristine), "%s", test_tmp_path("crash-pristine.vhdx"));
	test_create_image(pristine, VHDX_TYPE_DYNAMIC, DISK, 1 << 20, NULL);
	assert_true(test_have_program("qemu-img"));
	fault_loop(pristine, NULL);
	unlink(pristine);
}

/* The same over a differencing child: its commits carry sector-bitmap pages as well. */
static void test_fault_injection_child(void **state)
{
	char parent[700], pristine[700];
	struct vhdx_image *p;

	snprintf(parent, sizeof(parent), "%s", test_tmp_path("crash-parent.vhdx"));
	snprintf(pristine, sizeof(pristine), "%s", test_tmp_path("crash-child.avhdx"));
	test_create_image(parent, VHDX_TYPE_DYNAMIC, DISK, 1 << 20, NULL);
	p = test_open_image(parent, 0);
	for (size_t r = 0; r < NREG; r++) {
		base_content[r] = malloc(regions[r].len);
		assert_non_null(base_content[r]);
		test_fill_fast(base_content[r], regions[r].len, 5000 + r);
		/* the parent holds data everywhere in the regions but in one 64 KiB hole each */
		memset(base_content[r] + regions[r].len / 2, 0, 65536);
		assert_int_equal(vhdx_pwrite(p, base_content[r], regions[r].len, regions[r].off), 0);
	}
	assert_int_equal(vhdx_close(p, NULL), 0);
	test_create_image(pristine, VHDX_TYPE_DIFFERENCING, 0, 0, parent);
	fault_loop(pristine, parent);
	for (size_t r = 0; r < NREG; r++) {
		free(base_content[r]);
		base_content[r] = NULL;
	}
	unlink(pristine);
	unlink(parent);
}

/*
 * One flush with more dirty BAT pages than one log entry holds (1 MiB log: 250 pages):
 * two entries, the second wrapping to the start of the log over the applied first one.
 * Crashes anywhere in it leave each write entirely old or new, and all new once the flush
 * returned.
 */
#define BIG_DISK (200ULL << 30)
#define BIG_N 350

static void big_write(struct vhdx_image *img, unsigned i, bool expect_ok, int *ret)
{
	uint8_t buf[4096];

	test_fill_fast(buf, sizeof(buf), 77000 + i);
	*ret = vhdx_pwrite(img, buf, sizeof(buf), (uint64_t)i * 512 * MB + (i % 7) * 4096);
	if (expect_ok)
		assert_int_equal(*ret, 0);
}

static void big_verify(const char *path, bool all_new)
{
	struct vhdx_image *img = test_open_image(path, VHDX_OPEN_RDONLY);
	uint8_t want[4096], got[4096];
	unsigned nnew = 0;

	for (unsigned i = 0; i < BIG_N; i++) {
		test_fill_fast(want, sizeof(want), 77000 + i);
		assert_int_equal(vhdx_pread(img, got, sizeof(got),
					    (uint64_t)i * 512 * MB + (i % 7) * 4096),
				 0);
		if (memcmp(got, want, sizeof(got)) == 0)
			nnew++;
		else if (all_new || !vdisk_is_zero(got, sizeof(got)))
			fail_msg("%s: write %u reads neither old nor new%s", path, i,
				 all_new ? " (after a successful flush)" : "");
	}
	vhdx_close(img, NULL);
}

static void test_multi_entry_commit(void **state)
{
	char pristine[700], crashed[700];
	struct vhdx_image *img;
	unsigned before, total;
	int r;

	snprintf(pristine, sizeof(pristine), "%s", test_tmp_path("big.vhdx"));
	snprintf(crashed, sizeof(crashed), "%s", test_tmp_path("big-crashed.vhdx"));
	test_create_image(pristine, VHDX_TYPE_DYNAMIC, BIG_DISK, 1 << 20, NULL);

	unlink(crashed);
	assert_int_equal(test_copy_file(pristine, crashed), 0);
	img = open_with_fault(crashed, 1000000);
	for (unsigned i = 0; i < BIG_N; i++)
		big_write(img, i, true, &r);
	before = (unsigned)(1000000 - img->fail_after_writes);
	assert_int_equal(vhdx_flush(img), 0);
	total = (unsigned)(1000000 - img->fail_after_writes);
	assert_int_equal(img->nr_dirty, 0);
	vhdx_abandon(img);
	fprintf(stderr, "flush of %u BAT pages: %u metadata writes\n", BIG_N, total - before);
	/* two log entries, each followed by its in-place pages; the first needs the header too */
	assert_true(total - before >= BIG_N + 2);
	big_verify(crashed, true);
	img = test_open_image(crashed, 0);
	assert_true(img->log_replayed);
	assert_int_equal(vhdx_close(img, NULL), 0);
	big_verify(crashed, true);
	check_no_corruption(crashed, false);

	/* first entry, header, its pages, second entry, its pages, the last write */
	const unsigned at[] = { 1, 2, 4, 150, 253, 254, 256, total - before };
	for (size_t k = 0; k < ARRAY_SIZE(at); k++) {
		unsigned n = before + at[k];
		bool flushed;
		unlink(crashed);
		assert_int_equal(test_copy_file(pristine, crashed), 0);
		img = open_with_fault(crashed, (int)n);
		for (unsigned i = 0; i < BIG_N; i++)
			big_write(img, i, true, &r);
		flushed = vhdx_flush(img) == 0;
		vhdx_abandon(img);
		big_verify(crashed, flushed);
		img = test_open_image(crashed, 0);
		assert_int_equal(vhdx_close(img, NULL), 0);
		big_verify(crashed, flushed);
		check_no_corruption(crashed, false);
	}
	assert_int_equal(test_system("qemu-img check -q -f vhdx '%s'", crashed), 0);
	unlink(crashed);
	unlink(pristine);
}

/* Many commits in one session: the log wraps around many times; a crash after that replays right. */
static void test_log_wraps(void **state)
{
	char path[700], copy[700];
	struct vhdx_image *img;
	uint8_t buf[4096], got[4096];
	const unsigned rounds = 200;

	snprintf(path, sizeof(path), "%s", test_tmp_path("wrap.vhdx"));
	snprintf(copy, sizeof(copy), "%s", test_tmp_path("wrap-ro.vhdx"));
	test_create_image(path, VHDX_TYPE_DYNAMIC, BIG_DISK, 1 << 20, NULL);
	img = test_open_image(path, 0);
	for (unsigned i = 0; i < rounds; i++) {
		/* each commit: 3 BAT pages (+ descriptors) = 16 KiB of log */
		for (unsigned k = 0; k < 3; k++) {
			test_fill_fast(buf, sizeof(buf), i * 3 + k);
			assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf),
						     ((uint64_t)(k * 120 + i % 120) * 512 + i / 120) * MB),
					 0);
		}
		assert_int_equal(vhdx_flush(img), 0);
	}
	assert_true(img->log_seq >= rounds);
	vhdx_abandon(img);
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 0) {
			unlink(copy);
			assert_int_equal(test_copy_file(path, copy), 0);
			img = test_open_image(copy, VHDX_OPEN_RDONLY);
		} else {
			img = test_open_image(path, 0);
		}
		assert_true(img->log_replayed);
		for (unsigned i = 0; i < rounds; i++)
			for (unsigned k = 0; k < 3; k++) {
				test_fill_fast(buf, sizeof(buf), i * 3 + k);
				assert_int_equal(vhdx_pread(img, got, sizeof(got),
							    ((uint64_t)(k * 120 + i % 120) * 512 +
							     i / 120) * MB),
						 0);
				assert_memory_equal(buf, got, sizeof(got));
			}
		assert_int_equal(vhdx_close(img, NULL), 0);
	}
	check_no_corruption(path, false);
	assert_int_equal(test_system("qemu-img check -q -f vhdx '%s'", path), 0);
	unlink(copy);
	unlink(path);
}

/*
 * The virtual disk of @vhdx (opened read-only, replayed in memory if dirty) equals the raw
 * file @raw: byte for byte where either has data, zeros elsewhere (SEEK_DATA on the raw).
 */
static void compare_with_raw(const char *vhdx, const char *raw)
{
	struct vhdx_image *img = test_open_image(vhdx, VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK);
	uint64_t size = vhdx_disk_size(img), off = 0;
	uint8_t *a = malloc(MB), *b = malloc(MB);
	struct vdisk_extent ext[64];
	int fd = open(raw, O_RDONLY | O_CLOEXEC);

	assert_true(a && b && fd >= 0);
	while (off < size) {
		int n = vhdx_translate(img, off, size - off, ext, 64);
		assert_true(n > 0);
		for (int i = 0; i < n; i++) {
			uint64_t end = ext[i].offset + ext[i].length, p = ext[i].offset;
			while (p < end) {
				/* where our side is DATA compare everything; else only the raw's data */
				uint64_t q = p;
				if (ext[i].type != VDISK_EXTENT_DATA) {
					off_t d = lseek(fd, (off_t)p, SEEK_DATA);
					if (d < 0 || (uint64_t)d >= end)
						break;
					q = (uint64_t)d & ~(MB - 1);
					q = MAX(q, p);
				}
				size_t m = (size_t)MIN(MB, end - q);
				assert_int_equal(vhdx_pread(img, a, m, q), 0);
				assert_int_equal(pread(fd, b, m, (off_t)q), (ssize_t)m);
				if (memcmp(a, b, m) != 0)
					fail_msg("%s and %s differ in [%#llx, +%zu)", vhdx, raw,
						 (unsigned long long)q, m);
				p = q + m;
			}
		}
		off = ext[n - 1].offset + ext[n - 1].length;
	}
	close(fd);
	free(a);
	free(b);
	vhdx_close(img, NULL);
}

/*
 * Stopped between the log write and the in-place writes of a commit: the log holds the
 * only copy of the new BAT pages. vdisk's read-only replay and qemu-img check -r all
 * (qemu's own replay) must give the same disk.
 */
static void test_dirty_log_vs_qemu(void **state)
{
	char path[700], copy[700], raw_q[700];
	struct vhdx_image *img;
	unsigned failed_at, before_flush2 = 0, n;
	char h1[65], h2[65];

	snprintf(path, sizeof(path), "%s", test_tmp_path("dirty.vhdx"));
	snprintf(copy, sizeof(copy), "%s", test_tmp_path("dirty-qemu.vhdx"));
	snprintf(raw_q, sizeof(raw_q), "%s", test_tmp_path("dirty-qemu.raw"));
	assert_true(test_have_program("qemu-img"));

	/* find the metadata write count just before the second flush */
	test_create_image(path, VHDX_TYPE_DYNAMIC, DISK, 1 << 20, NULL);
	img = open_with_fault(path, 1000000);
	uint8_t *buf = malloc(MB);
	assert_non_null(buf);
	for (unsigned i = 0, flushes = 0; i < NOPS; i++) {
		const struct op *o = &script[i];
		if (o->kind == FLUSH && ++flushes == 2)
			before_flush2 = (unsigned)(1000000 - img->fail_after_writes);
		if (o->kind == W) {
			test_fill_fast(buf, o->len, o->seed);
			assert_int_equal(vhdx_pwrite(img, buf, o->len, o->off), 0);
		} else if (o->kind == DISCARD) {
			assert_int_equal(vhdx_discard(img, o->off, o->len), 0);
		} else {
			assert_int_equal(vhdx_flush(img), 0);
		}
	}
	vhdx_abandon(img);
	free(buf);
	assert_true(before_flush2 > 0);

	/* second flush: its log entry is write +1, the first in-place page write +2 */
	n = before_flush2 + 2;
	test_create_image(path, VHDX_TYPE_DYNAMIC, DISK, 1 << 20, NULL);
	img = open_with_fault(path, (int)n);
	(void)run_script(img, &failed_at);
	vhdx_abandon(img);
	assert_int_equal(script[failed_at].kind, FLUSH);

	assert_int_equal(test_sha256_file(path, h1), 0);
	img = test_open_image(path, VHDX_OPEN_RDONLY);
	assert_true(img->log_replayed);
	/* the second flush's writes are there: the log entry was durable */
	verify(img, failed_at + 1, failed_at + 1);
	vhdx_close(img, NULL);
	assert_int_equal(test_sha256_file(path, h2), 0);
	assert_string_equal(h1, h2);

	/* qemu refuses to read it before replay, then replays it itself */
	unlink(copy);
	assert_int_equal(test_copy_file(path, copy), 0);
	assert_int_not_equal(test_system("qemu-img info '%s' >/dev/null 2>&1", copy), 0);
	assert_int_equal(test_system("qemu-img check -q -r all -f vhdx '%s'", copy), 0);
	assert_int_equal(test_system("qemu-img convert -f vhdx -O raw '%s' '%s'", copy, raw_q), 0);
	/* qemu's replay reads as vdisk's in-memory replay, and vdisk reads qemu's result alike */
	compare_with_raw(path, raw_q);
	compare_with_raw(copy, raw_q);
	unlink(raw_q);
	unlink(copy);
	unlink(path);
}

/* ---- locks ---- */

static void test_locks(void **state)
{
	char path[700];
	struct vhdx_open_opts o;
	struct vhdx_image *w, *r1, *r2, *x = NULL;
	struct vdisk_err err = { 0 };

	snprintf(path, sizeof(path), "%s", test_tmp_path("lock.vhdx"));
	test_create_image(path, VHDX_TYPE_DYNAMIC, 64 * MB, 0, NULL);
	vhdx_open_opts_init(&o, sizeof(o));

	w = test_open_image(path, 0);
	/* a second writer */
	assert_int_equal(vhdx_open(path, &o, &x, &err), -EBUSY);
	assert_int_equal(err.code, -EBUSY);
	assert_non_null(strstr(err.msg, path));
	assert_non_null(strstr(err.msg, "in use"));
	assert_null(x);
	/* a reader while writing */
	vdisk_err_clear(&err);
	o.flags = VHDX_OPEN_RDONLY;
	assert_int_equal(vhdx_open(path, &o, &x, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "in use"));
	/* NOLOCK goes around it (check of a busy image) */
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK;
	assert_int_equal(vhdx_open(path, &o, &x, &err), 0);
	vhdx_close(x, NULL);
	/* vhdx_check of a busy image: it says so instead of reporting damage */
	{
		struct vhdx_check_result res;
		vdisk_err_clear(&err);
		assert_int_equal(vhdx_check(path, 0, NULL, NULL, &res, &err), -EBUSY);
		assert_non_null(strstr(err.msg, "in use"));
	}
	assert_int_equal(vhdx_close(w, NULL), 0);

	/* readers share */
	r1 = test_open_image(path, VHDX_OPEN_RDONLY);
	r2 = test_open_image(path, VHDX_OPEN_RDONLY);
	vdisk_err_clear(&err);
	o.flags = 0;
	assert_int_equal(vhdx_open(path, &o, &x, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "in use"));
	vhdx_close(r1, NULL);
	vhdx_close(r2, NULL);
	/* all gone: a writer again */
	w = test_open_image(path, 0);
	vhdx_close(w, NULL);

	/* a child's parent is held shared: another child of it may read, nobody may write it */
	{
		char child[700], child2[700];
		struct vhdx_image *c1, *c2;
		snprintf(child, sizeof(child), "%s", test_tmp_path("lock-child.avhdx"));
		snprintf(child2, sizeof(child2), "%s", test_tmp_path("lock-child2.avhdx"));
		test_create_image(child, VHDX_TYPE_DIFFERENCING, 0, 0, path);
		test_create_image(child2, VHDX_TYPE_DIFFERENCING, 0, 0, path);
		c1 = test_open_image(child, 0);
		c2 = test_open_image(child2, 0);
		vdisk_err_clear(&err);
		assert_int_equal(vhdx_open(path, &o, &x, &err), -EBUSY);
		vhdx_close(c1, NULL);
		vhdx_close(c2, NULL);
		unlink(child);
		unlink(child2);
	}
	unlink(path);
}

/* ---- opens that change nothing ---- */

static void assert_untouched(const char *path, unsigned flags, bool do_reads)
{
	char h1[65], h2[65];
	struct vhdx_image *img;
	uint8_t buf[65536];

	assert_int_equal(test_sha256_file(path, h1), 0);
	img = test_open_image(path, flags);
	if (do_reads) {
		assert_int_equal(vhdx_pread(img, buf, sizeof(buf), 0), 0);
		assert_int_equal(vhdx_pread(img, buf, 100, vhdx_disk_size(img) - 100), 0);
		assert_int_equal(vhdx_flush(img), 0);
	}
	assert_int_equal(vhdx_close(img, NULL), 0);
	assert_int_equal(test_sha256_file(path, h2), 0);
	if (strcmp(h1, h2) != 0)
		fail_msg("%s open (flags %#x%s) and close changed the file", path, flags,
			 do_reads ? ", reads and a flush" : "");
}

static void test_untouched(void **state)
{
	char dyn[700], fixed[700], child[700];
	struct vhdx_image *img;
	uint8_t buf[4096];

	snprintf(dyn, sizeof(dyn), "%s", test_tmp_path("untouched.vhdx"));
	snprintf(fixed, sizeof(fixed), "%s", test_tmp_path("untouched-fixed.vhdx"));
	snprintf(child, sizeof(child), "%s", test_tmp_path("untouched.avhdx"));
	test_create_image(dyn, VHDX_TYPE_DYNAMIC, 64 * MB, 0, NULL);
	test_create_image(fixed, VHDX_TYPE_FIXED, 16 * MB, 0, NULL);
	/* some content first, so there is a BAT and a used log */
	img = test_open_image(dyn, 0);
	memset(buf, 0x5c, sizeof(buf));
	assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf), 40 * MB), 0);
	assert_int_equal(vhdx_close(img, NULL), 0);
	test_create_image(child, VHDX_TYPE_DIFFERENCING, 0, 0, dyn);
	img = test_open_image(child, 0);
	assert_int_equal(vhdx_pwrite(img, buf, 512, 41 * MB), 0);
	assert_int_equal(vhdx_close(img, NULL), 0);

	const char *const files[] = { dyn, fixed, child };
	for (size_t i = 0; i < 3; i++) {
		assert_untouched(files[i], 0, false);
		assert_untouched(files[i], 0, true);
		assert_untouched(files[i], VHDX_OPEN_RDONLY, true);
	}
	/* opening the child writable leaves its parent alone too */
	{
		char h1[65], h2[65];
		assert_int_equal(test_sha256_file(dyn, h1), 0);
		img = test_open_image(child, 0);
		assert_int_equal(vhdx_pwrite(img, buf, 4096, 0), 0);
		assert_int_equal(vhdx_close(img, NULL), 0);
		assert_int_equal(test_sha256_file(dyn, h2), 0);
		assert_string_equal(h1, h2);
	}
	unlink(child);
	unlink(dyn);
	unlink(fixed);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/*
 * The file grows a sparse step ahead of its last block: a crash leaves that tail, which
 * checks clean (holes are not leaks) and is allocated from by the next writer; a clean
 * close trims it.
 */
static void test_grow_tail(void **state)
{
	char path[700];
	struct vhdx_check_result res;
	struct vdisk_err err = { 0 };
	struct vhdx_image *img;
	uint8_t buf[4096], back[4096];
	uint64_t closed, crashed;

	(void)state;
	snprintf(path, sizeof(path), "%s", test_tmp_path("grow-tail.vhdx"));
	test_create_image(path, VHDX_TYPE_DYNAMIC, 1024 * MB, 1 * MB, NULL);
	img = test_open_image(path, 0);
	memset(buf, 0x6d, sizeof(buf));
	assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf), 0), 0);
	assert_int_equal(vhdx_close(img, NULL), 0);
	closed = file_size(path);
	assert_int_equal(closed % MB, 0);

	/* three more blocks, flushed, then a crash: the run-way stays */
	img = test_open_image(path, 0);
	for (int i = 1; i <= 3; i++)
		assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf), (uint64_t)i * 100 * MB), 0);
	assert_int_equal(vhdx_flush(img), 0);
	vhdx_abandon(img);
	crashed = file_size(path);
	assert_true(crashed >= closed + 3 * MB + 32 * MB);
	assert_int_equal(vhdx_check(path, 0, NULL, NULL, &res, &err), 0);
	assert_true(res.log_was_dirty);
	assert_int_equal(res.corruptions, 1); /* the dirty log, nothing else */
	assert_int_equal(res.leaks, 0);       /* the tail is a hole */

	/* the next writer allocates right after the last block, inside the old run-way */
	img = test_open_image(path, 0);
	assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf), 500 * MB), 0);
	assert_int_equal(vhdx_close(img, NULL), 0);
	assert_int_equal(file_size(path), closed + 4 * MB);
	assert_int_equal(vhdx_check(path, 0, NULL, NULL, &res, &err), 0);
	assert_int_equal(res.corruptions, 0);
	assert_int_equal(res.leaks, 0);
	img = test_open_image(path, VHDX_OPEN_RDONLY);
	for (int i = 0; i <= 5; i++) {
		if (i == 4)
			continue; /* written: 0, 100, 200, 300 and 500 MiB */
		assert_int_equal(vhdx_pread(img, back, sizeof(back), (uint64_t)i * 100 * MB), 0);
		assert_memory_equal(back, buf, sizeof(buf));
	}
	assert_int_equal(vhdx_pread(img, back, sizeof(back), 50 * MB), 0);
	memset(buf, 0, sizeof(buf));
	assert_memory_equal(back, buf, sizeof(buf));
	assert_int_equal(vhdx_close(img, NULL), 0);
	unlink(path);
}

/* A failed flush is not forgotten: later flushes and close report it. */
static void test_failure_is_sticky(void **state)
{
	char path[700];
	struct vhdx_image *img;
	struct vdisk_err err = { 0 };
	uint8_t buf[4096] = { 1 };
	int r;

	snprintf(path, sizeof(path), "%s", test_tmp_path("sticky.vhdx"));
	test_create_image(path, VHDX_TYPE_DYNAMIC, 64 * MB, 1 << 20, NULL);
	/* writes 1 and 2 are the session's header update; 3 is the first log entry */
	img = open_with_fault(path, 3);
	assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf), 0), 0);
	assert_int_equal(vhdx_flush(img), -EIO);
	assert_int_equal(vhdx_flush(img), -EIO);
	assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf), 10 * MB), -EIO); /* allocating */
	r = vhdx_close(img, &err);
	if (r != -EIO)
		fail_msg("close after a failed flush returned %d (\"%s\"): the caller believes the data is safe",
			 r, err.msg);
	assert_non_null(strstr(err.msg, path));
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_locks),
		cmocka_unit_test(test_untouched),
		cmocka_unit_test(test_failure_is_sticky),
		cmocka_unit_test(test_grow_tail),
		cmocka_unit_test(test_dirty_log_vs_qemu),
		cmocka_unit_test(test_fault_injection),
		cmocka_unit_test(test_fault_injection_child),
		cmocka_unit_test(test_multi_entry_commit),
		cmocka_unit_test(test_log_wraps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
