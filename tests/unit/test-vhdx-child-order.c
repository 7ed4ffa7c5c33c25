/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Ordering of sector-bitmap bits and data in a differencing child. A bit
 * that says "this sector is in the child" may reach the disk only after the
 * sector's data has: vhdx_allocate() hands out space but leaves the bits
 * clear (the range keeps reading the parent), vhdx_write_done() sets them
 * once the caller's data write completed. Each case commits with
 * vhdx_flush(), then "crashes" (vhdx_abandon) and reopens: a range that was
 * allocated but never written must still read the parent's pattern, a range
 * written and reported done must read the new data. Also the
 * vhdx_write_done() contract (arguments, no-ops), write-zeroes in a child,
 * and vdisk_disk_write_done() over VHDX (a clean close commits only the
 * bits of done writes) and raw files. Run for 512- and
 * 4096-byte logical sectors.
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
#include <unistd.h>

#include <cmocka.h>

#include <vdisk/disk.h>
#include <vdisk/vhdx.h>

#include "helpers.h"
#include "vhdx-int.h"

#define MB (1ULL << 20)
#define KB (1ULL << 10)
#define DISK (8 * MB)

struct fixture {
	char ppath[700], cpath[700], rpath[700];
	uint8_t *pattern; /* the parent's content, DISK bytes */
	uint8_t *buf;
	uint32_t lsec;
};

static void print_finding(void *opaque, enum vhdx_check_severity sev, const char *msg)
{
	(void)opaque;
	if (sev != VHDX_CHECK_INFO)
		fprintf(stderr, "check: %s\n", msg);
}

static void check_clean(const char *path)
{
	struct vhdx_check_result res;
	struct vdisk_err err = { 0 };

	assert_int_equal(vhdx_check(path, 0, print_finding, NULL, &res, &err), 0);
	if (res.corruptions || res.leaks || !res.opened || res.log_was_dirty)
		fail_msg("vhdx_check %s: %llu corruptions, %llu leaks, dirty %d", path,
			 (unsigned long long)res.corruptions, (unsigned long long)res.leaks,
			 res.log_was_dirty);
}

/* @img reads @want at [off, off+len). */
static void expect(struct fixture *f, struct vhdx_image *img, uint64_t off, size_t len,
		   const uint8_t *want, const char *what)
{
	assert_int_equal(vhdx_pread(img, f->buf, len, off), 0);
	if (memcmp(f->buf, want, len) != 0) {
		size_t i = 0;
		while (f->buf[i] == want[i])
			i++;
		fail_msg("%s: %zu bytes at %#llx differ first at %#llx: %02x, expected %02x", what,
			 len, (unsigned long long)off, (unsigned long long)(off + i), f->buf[i],
			 want[i]);
	}
}

static void expect_parent(struct fixture *f, struct vhdx_image *img, uint64_t off, size_t len,
			  const char *what)
{
	expect(f, img, off, len, f->pattern + off, what);
}

/* Every extent of [off, off+len) comes from layer @layer (0: the child, 1: the parent). */
static void expect_layer(struct vhdx_image *img, uint64_t off, uint64_t len, unsigned layer)
{
	struct vdisk_extent ext[16];
	uint64_t pos = off;
	int n = vhdx_translate(img, off, len, ext, 16);

	assert_true(n >= 1);
	for (int i = 0; i < n; i++) {
		assert_int_equal(ext[i].offset, pos);
		assert_int_equal(ext[i].type, VDISK_EXTENT_DATA);
		if (ext[i].layer != layer)
			fail_msg("[%#llx, +%llu) comes from layer %u, expected %u",
				 (unsigned long long)ext[i].offset,
				 (unsigned long long)ext[i].length, ext[i].layer, layer);
		pos += ext[i].length;
	}
	assert_int_equal(pos, off + len);
}

/* Allocates [off, off+len) and writes @data into the extents handed out (not reported done). */
static void allocate_and_write(struct vhdx_image *img, uint64_t off, uint64_t len,
			       const uint8_t *data)
{
	struct vdisk_extent ext[16];
	uint64_t done = 0;

	while (done < len) {
		int n = vhdx_allocate(img, off + done, len - done, ext, 16);
		assert_true(n >= 1);
		for (int i = 0; i < n; i++) {
			assert_int_equal(ext[i].type, VDISK_EXTENT_DATA);
			assert_int_equal(ext[i].layer, 0);
			assert_int_equal(ext[i].offset, off + done);
			if (data)
				assert_int_equal(pwrite(ext[i].fd, data + done, ext[i].length,
							(off_t)ext[i].file_offset),
						 (ssize_t)ext[i].length);
			done += ext[i].length;
		}
	}
}

static void setup(struct fixture *f, uint32_t lsec)
{
	struct vhdx_image *p;
	char name[64];

	f->lsec = lsec;
	f->pattern = malloc(DISK);
	f->buf = malloc(DISK);
	assert_true(f->pattern && f->buf);
	snprintf(name, sizeof(name), "order-parent-%u.vhdx", lsec);
	snprintf(f->ppath, sizeof(f->ppath), "%s", test_tmp_path(name));
	snprintf(name, sizeof(name), "order-child-%u.avhdx", lsec);
	snprintf(f->cpath, sizeof(f->cpath), "%s", test_tmp_path(name));
	snprintf(name, sizeof(name), "order-%u.raw", lsec);
	snprintf(f->rpath, sizeof(f->rpath), "%s", test_tmp_path(name));
	test_create_image_sectors(f->ppath, VHDX_TYPE_DYNAMIC, DISK, 1 << 20, lsec, 0, NULL);
	p = test_open_image(f->ppath, 0);
	test_fill_pattern(f->pattern, DISK, 0x0d3a + lsec);
	assert_int_equal(vhdx_pwrite(p, f->pattern, DISK, 0), 0);
	assert_int_equal(vhdx_close(p, NULL), 0);
	test_create_image_sectors(f->cpath, VHDX_TYPE_DIFFERENCING, 0, 1 << 20, 0, 0, f->ppath);
}

static void teardown(struct fixture *f)
{
	unlink(f->cpath);
	unlink(f->ppath);
	unlink(f->rpath);
	free(f->pattern);
	free(f->buf);
}

/*
 * A range allocated and never written (the process or machine died before
 * the data write landed) reads the parent after a commit and a crash, in a
 * block that was NOT_PRESENT and in one already PARTIALLY_PRESENT.
 */
static void unwritten_allocation(struct fixture *f)
{
	const uint64_t a = 1 * MB + 4 * KB, alen = 16 * KB;  /* block 1: NOT_PRESENT */
	const uint64_t b = 2 * MB + 64 * KB, blen = 32 * KB; /* block 2: PARTIALLY_PRESENT */
	uint8_t x[4096];
	struct vhdx_image *c = test_open_image(f->cpath, 0);

	memset(x, 0x5a, sizeof(x));
	assert_int_equal(vhdx_pwrite(c, x, sizeof(x), 2 * MB), 0);
	assert_int_equal(vhdx_flush(c), 0);

	allocate_and_write(c, a, alen, NULL);
	allocate_and_write(c, b, blen, NULL);
	assert_int_equal(c->bat[vhdx_bat_index(1, c->chunk_ratio)] & VHDX_BAT_STATE_MASK,
			 VHDX_BLOCK_PARTIALLY_PRESENT);
	/* until the write is done, readers see the parent */
	expect_layer(c, a, alen, 1);
	expect_layer(c, b, blen, 1);
	expect_parent(f, c, a, alen, "allocated, not written");
	expect_parent(f, c, b, blen, "allocated, not written (partial block)");
	/* a flush meanwhile (another request, the daemon's commit timer), then a crash */
	assert_int_equal(vhdx_flush(c), 0);
	vhdx_abandon(c);

	c = test_open_image(f->cpath, 0);
	expect_layer(c, a, alen, 1);
	expect_layer(c, b, blen, 1);
	expect_parent(f, c, a, alen, "after crash: allocated, never written");
	expect_parent(f, c, b, blen, "after crash: allocated, never written (partial block)");
	expect(f, c, 2 * MB, sizeof(x), x, "after crash: an earlier completed write");
	expect_parent(f, c, MB, MB, "after crash: the rest of block 1");
	assert_int_equal(vhdx_close(c, NULL), 0);
	check_clean(f->cpath);
}

/*
 * The normal path: allocate, write, a flush racing in before completion
 * (commits the block, not the bits), vhdx_write_done(), flush, crash: the
 * new data is there. The range spans a PARTIALLY_PRESENT and a NOT_PRESENT block.
 */
static void completed_write(struct fixture *f)
{
	const uint64_t off = 3 * MB - 32 * KB, len = 64 * KB;
	uint8_t *z = malloc(len);
	struct vhdx_image *c = test_open_image(f->cpath, 0);

	assert_non_null(z);
	test_fill_pattern(z, len, 77);
	allocate_and_write(c, off, len, z);
	expect_layer(c, off, len, 1);
	expect_parent(f, c, off, len, "written, not yet done");
	assert_int_equal(vhdx_flush(c), 0);
	assert_int_equal(vhdx_write_done(c, off, len), 0);
	expect_layer(c, off, len, 0);
	expect(f, c, off, len, z, "done");
	assert_int_equal(vhdx_flush(c), 0);
	vhdx_abandon(c);

	c = test_open_image(f->cpath, 0);
	expect_layer(c, off, len, 0);
	expect(f, c, off, len, z, "after crash: done and flushed");
	expect_parent(f, c, 3 * MB + 32 * KB, MB - 32 * KB, "after crash: the rest of block 3");
	expect_parent(f, c, 2 * MB + 64 * KB, 32 * KB, "after crash: the unwritten range");
	assert_int_equal(vhdx_close(c, NULL), 0);
	check_clean(f->cpath);
	free(z);
}

/* Write-zeroes and unaligned writes in a child set their bits only over what they changed. */
static void zeroes_and_rmw(struct fixture *f)
{
	uint8_t zero[4096] = { 0 }, small[100], want[200];
	struct vhdx_image *c = test_open_image(f->cpath, 0);

	assert_int_equal(vhdx_write_zeroes(c, 4 * MB + 4 * KB, 4 * KB), 0);
	memset(small, 0xe7, sizeof(small));
	assert_int_equal(vhdx_pwrite(c, small, sizeof(small), 5 * MB + 10), 0);
	assert_int_equal(vhdx_flush(c), 0);
	vhdx_abandon(c);

	c = test_open_image(f->cpath, 0);
	expect(f, c, 4 * MB + 4 * KB, 4 * KB, zero, "after crash: write-zeroes");
	expect_parent(f, c, 4 * MB, 4 * KB, "after crash: before the zeroed range");
	expect_parent(f, c, 4 * MB + 8 * KB, MB - 8 * KB, "after crash: after the zeroed range");
	memcpy(want, f->pattern + 5 * MB, sizeof(want));
	memcpy(want + 10, small, sizeof(small));
	expect(f, c, 5 * MB, sizeof(want), want, "after crash: read-modify-write");
	assert_int_equal(vhdx_close(c, NULL), 0);
	check_clean(f->cpath);
}

/* vhdx_write_done(): arguments; no-ops (nothing dirtied) where nothing is to be marked. */
static void write_done_contract(struct fixture *f)
{
	struct vhdx_image *c = test_open_image(f->cpath, 0), *d;
	char dpath[700];

	assert_int_equal(vhdx_write_done(c, 4096 + 1, 4096), -EINVAL);
	assert_int_equal(vhdx_write_done(c, 4096, 100), -EINVAL);
	assert_int_equal(vhdx_write_done(c, 0, 0), -EINVAL);
	assert_int_equal(vhdx_write_done(c, DISK, 4096), -EINVAL);
	assert_int_equal(vhdx_write_done(c, UINT64_MAX - 4095, 4096), -EINVAL);
	/* a range already done (committed before), a never-allocated block: nothing changes */
	assert_int_equal(vhdx_write_done(c, 3 * MB - 32 * KB, 64 * KB), 0);
	assert_int_equal(vhdx_write_done(c, 7 * MB, MB), 0);
	assert_int_equal(c->nr_sbm_dirty, 0);
	assert_int_equal(c->nr_dirty, 0);
	expect_parent(f, c, 7 * MB, MB, "write_done on a block never allocated");
	/* a FULLY_PRESENT block (whole-block write-zeroes in a child) */
	assert_int_equal(vhdx_write_zeroes(c, 6 * MB, MB), 0);
	assert_int_equal(vhdx_flush(c), 0);
	assert_int_equal(c->bat[vhdx_bat_index(6, c->chunk_ratio)] & VHDX_BAT_STATE_MASK,
			 VHDX_BLOCK_FULLY_PRESENT);
	assert_int_equal(vhdx_write_done(c, 6 * MB, MB), 0);
	assert_int_equal(c->nr_sbm_dirty, 0);
	/* half done: only the missing bits are set, and their page is dirtied */
	allocate_and_write(c, 1 * MB, 8 * KB, f->pattern + 1 * MB);
	assert_int_equal(vhdx_write_done(c, 1 * MB, 4 * KB), 0);
	assert_int_equal(c->nr_sbm_dirty, 1);
	expect_layer(c, 1 * MB, 4 * KB, 0);
	expect_layer(c, 1 * MB + 4 * KB, 4 * KB, 1);
	assert_int_equal(vhdx_write_done(c, 1 * MB, 8 * KB), 0);
	expect_layer(c, 1 * MB, 8 * KB, 0);
	assert_int_equal(vhdx_close(c, NULL), 0);

	/* read-only: refused like vhdx_allocate */
	c = test_open_image(f->cpath, VHDX_OPEN_RDONLY);
	assert_int_equal(vhdx_write_done(c, 0, 4096), -EROFS);
	assert_int_equal(vhdx_close(c, NULL), 0);

	/* an image without a parent: valid, changes nothing */
	snprintf(dpath, sizeof(dpath), "%s", test_tmp_path(f->lsec == 512 ? "order-dynamic-512.vhdx"
									  : "order-dynamic-4096.vhdx"));
	test_create_image_sectors(dpath, VHDX_TYPE_DYNAMIC, DISK, 1 << 20, f->lsec, 0, NULL);
	d = test_open_image(dpath, 0);
	allocate_and_write(d, MB, 8 * KB, f->pattern);
	assert_int_equal(d->nr_sbm_dirty, 0);
	assert_int_equal(vhdx_write_done(d, MB, 8 * KB), 0);
	assert_int_equal(d->nr_sbm_dirty, 0);
	assert_int_equal(vhdx_write_done(d, MB, 3), -EINVAL);
	expect(f, d, MB, 8 * KB, f->pattern, "dynamic: allocated and written");
	assert_int_equal(vhdx_close(d, NULL), 0);
	check_clean(dpath);
	unlink(dpath);
}

/* The disk interface: vdisk_disk_write_done() over a child and over a raw file. */
static void disk_interface(struct fixture *f)
{
	struct vdisk_disk *d;
	struct vdisk_err err = { 0 };
	struct vdisk_extent ext[8];
	struct vhdx_image *c;
	uint8_t y[8192];
	int fd, n;

	test_fill_pattern(y, sizeof(y), 5150);
	assert_int_equal(vdisk_disk_open(f->cpath, VDISK_FORMAT_AUTO, 0, &d, &err), 0);
	n = vdisk_disk_allocate(d, 5 * MB + 64 * KB, sizeof(y), ext, 8);
	assert_int_equal(n, 1);
	assert_int_equal(pwrite(ext[0].fd, y, sizeof(y), (off_t)ext[0].file_offset),
			 (ssize_t)sizeof(y));
	assert_int_equal(vdisk_disk_write_done(d, 5 * MB + 64 * KB, sizeof(y)), 0);
	n = vdisk_disk_allocate(d, 7 * MB, sizeof(y), ext, 8); /* never written */
	assert_int_equal(n, 1);
	assert_int_equal(vdisk_disk_write_done(d, 7 * MB + 1, 4096), -EINVAL);
	/* a clean close commits everything pending: the bits of the done write only */
	assert_int_equal(vdisk_disk_close(d, &err), 0);

	c = test_open_image(f->cpath, 0);
	expect(f, c, 5 * MB + 64 * KB, sizeof(y), y, "disk: done");
	expect_parent(f, c, 7 * MB, sizeof(y), "disk: allocated, never written");
	assert_int_equal(vhdx_close(c, NULL), 0);

	/* raw: nothing to mark; arguments still checked */
	fd = open(f->rpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)DISK), 0);
	close(fd);
	assert_int_equal(vdisk_disk_open(f->rpath, VDISK_FORMAT_RAW, 0, &d, &err), 0);
	n = vdisk_disk_allocate(d, MB, sizeof(y), ext, 8);
	assert_int_equal(n, 1);
	assert_int_equal(pwrite(ext[0].fd, y, sizeof(y), (off_t)ext[0].file_offset),
			 (ssize_t)sizeof(y));
	assert_int_equal(vdisk_disk_write_done(d, MB, sizeof(y)), 0);
	assert_int_equal(vdisk_disk_write_done(d, DISK, 512), -EINVAL);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
	assert_int_equal(vdisk_disk_open(f->rpath, VDISK_FORMAT_RAW, VDISK_OPEN_RDONLY, &d, &err),
			 0);
	assert_int_equal(vdisk_disk_pread(d, f->buf, sizeof(y), MB), 0);
	assert_memory_equal(f->buf, y, sizeof(y));
	assert_int_equal(vdisk_disk_write_done(d, MB, 512), -EROFS);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
}

static void run_all(uint32_t lsec)
{
	struct fixture f;

	memset(&f, 0, sizeof(f));
	setup(&f, lsec);
	unwritten_allocation(&f);
	completed_write(&f);
	zeroes_and_rmw(&f);
	write_done_contract(&f);
	disk_interface(&f);
	/* the parent was never written through the child */
	{
		struct vhdx_image *p = test_open_image(f.ppath, VHDX_OPEN_RDONLY);
		expect(&f, p, 0, DISK, f.pattern, "parent");
		assert_int_equal(vhdx_close(p, NULL), 0);
	}
	teardown(&f);
}

static void test_order_512(void **state)
{
	(void)state;
	run_all(512);
}

static void test_order_4096(void **state)
{
	(void)state;
	run_all(4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_512),
		cmocka_unit_test(test_order_4096),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
