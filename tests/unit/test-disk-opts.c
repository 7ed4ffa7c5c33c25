/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk_disk_open_opts(): a VHDX child whose parent moved away opens only
 * when the parent's new folder is among the search folders, and then reads
 * both layers' bytes; a search folder holding another image under the
 * parent's name is refused with the GUID mismatch, and a later folder with
 * the right parent still wins. Options are read no further than their
 * struct_size (a caller built against a header holding only struct_size and
 * flags), NULL options are the defaults, and vdisk_disk_open() is the same
 * open without search folders.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <vdisk/disk.h>
#include <vdisk/vhdx.h>

#include "helpers.h"

#define SIZE (8u << 20)

static const char *vm_dir, *away_dir, *bad_dir, *child;

/* base (0xB1 at 0) <- child (0xC2 at 1 MiB); the base then moved to away/, an impostor in bad/. */
static int setup(void **state)
{
	char buf[4096];
	struct vhdx_image *img;

	(void)state;
	vm_dir = strdup(test_tmp_path("opts-vm"));
	away_dir = strdup(test_tmp_path("opts-away"));
	bad_dir = strdup(test_tmp_path("opts-bad"));
	child = strdup(test_tmp_path("opts-vm/child.avhdx"));
	if (test_system("rm -rf '%s' '%s' '%s' && mkdir '%s' '%s' '%s'", vm_dir, away_dir, bad_dir,
			vm_dir, away_dir, bad_dir) != 0)
		return -1;
	test_create_image(test_tmp_path("opts-vm/base.vhdx"), VHDX_TYPE_DYNAMIC, SIZE, 0, NULL);
	img = test_open_image(test_tmp_path("opts-vm/base.vhdx"), 0);
	memset(buf, 0xB1, sizeof(buf));
	if (vhdx_pwrite(img, buf, sizeof(buf), 0) < 0 || vhdx_close(img, NULL) < 0)
		return -1;
	test_create_image(child, VHDX_TYPE_DIFFERENCING, 0, 0, test_tmp_path("opts-vm/base.vhdx"));
	img = test_open_image(child, 0);
	memset(buf, 0xC2, sizeof(buf));
	if (vhdx_pwrite(img, buf, sizeof(buf), 1u << 20) < 0 || vhdx_close(img, NULL) < 0)
		return -1;
	if (test_system("mv '%s/base.vhdx' '%s/'", vm_dir, away_dir) != 0)
		return -1;
	test_create_image(test_tmp_path("opts-bad/base.vhdx"), VHDX_TYPE_DYNAMIC, SIZE, 0, NULL);
	return 0;
}

static void assert_bytes(struct vdisk_disk *d, uint64_t off, uint8_t want)
{
	uint8_t buf[4096], exp[4096];

	memset(exp, want, sizeof(exp));
	assert_int_equal(vdisk_disk_pread(d, buf, sizeof(buf), off), 0);
	assert_memory_equal(buf, exp, sizeof(buf));
}

static void test_missing_parent(void **state)
{
	struct vdisk_err err = { 0 };
	struct vdisk_disk *d = NULL;
	struct vdisk_disk_opts o;

	(void)state;
	assert_int_equal(vdisk_disk_open(child, VDISK_FORMAT_AUTO, VDISK_OPEN_RDONLY, &d, &err),
			 -ENOENT);
	assert_null(d);
	assert_non_null(strstr(err.msg, "parent not found"));
	assert_non_null(strstr(err.msg, "base.vhdx"));
	vdisk_err_clear(&err);
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_AUTO, NULL, &d, &err), -ENOENT);
	vdisk_err_clear(&err);
	vdisk_disk_opts_init(&o, sizeof(o));
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_VHDX, &o, &d, &err), -ENOENT);
	assert_null(d);
}

static void test_found_in_search_dir(void **state)
{
	const char *dirs[] = { vm_dir, away_dir, NULL };
	struct vdisk_err err = { 0 };
	struct vdisk_disk *d = NULL;
	struct vdisk_disk_opts o;

	(void)state;
	vdisk_disk_opts_init(&o, sizeof(o));
	o.flags = VDISK_OPEN_RDONLY;
	o.search_dirs = dirs;
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_AUTO, &o, &d, &err), 0);
	assert_int_equal(vdisk_disk_format(d), VDISK_FORMAT_VHDX);
	assert_int_equal(vdisk_disk_size(d), SIZE);
	assert_non_null(vhdx_parent(vdisk_disk_vhdx(d)));
	assert_bytes(d, 0, 0xB1);       /* the parent's data */
	assert_bytes(d, 1u << 20, 0xC2); /* the child's */
	assert_bytes(d, 2u << 20, 0);    /* neither */
	assert_int_equal(vdisk_disk_close(d, &err), 0);
}

/* Sixteen folders (the CLI's limit), the parent only in the last: every one is tried. */
static void test_many_search_dirs(void **state)
{
	const char *dirs[17];
	struct vdisk_err err = { 0 };
	struct vdisk_disk *d = NULL;
	struct vdisk_disk_opts o;

	(void)state;
	for (int i = 0; i < 15; i++)
		dirs[i] = vm_dir;
	dirs[15] = away_dir;
	dirs[16] = NULL;
	vdisk_disk_opts_init(&o, sizeof(o));
	o.flags = VDISK_OPEN_RDONLY;
	o.search_dirs = dirs;
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_AUTO, &o, &d, &err), 0);
	assert_bytes(d, 0, 0xB1);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
}

static void test_writable_with_search_dir(void **state)
{
	const char *dirs[] = { away_dir, NULL };
	struct vdisk_err err = { 0 };
	struct vdisk_disk *d = NULL;
	struct vdisk_disk_opts o;
	uint8_t buf[512];

	(void)state;
	vdisk_disk_opts_init(&o, sizeof(o));
	o.search_dirs = dirs;
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_AUTO, &o, &d, &err), 0);
	memset(buf, 0xD3, sizeof(buf));
	assert_int_equal(vdisk_disk_pwrite(d, buf, sizeof(buf), 3u << 20), 0);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
	o.flags = VDISK_OPEN_RDONLY;
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_AUTO, &o, &d, &err), 0);
	assert_int_equal(vdisk_disk_pread(d, buf, sizeof(buf), 3u << 20), 0);
	assert_int_equal(buf[0], 0xD3);
	assert_int_equal(buf[511], 0xD3);
	assert_bytes(d, 0, 0xB1);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
}

static void test_impostor_refused(void **state)
{
	const char *bad[] = { bad_dir, NULL };
	const char *both[] = { bad_dir, away_dir, NULL };
	struct vdisk_err err = { 0 };
	struct vdisk_disk *d = NULL;
	struct vdisk_disk_opts o;

	(void)state;
	vdisk_disk_opts_init(&o, sizeof(o));
	o.flags = VDISK_OPEN_RDONLY;
	o.search_dirs = bad;
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_AUTO, &o, &d, &err), -EINVAL);
	assert_null(d);
	assert_non_null(strstr(err.msg, "does not match"));
	assert_non_null(strstr(err.msg, "opts-bad/base.vhdx"));
	vdisk_err_clear(&err);
	o.search_dirs = both; /* the impostor first, the real parent later: the real one wins */
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_AUTO, &o, &d, &err), 0);
	assert_bytes(d, 0, 0xB1);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
}

/* A caller built against a header whose struct ended after flags: search_dirs is not read. */
static void test_short_struct(void **state)
{
	const char *dirs[] = { away_dir, NULL };
	struct vdisk_err err = { 0 };
	struct vdisk_disk *d = NULL;
	struct vdisk_disk_opts o;

	(void)state;
	vdisk_disk_opts_init(&o, sizeof(o));
	o.search_dirs = dirs;
	o.flags = VDISK_OPEN_RDONLY;
	o.struct_size = offsetof(struct vdisk_disk_opts, search_dirs);
	assert_int_equal(vdisk_disk_open_opts(child, VDISK_FORMAT_AUTO, &o, &d, &err), -ENOENT);
	vdisk_err_clear(&err);
	/* but its flags are: the open is read-only, a write is refused */
	assert_int_equal(vdisk_disk_open_opts(test_tmp_path("opts-away/base.vhdx"),
					      VDISK_FORMAT_AUTO, &o, &d, &err),
			 0);
	assert_int_equal(vdisk_disk_pwrite(d, "x", 1, 0), -EROFS);
	assert_int_equal(vdisk_disk_close(d, &err), 0);
}

/* opts_init with a smaller size touches nothing past it. */
static void test_init_size(void **state)
{
	struct vdisk_disk_opts o;

	(void)state;
	memset(&o, 0xAA, sizeof(o));
	vdisk_disk_opts_init(&o, offsetof(struct vdisk_disk_opts, search_dirs));
	assert_int_equal(o.struct_size, offsetof(struct vdisk_disk_opts, search_dirs));
	assert_int_equal(o.flags, 0);
	assert_int_equal(((unsigned char *)&o.search_dirs)[0], 0xAA);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_missing_parent),
		cmocka_unit_test(test_found_in_search_dir),
		cmocka_unit_test(test_many_search_dirs),
		cmocka_unit_test(test_writable_with_search_dir),
		cmocka_unit_test(test_impostor_refused),
		cmocka_unit_test(test_short_struct),
		cmocka_unit_test(test_init_size),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
