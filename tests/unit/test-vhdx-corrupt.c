/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Damaged images: a small dynamic image and a differencing child made by
 * vdisk are mangled one field at a time (identifier, every header field,
 * both region tables, the metadata table and each item, the parent
 * locator, BAT entries of both kinds, the log of a dirty image), with
 * checksums recomputed where the damage must get past them. Each time
 * vhdx_open (read-only and writable) must fail with the expected negative
 * errno and a message naming the file and the structure/field, write
 * nothing, and vhdx_check must report it as a corruption without crashing.
 * Damage the format tolerates (one header, region table copy 1, optional
 * unknown items) must still open. vhdx_check's severities (corrupt vs leak)
 * and its repairs are checked on a few cases.
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

#include "byteorder.h"
#include "helpers.h"
#include "vhdx-int.h"

#define MB (1ULL << 20)

/* base.vhdx: 64 MiB dynamic, 1 MiB blocks, 512-byte sectors, blocks 0, 5 and 63 written */
#define BASE_SIZE (64 * MB)
#define BASE_META (2 * MB)
#define BASE_BAT (3 * MB)
#define ITEM0 (BASE_META + 65536) /* File Parameters, then Disk Size, sectors, Page 83 */

static char base[600], cparent[600], child[600], work[600], workc[600];

static const unsigned base_blocks[] = { 0, 5, 63 };

static void pattern(uint8_t *buf, size_t len, uint64_t seed)
{
	test_fill_pattern(buf, len, seed);
}


static int setup(void **state)
{
	uint8_t *buf = malloc(MB);
	struct vhdx_image *img;

	snprintf(base, sizeof(base), "%s", test_tmp_path("base.vhdx"));
	snprintf(cparent, sizeof(cparent), "%s", test_tmp_path("cparent.vhdx"));
	snprintf(child, sizeof(child), "%s", test_tmp_path("child-pristine.avhdx"));
	snprintf(work, sizeof(work), "%s", test_tmp_path("work.vhdx"));
	snprintf(workc, sizeof(workc), "%s", test_tmp_path("work.avhdx"));
	test_create_image(base, VHDX_TYPE_DYNAMIC, BASE_SIZE, 1 << 20, NULL);
	img = test_open_image(base, 0);
	for (size_t i = 0; i < ARRAY_SIZE(base_blocks); i++) {
		pattern(buf, MB, 100 + base_blocks[i]);
		assert_int_equal(vhdx_pwrite(img, buf, MB, base_blocks[i] * MB), 0);
	}
	assert_int_equal(vhdx_close(img, NULL), 0);

	/* the child's parent is a copy of base; the child gets a partial and a whole-sector write */
	assert_int_equal(test_copy_file(base, cparent), 0);
	test_create_image(child, VHDX_TYPE_DIFFERENCING, 0, 0, cparent);
	img = test_open_image(child, 0);
	pattern(buf, 4096, 200);
	assert_int_equal(vhdx_pwrite(img, buf, 4096, MB + 512), 0);
	pattern(buf, 8192, 201);
	assert_int_equal(vhdx_pwrite(img, buf, 8192, 20 * MB), 0);
	assert_int_equal(vhdx_close(img, NULL), 0);
	free(buf);
	return 0;
}

/* ---- raw editing ---- */

static void poke(const char *path, uint64_t off, const void *p, size_t n)
{
	assert_int_equal(test_file_pwrite(path, p, n, off), 0);
}

static void poke16(const char *path, uint64_t off, uint16_t v)
{
	uint8_t b[2];
	put_le16(b, v);
	poke(path, off, b, 2);
}

static void poke32(const char *path, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	put_le32(b, v);
	poke(path, off, b, 4);
}

static void poke64(const char *path, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	put_le64(b, v);
	poke(path, off, b, 8);
}

static uint64_t peek64(const char *path, uint64_t off)
{
	uint8_t b[8];
	assert_int_equal(test_file_pread(path, b, 8, off), 0);
	return get_le64(b);
}

static uint32_t peek32(const char *path, uint64_t off)
{
	uint8_t b[4];
	assert_int_equal(test_file_pread(path, b, 4, off), 0);
	return get_le32(b);
}

static void fresh(const char *from, const char *to)
{
	unlink(to);
	assert_int_equal(test_copy_file(from, to), 0);
}

/* Slot (0 or 1) of the current header. */
static int cur_slot(const char *path)
{
	uint8_t buf[VHDX_HEADER_SIZE];
	struct vhdx_header h[2];
	bool ok[2];

	for (int i = 0; i < 2; i++) {
		assert_int_equal(test_file_pread(path, buf, sizeof(buf),
						 i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET),
				 0);
		ok[i] = vhdx_header_decode(buf, &h[i], NULL) == 0;
	}
	assert_true(ok[0] || ok[1]);
	return (!ok[0] || (ok[1] && h[1].seq > h[0].seq)) ? 1 : 0;
}

static uint64_t hdr_off(int slot)
{
	return slot ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
}

enum hfield { H_VERSION, H_LOGVERSION, H_LOGOFF, H_LOGLEN, H_LOGGUID, H_SEQ, H_RESERVED, H_FWG, H_DWG };

/* Sets a field of header @slot and recomputes its checksum. */
static void hdr_set(const char *path, int slot, enum hfield f, uint64_t v)
{
	uint8_t buf[VHDX_HEADER_SIZE];
	struct vhdx_header h;

	assert_int_equal(test_file_pread(path, buf, sizeof(buf), hdr_off(slot)), 0);
	assert_int_equal(vhdx_header_decode(buf, &h, NULL), 0);
	switch (f) {
	case H_VERSION:
		h.version = (uint16_t)v;
		break;
	case H_LOGVERSION:
		h.log_version = (uint16_t)v;
		break;
	case H_LOGOFF:
		h.log_offset = v;
		break;
	case H_LOGLEN:
		h.log_length = (uint32_t)v;
		break;
	case H_LOGGUID:
		memset(h.log_guid.b, (int)v, 16);
		break;
	case H_SEQ:
		h.seq = v;
		break;
	case H_FWG:
		memset(h.file_write_guid.b, (int)v, 16);
		break;
	case H_DWG:
		memset(h.data_write_guid.b, (int)v, 16);
		break;
	case H_RESERVED:
		break;
	}
	vhdx_header_encode(&h, buf);
	if (f == H_RESERVED) {
		buf[100] = (uint8_t)v;
		put_le32(buf + 4, 0);
		put_le32(buf + 4, vdisk_crc32c(0, buf, sizeof(buf)));
	}
	poke(path, hdr_off(slot), buf, sizeof(buf));
}

/* Recomputes the checksum of region table copy @which (0, 1) after raw edits. */
static void rt_fix_crc(const char *path, int which)
{
	uint8_t *buf = malloc(VHDX_RT_SIZE);
	uint64_t off = which ? VHDX_RT2_OFFSET : VHDX_RT1_OFFSET;

	assert_non_null(buf);
	assert_int_equal(test_file_pread(path, buf, VHDX_RT_SIZE, off), 0);
	put_le32(buf + 4, 0);
	put_le32(buf + 4, vdisk_crc32c(0, buf, VHDX_RT_SIZE));
	poke(path, off, buf, VHDX_RT_SIZE);
	free(buf);
}

/* Region table entry field at @field_off (0 GUID, 16 FileOffset, 24 Length, 28 Required) in both copies. */
static void rt_poke(const char *path, unsigned entry, unsigned field_off, const void *p, size_t n)
{
	for (int w = 0; w < 2; w++) {
		poke(path, (w ? VHDX_RT2_OFFSET : VHDX_RT1_OFFSET) + 16 + 32 * entry + field_off, p, n);
		rt_fix_crc(path, w);
	}
}

static void rt_poke64(const char *path, unsigned entry, unsigned field_off, uint64_t v)
{
	uint8_t b[8];
	put_le64(b, v);
	rt_poke(path, entry, field_off, b, 8);
}

static void rt_poke32(const char *path, unsigned entry, unsigned field_off, uint32_t v)
{
	uint8_t b[4];
	put_le32(b, v);
	rt_poke(path, entry, field_off, b, 4);
}

static void rt_count(const char *path, uint32_t count)
{
	for (int w = 0; w < 2; w++) {
		poke32(path, (w ? VHDX_RT2_OFFSET : VHDX_RT1_OFFSET) + 8, count);
		rt_fix_crc(path, w);
	}
}

/* ---- expectations ---- */

struct report_buf {
	char text[8192];
	unsigned corrupt, leak, info, repaired;
};

static void report(void *opaque, enum vhdx_check_severity sev, const char *msg)
{
	struct report_buf *r = opaque;
	size_t l = strlen(r->text);

	if (sev == VHDX_CHECK_CORRUPT)
		r->corrupt++;
	else if (sev == VHDX_CHECK_LEAK)
		r->leak++;
	else if (sev == VHDX_CHECK_REPAIRED)
		r->repaired++;
	else
		r->info++;
	snprintf(r->text + l, sizeof(r->text) - l, "[%d] %s\n", (int)sev, msg);
}

/*
 * Both a read-only and a writable open of @path fail with @code (any negative errno when 0),
 * the message names the file and holds every needle; the file is not modified; vhdx_check
 * runs, cannot open it either and reports one corruption carrying the same message.
 */
static void expect_fail_flags(const char *path, unsigned extra, bool check, int code,
			      const char *const *needles)
{
	static const unsigned modes[] = { VHDX_OPEN_RDONLY, 0 };
	char before[65], after[65];

	assert_int_equal(test_sha256_file(path, before), 0);
	for (size_t m = 0; m < ARRAY_SIZE(modes); m++) {
		struct vhdx_open_opts o;
		struct vhdx_image *img = NULL;
		struct vdisk_err err = { 0 };
		int r;

		vhdx_open_opts_init(&o, sizeof(o));
		o.flags = modes[m] | extra;
		r = vhdx_open(path, &o, &img, &err);
		if (r >= 0) {
			vhdx_close(img, NULL);
			fail_msg("%s open of a damaged image succeeded (expected \"%s\")",
				 modes[m] ? "read-only" : "writable", needles[0]);
		}
		if (code && r != code)
			fail_msg("open failed with %d, expected %d: %s", r, code, err.msg);
		assert_int_equal(err.code, r);
		if (!strstr(err.msg, path))
			fail_msg("message does not name the file: %s", err.msg);
		for (const char *const *n = needles; *n; n++)
			if (!strstr(err.msg, *n))
				fail_msg("message lacks \"%s\": %s", *n, err.msg);
		assert_null(img);
		assert_int_equal(test_sha256_file(path, after), 0);
		if (strcmp(before, after) != 0)
			fail_msg("a %s open that failed (\"%s\") modified the file",
				 modes[m] ? "read-only" : "writable", err.msg);
	}

	if (check) {
		/* (vhdx_check opens the layer alone: a chain problem is not its finding) */
		struct vhdx_check_result res;
		struct report_buf *rb = calloc(1, sizeof(*rb));
		struct vdisk_err err = { 0 };
		assert_non_null(rb);
		assert_int_equal(vhdx_check(path, 0, report, rb, &res, &err), 0);
		assert_false(res.opened);
		assert_int_equal(res.corruptions, 1);
		assert_int_equal(rb->corrupt, 1);
		for (const char *const *n = needles; *n; n++)
			if (!strstr(rb->text, *n))
				fail_msg("check report lacks \"%s\": %s", *n, rb->text);
		free(rb);
		assert_int_equal(test_sha256_file(path, after), 0);
		assert_string_equal(before, after);
	}
}

#define EXPECT_FAIL(path, code, ...) \
	expect_fail_flags(path, 0, true, code, (const char *const[]){ __VA_ARGS__, NULL })
/* a damaged child layer, opened alone */
#define EXPECT_FAIL_NP(path, code, ...)                              \
	expect_fail_flags(path, VHDX_OPEN_NO_PARENT, true, code, \
			  (const char *const[]){ __VA_ARGS__, NULL })
/* a chain that cannot be built: the layer itself is fine */
#define EXPECT_FAIL_CHAIN(path, code, ...) \
	expect_fail_flags(path, 0, false, code, (const char *const[]){ __VA_ARGS__, NULL })

/* Opens read-only and checks the three written blocks read back. */
static void expect_base_ok(const char *path)
{
	struct vhdx_image *img = test_open_image(path, VHDX_OPEN_RDONLY);
	uint8_t *a = malloc(MB), *b = malloc(MB);

	assert_true(a && b);
	for (size_t i = 0; i < ARRAY_SIZE(base_blocks); i++) {
		pattern(a, MB, 100 + base_blocks[i]);
		assert_int_equal(vhdx_pread(img, b, MB, base_blocks[i] * MB), 0);
		assert_memory_equal(a, b, MB);
	}
	assert_int_equal(vhdx_pread(img, b, MB, 7 * MB), 0);
	assert_true(vdisk_is_zero(b, MB));
	vhdx_close(img, NULL);
	free(a);
	free(b);
}

static void check_path(const char *path, unsigned flags, struct vhdx_check_result *res,
		       struct report_buf *rb)
{
	struct vdisk_err err = { 0 };

	memset(rb, 0, sizeof(*rb));
	if (vhdx_check(path, flags, report, rb, res, &err) < 0)
		fail_msg("check: %s", err.msg);
	fprintf(stderr, "%s", rb->text);
}

/* ---- identifier and headers ---- */

static void test_ident(void **state)
{
	fresh(base, work);
	poke(work, 0, "vhdxfilf", 8);
	EXPECT_FAIL(work, -EINVAL, "file type identifier", "not a VHDX image");
}

static void test_headers_both_bad(void **state)
{
	fresh(base, work);
	poke(work, VHDX_HEADER1_OFFSET, "xead", 4);
	poke(work, VHDX_HEADER2_OFFSET, "heaX", 4);
	EXPECT_FAIL(work, -EINVAL, "no valid header", "header 1 at 0x10000",
		    "signature is \"xead\"", "header 2 at 0x20000");

	fresh(base, work);
	poke(work, VHDX_HEADER1_OFFSET + 200, "\1", 1); /* reserved byte: checksum mismatch */
	poke(work, VHDX_HEADER2_OFFSET + 8, "\7", 1);   /* sequence number */
	EXPECT_FAIL(work, -EINVAL, "no valid header", "checksum");
}

static void test_header_fields(void **state)
{
	int s;

	fresh(base, work);
	s = cur_slot(work);
	hdr_set(work, s, H_VERSION, 2);
	EXPECT_FAIL(work, -EOPNOTSUPP, "Version is 2");

	fresh(base, work);
	hdr_set(work, cur_slot(work), H_VERSION, 0);
	EXPECT_FAIL(work, -EOPNOTSUPP, "Version is 0");

	fresh(base, work);
	s = cur_slot(work);
	hdr_set(work, s, H_LOGVERSION, 1);
	hdr_set(work, s, H_LOGGUID, 0x42);
	EXPECT_FAIL(work, -EOPNOTSUPP, "LogVersion is 1");

	/* a LogVersion without a log to replay is acceptable (section 4) */
	fresh(base, work);
	hdr_set(work, cur_slot(work), H_LOGVERSION, 1);
	expect_base_ok(work);

	/* any FileWriteGuid / DataWriteGuid is valid (zero too); the current one is reported */
	for (int f = H_FWG; f <= H_DWG; f++)
		for (int v = 0; v < 2; v++) {
			struct vhdx_image *img;
			struct vhdx_info info;
			struct vdisk_guid g;
			fresh(base, work);
			hdr_set(work, cur_slot(work), (enum hfield)f, v ? 0x3c : 0);
			expect_base_ok(work);
			img = test_open_image(work, VHDX_OPEN_RDONLY);
			vhdx_get_info(img, &info);
			memset(g.b, v ? 0x3c : 0, 16);
			assert_true(vdisk_guid_equal(f == H_FWG ? &info.file_write_guid
								: &info.data_write_guid,
						     &g));
			vhdx_close(img, NULL);
		}

	/* reserved bytes: covered by the checksum, otherwise ignored */
	fresh(base, work);
	hdr_set(work, cur_slot(work), H_RESERVED, 0x5a);
	expect_base_ok(work);

	fresh(base, work);
	hdr_set(work, cur_slot(work), H_LOGOFF, 0);
	EXPECT_FAIL(work, -EINVAL, "log at 0x0 length 0x100000");
	fresh(base, work);
	hdr_set(work, cur_slot(work), H_LOGOFF, MB + 4096);
	EXPECT_FAIL(work, -EINVAL, "log at 0x101000");
	fresh(base, work);
	hdr_set(work, cur_slot(work), H_LOGLEN, 0);
	EXPECT_FAIL(work, -EINVAL, "length 0x0:");
	fresh(base, work);
	hdr_set(work, cur_slot(work), H_LOGLEN, MB / 2);
	EXPECT_FAIL(work, -EINVAL, "length 0x80000");
	fresh(base, work);
	hdr_set(work, cur_slot(work), H_LOGLEN, 2ULL << 30);
	EXPECT_FAIL(work, -EINVAL, "length 0x80000000");
	/* the log on top of the metadata region */
	fresh(base, work);
	hdr_set(work, cur_slot(work), H_LOGOFF, BASE_META);
	EXPECT_FAIL(work, -EINVAL, "region table: entry 1 at 0x200000 overlaps the log");
	/* a LogGuid that no log entry carries */
	fresh(base, work);
	hdr_set(work, cur_slot(work), H_LOGGUID, 0x42);
	EXPECT_FAIL(work, -EINVAL, "LogGuid 42424242-4242-4242-4242-424242424242 is set",
		    "no valid log sequence");
}

/* One damaged header: the other one is used; the current one is the valid one with the higher sequence. */
static void test_one_header_bad(void **state)
{
	struct vhdx_image *img;
	struct vhdx_info info;
	struct vhdx_check_result res;
	struct report_buf *rb = calloc(1, sizeof(*rb));
	int s;

	assert_non_null(rb);
	for (int bad = 0; bad < 2; bad++) {
		fresh(base, work);
		s = cur_slot(work);
		poke(work, hdr_off(bad) + 300, "\xff", 1);
		img = test_open_image(work, VHDX_OPEN_RDONLY);
		vhdx_get_info(img, &info);
		assert_int_equal(info.current_header, 2 - bad);
		vhdx_close(img, NULL);
		expect_base_ok(work);
		check_path(work, 0, &res, rb);
		assert_int_equal(res.corruptions, 1);
		assert_non_null(strstr(rb->text, bad ? "header 2 at 0x20000 is not valid"
						     : "header 1 at 0x10000 is not valid"));
		assert_int_equal(res.leaks, 0);
		/* repair rewrites both slots */
		check_path(work, VHDX_CHECK_REPAIR, &res, rb);
		assert_int_equal(res.corruptions, 0);
		assert_true(res.repaired >= 1);
		check_path(work, 0, &res, rb);
		assert_int_equal(res.corruptions, 0);
		expect_base_ok(work);
	}
	(void)s;
	/* both valid: the greater sequence number wins, whatever the slot */
	fresh(base, work);
	hdr_set(work, 0, H_SEQ, 1000);
	img = test_open_image(work, VHDX_OPEN_RDONLY);
	vhdx_get_info(img, &info);
	assert_int_equal(info.current_header, 1);
	assert_int_equal(info.header_sequence, 1000);
	vhdx_close(img, NULL);
	/* header 1 current with a bad version: refused, not silently skipped for header 2 */
	hdr_set(work, 0, H_VERSION, 3);
	EXPECT_FAIL(work, -EOPNOTSUPP, "header 1 at 0x10000: Version is 3");
	free(rb);
}

/* ---- region table ---- */

static void test_region_table(void **state)
{
	uint8_t guid[16];

	fresh(base, work);
	poke(work, VHDX_RT1_OFFSET, "Regi", 4);
	poke(work, VHDX_RT2_OFFSET, "regI", 4);
	EXPECT_FAIL(work, -EINVAL, "no valid region table", "copy 1 at 0x30000", "copy 2 at 0x40000",
		    "signature");
	fresh(base, work);
	poke(work, VHDX_RT1_OFFSET + 4, "\0\0\0\0", 4);
	poke(work, VHDX_RT2_OFFSET + 100, "\1", 1);
	EXPECT_FAIL(work, -EINVAL, "no valid region table", "checksum");

	fresh(base, work);
	rt_count(work, 2048);
	EXPECT_FAIL(work, -EINVAL, "EntryCount 2048");
	fresh(base, work);
	rt_count(work, 0);
	EXPECT_FAIL(work, -EINVAL, "region table: no BAT region");
	fresh(base, work);
	rt_count(work, 1); /* entry 0 is the BAT */
	EXPECT_FAIL(work, -EINVAL, "region table: no metadata region");

	fresh(base, work);
	rt_poke64(work, 0, 16, BASE_BAT + MB / 2);
	EXPECT_FAIL(work, -EINVAL, "entry 0: FileOffset 0x380000");
	fresh(base, work);
	rt_poke64(work, 0, 16, 0);
	EXPECT_FAIL(work, -EINVAL, "entry 0: FileOffset 0x0");
	fresh(base, work);
	rt_poke32(work, 1, 24, 0);
	EXPECT_FAIL(work, -EINVAL, "entry 1: Length 0x0");
	fresh(base, work);
	rt_poke32(work, 0, 24, 4096);
	EXPECT_FAIL(work, -EINVAL, "entry 0: Length 0x1000");
	fresh(base, work);
	rt_poke(work, 1, 0, vhdx_guid_bat_region.b, 16);
	EXPECT_FAIL(work, -EINVAL, "entries 0 and 1 have the same GUID");

	/* BAT on the metadata region, on the log, metadata region implausibly large */
	fresh(base, work);
	rt_poke64(work, 0, 16, BASE_META);
	EXPECT_FAIL(work, -EINVAL, "entries 0 and 1 overlap");
	fresh(base, work);
	rt_poke64(work, 0, 16, MB);
	EXPECT_FAIL(work, -EINVAL, "entry 0 at 0x100000 overlaps the log");
	fresh(base, work);
	rt_poke32(work, 0, 24, 1U << 30);
	EXPECT_FAIL(work, -EINVAL, "implausibly large");
	/* metadata region past the end of the file: reads as zeros */
	fresh(base, work);
	rt_poke64(work, 1, 16, 1ULL << 30);
	EXPECT_FAIL(work, -EINVAL, "metadata region at 0x40000000", "metadata table: signature");

	/* a third, unknown region: Required refuses, optional is ignored */
	memset(guid, 0x77, sizeof(guid));
	fresh(base, work);
	rt_count(work, 3);
	rt_poke(work, 2, 0, guid, 16);
	rt_poke64(work, 2, 16, 40 * MB);
	rt_poke32(work, 2, 24, MB);
	rt_poke32(work, 2, 28, 1);
	EXPECT_FAIL(work, -EOPNOTSUPP, "entry 2: unknown region 77777777-7777-7777-7777-777777777777",
		    "Required");
	rt_poke32(work, 2, 28, 0);
	expect_base_ok(work);
	/* ... but an unknown optional region must not overlap the known ones */
	rt_poke64(work, 2, 16, BASE_META);
	EXPECT_FAIL(work, -EINVAL, "entries 1 and 2 overlap");
}

/* Copy 1 damaged: copy 2 is used; check reports it and repair rewrites copy 1. */
static void test_region_copy1_bad(void **state)
{
	struct vhdx_check_result res;
	struct report_buf *rb = calloc(1, sizeof(*rb));
	struct vhdx_image *img;
	uint8_t a[VHDX_RT_SIZE], b[VHDX_RT_SIZE];

	assert_non_null(rb);
	fresh(base, work);
	poke(work, VHDX_RT1_OFFSET + 16 + 20, "\x55", 1); /* BAT FileOffset, checksum now wrong */
	img = test_open_image(work, VHDX_OPEN_RDONLY);
	assert_true(img->rt1_bad);
	assert_int_equal(img->bat_offset, BASE_BAT);
	vhdx_close(img, NULL);
	expect_base_ok(work);
	/* a writer works with copy 2 as well */
	img = test_open_image(work, 0);
	pattern(a, 4096, 7);
	assert_int_equal(vhdx_pwrite(img, a, 4096, 30 * MB), 0);
	assert_int_equal(vhdx_close(img, NULL), 0);
	expect_base_ok(work);

	check_path(work, 0, &res, rb);
	assert_int_equal(res.corruptions, 1);
	assert_non_null(strstr(rb->text, "region table copy 1 at 0x30000 is damaged"));
	check_path(work, VHDX_CHECK_REPAIR, &res, rb);
	assert_int_equal(res.corruptions, 0);
	assert_true(res.repaired >= 1);
	assert_int_equal(test_file_pread(work, a, sizeof(a), VHDX_RT1_OFFSET), 0);
	assert_int_equal(test_file_pread(work, b, sizeof(b), VHDX_RT2_OFFSET), 0);
	assert_memory_equal(a, b, sizeof(a));
	img = test_open_image(work, VHDX_OPEN_RDONLY);
	assert_false(img->rt1_bad);
	assert_int_equal(vhdx_pread(img, b, 4096, 30 * MB), 0);
	pattern(a, 4096, 7);
	assert_memory_equal(a, b, 4096);
	vhdx_close(img, NULL);

	/* both copies valid but different: reported */
	fresh(base, work);
	poke32(work, VHDX_RT2_OFFSET + 16 + 28, 0); /* copy 2: BAT not Required */
	rt_fix_crc(work, 1);
	expect_base_ok(work);
	check_path(work, 0, &res, rb);
	assert_int_equal(res.corruptions, 1);
	assert_non_null(strstr(rb->text, "region table copy 2 at 0x40000"));
	free(rb);
}

/* ---- metadata ---- */

static void test_meta_table(void **state)
{
	uint8_t g[16];

	fresh(base, work);
	poke(work, BASE_META, "metadatX", 8);
	EXPECT_FAIL(work, -EINVAL, "metadata region at 0x200000", "metadata table: signature");
	fresh(base, work);
	poke16(work, BASE_META + 10, 2048);
	EXPECT_FAIL(work, -EINVAL, "metadata table: EntryCount 2048");
	/* item offsets: inside the table, past the region, too long */
	fresh(base, work);
	poke32(work, BASE_META + 32 + 16, 0x8000);
	EXPECT_FAIL(work, -EINVAL, "entry 0 (caa16737-fa36-4d43-b3b6-33f0aa44e76b)",
		    "offset 0x8000 length 8 lies outside");
	fresh(base, work);
	poke32(work, BASE_META + 32 + 16, (uint32_t)MB - 4);
	EXPECT_FAIL(work, -EINVAL, "entry 0", "lies outside the metadata region");
	fresh(base, work);
	poke32(work, BASE_META + 32 * 5 + 20, 2 << 20);
	EXPECT_FAIL(work, -EINVAL, "entry 4", "lies outside");
	/* two entries for one item, overlapping items */
	fresh(base, work);
	poke(work, BASE_META + 32 * 5, vhdx_guid_file_params.b, 16);
	EXPECT_FAIL(work, -EINVAL, "entries 0 and 4 are both item caa16737");
	fresh(base, work);
	poke32(work, BASE_META + 32 * 2 + 16, 65536 + 4);
	EXPECT_FAIL(work, -EINVAL, "items of entries 0 and 1 overlap");
	/* an unknown item: refused when IsRequired, ignored otherwise */
	memset(g, 0x33, sizeof(g));
	fresh(base, work);
	poke(work, BASE_META + 32 * 5, g, 16); /* Page 83 becomes unknown, still IsRequired */
	EXPECT_FAIL(work, -EOPNOTSUPP, "entry 4: unknown item 33333333-3333-3333-3333-333333333333",
		    "IsRequired");
	poke32(work, BASE_META + 32 * 5 + 24, VHDX_META_IS_VIRTUAL_DISK);
	EXPECT_FAIL(work, -EINVAL, "required item Page 83 Data is missing");
	/* a system item marked IsUser is not the system item */
	fresh(base, work);
	poke32(work, BASE_META + 32 + 24, VHDX_META_IS_REQUIRED | VHDX_META_IS_USER);
	EXPECT_FAIL(work, -EINVAL, "required item File Parameters is missing");
	/* wrong item lengths */
	fresh(base, work);
	poke32(work, BASE_META + 32 + 20, 4);
	EXPECT_FAIL(work, -EINVAL, "item File Parameters is 4 bytes, expected 8");
	fresh(base, work);
	poke32(work, BASE_META + 32 * 5 + 20, 8);
	EXPECT_FAIL(work, -EINVAL, "item Page 83 Data is 8 bytes, expected 16");
	/* an unknown optional item after the others is ignored */
	fresh(base, work);
	poke16(work, BASE_META + 10, 6);
	poke(work, BASE_META + 32 * 6, g, 16);
	poke32(work, BASE_META + 32 * 6 + 16, 65536 + 4096);
	poke32(work, BASE_META + 32 * 6 + 20, 100);
	poke32(work, BASE_META + 32 * 6 + 24, 0);
	expect_base_ok(work);
}

static void test_meta_items(void **state)
{
	static const struct {
		uint64_t off; /* from ITEM0 */
		unsigned width;
		uint64_t value;
		int code;
		const char *needle;
	} c[] = {
		{ 0, 4, 3 << 20, -EINVAL, "BlockSize 3145728 is not a power of two" },
		{ 0, 4, 512 << 10, -EINVAL, "BlockSize 524288" },
		{ 0, 4, 512 << 20, -EINVAL, "BlockSize 536870912" },
		{ 0, 4, 0, -EINVAL, "BlockSize 0" },
		{ 4, 4, 2, -EINVAL, "HasParent is set but the parent locator item is missing" },
		{ 8, 8, 0, -EINVAL, "Virtual Disk Size 0" },
		{ 8, 8, 1000, -EINVAL, "Virtual Disk Size 1000" },
		{ 8, 8, (64ULL << 40) + 512, -EINVAL, "Virtual Disk Size 70368744178176" },
		{ 8, 8, 64ULL << 40, -EINVAL, "BAT region of 1048576 bytes holds 131072 entries" },
		{ 16, 4, 1024, -EINVAL, "sector sizes logical 1024 / physical 4096" },
		{ 16, 4, 0, -EINVAL, "logical 0" },
		{ 20, 4, 8192, -EINVAL, "physical 8192" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		fresh(base, work);
		if (c[i].width == 4)
			poke32(work, ITEM0 + c[i].off, (uint32_t)c[i].value);
		else
			poke64(work, ITEM0 + c[i].off, c[i].value);
		EXPECT_FAIL(work, c[i].code, c[i].needle);
	}
	/* values that are valid: LeaveBlockAllocated makes it "fixed"; 4 KiB sectors */
	fresh(base, work);
	poke32(work, ITEM0 + 4, 1);
	expect_base_ok(work);
	fresh(base, work);
	poke32(work, ITEM0 + 16, 4096);
	{
		struct vhdx_image *img = test_open_image(work, VHDX_OPEN_RDONLY);
		assert_int_equal(vhdx_logical_sector_size(img), 4096);
		assert_int_equal(img->chunk_ratio, 32768);
		vhdx_close(img, NULL);
	}
	expect_base_ok(work);
}

/* ---- BAT ---- */

static void test_bat(void **state)
{
	uint64_t e0 = peek64(base, BASE_BAT);
	uint64_t off0 = e0 & VHDX_BAT_OFFSET_MASK;
	struct vhdx_check_result res;
	struct report_buf *rb = calloc(1, sizeof(*rb));

	assert_non_null(rb);
	assert_int_equal(e0 & 7, VHDX_BLOCK_FULLY_PRESENT);
	assert_int_equal(off0, 4 * MB);
	for (unsigned st = 4; st <= 5; st++) {
		fresh(base, work);
		poke64(work, BASE_BAT + 8, st);
		char needle[96];
		snprintf(needle, sizeof(needle), "BAT entry 1 (block 1): state %u is not valid", st);
		EXPECT_FAIL(work, -EINVAL, needle, "BAT at 0x300000");
	}
	fresh(base, work);
	poke64(work, BASE_BAT + 8, (10 * MB) | VHDX_BLOCK_PARTIALLY_PRESENT);
	EXPECT_FAIL(work, -EINVAL, "state 7 is not valid in a non-differencing image");
	fresh(base, work);
	poke64(work, BASE_BAT, (1ULL << 30) | VHDX_BLOCK_FULLY_PRESENT);
	EXPECT_FAIL(work, -EINVAL, "BAT entry 0: file offset 0x40000000 points after end of file");
	fresh(base, work);
	poke64(work, BASE_BAT, VHDX_BLOCK_FULLY_PRESENT);
	EXPECT_FAIL(work, -EINVAL,
		    "BAT entry 0: file offset 0x0 with state 6 (data present) points into the file's header area");
	fresh(base, work);
	poke64(work, BASE_BAT + 8 * 63, MB | VHDX_BLOCK_FULLY_PRESENT);
	EXPECT_FAIL(work, -EINVAL, "BAT entry 63: block at 0x100000", "overlaps the log");
	fresh(base, work);
	poke64(work, BASE_BAT + 8 * 5, BASE_BAT | VHDX_BLOCK_FULLY_PRESENT);
	EXPECT_FAIL(work, -EINVAL, "BAT entry 5", "overlaps the BAT region");
	fresh(base, work);
	poke64(work, BASE_BAT + 8 * 5, BASE_META | VHDX_BLOCK_FULLY_PRESENT);
	EXPECT_FAIL(work, -EINVAL, "BAT entry 5", "overlaps the metadata region");

	/* tolerated: every "reads as zeros" state; entries past the last block are ignored */
	fresh(base, work);
	poke64(work, BASE_BAT + 8 * 10, VHDX_BLOCK_UNDEFINED);
	poke64(work, BASE_BAT + 8 * 11, VHDX_BLOCK_ZERO);
	poke64(work, BASE_BAT + 8 * 12, VHDX_BLOCK_UNMAPPED);
	poke64(work, BASE_BAT + 8 * 64, 0xdeadbeefULL);
	poke64(work, BASE_BAT + 8 * 4096, 0x1234ULL); /* the (unused) bitmap entry of chunk 0 */
	expect_base_ok(work);

	/* check: two blocks sharing space is a corruption */
	fresh(base, work);
	poke64(work, BASE_BAT + 8 * 7, off0 | VHDX_BLOCK_FULLY_PRESENT);
	check_path(work, 0, &res, rb);
	assert_true(res.corruptions >= 1);
	assert_non_null(strstr(rb->text, "a payload block at 0x400000 (BAT entry) overlaps a payload block"));
	/* reserved bits and an offset in a ZERO entry */
	fresh(base, work);
	poke64(work, BASE_BAT + 8 * 20, VHDX_BLOCK_ZERO | (8 * MB));
	poke64(work, BASE_BAT + 8 * 5, peek64(base, BASE_BAT + 8 * 5) | 0x100);
	check_path(work, 0, &res, rb);
	assert_int_equal(res.corruptions, 2);
	assert_non_null(strstr(rb->text, "BAT entry 5: reserved bits 0x100 are set"));
	assert_non_null(strstr(rb->text, "BAT entry 20: state 2 with a non-zero file offset 0x800000"));
	/* truncated file: the last block ends past EOF: opens (reads zeros there), check says corrupt */
	fresh(base, work);
	assert_int_equal(truncate(work, 7 * MB - 4096), 0);
	{
		struct vhdx_image *img = test_open_image(work, VHDX_OPEN_RDONLY);
		uint8_t a[4096], b[4096];
		assert_int_equal(vhdx_pread(img, b, 4096, 64 * MB - 4096), 0);
		assert_true(vdisk_is_zero(b, 4096));
		assert_int_equal(vhdx_pread(img, b, 4096, 64 * MB - 8192), 0);
		uint8_t *full = malloc(MB);
		pattern(full, MB, 163);
		memcpy(a, full + MB - 8192, 4096);
		free(full);
		assert_memory_equal(a, b, 4096);
		vhdx_close(img, NULL);
	}
	check_path(work, 0, &res, rb);
	assert_int_equal(res.corruptions, 1);
	assert_non_null(strstr(rb->text, "BAT entry 63: block at 0x600000 ends past the end of the file"));
	free(rb);
}

/*
 * A block in UNMAPPED state may keep its old file offset; vdisk reuses it on the next write.
 * A damaged entry whose kept offset points at metadata or at another block's data must not
 * make a write destroy them.
 */
static void test_bat_unmapped_offset(void **state)
{
	static const uint64_t bad[] = { BASE_BAT, BASE_META, MB, 4 * MB /* block 0's data */ };
	uint8_t *buf = malloc(MB);

	assert_non_null(buf);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct vhdx_open_opts o;
		struct vhdx_image *img = NULL;
		struct vdisk_err err = { 0 };

		fresh(base, work);
		poke64(work, BASE_BAT + 8 * 10, bad[i] | VHDX_BLOCK_UNMAPPED);
		vhdx_open_opts_init(&o, sizeof(o));
		if (vhdx_open(work, &o, &img, &err) < 0) {
			/* refusing the file is fine too, with a message */
			assert_non_null(strstr(err.msg, "BAT entry 10"));
			continue;
		}
		pattern(buf, MB, 999);
		assert_int_equal(vhdx_pwrite(img, buf, MB, 10 * MB), 0);
		assert_int_equal(vhdx_close(img, &err), 0);
		expect_base_ok(work);
		img = test_open_image(work, VHDX_OPEN_RDONLY);
		memset(buf, 0, MB);
		assert_int_equal(vhdx_pread(img, buf, MB, 10 * MB), 0);
		uint8_t *want = malloc(MB);
		pattern(want, MB, 999);
		assert_memory_equal(want, buf, MB);
		free(want);
		vhdx_close(img, NULL);
	}
	/* two blocks keeping the same offset: writing both must not put them in one place */
	{
		struct vhdx_image *img;
		uint8_t *want = malloc(MB);
		assert_non_null(want);
		fresh(base, work);
		poke64(work, BASE_BAT + 8 * 10, (7 * MB) | VHDX_BLOCK_UNMAPPED);
		poke64(work, BASE_BAT + 8 * 11, (7 * MB) | VHDX_BLOCK_UNMAPPED);
		img = test_open_image(work, 0);
		pattern(buf, MB, 1010);
		assert_int_equal(vhdx_pwrite(img, buf, MB, 10 * MB), 0);
		pattern(buf, MB, 1011);
		assert_int_equal(vhdx_pwrite(img, buf, MB, 11 * MB), 0);
		assert_int_equal(vhdx_close(img, NULL), 0);
		img = test_open_image(work, VHDX_OPEN_RDONLY);
		for (unsigned b = 10; b <= 11; b++) {
			pattern(want, MB, 1000 + b);
			assert_int_equal(vhdx_pread(img, buf, MB, b * MB), 0);
			assert_memory_equal(want, buf, MB);
		}
		vhdx_close(img, NULL);
		expect_base_ok(work);
		free(want);
	}
	free(buf);
}

/* ---- leaks ---- */

static void test_leaks(void **state)
{
	struct vhdx_check_result res;
	struct report_buf *rb = calloc(1, sizeof(*rb));
	uint8_t data[4096];

	assert_non_null(rb);
	/* clean to start with */
	check_path(base, 0, &res, rb);
	assert_int_equal(res.corruptions, 0);
	assert_int_equal(res.leaks, 0);
	assert_int_equal(res.allocated_blocks, 3);
	assert_int_equal(res.total_blocks, 64);

	/* data after the last object: a leak, not a corruption; repair truncates it */
	fresh(base, work);
	memset(data, 0xab, sizeof(data));
	poke(work, 7 * MB + 8192, data, sizeof(data));
	check_path(work, 0, &res, rb);
	assert_int_equal(res.corruptions, 0);
	assert_int_equal(res.leaks, 1);
	assert_int_equal(rb->leak, 1);
	assert_non_null(strstr(rb->text, "after the last object"));
	expect_base_ok(work);
	check_path(work, VHDX_CHECK_REPAIR, &res, rb);
	assert_int_equal(res.leaks, 0);
	assert_true(res.repaired >= 1);
	expect_base_ok(work);

	/* a block nobody references in the middle: a leak */
	fresh(base, work);
	poke64(work, BASE_BAT + 8 * 5, 0);
	check_path(work, 0, &res, rb);
	assert_int_equal(res.corruptions, 0);
	assert_int_equal(res.leaks, 1);
	assert_int_equal(res.leaked_bytes, MB);
	assert_non_null(strstr(rb->text, "leaked space: 0x500000..0x600000"));
	check_path(work, VHDX_CHECK_REPAIR, &res, rb);
	assert_int_equal(res.leaks, 0);
	check_path(work, 0, &res, rb);
	assert_int_equal(res.leaks, 0);
	assert_int_equal(res.corruptions, 0);
	free(rb);
}

/* ---- log ---- */

/* A dirty image: one committed (and applied) log entry, LogGuid still set. */
static void make_dirty(const char *path)
{
	struct vhdx_image *img;
	uint8_t buf[8192];

	fresh(base, path);
	img = test_open_image(path, 0);
	pattern(buf, sizeof(buf), 555);
	assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf), 10 * MB), 0);
	assert_int_equal(vhdx_flush(img), 0);
	vhdx_abandon(img);
}

/* Recomputes the CRC of the log entry at @pos of the log (whole entry, checksum as zero). */
static void log_fix_crc(const char *path, uint64_t pos)
{
	uint64_t at = MB + pos;
	uint32_t len = peek32(path, at + 8);
	uint8_t *e = malloc(len);

	assert_non_null(e);
	assert_int_equal(test_file_pread(path, e, len, at), 0);
	put_le32(e + 4, 0);
	put_le32(e + 4, vdisk_crc32c(0, e, len));
	poke(path, at, e, len);
	free(e);
}

static void test_log(void **state)
{
	const uint64_t L = MB; /* log offset */
	struct vhdx_image *img;
	uint8_t want[8192], got[8192];
	struct vhdx_check_result res;
	struct report_buf *rb = calloc(1, sizeof(*rb));

	assert_non_null(rb);
	/* the dirty image itself is fine: replays, reads what was flushed */
	make_dirty(work);
	assert_int_equal(peek32(work, L), 0x65676f6c); /* "loge" */
	assert_int_equal(peek32(work, L + 24), 1); /* one descriptor: the BAT page */
	img = test_open_image(work, VHDX_OPEN_RDONLY);
	assert_true(img->log_replayed);
	pattern(want, sizeof(want), 555);
	assert_int_equal(vhdx_pread(img, got, sizeof(got), 10 * MB), 0);
	assert_memory_equal(want, got, sizeof(got));
	vhdx_close(img, NULL);
	check_path(work, 0, &res, rb);
	assert_true(res.log_was_dirty);
	assert_int_equal(res.corruptions, 1);
	assert_non_null(strstr(rb->text, "the log is dirty"));

	/* bad entry checksum */
	make_dirty(work);
	poke(work, L + 4096 + 100, "\x01", 1);
	EXPECT_FAIL(work, -EINVAL, "log at 0x100000", "no valid log sequence carries it");
	/* the header names another log */
	make_dirty(work);
	hdr_set(work, cur_slot(work), H_LOGGUID, 0x17);
	EXPECT_FAIL(work, -EINVAL, "LogGuid 17171717-1717-1717-1717-171717171717",
		    "no valid log sequence");
	/* the entry carries another LogGuid (checksum valid) */
	make_dirty(work);
	poke(work, L + 32, "\x99\x98", 2);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "no valid log sequence");
	/* data sector signature, descriptor sequence number, entry length (checksums valid) */
	make_dirty(work);
	poke(work, L + 4096, "dat4", 4);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "no valid log sequence");
	make_dirty(work);
	poke64(work, L + 64 + 24, 77);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "no valid log sequence");
	make_dirty(work);
	poke32(work, L + 8, 3 * 4096);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "no valid log sequence");
	/* a descriptor targeting the header area, the log itself, an unaligned offset */
	make_dirty(work);
	poke64(work, L + 64 + 16, VHDX_HEADER1_OFFSET);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "log: a descriptor targets 0x10000");
	make_dirty(work);
	poke64(work, L + 64 + 16, L + 8192);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "log: a descriptor targets 0x102000");
	make_dirty(work);
	poke64(work, L + 64 + 16, BASE_BAT + 512);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "no valid log sequence");
	/* a zero descriptor over the headers (entry shrunk to its descriptor sector) */
	make_dirty(work);
	poke(work, L + 64, "zero", 4);
	poke64(work, L + 64 + 8, 8192);
	poke64(work, L + 64 + 16, VHDX_HEADER1_OFFSET);
	poke32(work, L + 8, 4096);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "a descriptor targets 0x10000 (+8192 bytes)");
	/* FlushedFileOffset past the end of the file, and a file truncated below it */
	make_dirty(work);
	poke64(work, L + 48, 1ULL << 30);
	log_fix_crc(work, 0);
	EXPECT_FAIL(work, -EINVAL, "the log says 1073741824 bytes were already durable", "truncated");
	make_dirty(work);
	assert_int_equal(truncate(work, 6 * MB), 0);
	EXPECT_FAIL(work, -EINVAL, "truncated");
	/* the log itself past the end of the file */
	make_dirty(work);
	hdr_set(work, cur_slot(work), H_LOGOFF, 1ULL << 30);
	EXPECT_FAIL(work, -EINVAL, "log at 0x40000000", "reaches past the end of the file");

	/*
	 * Valid, but not what vdisk writes: the entry wraps from the last log sector to the
	 * first (section 10.2 allows it). Moved there, its Tail and checksum updated.
	 */
	make_dirty(work);
	{
		uint8_t e[8192], first[4096];
		struct vhdx_image *img2;
		assert_int_equal(test_file_pread(work, e, sizeof(e), L), 0);
		put_le32(e + 12, (uint32_t)(MB - 4096)); /* Tail: the entry itself */
		put_le32(e + 4, 0);
		put_le32(e + 4, vdisk_crc32c(0, e, sizeof(e)));
		memset(first, 0, sizeof(first));
		poke(work, L, first, sizeof(first));
		poke(work, L + MB - 4096, e, 4096);
		poke(work, L, e + 4096, 4096);
		img2 = test_open_image(work, VHDX_OPEN_RDONLY);
		assert_true(img2->log_replayed);
		pattern(want, sizeof(want), 555);
		assert_int_equal(vhdx_pread(img2, got, sizeof(got), 10 * MB), 0);
		assert_memory_equal(want, got, sizeof(got));
		vhdx_close(img2, NULL);
	}

	/* check --repair replays a dirty log on disk: clean afterwards, same content */
	make_dirty(work);
	check_path(work, VHDX_CHECK_REPAIR, &res, rb);
	assert_true(res.log_was_dirty);
	assert_true(res.repaired >= 1);
	assert_int_equal(rb->repaired, 1);
	assert_int_equal(res.corruptions, 0);
	check_path(work, 0, &res, rb);
	assert_false(res.log_was_dirty);
	assert_int_equal(res.corruptions, 0);
	expect_base_ok(work);
	img = test_open_image(work, VHDX_OPEN_RDONLY);
	assert_false(img->log_replayed);
	assert_int_equal(vhdx_pread(img, got, sizeof(got), 10 * MB), 0);
	assert_memory_equal(want, got, sizeof(got));
	vhdx_close(img, NULL);
	free(rb);
}

/* ---- differencing child ---- */

static void test_child_ok(void **state)
{
	struct vhdx_image *img;
	uint8_t want[8192], got[8192];

	fresh(child, workc);
	img = test_open_image(workc, VHDX_OPEN_RDONLY);
	assert_non_null(vhdx_parent(img));
	pattern(want, 4096, 200);
	assert_int_equal(vhdx_pread(img, got, 4096, MB + 512), 0);
	assert_memory_equal(want, got, 4096);
	/* the parent's block 0 around it */
	{
		uint8_t *p = malloc(MB);
		pattern(p, MB, 100);
		assert_int_equal(vhdx_pread(img, got, 512, 0), 0);
		assert_memory_equal(p, got, 512);
		free(p);
	}
	vhdx_close(img, NULL);
}

/* The pristine child checks clean, and check --repair leaves its content alone. */
static void test_child_check(void **state)
{
	struct vhdx_check_result res;
	struct report_buf *rb = calloc(1, sizeof(*rb));
	char before[65], after[65];

	assert_non_null(rb);
	fresh(child, workc);
	check_path(workc, 0, &res, rb);
	assert_true(res.opened);
	assert_int_equal(res.corruptions, 0);
	assert_int_equal(res.leaks, 0);
	assert_int_equal(res.allocated_blocks, 2);
	assert_int_equal(test_sha256_file(workc, before), 0);
	check_path(workc, VHDX_CHECK_REPAIR, &res, rb);
	assert_int_equal(res.repaired, 0);
	assert_int_equal(test_sha256_file(workc, after), 0);
	assert_string_equal(before, after);
	test_child_ok(state);
	free(rb);
}

/* BAT index of the child's sector bitmap entry (2 MiB blocks, 512-byte sectors: CR 2048). */
#define CHILD_SB_IDX 2048

static void test_child_bat(void **state)
{
	uint64_t sb = peek64(child, BASE_BAT + 8 * CHILD_SB_IDX);
	uint64_t b0 = peek64(child, BASE_BAT);

	assert_int_equal(sb & 7, VHDX_SB_PRESENT);
	assert_int_equal(b0 & 7, VHDX_BLOCK_PARTIALLY_PRESENT);
	for (unsigned st = 1; st <= 7; st++) {
		char needle[80];
		if (st == VHDX_SB_PRESENT)
			continue;
		fresh(child, workc);
		poke64(workc, BASE_BAT + 8 * CHILD_SB_IDX, (sb & VHDX_BAT_OFFSET_MASK) | st);
		snprintf(needle, sizeof(needle), "BAT entry 2048 (sector bitmap): reserved state %u",
			 st);
		EXPECT_FAIL_NP(workc, -EINVAL, needle);
	}
	fresh(child, workc);
	poke64(workc, BASE_BAT + 8 * CHILD_SB_IDX, (1ULL << 30) | VHDX_SB_PRESENT);
	EXPECT_FAIL_NP(workc, -EINVAL, "BAT entry 2048: file offset 0x40000000 points after end of file");
	fresh(child, workc);
	poke64(workc, BASE_BAT + 8 * CHILD_SB_IDX, MB | VHDX_SB_PRESENT);
	EXPECT_FAIL_NP(workc, -EINVAL, "BAT entry 2048: block at 0x100000 (1048576 bytes) overlaps the log");
	fresh(child, workc);
	poke64(workc, BASE_BAT + 8, (b0 & VHDX_BAT_OFFSET_MASK) | 5);
	EXPECT_FAIL_NP(workc, -EINVAL, "state 5 is not valid in a differencing image");
	/* a PARTIALLY_PRESENT block whose chunk has no sector bitmap (section 8.5) */
	fresh(child, workc);
	poke64(workc, BASE_BAT + 8 * CHILD_SB_IDX, 0);
	EXPECT_FAIL_NP(workc, -EINVAL, "BAT entry 2048", "sector bitmap");
}

/* Rewrites the child's parent locator through @edit (the last metadata item, may grow). */
static void edit_locator(const char *path, void (*edit)(struct vhdx_locator *))
{
	uint8_t *table = malloc(VHDX_META_TABLE_SIZE), *item = malloc(65536);
	struct vhdx_meta_table *mt = calloc(1, sizeof(*mt));
	struct vhdx_locator *loc = calloc(1, sizeof(*loc));
	unsigned k = 0;
	int n;

	assert_true(table && item && mt && loc);
	assert_int_equal(test_file_pread(path, table, VHDX_META_TABLE_SIZE, BASE_META), 0);
	assert_int_equal(vhdx_meta_table_decode(table, mt, NULL), 0);
	while (k < mt->count && !vdisk_guid_equal(&mt->entries[k].item_id, &vhdx_guid_parent_locator))
		k++;
	assert_true(k < mt->count);
	assert_int_equal(test_file_pread(path, item, mt->entries[k].length,
					 BASE_META + mt->entries[k].offset),
			 0);
	assert_int_equal(vhdx_locator_decode(item, mt->entries[k].length, loc, NULL), 0);
	edit(loc);
	n = vhdx_locator_encode(loc, item, 65536);
	assert_true(n > 0);
	mt->entries[k].length = (uint32_t)n;
	vhdx_meta_table_encode(mt, table);
	poke(path, BASE_META, table, VHDX_META_TABLE_SIZE);
	poke(path, BASE_META + mt->entries[k].offset, item, (size_t)n);
	free(table);
	free(item);
	free(mt);
	free(loc);
}

static void loc_set(struct vhdx_locator *loc, const char *key, const char *value)
{
	for (unsigned i = 0; i < loc->count; i++)
		if (strcmp(loc->entries[i].key, key) == 0) {
			snprintf(loc->entries[i].value, sizeof(loc->entries[i].value), "%s", value);
			return;
		}
	fail_msg("no key %s", key);
}

static void ed_type(struct vhdx_locator *loc)
{
	memset(loc->type.b, 0x44, 16);
}

static void ed_no_linkage(struct vhdx_locator *loc)
{
	loc->entries[0].key[0] = 'q';
}

static void ed_linkage_garbage(struct vhdx_locator *loc)
{
	loc_set(loc, "parent_linkage", "{not-a-guid}");
}

static void ed_linkage_other(struct vhdx_locator *loc)
{
	loc_set(loc, "parent_linkage", "{01234567-89ab-cdef-0123-456789abcdef}");
}

static void ed_paths_missing(struct vhdx_locator *loc)
{
	loc_set(loc, "relative_path", ".\\missing.vhdx");
	loc_set(loc, "absolute_win32_path", "C:\\nowhere\\missing.vhdx");
}

static void ed_self(struct vhdx_locator *loc)
{
	loc_set(loc, "relative_path", ".\\work.avhdx");
}

static void ed_linkage2(struct vhdx_locator *loc)
{
	/* parent_linkage wrong but parent_linkage2 right: accepted (merge protocol) */
	char l1[1024];
	snprintf(l1, sizeof(l1), "%s", loc->entries[0].value);
	loc_set(loc, "parent_linkage", "{01234567-89ab-cdef-0123-456789abcdef}");
	loc_set(loc, "parent_linkage2", l1);
}

static void ed_upper(struct vhdx_locator *loc)
{
	for (char *p = loc->entries[0].value; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
}

static void test_child_locator(void **state)
{
	uint8_t raw[4];

	fresh(child, workc);
	edit_locator(workc, ed_type);
	EXPECT_FAIL_NP(workc, -EOPNOTSUPP, "parent locator: unknown LocatorType");
	fresh(child, workc);
	edit_locator(workc, ed_no_linkage);
	EXPECT_FAIL_NP(workc, -EINVAL, "parent locator: no parent_linkage key");
	/* raw damage: KeyValueCount, an entry pointing outside the item */
	fresh(child, workc);
	assert_int_equal(test_file_pread(workc, raw, 4, BASE_META + 32 * 6 + 16), 0);
	{
		uint64_t item = BASE_META + get_le32(raw);
		poke16(workc, item + 18, 100);
		EXPECT_FAIL_NP(workc, -EINVAL, "parent locator: KeyValueCount 100");
		fresh(child, workc);
		poke32(workc, item + 20 + 12 * 2 + 4, 60000);
		EXPECT_FAIL_NP(workc, -EINVAL, "parent locator: entry 2", "outside");
	}
	/* the chain: linkage that does not match, paths to nowhere, a cycle */
	fresh(child, workc);
	edit_locator(workc, ed_linkage_garbage);
	EXPECT_FAIL_CHAIN(workc, -EINVAL, "does not match", "{not-a-guid}");
	fresh(child, workc);
	edit_locator(workc, ed_linkage_other);
	EXPECT_FAIL_CHAIN(workc, -EINVAL, "cparent.vhdx does not match",
		    "{01234567-89ab-cdef-0123-456789abcdef}");
	fresh(child, workc);
	edit_locator(workc, ed_paths_missing);
	EXPECT_FAIL_CHAIN(workc, -ENOENT, "parent not found", "missing.vhdx");
	fresh(child, workc);
	edit_locator(workc, ed_self);
	EXPECT_FAIL_CHAIN(workc, -ELOOP, "cycle");
	/* accepted: parent_linkage2, upper-case GUID text */
	fresh(child, workc);
	edit_locator(workc, ed_linkage2);
	test_child_ok(state);
	fresh(child, workc);
	edit_locator(workc, ed_upper);
	test_child_ok(state);
}

/* The parent changed after the child was made: its DataWriteGuid no longer matches. */
static void test_child_parent_changed(void **state)
{
	char saved[700];
	struct vhdx_image *img;
	uint8_t buf[512] = { 1 };

	snprintf(saved, sizeof(saved), "%s.saved", cparent);
	fresh(cparent, saved);
	fresh(child, workc);
	img = test_open_image(cparent, 0);
	assert_int_equal(vhdx_pwrite(img, buf, sizeof(buf), 0), 0);
	assert_int_equal(vhdx_close(img, NULL), 0);
	EXPECT_FAIL_CHAIN(workc, -EINVAL, "does not match", "DataWriteGuid");
	/* an open that writes nothing keeps it valid */
	fresh(saved, cparent);
	img = test_open_image(cparent, 0);
	assert_int_equal(vhdx_close(img, NULL), 0);
	test_child_ok(state);
	/* a parent with another logical sector size */
	poke32(cparent, ITEM0 + 16, 4096);
	EXPECT_FAIL_CHAIN(workc, -EINVAL, "4096-byte logical sectors, the child 512");
	fresh(saved, cparent);
	unlink(saved);
	test_child_ok(state);
}

/* A chain deeper than max_chain_depth; a parent found only through search_dirs. */
static void test_chain_depth_and_search(void **state)
{
	char gchild[700], dir[700], moved[800];
	struct vhdx_open_opts o;
	struct vhdx_image *img = NULL;
	struct vdisk_err err = { 0 };

	fresh(child, workc);
	snprintf(gchild, sizeof(gchild), "%s", test_tmp_path("grandchild.avhdx"));
	test_create_image(gchild, VHDX_TYPE_DIFFERENCING, 0, 0, workc);
	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY;
	o.max_chain_depth = 1;
	assert_int_equal(vhdx_open(gchild, &o, &img, &err), -ELOOP);
	if (!strstr(err.msg, "limit of 1"))
		fail_msg("%s", err.msg);
	o.max_chain_depth = 2;
	assert_int_equal(vhdx_open(gchild, &o, &img, &err), 0);
	{
		struct vhdx_info info;
		vhdx_get_info(img, &info);
		assert_int_equal(info.chain_depth, 3);
		assert_non_null(info.parent_path);
		assert_non_null(strstr(info.parent_path, "work.avhdx"));
	}
	vhdx_close(img, NULL);

	/* the grandchild moved to another folder: found again only through search_dirs */
	snprintf(dir, sizeof(dir), "%s", test_tmp_path("elsewhere"));
	assert_int_equal(test_system("mkdir -p '%s'", dir), 0);
	snprintf(moved, sizeof(moved), "%s/grandchild.avhdx", dir);
	assert_int_equal(rename(gchild, moved), 0);
	/* its absolute_win32_path still names the parent: only a copy of the parent elsewhere fails */
	{
		char tmp[700];
		snprintf(tmp, sizeof(tmp), "%s.away", workc);
		assert_int_equal(rename(workc, tmp), 0);
		vdisk_err_clear(&err);
		o.max_chain_depth = 0;
		assert_int_equal(vhdx_open(moved, &o, &img, &err), -ENOENT);
		assert_non_null(strstr(err.msg, "parent not found"));
		const char *dirs[] = { NULL, NULL };
		char sdir[700];
		snprintf(sdir, sizeof(sdir), "%s", test_tmp_path("search"));
		assert_int_equal(test_system("mkdir -p '%s'", sdir), 0);
		char inside[800];
		snprintf(inside, sizeof(inside), "%s/work.avhdx", sdir);
		assert_int_equal(rename(tmp, inside), 0);
		dirs[0] = sdir;
		o.search_dirs = dirs;
		assert_int_equal(vhdx_open(moved, &o, &img, &err), 0);
		assert_non_null(vhdx_parent(img));
		assert_non_null(vhdx_parent(vhdx_parent(img)));
		vhdx_close(img, NULL);
		assert_int_equal(rename(inside, workc), 0);
	}
	unlink(moved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ident),
		cmocka_unit_test(test_headers_both_bad),
		cmocka_unit_test(test_header_fields),
		cmocka_unit_test(test_one_header_bad),
		cmocka_unit_test(test_region_table),
		cmocka_unit_test(test_region_copy1_bad),
		cmocka_unit_test(test_meta_table),
		cmocka_unit_test(test_meta_items),
		cmocka_unit_test(test_bat),
		cmocka_unit_test(test_bat_unmapped_offset),
		cmocka_unit_test(test_leaks),
		cmocka_unit_test(test_log),
		cmocka_unit_test(test_child_ok),
		cmocka_unit_test(test_child_check),
		cmocka_unit_test(test_child_bat),
		cmocka_unit_test(test_child_locator),
		cmocka_unit_test(test_child_parent_changed),
		cmocka_unit_test(test_chain_depth_and_search),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
