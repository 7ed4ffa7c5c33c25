/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Model-based test of the VHDX data path: thousands of random operations
 * (pwrite of random sizes and offsets, unaligned included; pread; discard;
 * write-zeroes; flush; close and reopen) on dynamic and fixed images with
 * 1 MiB and 32 MiB blocks and 512/4096-byte sectors, and on differencing
 * children, each mirrored on an in-memory raw shadow. Every read is compared
 * with the shadow; after each reopen vhdx_check must find no corruption and
 * no leak; at the end qemu-img check accepts the 512-sector images and
 * qemu-img compare finds them equal to the shadow written to a raw file, and a
 * child's parent file is byte-identical. Also the vhdx_translate() and
 * vhdx_allocate() contracts: extents cover the range in order, adjacent ones
 * of one kind are merged, @max gives a prefix, ranges outside fail -EINVAL;
 * concurrent writers, reader and flusher; the disk interface over VHDX and
 * raw files.
 * VDISK_TEST_SEED=N replays one seed; VDISK_TEST_OPS=N changes the length.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <vdisk/disk.h>
#include <vdisk/vhdx.h>

#include "helpers.h"
#include "vhdx-int.h"

#define MB (1ULL << 20)

/* ---- deterministic randomness ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static uint64_t below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static uint64_t seed_for(uint64_t salt)
{
	const char *s = getenv("VDISK_TEST_SEED");
	uint64_t seed = s && *s ? strtoull(s, NULL, 0) : 0x5eed0000ULL + salt;

	fprintf(stderr, "seed %#llx (VDISK_TEST_SEED=%#llx replays it)\n", (unsigned long long)seed,
		(unsigned long long)seed);
	return seed * 0x9E3779B97F4A7C15ULL | 1;
}

static unsigned nr_ops(unsigned def)
{
	const char *s = getenv("VDISK_TEST_OPS");

	return s && *s ? (unsigned)strtoul(s, NULL, 0) : def;
}

/* ---- the recent operations, printed when something fails ---- */

static char oplog[64][128];
static unsigned opn;

__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(oplog[opn++ % 64], sizeof(oplog[0]), fmt, ap);
	va_end(ap);
}

static void dump_ops(void)
{
	unsigned first = opn > 64 ? opn - 64 : 0;

	fprintf(stderr, "last operations:\n");
	for (unsigned i = first; i < opn; i++)
		fprintf(stderr, "  #%u %s\n", i, oplog[i % 64]);
}

/* ---- the model ---- */

struct model {
	const char *path;
	const char *parent; /* differencing: the parent file */
	struct vhdx_image *img;
	uint8_t *shadow;
	uint64_t size;
	uint32_t lsec, bs;
	bool child;
	uint8_t *buf, *buf2;
	size_t bufcap;
	unsigned reopens, flushes, checks;
};

static struct vhdx_image *open_rw(const char *path)
{
	struct vhdx_image *img = NULL;
	struct vdisk_err err = { 0 };

	if (vhdx_open(path, NULL, &img, &err) < 0)
		fail_msg("open %s: %s", path, err.msg);
	return img;
}

static void print_finding(void *opaque, enum vhdx_check_severity sev, const char *msg)
{
	if (sev != VHDX_CHECK_INFO)
		fprintf(stderr, "check: %s\n", msg);
}

static void check_clean(const char *path)
{
	struct vhdx_check_result res;
	struct vdisk_err err = { 0 };

	assert_int_equal(vhdx_check(path, 0, print_finding, NULL, &res, &err), 0);
	if (res.corruptions || res.leaks || !res.opened || res.log_was_dirty) {
		dump_ops();
		fail_msg("vhdx_check %s: %llu corruptions, %llu leaks (%llu bytes), dirty %d", path,
			 (unsigned long long)res.corruptions, (unsigned long long)res.leaks,
			 (unsigned long long)res.leaked_bytes, res.log_was_dirty);
	}
}

static void compare(struct model *m, uint64_t off, size_t len)
{
	int r = vhdx_pread(m->img, m->buf, len, off);

	if (r < 0) {
		dump_ops();
		fail_msg("pread %zu at %#llx: %d", len, (unsigned long long)off, r);
	}
	if (memcmp(m->buf, m->shadow + off, len) != 0) {
		size_t i = 0;
		while (m->buf[i] == m->shadow[off + i])
			i++;
		dump_ops();
		fail_msg("read %zu at %#llx differs from the shadow first at %#llx: %02x, expected %02x",
			 len, (unsigned long long)off, (unsigned long long)(off + i), m->buf[i],
			 m->shadow[off + i]);
	}
}

static void compare_range(struct model *m, uint64_t off, uint64_t len)
{
	for (uint64_t p = 0; p < len; p += m->bufcap)
		compare(m, off + p, (size_t)MIN(m->bufcap, len - p));
}

static void compare_all(struct model *m)
{
	compare_range(m, 0, m->size);
}

/* A random range: mostly small, sometimes up to two blocks; aligned to @align when non-zero. */
static void pick_range(struct model *m, uint32_t align, uint64_t *ret_off, size_t *ret_len)
{
	uint64_t maxlen = MIN(m->bufcap, 2ULL * m->bs), off, len;
	unsigned k = (unsigned)below(100);

	if (k < 60)
		len = 1 + below(16384);
	else if (k < 92)
		len = 1 + below(512 * 1024);
	else
		len = 1 + below(maxlen);
	if (below(4) == 0) /* around a block boundary */
		off = below(m->size / m->bs + 1) * m->bs + below(8192) - 4096;
	else
		off = below(m->size);
	if ((int64_t)off < 0 || off >= m->size)
		off = below(m->size);
	if (align) {
		off = off / align * align;
		len = MAX(align, len / align * align);
	}
	len = MIN(len, m->size - off);
	*ret_off = off;
	*ret_len = (size_t)len;
}

static void op_write(struct model *m, unsigned i)
{
	uint64_t off;
	size_t len;
	int r;

	pick_range(m, below(2) ? 0 : m->lsec, &off, &len);
	test_fill_fast(m->buf2, len, rnd());
	note("pwrite %zu at %#llx", len, (unsigned long long)off);
	r = vhdx_pwrite(m->img, m->buf2, len, off);
	if (r < 0) {
		dump_ops();
		fail_msg("op %u: pwrite: %d", i, r);
	}
	memcpy(m->shadow + off, m->buf2, len);
}

static void op_read(struct model *m)
{
	uint64_t off;
	size_t len;

	pick_range(m, below(2) ? 0 : m->lsec, &off, &len);
	note("pread %zu at %#llx", len, (unsigned long long)off);
	compare(m, off, len);
}

static void op_unmap(struct model *m, unsigned i, bool zero)
{
	uint64_t off;
	size_t len;
	int r;

	if (below(3) == 0) {
		/* whole blocks (the last one may be partial) */
		uint64_t b = below(DIV_ROUND_UP(m->size, m->bs)), n = 1 + below(2);
		off = b * m->bs;
		len = (size_t)MIN(n * m->bs, m->size - off);
	} else {
		/* children zero at sector granularity; the others take any byte range */
		pick_range(m, m->child || below(2) ? m->lsec : 0, &off, &len);
	}
	note("%s %zu at %#llx", zero ? "write_zeroes" : "discard", len, (unsigned long long)off);
	r = zero ? vhdx_write_zeroes(m->img, off, len) : vhdx_discard(m->img, off, len);
	if (r < 0) {
		dump_ops();
		fail_msg("op %u: %s: %d", i, zero ? "write_zeroes" : "discard", r);
	}
	/* both read back as zeros (vhdx.h) */
	memset(m->shadow + off, 0, len);
	compare_range(m, off, len);
}

static void op_reopen(struct model *m)
{
	struct vdisk_err err = { 0 };

	note("close + check + reopen");
	if (vhdx_close(m->img, &err) < 0) {
		dump_ops();
		fail_msg("close: %s", err.msg);
	}
	m->img = NULL;
	check_clean(m->path);
	m->img = open_rw(m->path);
	m->reopens++;
	m->checks++;
}

/* Random translate of a range: contiguous cover (or prefix), merged, @max honoured, content. */
static void op_translate(struct model *m)
{
	struct vdisk_extent ext[8];
	unsigned max = 1 + (unsigned)below(8);
	uint64_t off;
	size_t len;
	uint64_t pos;
	int n;

	pick_range(m, below(2) ? 0 : m->lsec, &off, &len);
	note("translate %zu at %#llx max %u", len, (unsigned long long)off, max);
	n = vhdx_translate(m->img, off, len, ext, max);
	assert_true(n >= 1 && (unsigned)n <= max);
	pos = off;
	for (int k = 0; k < n; k++) {
		assert_int_equal(ext[k].offset, pos);
		assert_true(ext[k].length > 0);
		assert_true(ext[k].type <= VDISK_EXTENT_UNALLOCATED);
		if (k > 0) {
			const struct vdisk_extent *p = &ext[k - 1];
			bool mergeable = p->type == ext[k].type &&
					 (p->type != VDISK_EXTENT_DATA ||
					  (p->fd == ext[k].fd && p->layer == ext[k].layer &&
					   p->file_offset + p->length == ext[k].file_offset));
			if (mergeable) {
				dump_ops();
				fail_msg("extents %d and %d could have been merged", k - 1, k);
			}
		}
		if (ext[k].type == VDISK_EXTENT_DATA) {
			/* the bytes the extent points at are the shadow's */
			size_t l = (size_t)ext[k].length;
			ssize_t got = pread(ext[k].fd, m->buf, l, (off_t)ext[k].file_offset);
			assert_true(got >= 0);
			if ((size_t)got < l)
				memset(m->buf + got, 0, l - (size_t)got);
			if (memcmp(m->buf, m->shadow + ext[k].offset, l) != 0) {
				dump_ops();
				fail_msg("DATA extent %d (%#llx+%zu at file %#llx layer %u) differs",
					 k, (unsigned long long)ext[k].offset, l,
					 (unsigned long long)ext[k].file_offset, ext[k].layer);
			}
		} else if (!vdisk_is_zero(m->shadow + ext[k].offset, (size_t)ext[k].length)) {
			dump_ops();
			fail_msg("extent %d (type %u, %#llx+%llu) reads zeros, the shadow has data", k,
				 ext[k].type, (unsigned long long)ext[k].offset,
				 (unsigned long long)ext[k].length);
		}
		pos += ext[k].length;
	}
	assert_true(pos <= off + len);
	if ((unsigned)n < max)
		assert_int_equal(pos, off + len); /* only a full @max may stop early */
}

static void run_model(struct model *m, unsigned ops)
{
	m->bufcap = (size_t)MIN(MAX(2ULL * m->bs, 4 * MB), 8 * MB);
	m->buf = malloc(m->bufcap);
	m->buf2 = malloc(m->bufcap);
	assert_true(m->buf && m->buf2);
	opn = 0;
	m->img = open_rw(m->path);
	compare_all(m);
	for (unsigned i = 0; i < ops; i++) {
		unsigned k = (unsigned)below(1000);
		if (k < 400)
			op_write(m, i);
		else if (k < 700)
			op_read(m);
		else if (k < 780)
			op_unmap(m, i, false);
		else if (k < 860)
			op_unmap(m, i, true);
		else if (k < 950)
			op_translate(m);
		else if (k < 990) {
			note("flush");
			assert_int_equal(vhdx_flush(m->img), 0);
			m->flushes++;
		} else {
			op_reopen(m);
			if (m->reopens % 4 == 1)
				compare_all(m);
		}
	}
	op_reopen(m);
	compare_all(m);
	assert_int_equal(vhdx_close(m->img, NULL), 0);
	m->img = NULL;
	check_clean(m->path);
	fprintf(stderr, "%s: %u ops, %u flushes, %u reopens checked clean\n", m->path, ops,
		m->flushes, m->reopens);
	free(m->buf);
	free(m->buf2);
}

/* qemu-img agrees: the image is valid and reads as the shadow. */
static void qemu_verdict(struct model *m)
{
	char raw[700];
	FILE *f;

	if (!test_have_program("qemu-img"))
		fail_msg("qemu-img is required (scripts/setup.sh installs qemu-utils)");
	snprintf(raw, sizeof(raw), "%s.shadow.raw", m->path);
	f = fopen(raw, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(m->shadow, 1, m->size, f), m->size);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(test_system("qemu-img check -q -f vhdx '%s'", m->path), 0);
	assert_int_equal(test_system("qemu-img compare -q -f vhdx -F raw '%s' '%s'", m->path, raw), 0);
	unlink(raw);
}

static void model_plain(enum vhdx_type type, uint32_t bs, uint32_t lsec, uint64_t size,
			unsigned salt)
{
	struct model m = { .size = size, .lsec = lsec, .bs = bs };
	char path[700];

	rng_state = seed_for(salt);
	snprintf(path, sizeof(path), "%s/model-%u.vhdx", test_tmp_path(""), salt);
	m.path = path;
	test_create_image_sectors(path, type, size, bs, lsec, 4096, NULL);
	m.shadow = calloc(1, size);
	assert_non_null(m.shadow);
	run_model(&m, nr_ops(bs > MB ? 800 : 1200));
	if (lsec == 512)
		qemu_verdict(&m); /* qemu 7.2 cannot open 4096-byte-sector VHDX files */
	free(m.shadow);
	unlink(path);
}

static void test_dynamic_1m_512(void **state)
{
	model_plain(VHDX_TYPE_DYNAMIC, 1 << 20, 512, 40 * MB + 7 * 512, 1);
}

static void test_dynamic_1m_4096(void **state)
{
	model_plain(VHDX_TYPE_DYNAMIC, 1 << 20, 4096, 40 * MB + 3 * 4096, 2);
}

static void test_dynamic_32m_512(void **state)
{
	model_plain(VHDX_TYPE_DYNAMIC, 32 << 20, 512, 100 * MB + 512, 3);
}

static void test_dynamic_32m_4096(void **state)
{
	model_plain(VHDX_TYPE_DYNAMIC, 32 << 20, 4096, 96 * MB + 4096, 4);
}

static void test_fixed_1m_512(void **state)
{
	model_plain(VHDX_TYPE_FIXED, 1 << 20, 512, 24 * MB + 512, 5);
}

static void test_fixed_1m_4096(void **state)
{
	model_plain(VHDX_TYPE_FIXED, 1 << 20, 4096, 24 * MB, 6);
}

static void test_fixed_32m_512(void **state)
{
	model_plain(VHDX_TYPE_FIXED, 32 << 20, 512, 70 * MB, 7);
}

static void test_fixed_32m_4096(void **state)
{
	model_plain(VHDX_TYPE_FIXED, 32 << 20, 4096, 64 * MB + 8192, 8);
}

/* A child over a parent holding data: the child's reads are the model's, the parent never changes. */
static void model_child(uint32_t pbs, uint32_t lsec, uint64_t psize, uint32_t cbs,
			uint64_t csize, unsigned salt)
{
	struct model m = { .lsec = lsec, .child = true };
	struct vhdx_image *p;
	char ppath[700], cpath[700], before[65], after[65];
	uint8_t *data = malloc(MB);
	struct vhdx_create_opts o;
	struct vdisk_err err = { 0 };

	assert_non_null(data);
	rng_state = seed_for(salt);
	snprintf(ppath, sizeof(ppath), "%s", test_tmp_path("model-parent.vhdx"));
	snprintf(cpath, sizeof(cpath), "%s", test_tmp_path("model-child.avhdx"));
	test_create_image_sectors(ppath, VHDX_TYPE_DYNAMIC, psize, pbs, lsec, 4096, NULL);
	m.size = csize ? csize : psize;
	m.shadow = calloc(1, m.size);
	assert_non_null(m.shadow);
	/* the parent: data in some places, a ZERO block, and never-written space */
	p = open_rw(ppath);
	for (unsigned i = 0; i < 40; i++) {
		uint64_t off = below(psize - 1) / lsec * lsec;
		uint64_t want = (1 + below(MB)) / lsec * lsec + lsec; /* MIN evaluates twice */
		size_t len = (size_t)MIN(MB, MIN(psize - off, want));
		test_fill_fast(data, len, rnd());
		int r = vhdx_pwrite(p, data, len, off);
		if (r < 0)
			fail_msg("parent: pwrite %zu at %#llx: %d", len, (unsigned long long)off, r);
		memcpy(m.shadow + off, data, len);
	}
	assert_int_equal(vhdx_write_zeroes(p, 0, pbs), 0);
	memset(m.shadow, 0, pbs);
	assert_int_equal(vhdx_close(p, NULL), 0);
	assert_int_equal(test_sha256_file(ppath, before), 0);

	vhdx_create_opts_init(&o, sizeof(o));
	o.type = VHDX_TYPE_DIFFERENCING;
	o.parent_path = ppath;
	o.block_size_bytes = cbs;
	o.disk_size_bytes = csize;
	o.overwrite = true;
	if (vhdx_create(cpath, &o, &err) < 0)
		fail_msg("create child: %s", err.msg);
	m.path = cpath;
	m.parent = ppath;
	m.bs = cbs ? cbs : 2 << 20;
	run_model(&m, nr_ops(1200));
	assert_int_equal(test_sha256_file(ppath, after), 0);
	assert_string_equal(before, after);
	/* the chain still opens read-only and reads the shadow */
	{
		struct vhdx_open_opts oo;
		vhdx_open_opts_init(&oo, sizeof(oo));
		oo.flags = VHDX_OPEN_RDONLY;
		assert_int_equal(vhdx_open(cpath, &oo, &m.img, &err), 0);
		m.buf = malloc(8 * MB);
		m.bufcap = 8 * MB;
		compare_all(&m);
		free(m.buf);
		vhdx_close(m.img, NULL);
	}
	free(m.shadow);
	free(data);
	unlink(cpath);
	unlink(ppath);
}

static void test_child_2m_over_1m_512(void **state)
{
	model_child(1 << 20, 512, 48 * MB, 0, 0, 11);
}

static void test_child_1m_over_32m_4096_larger(void **state)
{
	/* the child is 8 MiB larger than its parent: that part reads zeros until written */
	model_child(32 << 20, 4096, 64 * MB, 1 << 20, 72 * MB, 12);
}

/* ---- translate / allocate contracts on a known layout ---- */

static void test_translate_contract(void **state)
{
	char path[700], cpath[700];
	struct vhdx_image *img, *c;
	struct vdisk_extent ext[16];
	uint8_t buf[8192];
	int n;

	snprintf(path, sizeof(path), "%s", test_tmp_path("xlate.vhdx"));
	snprintf(cpath, sizeof(cpath), "%s", test_tmp_path("xlate-child.avhdx"));
	test_create_image_sectors(path, VHDX_TYPE_DYNAMIC, 16 * MB, 1 << 20, 512, 4096, NULL);
	img = open_rw(path);
	/* blocks 0 and 1 (allocated back to back), 3; 5 explicitly zero */
	memset(buf, 0xa1, sizeof(buf));
	assert_int_equal(vhdx_pwrite(img, buf, 4096, 0), 0);
	assert_int_equal(vhdx_pwrite(img, buf, 4096, MB), 0);
	assert_int_equal(vhdx_pwrite(img, buf, 4096, 3 * MB), 0);
	assert_int_equal(vhdx_write_zeroes(img, 5 * MB, MB), 0);
	n = vhdx_translate(img, 0, 8 * MB, ext, 16);
	assert_int_equal(n, 6);
	assert_int_equal(ext[0].type, VDISK_EXTENT_DATA);
	assert_int_equal(ext[0].offset, 0);
	assert_int_equal(ext[0].length, 2 * MB); /* merged across the block boundary */
	assert_int_equal(ext[0].file_offset, 4 * MB);
	assert_int_equal(ext[0].layer, 0);
	assert_int_equal(ext[1].type, VDISK_EXTENT_UNALLOCATED);
	assert_int_equal(ext[1].offset, 2 * MB);
	assert_int_equal(ext[1].length, MB);
	assert_int_equal(ext[2].type, VDISK_EXTENT_DATA);
	assert_int_equal(ext[2].file_offset, 6 * MB);
	assert_int_equal(ext[3].type, VDISK_EXTENT_UNALLOCATED);
	assert_int_equal(ext[4].type, VDISK_EXTENT_ZERO);
	assert_int_equal(ext[4].offset, 5 * MB);
	assert_int_equal(ext[4].length, MB);
	assert_int_equal(ext[5].type, VDISK_EXTENT_UNALLOCATED);
	assert_int_equal(ext[5].offset, 6 * MB);
	assert_int_equal(ext[5].length, 2 * MB);
	for (int k = 0; k < n; k++)
		assert_true(ext[k].type != VDISK_EXTENT_DATA || ext[k].fd >= 0);
	/* @max: a prefix, each extent as above */
	n = vhdx_translate(img, 0, 8 * MB, ext, 1);
	assert_int_equal(n, 1);
	assert_int_equal(ext[0].length, 2 * MB);
	n = vhdx_translate(img, 0, 8 * MB, ext, 3);
	assert_int_equal(n, 3);
	assert_int_equal(ext[2].offset + ext[2].length, 4 * MB);
	/* unaligned bytes */
	n = vhdx_translate(img, MB - 100, 300, ext, 16);
	assert_int_equal(n, 1);
	assert_int_equal(ext[0].offset, MB - 100);
	assert_int_equal(ext[0].length, 300);
	assert_int_equal(ext[0].file_offset, 5 * MB - 100);
	/* outside the disk */
	assert_int_equal(vhdx_translate(img, 16 * MB, 512, ext, 16), -EINVAL);
	assert_int_equal(vhdx_translate(img, 16 * MB - 512, 1024, ext, 16), -EINVAL);
	assert_int_equal(vhdx_translate(img, 0, 0, ext, 16), -EINVAL);
	assert_int_equal(vhdx_translate(img, UINT64_MAX - 10, 100, ext, 16), -EINVAL);
	assert_int_equal(vhdx_translate(img, 0, 512, ext, 0), -EINVAL);
	n = vhdx_translate(img, 16 * MB - 512, 512, ext, 16);
	assert_int_equal(n, 1);

	/* zero-length I/O does nothing, wherever it points */
	{
		struct vdisk_extent e2[4];
		assert_int_equal(vhdx_pwrite(img, buf, 0, 9 * MB + 100), 0);
		assert_int_equal(vhdx_pwrite(img, buf, 0, 9 * MB), 0);
		assert_int_equal(vhdx_pread(img, buf, 0, 9 * MB + 100), 0);
		assert_int_equal(vhdx_translate(img, 9 * MB, MB, e2, 4), 1);
		assert_int_equal(e2[0].type, VDISK_EXTENT_UNALLOCATED);
	}

	/* allocate: DATA extents of this image, prefix with @max, sector alignment */
	n = vhdx_allocate(img, 8 * MB, 3 * MB, ext, 16);
	assert_int_equal(n, 1); /* three new blocks, allocated back to back */
	assert_int_equal(ext[0].type, VDISK_EXTENT_DATA);
	assert_int_equal(ext[0].length, 3 * MB);
	{
		/* the caller writes them (the child below reads them through) */
		uint8_t *a1 = malloc(3 * MB);
		assert_non_null(a1);
		memset(a1, 0xa1, 3 * MB);
		assert_int_equal(pwrite(ext[0].fd, a1, 3 * MB, (off_t)ext[0].file_offset),
				 (ssize_t)(3 * MB));
		free(a1);
	}
	n = vhdx_allocate(img, 2 * MB, 4 * MB, ext, 2);
	assert_int_equal(n, 2);
	assert_int_equal(ext[0].offset, 2 * MB);
	assert_int_equal(ext[1].offset + ext[1].length <= 6 * MB, true);
	assert_int_equal(vhdx_allocate(img, 100, 512, ext, 16), -EINVAL);
	assert_int_equal(vhdx_allocate(img, 0, 100, ext, 16), -EINVAL);
	assert_int_equal(vhdx_allocate(img, 16 * MB, 512, ext, 16), -EINVAL);
	assert_int_equal(vhdx_allocate(img, 0, 512, ext, 0), -EINVAL);
	assert_int_equal(vhdx_close(img, NULL), 0);
	{
		struct vhdx_open_opts o;
		struct vdisk_err err = { 0 };
		vhdx_open_opts_init(&o, sizeof(o));
		o.flags = VHDX_OPEN_RDONLY;
		assert_int_equal(vhdx_open(path, &o, &img, &err), 0);
		assert_int_equal(vhdx_allocate(img, 0, 512, ext, 16), -EROFS);
		assert_int_equal(vhdx_pwrite(img, buf, 512, 0), -EROFS);
		assert_int_equal(vhdx_discard(img, 0, 512), -EROFS);
		assert_int_equal(vhdx_write_zeroes(img, 0, 512), -EROFS);
		assert_int_equal(vhdx_flush(img), 0);
		vhdx_close(img, NULL);
	}

	/* a child: its sectors layer 0, the parent's layer 1, unaligned ends clipped */
	test_create_image_sectors(cpath, VHDX_TYPE_DIFFERENCING, 0, 1 << 20, 0, 4096, path);
	c = open_rw(cpath);
	memset(buf, 0xc2, sizeof(buf));
	assert_int_equal(vhdx_pwrite(c, buf, 1024, 512), 0); /* sectors 1-2 of block 0 */
	n = vhdx_translate(c, 100, 2000, ext, 16);
	assert_int_equal(n, 3);
	assert_int_equal(ext[0].offset, 100);
	assert_int_equal(ext[0].length, 412);
	assert_int_equal(ext[0].layer, 1);
	assert_int_equal(ext[0].type, VDISK_EXTENT_DATA);
	assert_int_equal(ext[0].file_offset, 4 * MB + 100);
	assert_int_equal(ext[1].offset, 512);
	assert_int_equal(ext[1].length, 1024);
	assert_int_equal(ext[1].layer, 0);
	assert_int_equal(ext[2].offset, 1536);
	assert_int_equal(ext[2].length, 564);
	assert_int_equal(ext[2].layer, 1);
	assert_int_equal(ext[2].file_offset, 4 * MB + 1536);
	/* a parent block in ZERO state reads zeros at layer 1; unallocated everywhere: UNALLOCATED */
	n = vhdx_translate(c, 5 * MB, 2 * MB, ext, 16);
	assert_int_equal(n, 2);
	assert_int_equal(ext[0].type, VDISK_EXTENT_ZERO);
	assert_int_equal(ext[0].layer, 1);
	assert_int_equal(ext[1].type, VDISK_EXTENT_UNALLOCATED);
	/* reads through it */
	assert_int_equal(vhdx_pread(c, buf, 2048, 0), 0);
	assert_int_equal(buf[0], 0xa1);
	assert_int_equal(buf[511], 0xa1);
	assert_int_equal(buf[512], 0xc2);
	assert_int_equal(buf[1535], 0xc2);
	assert_int_equal(buf[1536], 0xa1);
	/* allocate in a child: DATA of the child only, sector granular */
	n = vhdx_allocate(c, 3 * MB, 8192, ext, 16);
	assert_int_equal(n, 1);
	assert_int_equal(ext[0].layer, 0);
	assert_int_equal(vhdx_allocate(c, 3 * MB + 1, 512, ext, 16), -EINVAL);
	/*
	 * @max too small for the range: only the returned prefix may change. Child block 10
	 * is PARTIALLY_PRESENT (sector 0 only) and not next to the blocks allocated for 8 and 9;
	 * marking its other sectors present without handing them out for writing would hide
	 * the parent's data behind never-written (zero) sectors.
	 */
	memset(buf, 0xc2, 512);
	assert_int_equal(vhdx_pwrite(c, buf, 512, 10 * MB), 0);
	n = vhdx_allocate(c, 8 * MB, 3 * MB, ext, 1);
	assert_int_equal(n, 1);
	assert_int_equal(ext[0].offset, 8 * MB);
	assert_true(ext[0].length <= 2 * MB);
	{
		uint8_t *got = malloc(MB), *want = malloc(MB);
		assert_true(got && want);
		memset(want, 0xa1, MB);
		memset(want, 0xc2, 512);
		assert_int_equal(vhdx_pread(c, got, MB, 10 * MB), 0);
		assert_memory_equal(got, want, MB);
		free(got);
		free(want);
	}
	assert_int_equal(vhdx_close(c, NULL), 0);
	unlink(cpath);
	unlink(path);
}

/*
 * A child larger than one chunk (4 GiB of 512-byte sectors per sector bitmap): writes that
 * straddle the chunk boundary set bits in two bitmaps; partial sectors on both sides.
 */
static void test_child_chunk_boundary(void **state)
{
	const uint64_t chunk = 4ULL << 30, size = 9ULL << 30;
	const uint64_t win = chunk - 3 * MB; /* a 6 MiB window around the boundary */
	char ppath[700], cpath[700];
	struct vhdx_image *p, *c;
	uint8_t *shadow = malloc(6 * MB), *buf = malloc(6 * MB);
	struct vdisk_extent ext[16];
	int n;

	assert_true(shadow && buf);
	snprintf(ppath, sizeof(ppath), "%s", test_tmp_path("chunk-parent.vhdx"));
	snprintf(cpath, sizeof(cpath), "%s", test_tmp_path("chunk-child.avhdx"));
	test_create_image_sectors(ppath, VHDX_TYPE_DYNAMIC, size, 1 << 20, 512, 4096, NULL);
	p = open_rw(ppath);
	test_fill_fast(shadow, 6 * MB, 4242);
	assert_int_equal(vhdx_pwrite(p, shadow, 6 * MB, win), 0);
	assert_int_equal(vhdx_close(p, NULL), 0);
	test_create_image_sectors(cpath, VHDX_TYPE_DIFFERENCING, 0, 0, 0, 4096, ppath);

	c = open_rw(cpath);
	/* 10000 bytes over the boundary, unaligned at both ends */
	test_fill_fast(buf, 10000, 1);
	assert_int_equal(vhdx_pwrite(c, buf, 10000, chunk - 5000 + 3), 0);
	memcpy(shadow + (chunk - 5000 + 3 - win), buf, 10000);
	/* whole sectors right at the boundary, and a write-zeroes across it */
	test_fill_fast(buf, 4096, 2);
	assert_int_equal(vhdx_pwrite(c, buf, 4096, chunk + 512 * 40), 0);
	memcpy(shadow + (chunk + 512 * 40 - win), buf, 4096);
	assert_int_equal(vhdx_write_zeroes(c, chunk - 512 * 3, 512 * 2), 0);
	memset(shadow + (chunk - 512 * 3 - win), 0, 512 * 2);
	assert_int_equal(vhdx_pread(c, buf, 6 * MB, win), 0);
	assert_memory_equal(buf, shadow, 6 * MB);
	/* both chunks' bitmaps exist */
	assert_int_equal(c->nr_chunks, 3);
	assert_non_null(c->sbm[0]);
	assert_non_null(c->sbm[1]);
	assert_null(c->sbm[2]);
	/* translate over the boundary: child and parent pieces, every byte accounted */
	n = vhdx_translate(c, chunk - 8192 + 7, 16384, ext, 16);
	assert_true(n >= 3);
	{
		uint64_t pos = chunk - 8192 + 7;
		for (int k = 0; k < n; k++) {
			assert_int_equal(ext[k].offset, pos);
			pos += ext[k].length;
		}
		assert_int_equal(pos, chunk - 8192 + 7 + 16384);
	}
	assert_int_equal(vhdx_close(c, NULL), 0);
	check_clean(cpath);
	c = open_rw(cpath);
	assert_int_equal(vhdx_pread(c, buf, 6 * MB, win), 0);
	assert_memory_equal(buf, shadow, 6 * MB);
	/* past the parent's data: zeros, and the far end of the disk */
	assert_int_equal(vhdx_pread(c, buf, MB, size - MB), 0);
	assert_true(vdisk_is_zero(buf, MB));
	assert_int_equal(vhdx_close(c, NULL), 0);
	free(shadow);
	free(buf);
	unlink(cpath);
	unlink(ppath);
}

/*
 * vhdx_translate/vhdx_allocate may run in many threads at once (vhdx.h). Writer threads
 * on disjoint ranges (sharing blocks at their edges), a reader thread and a flusher run
 * together on a dynamic image and on a child; afterwards every byte is as written.
 */
#define NTHREADS 4
#define SPAN (3 * MB + 512 * 3) /* deliberately not block aligned: neighbours share blocks */

struct worker {
	struct vhdx_image *img;
	uint8_t *shadow; /* this thread's span */
	uint64_t base;
	uint32_t lsec;
	unsigned seed;
	int err;
};

static void *writer(void *arg)
{
	struct worker *w = arg;
	uint64_t x = w->seed * 0x9E3779B97F4A7C15ULL | 1;
	uint8_t *buf = malloc(256 * 1024);

	for (unsigned i = 0; i < 300 && !w->err && buf; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t off = (x % SPAN) / w->lsec * w->lsec;
		size_t len = (size_t)MIN(((x >> 32) % (256 * 1024)) / w->lsec * w->lsec + w->lsec,
					 SPAN - off);
		test_fill_fast(buf, len, x);
		int r = vhdx_pwrite(w->img, buf, len, w->base + off);
		if (r < 0)
			w->err = r;
		memcpy(w->shadow + off, buf, len);
	}
	free(buf);
	return NULL;
}

static int stop_aux; /* accessed with __atomic builtins */

static void *flusher(void *arg)
{
	struct worker *w = arg;

	while (!__atomic_load_n(&stop_aux, __ATOMIC_ACQUIRE) && !w->err) {
		int r = vhdx_flush(w->img);
		if (r < 0)
			w->err = r;
		usleep(2000);
	}
	return NULL;
}

static void *reader(void *arg)
{
	struct worker *w = arg;
	uint8_t *buf = malloc(1 << 20);
	struct vdisk_extent ext[32];
	uint64_t x = 7;

	while (!__atomic_load_n(&stop_aux, __ATOMIC_ACQUIRE) && !w->err && buf) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t off = x % (NTHREADS * SPAN - (1 << 20));
		/* reads race with writes: only the call contract is checked here */
		int r = vhdx_pread(w->img, buf, 1 << 20, off);
		if (r == 0)
			r = vhdx_translate(w->img, off, 1 << 20, ext, 32) > 0 ? 0 : -EIO;
		if (r < 0)
			w->err = r;
	}
	free(buf);
	return NULL;
}

static void threaded(const char *path, uint32_t lsec, const uint8_t *base_content)
{
	struct vhdx_image *img = open_rw(path);
	struct worker w[NTHREADS + 2];
	pthread_t t[NTHREADS + 2];
	uint8_t *all = malloc(NTHREADS * SPAN), *got = malloc(NTHREADS * SPAN);

	assert_true(all && got);
	if (base_content)
		memcpy(all, base_content, NTHREADS * SPAN);
	else
		memset(all, 0, NTHREADS * SPAN);
	__atomic_store_n(&stop_aux, 0, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < NTHREADS + 2; i++) {
		w[i] = (struct worker){ .img = img, .shadow = all + (i % NTHREADS) * SPAN,
					.base = (i % NTHREADS) * SPAN, .lsec = lsec, .seed = 11 + i };
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, writer, &w[i]), 0);
	assert_int_equal(pthread_create(&t[NTHREADS], NULL, flusher, &w[NTHREADS]), 0);
	assert_int_equal(pthread_create(&t[NTHREADS + 1], NULL, reader, &w[NTHREADS + 1]), 0);
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	__atomic_store_n(&stop_aux, 1, __ATOMIC_RELEASE);
	pthread_join(t[NTHREADS], NULL);
	pthread_join(t[NTHREADS + 1], NULL);
	for (unsigned i = 0; i < NTHREADS + 2; i++)
		if (w[i].err)
			fail_msg("thread %u: %d", i, w[i].err);
	assert_int_equal(vhdx_pread(img, got, NTHREADS * SPAN, 0), 0);
	assert_memory_equal(got, all, NTHREADS * SPAN);
	assert_int_equal(vhdx_close(img, NULL), 0);
	check_clean(path);
	img = open_rw(path);
	assert_int_equal(vhdx_pread(img, got, NTHREADS * SPAN, 0), 0);
	assert_memory_equal(got, all, NTHREADS * SPAN);
	assert_int_equal(vhdx_close(img, NULL), 0);
	free(all);
	free(got);
}

static void test_threads(void **state)
{
	char path[700], cpath[700];
	uint8_t *base = malloc(NTHREADS * SPAN);
	struct vhdx_image *p;

	assert_non_null(base);
	snprintf(path, sizeof(path), "%s", test_tmp_path("threads.vhdx"));
	snprintf(cpath, sizeof(cpath), "%s", test_tmp_path("threads.avhdx"));
	test_create_image_sectors(path, VHDX_TYPE_DYNAMIC, 64 * MB, 1 << 20, 512, 4096, NULL);
	threaded(path, 512, NULL);

	/* a child over a parent full of data: bits of shared blocks set by several threads */
	test_create_image_sectors(path, VHDX_TYPE_DYNAMIC, 64 * MB, 1 << 20, 512, 4096, NULL);
	p = open_rw(path);
	test_fill_fast(base, NTHREADS * SPAN, 99);
	assert_int_equal(vhdx_pwrite(p, base, NTHREADS * SPAN, 0), 0);
	assert_int_equal(vhdx_close(p, NULL), 0);
	test_create_image_sectors(cpath, VHDX_TYPE_DIFFERENCING, 0, 1 << 20, 0, 4096, path);
	threaded(cpath, 512, base);
	free(base);
	unlink(cpath);
	unlink(path);
}

/* The disk interface (lib/core/disk.c) over a VHDX image and over a raw file. */
static void test_disk_interface(void **state)
{
	char vpath[700], rpath[700];
	struct vdisk_disk *d, *d2;
	struct vdisk_err err = { 0 };
	struct vdisk_extent ext[8];
	uint8_t buf[8192], got[8192];
	enum vdisk_format f;
	int fd, n;

	snprintf(vpath, sizeof(vpath), "%s", test_tmp_path("disk.vhdx"));
	snprintf(rpath, sizeof(rpath), "%s", test_tmp_path("disk.raw"));
	test_create_image_sectors(vpath, VHDX_TYPE_DYNAMIC, 16 * MB, 1 << 20, 4096, 4096, NULL);
	fd = open(rpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 16 * MB), 0);
	close(fd);

	assert_int_equal(vdisk_format_parse("vhdx", &f), 0);
	assert_int_equal(f, VDISK_FORMAT_VHDX);
	assert_int_equal(vdisk_format_parse("raw", &f), 0);
	assert_int_equal(vdisk_format_parse("auto", &f), 0);
	assert_int_equal(f, VDISK_FORMAT_AUTO);
	assert_int_equal(vdisk_format_parse("qcow2", &f), -EINVAL);
	assert_string_equal(vdisk_format_name(VDISK_FORMAT_VHDX), "vhdx");
	assert_string_equal(vdisk_format_name(VDISK_FORMAT_RAW), "raw");

	/* probed by content */
	assert_int_equal(vdisk_disk_open(vpath, VDISK_FORMAT_AUTO, 0, &d, &err), 0);
	assert_int_equal(vdisk_disk_format(d), VDISK_FORMAT_VHDX);
	assert_non_null(vdisk_disk_vhdx(d));
	assert_int_equal(vdisk_disk_size(d), 16 * MB);
	assert_int_equal(vdisk_disk_logical_sector(d), 4096);
	assert_int_equal(vdisk_disk_physical_sector(d), 4096);
	test_fill_fast(buf, sizeof(buf), 3);
	assert_int_equal(vdisk_disk_pwrite(d, buf, sizeof(buf), MB + 4096), 0);
	assert_int_equal(vdisk_disk_pread(d, got, sizeof(got), MB + 4096), 0);
	assert_memory_equal(buf, got, sizeof(got));
	n = vdisk_disk_translate(d, MB, 3 * 4096, ext, 8);
	assert_int_equal(n, 1);
	assert_int_equal(ext[0].type, VDISK_EXTENT_DATA);
	n = vdisk_disk_allocate(d, 2 * MB, 4096, ext, 8);
	assert_int_equal(n, 1);
	assert_int_equal(vdisk_disk_allocate(d, 2 * MB + 512, 4096, ext, 8), -EINVAL);
	assert_int_equal(vdisk_disk_discard(d, MB, MB), 0);
	assert_int_equal(vdisk_disk_pread(d, got, sizeof(got), MB + 4096), 0);
	assert_true(vdisk_is_zero(got, sizeof(got)));
	assert_int_equal(vdisk_disk_write_zeroes(d, 0, 4096), 0);
	assert_int_equal(vdisk_disk_flush(d), 0);
	/* the writer holds the image */
	vdisk_err_clear(&err);
	assert_int_equal(vdisk_disk_open(vpath, VDISK_FORMAT_AUTO, VDISK_OPEN_RDONLY, &d2, &err),
			 -EBUSY);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
	assert_int_equal(vdisk_disk_open(vpath, VDISK_FORMAT_VHDX, VDISK_OPEN_RDONLY, &d, &err), 0);
	assert_int_equal(vdisk_disk_pwrite(d, buf, 4096, 0), -EROFS);
	assert_int_equal(vdisk_disk_discard(d, 0, 4096), -EROFS);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
	/* a raw file forced to be VHDX is refused */
	vdisk_err_clear(&err);
	assert_int_equal(vdisk_disk_open(rpath, VDISK_FORMAT_VHDX, 0, &d, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a VHDX image"));

	/* raw: 1:1, holes are UNALLOCATED */
	assert_int_equal(vdisk_disk_open(rpath, VDISK_FORMAT_AUTO, 0, &d, &err), 0);
	assert_int_equal(vdisk_disk_format(d), VDISK_FORMAT_RAW);
	assert_null(vdisk_disk_vhdx(d));
	assert_int_equal(vdisk_disk_size(d), 16 * MB);
	assert_int_equal(vdisk_disk_logical_sector(d), 512);
	n = vdisk_disk_translate(d, 0, 16 * MB, ext, 8);
	assert_int_equal(n, 1);
	assert_int_equal(ext[0].type, VDISK_EXTENT_UNALLOCATED);
	assert_int_equal(ext[0].length, 16 * MB);
	assert_int_equal(vdisk_disk_pwrite(d, buf, sizeof(buf), 4 * MB), 0);
	n = vdisk_disk_translate(d, 0, 16 * MB, ext, 8);
	assert_int_equal(n, 3);
	assert_int_equal(ext[0].type, VDISK_EXTENT_UNALLOCATED);
	assert_int_equal(ext[1].type, VDISK_EXTENT_DATA);
	assert_true(ext[1].offset <= 4 * MB && ext[1].offset + ext[1].length >= 4 * MB + 8192);
	assert_int_equal(ext[1].file_offset, ext[1].offset);
	assert_int_equal(ext[2].type, VDISK_EXTENT_UNALLOCATED);
	assert_int_equal(ext[2].offset + ext[2].length, 16 * MB);
	n = vdisk_disk_translate(d, 0, 16 * MB, ext, 2);
	assert_int_equal(n, 2); /* a prefix */
	assert_int_equal(vdisk_disk_pread(d, got, sizeof(got), 4 * MB), 0);
	assert_memory_equal(buf, got, sizeof(got));
	assert_int_equal(vdisk_disk_write_zeroes(d, 4 * MB, 4096), 0);
	assert_int_equal(vdisk_disk_pread(d, got, 4096, 4 * MB), 0);
	assert_true(vdisk_is_zero(got, 4096));
	assert_int_equal(vdisk_disk_discard(d, 4 * MB, 8192), 0);
	assert_int_equal(vdisk_disk_pread(d, got, sizeof(got), 4 * MB), 0);
	assert_true(vdisk_is_zero(got, sizeof(got)));
	assert_int_equal(vdisk_disk_pread(d, got, 100, 16 * MB - 50), -EINVAL);
	assert_int_equal(vdisk_disk_pwrite(d, got, 100, 16 * MB - 50), -EINVAL);
	assert_int_equal(vdisk_disk_translate(d, 16 * MB, 1, ext, 8), -EINVAL);
	assert_int_equal(vdisk_disk_flush(d), 0);
	vdisk_err_clear(&err);
	assert_int_equal(vdisk_disk_open(rpath, VDISK_FORMAT_RAW, 0, &d2, &err), -EBUSY);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
	assert_int_equal(vdisk_disk_open(rpath, VDISK_FORMAT_RAW, VDISK_OPEN_RDONLY, &d, &err), 0);
	assert_int_equal(vdisk_disk_pwrite(d, buf, 512, 0), -EROFS);
	assert_int_equal(vdisk_disk_write_zeroes(d, 0, 512), -EROFS);
	assert_int_equal(vdisk_disk_allocate(d, 0, 512, ext, 8), -EROFS);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
	assert_int_equal(vdisk_disk_close(NULL, NULL), 0);
	vdisk_err_clear(&err);
	assert_int_equal(vdisk_disk_open("/nonexistent/x", VDISK_FORMAT_AUTO, 0, &d, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/x"));
	unlink(vpath);
	unlink(rpath);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_translate_contract),
		cmocka_unit_test(test_child_chunk_boundary),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_disk_interface),
		cmocka_unit_test(test_dynamic_1m_512),
		cmocka_unit_test(test_dynamic_1m_4096),
		cmocka_unit_test(test_dynamic_32m_512),
		cmocka_unit_test(test_dynamic_32m_4096),
		cmocka_unit_test(test_fixed_1m_512),
		cmocka_unit_test(test_fixed_1m_4096),
		cmocka_unit_test(test_fixed_32m_512),
		cmocka_unit_test(test_fixed_32m_4096),
		cmocka_unit_test(test_child_2m_over_1m_512),
		cmocka_unit_test(test_child_1m_over_32m_4096_larger),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
