/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The decode/encode pairs of lib/vhdx/format.c: encode(decode(b)) == b for
 * the identifier, both headers, both region tables, the metadata table and
 * the log entry headers of Windows-made fixtures and of files vdisk creates
 * (this also proves reserved bytes are kept); the Hyper-V parent locator
 * decoded key by key and re-encoded; locator and UTF-16 conversions with
 * their error cases; each decoder's messages for bad fields; the known GUID
 * constants against their text form; BAT geometry helpers; and the locator
 * vdisk writes for a child (relative paths in every direction).
 */
#include <errno.h>
#include <limits.h>
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

#define ORPHAN_GZ "hyperv-win10.0.17763-differencing-8G-orphan.avhdx.gz"
#define ORPHAN_PARENT "Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx"

static const char *unpack(const char *gz, const char *out)
{
	const char *p;

	if (!getenv("VDISK_SHARED"))
		fail_msg("VDISK_SHARED is not set: run through ctest or point it at the shared/ folder");
	if (!test_shared_fixture(gz))
		fail_msg("fixture %s is missing from $VDISK_SHARED/fixtures/windows", gz);
	p = test_gunzip_fixture(gz, out);
	if (!p)
		fail_msg("cannot decompress %s", gz);
	return p;
}

/* ---- encode(decode(b)) == b over the fixed structures of one file ---- */

static void roundtrip_file(const char *path)
{
	uint8_t *file, *buf = malloc(VHDX_IDENT_SIZE);
	struct vhdx_region_table *rt = calloc(1, sizeof(*rt));
	struct vhdx_meta_table *mt = calloc(1, sizeof(*mt));
	struct vdisk_err err = { 0 };
	struct vhdx_header h;
	uint64_t meta_off = 0, log_off = 0;
	uint32_t log_len = 0;
	char creator[256];
	size_t len;
	unsigned nlog = 0;

	/* every structure checked here lies in the first 4 MiB of these files */
	len = 4 << 20;
	file = malloc(len);
	assert_true(file && buf && rt && mt);
	assert_int_equal(test_file_pread(path, file, len, 0), 0);

	/* identifier: the creator string and zeros, nothing else */
	assert_int_equal(vhdx_ident_decode(file, creator, sizeof(creator), &err), 0);
	assert_true(strlen(creator) > 0);
	vhdx_ident_encode(creator, buf);
	assert_memory_equal(buf, file, VHDX_IDENT_SIZE);

	/* both headers, each with its own checksum */
	for (int i = 0; i < 2; i++) {
		const uint8_t *raw = file + (i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET);
		if (vhdx_header_decode(raw, &h, &err) < 0)
			fail_msg("%s: header %d: %s", path, i + 1, err.msg);
		assert_int_equal(h.checksum, get_le32(raw + 4));
		assert_int_equal(h.version, 1);
		vhdx_header_encode(&h, buf);
		assert_memory_equal(buf, raw, VHDX_HEADER_SIZE);
		log_off = h.log_offset;
		log_len = h.log_length;
	}

	/* both region tables */
	for (int i = 0; i < 2; i++) {
		const uint8_t *raw = file + (i ? VHDX_RT2_OFFSET : VHDX_RT1_OFFSET);
		if (vhdx_region_decode(raw, rt, &err) < 0)
			fail_msg("%s: region table %d: %s", path, i + 1, err.msg);
		assert_int_equal(rt->count, 2);
		vhdx_region_encode(rt, buf);
		assert_memory_equal(buf, raw, VHDX_RT_SIZE);
		for (uint32_t k = 0; k < rt->count; k++)
			if (vdisk_guid_equal(&rt->entries[k].guid, &vhdx_guid_meta_region))
				meta_off = rt->entries[k].file_offset;
	}

	/* metadata table */
	assert_int_not_equal(meta_off, 0);
	assert_true(meta_off + VHDX_META_TABLE_SIZE <= len);
	if (vhdx_meta_table_decode(file + meta_off, mt, &err) < 0)
		fail_msg("%s: metadata table: %s", path, err.msg);
	assert_true(mt->count >= 5);
	vhdx_meta_table_encode(mt, buf);
	/*
	 * Header and entries byte for byte. Past the last entry Windows may leave a stale
	 * copy of an entry (the fixed fixture repeats Page 83 in slot 5 with EntryCount 5):
	 * not part of the table, not kept by the encoder, so the rest must only be zeros
	 * in what we encode.
	 */
	assert_memory_equal(buf, file + meta_off, 32 + 32 * (size_t)mt->count);
	assert_true(vdisk_is_zero(buf + 32 + 32 * mt->count,
				  VHDX_META_TABLE_SIZE - 32 - 32 * (size_t)mt->count));
	if (memcmp(buf, file + meta_off, VHDX_META_TABLE_SIZE) != 0)
		fprintf(stderr, "%s: bytes after the %u metadata table entries are not zero\n", path,
			mt->count);

	/* every log entry header found in the log area (old entries of clean files too) */
	for (uint64_t p = log_off; p + 4096 <= log_off + log_len && p + 4096 <= len; p += 4096) {
		struct vhdx_log_entry_hdr lh;
		if (vhdx_log_hdr_decode(file + p, &lh) < 0)
			continue;
		vhdx_log_hdr_encode(&lh, buf);
		assert_memory_equal(buf, file + p, VHDX_LOG_ENTRY_HDR_SIZE);
		nlog++;
	}
	fprintf(stderr, "%s: creator \"%s\", %u metadata items, %u log entry headers\n", path,
		creator, mt->count, nlog);
	free(file);
	free(buf);
	free(rt);
	free(mt);
}

static void test_roundtrip_windows(void **state)
{
	static const char *const gz[] = {
		"hyperv-win10.0.18363-fixed-10M.vhdx.gz",
		"hyperv-win10.0.18363-dynamic-10M.vhdx.gz",
		ORPHAN_GZ,
		"discutils-vhdx-log-replay.vhdx.gz",
		"discutils-btrfs.vhdx.gz",
	};

	for (size_t i = 0; i < ARRAY_SIZE(gz); i++) {
		const char *p = unpack(gz[i], "roundtrip.vhdx");
		roundtrip_file(p);
		unlink(p);
	}
}

static void test_roundtrip_created(void **state)
{
	const char *dyn = strdup(test_tmp_path("fmt-dyn.vhdx"));
	const char *dyn4k = strdup(test_tmp_path("fmt-dyn4k.vhdx"));
	const char *fixed = strdup(test_tmp_path("fmt-fixed.vhdx"));
	const char *child = strdup(test_tmp_path("fmt-child.avhdx"));
	struct vhdx_image *img;
	struct vdisk_err err = { 0 };
	uint8_t data[8192];

	test_create_image_sectors(dyn, VHDX_TYPE_DYNAMIC, 64 << 20, 1 << 20, 512, 0, NULL);
	test_create_image_sectors(dyn4k, VHDX_TYPE_DYNAMIC, 64 << 20, 32 << 20, 4096, 0, NULL);
	test_create_image_sectors(fixed, VHDX_TYPE_FIXED, 8 << 20, 1 << 20, 512, 0, NULL);
	test_create_image_sectors(child, VHDX_TYPE_DIFFERENCING, 0, 0, 0, 0, dyn);
	roundtrip_file(dyn);
	roundtrip_file(dyn4k);
	roundtrip_file(fixed);
	roundtrip_file(child);

	/* after a writable session (header updates, log entries) the structures still round-trip */
	test_fill_pattern(data, sizeof(data), 1);
	if (vhdx_open(child, NULL, &img, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(vhdx_pwrite(img, data, sizeof(data), 3 << 20), 0);
	assert_int_equal(vhdx_flush(img), 0);
	assert_int_equal(vhdx_pwrite(img, data, sizeof(data), 40 << 20), 0);
	assert_int_equal(vhdx_close(img, &err), 0);
	roundtrip_file(child);
	unlink(dyn);
	unlink(dyn4k);
	unlink(fixed);
	unlink(child);
	free((void *)dyn);
	free((void *)dyn4k);
	free((void *)fixed);
	free((void *)child);
}

/* ---- parent locator ---- */

/* Finds the parent locator item of the file at @path; returns a malloc'd copy. */
static uint8_t *read_locator_item(const char *path, size_t *ret_len)
{
	struct vhdx_region_table *rt = calloc(1, sizeof(*rt));
	struct vhdx_meta_table *mt = calloc(1, sizeof(*mt));
	uint8_t *file, *item = NULL;
	uint64_t meta_off = 0;
	size_t len;

	file = test_read_file(path, &len);
	assert_true(file && rt && mt);
	assert_int_equal(vhdx_region_decode(file + VHDX_RT1_OFFSET, rt, NULL), 0);
	for (uint32_t k = 0; k < rt->count; k++)
		if (vdisk_guid_equal(&rt->entries[k].guid, &vhdx_guid_meta_region))
			meta_off = rt->entries[k].file_offset;
	assert_int_equal(vhdx_meta_table_decode(file + meta_off, mt, NULL), 0);
	for (unsigned i = 0; i < mt->count; i++) {
		if (!vdisk_guid_equal(&mt->entries[i].item_id, &vhdx_guid_parent_locator))
			continue;
		assert_int_equal(mt->entries[i].flags, VHDX_META_IS_REQUIRED);
		item = malloc(mt->entries[i].length);
		assert_non_null(item);
		memcpy(item, file + meta_off + mt->entries[i].offset, mt->entries[i].length);
		*ret_len = mt->entries[i].length;
	}
	assert_non_null(item);
	free(file);
	free(rt);
	free(mt);
	return item;
}

static void test_locator_hyperv(void **state)
{
	const char *path = unpack(ORPHAN_GZ, "locator.avhdx");
	struct vhdx_locator *loc = calloc(1, sizeof(*loc)), *loc2 = calloc(1, sizeof(*loc2));
	struct vdisk_err err = { 0 };
	uint8_t *item, *enc;
	size_t len = 0;
	int n;
	const char *vol;

	assert_true(loc && loc2);
	item = read_locator_item(path, &len);
	if (vhdx_locator_decode(item, len, loc, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(vdisk_guid_equal(&loc->type, &vhdx_guid_locator_type_vhdx));
	assert_int_equal(loc->count, 5);
	/* keys in Hyper-V's on-disk order, values as listed in SOURCES.md */
	assert_string_equal(loc->entries[0].key, "parent_linkage");
	assert_string_equal(loc->entries[0].value, "{ff34003b-11ed-4cf8-a166-b2be05e20b80}");
	assert_string_equal(loc->entries[1].key, "absolute_win32_path");
	assert_string_equal(loc->entries[1].value,
			    "C:\\Users\\Public\\Documents\\Hyper-V\\Virtual hard disks\\" ORPHAN_PARENT);
	assert_string_equal(loc->entries[2].key, "relative_path");
	assert_string_equal(loc->entries[2].value, ".\\" ORPHAN_PARENT);
	assert_string_equal(loc->entries[3].key, "volume_path");
	vol = loc->entries[3].value;
	assert_true(strncmp(vol, "\\\\?\\Volume{0eba351e-", 20) == 0);
	assert_true(strlen(vol) > strlen(ORPHAN_PARENT));
	assert_string_equal(vol + strlen(vol) - strlen(ORPHAN_PARENT), ORPHAN_PARENT);
	assert_string_equal(loc->entries[4].key, "parent_linkage2");
	assert_string_equal(loc->entries[4].value, "{00000000-0000-0000-0000-000000000000}");
	assert_string_equal(vhdx_locator_get(loc, "relative_path"), ".\\" ORPHAN_PARENT);
	assert_null(vhdx_locator_get(loc, "Relative_Path")); /* keys are case-sensitive */
	assert_null(vhdx_locator_get(loc, "nope"));

	/* re-encoded, it decodes to the same entries */
	enc = malloc(len + 4096);
	assert_non_null(enc);
	n = vhdx_locator_encode(loc, enc, len + 4096);
	assert_true(n > 20);
	assert_int_equal(vhdx_locator_decode(enc, (size_t)n, loc2, &err), 0);
	assert_memory_equal(loc, loc2, sizeof(*loc));
	/* same packing as Windows (header, entries, then key/value pairs): same bytes */
	assert_int_equal((size_t)n, len);
	assert_memory_equal(enc, item, len);
	/* too small a buffer */
	assert_int_equal(vhdx_locator_encode(loc, enc, (size_t)n - 1), -ENOSPC);
	assert_int_equal(vhdx_locator_encode(loc, enc, 20), -ENOSPC);
	free(enc);
	free(item);
	free(loc);
	free(loc2);
	unlink(path);
}

static void set_entry(struct vhdx_locator *loc, const char *k, const char *v)
{
	struct vhdx_locator_entry *e = &loc->entries[loc->count++];

	snprintf(e->key, sizeof(e->key), "%s", k);
	snprintf(e->value, sizeof(e->value), "%s", v);
}

static void test_locator_roundtrip(void **state)
{
	struct vhdx_locator *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct vdisk_err err = { 0 };
	uint8_t buf[65536];
	char longv[1024];
	int n;

	assert_true(a && b);
	a->type = vhdx_guid_locator_type_vhdx;
	set_entry(a, "parent_linkage", "{f88d4d92-6fcc-408d-9bef-9b7c89f15c89}");
	set_entry(a, "relative_path", "..\\b\xc3\xa4se\\\xe6\x97\xa5\xe6\x9c\xac.vhdx");
	set_entry(a, "emoji", "\xf0\x9f\x92\xbe disk");
	memset(longv, 'x', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	set_entry(a, "long", longv);
	n = vhdx_locator_encode(a, buf, sizeof(buf));
	/* 20 + 4 * 12, then each key and value in UTF-16 (the emoji is a surrogate pair) */
	assert_int_equal(n, 20 + 48 + 2 * (14 + 38) + 2 * (13 + 15) + 2 * (5 + 7) + 2 * (4 + 1023));
	assert_int_equal(get_le16(buf + 18), 4);
	assert_int_equal(vhdx_locator_decode(buf, (size_t)n, b, &err), 0);
	assert_int_equal(b->count, 4);
	for (unsigned i = 0; i < 4; i++) {
		assert_string_equal(a->entries[i].key, b->entries[i].key);
		assert_string_equal(a->entries[i].value, b->entries[i].value);
	}
	assert_true(vdisk_guid_equal(&a->type, &b->type));

	/* decode errors, each with its message */
	vdisk_err_clear(&err);
	assert_int_equal(vhdx_locator_decode(buf, 19, b, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "shorter than its 20-byte header"));
	vdisk_err_clear(&err);
	assert_int_equal(vhdx_locator_decode(buf, 60, b, &err), -EINVAL); /* entries cut off */
	assert_non_null(strstr(err.msg, "KeyValueCount 4"));
	vdisk_err_clear(&err);
	{
		uint8_t c[65536];
		memcpy(c, buf, (size_t)n);
		put_le16(c + 18, 33);
		assert_int_equal(vhdx_locator_decode(c, sizeof(c), b, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "KeyValueCount 33"));
		vdisk_err_clear(&err);
		memcpy(c, buf, (size_t)n);
		put_le32(c + 20 + 12 + 4, (uint32_t)n - 2); /* value of entry 1 runs past the end */
		assert_int_equal(vhdx_locator_decode(c, (size_t)n, b, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "entry 1"));
		assert_non_null(strstr(err.msg, "outside"));
		vdisk_err_clear(&err);
		memcpy(c, buf, (size_t)n);
		put_le16(c + 20 + 8, 0); /* empty key */
		assert_int_equal(vhdx_locator_decode(c, (size_t)n, b, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "entry 0"));
		vdisk_err_clear(&err);
		memcpy(c, buf, (size_t)n);
		put_le16(c + 20 + 8, 3); /* odd byte count: not UTF-16 */
		assert_int_equal(vhdx_locator_decode(c, (size_t)n, b, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "UTF-16"));
		vdisk_err_clear(&err);
		memcpy(c, buf, (size_t)n);
		put_le16(c + get_le32(c + 20), 0); /* an embedded NUL */
		assert_int_equal(vhdx_locator_decode(c, (size_t)n, b, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "UTF-16"));
		vdisk_err_clear(&err);
		memcpy(c, buf, (size_t)n);
		/* entry 1's key points at entry 0's key: a duplicate */
		put_le32(c + 20 + 12, get_le32(c + 20));
		put_le16(c + 20 + 12 + 8, get_le16(c + 20 + 8));
		assert_int_equal(vhdx_locator_decode(c, (size_t)n, b, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "appears twice"));
	}
	/* a value longer than the 1023 bytes the API holds is refused, not truncated */
	vdisk_err_clear(&err);
	{
		uint8_t c[8192];
		memset(c, 0, sizeof(c));
		put_le16(c + 18, 1);
		put_le32(c + 20, 32);
		put_le16(c + 28, 2);
		put_le16(c + 32, 'k');
		put_le32(c + 24, 34);
		put_le16(c + 30, 2048);
		for (unsigned i = 0; i < 1024; i++)
			put_le16(c + 34 + 2 * i, 'v');
		assert_int_equal(vhdx_locator_decode(c, 34 + 2048, b, &err), -EINVAL);
		assert_non_null(strstr(err.msg, "too long"));
		put_le16(c + 30, 2046);
		assert_int_equal(vhdx_locator_decode(c, 34 + 2046, b, &err), 0);
		assert_int_equal(strlen(b->entries[0].value), 1023);
	}
	/* encode refuses an empty key or value */
	a->count = 1;
	a->entries[0].value[0] = '\0';
	assert_int_equal(vhdx_locator_encode(a, buf, sizeof(buf)), -EINVAL);
	free(a);
	free(b);
}

/* The locator vdisk writes for a child, relative_path for each relative placement. */
static void test_locator_fill(void **state)
{
	char base[PATH_MAX], d1[PATH_MAX + 8], d2[PATH_MAX + 16], p[PATH_MAX + 32];
	struct vhdx_locator *loc = calloc(1, sizeof(*loc));
	struct vdisk_err err = { 0 };
	char win[PATH_MAX + 32];

	assert_non_null(loc);
	assert_non_null(realpath(test_tmp_path(""), base));
	snprintf(d1, sizeof(d1), "%s/loc", base);
	snprintf(d2, sizeof(d2), "%s/loc/sub", base);
	assert_int_equal(test_system("mkdir -p '%s'", d2), 0);
	snprintf(p, sizeof(p), "%s/loc/parent.vhdx", base);

	assert_int_equal(vhdx_locator_fill(loc, "{11111111-2222-3333-4444-555555555555}", p, d1,
					   &err),
			 0);
	assert_true(vdisk_guid_equal(&loc->type, &vhdx_guid_locator_type_vhdx));
	assert_int_equal(loc->count, 4);
	assert_string_equal(vhdx_locator_get(loc, "parent_linkage"),
			    "{11111111-2222-3333-4444-555555555555}");
	assert_string_equal(vhdx_locator_get(loc, "relative_path"), ".\\parent.vhdx");
	assert_string_equal(vhdx_locator_get(loc, "parent_linkage2"),
			    "{00000000-0000-0000-0000-000000000000}");
	snprintf(win, sizeof(win), "%s", p);
	for (char *c = win; *c; c++)
		if (*c == '/')
			*c = '\\';
	assert_string_equal(vhdx_locator_get(loc, "absolute_win32_path"), win);

	/* child one folder down */
	assert_int_equal(vhdx_locator_fill(loc, "{11111111-2222-3333-4444-555555555555}", p, d2,
					   &err),
			 0);
	assert_string_equal(vhdx_locator_get(loc, "relative_path"), "..\\parent.vhdx");
	/* parent one folder down from the child */
	snprintf(p, sizeof(p), "%s/loc/sub/parent.vhdx", base);
	assert_int_equal(vhdx_locator_fill(loc, "{11111111-2222-3333-4444-555555555555}", p, d1,
					   &err),
			 0);
	assert_string_equal(vhdx_locator_get(loc, "relative_path"), ".\\sub\\parent.vhdx");
	/* sibling folders sharing a name prefix ("loc" and "loc2") */
	snprintf(d2, sizeof(d2), "%s/loc2", base);
	assert_int_equal(test_system("mkdir -p '%s'", d2), 0);
	snprintf(p, sizeof(p), "%s/loc/parent.vhdx", base);
	assert_int_equal(vhdx_locator_fill(loc, "{11111111-2222-3333-4444-555555555555}", p, d2,
					   &err),
			 0);
	assert_string_equal(vhdx_locator_get(loc, "relative_path"), "..\\loc\\parent.vhdx");
	snprintf(p, sizeof(p), "%s/loc2/parent.vhdx", base);
	assert_int_equal(vhdx_locator_fill(loc, "{11111111-2222-3333-4444-555555555555}", p, d1,
					   &err),
			 0);
	assert_string_equal(vhdx_locator_get(loc, "relative_path"), "..\\loc2\\parent.vhdx");
	/* a folder that does not exist */
	vdisk_err_clear(&err);
	assert_int_equal(vhdx_locator_fill(loc, "{11111111-2222-3333-4444-555555555555}", p,
					   "/nonexistent/dir", &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "/nonexistent/dir"));
	free(loc);
}

/* ---- UTF-16 ---- */

static void test_utf16(void **state)
{
	uint8_t u16[64];
	char u8[64];
	int n;

	/* ASCII, 2-, 3- and 4-byte UTF-8 */
	n = vhdx_utf8_to_utf16le("A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", u16, sizeof(u16));
	assert_int_equal(n, 10);
	assert_int_equal(get_le16(u16), 'A');
	assert_int_equal(get_le16(u16 + 2), 0xE9);
	assert_int_equal(get_le16(u16 + 4), 0x20AC);
	assert_int_equal(get_le16(u16 + 6), 0xD83D);
	assert_int_equal(get_le16(u16 + 8), 0xDE00);
	n = vhdx_utf16le_to_utf8(u16, 10, u8, sizeof(u8));
	assert_int_equal(n, 10);
	assert_string_equal(u8, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	/* empty */
	assert_int_equal(vhdx_utf8_to_utf16le("", u16, sizeof(u16)), 0);
	assert_int_equal(vhdx_utf16le_to_utf8(u16, 0, u8, sizeof(u8)), 0);
	assert_string_equal(u8, "");
	/* U+07FF and U+0800 and U+FFFF at the encoding boundaries */
	n = vhdx_utf8_to_utf16le("\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", u16, sizeof(u16));
	assert_int_equal(n, 6);
	assert_int_equal(get_le16(u16), 0x7FF);
	assert_int_equal(get_le16(u16 + 2), 0x800);
	assert_int_equal(get_le16(u16 + 4), 0xFFFF);
	assert_int_equal(vhdx_utf16le_to_utf8(u16, 6, u8, sizeof(u8)), 8);
	assert_string_equal(u8, "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
	/* U+10FFFF, the last code point */
	n = vhdx_utf8_to_utf16le("\xf4\x8f\xbf\xbf", u16, sizeof(u16));
	assert_int_equal(n, 4);
	assert_int_equal(get_le16(u16), 0xDBFF);
	assert_int_equal(get_le16(u16 + 2), 0xDFFF);
	assert_int_equal(vhdx_utf16le_to_utf8(u16, 4, u8, sizeof(u8)), 4);
	assert_string_equal(u8, "\xf4\x8f\xbf\xbf");

	/* errors: odd length, embedded NUL, invalid UTF-8, no room */
	assert_int_equal(vhdx_utf16le_to_utf8(u16, 3, u8, sizeof(u8)), -EINVAL);
	memset(u16, 0, 4);
	u16[0] = 'a';
	assert_int_equal(vhdx_utf16le_to_utf8(u16, 4, u8, sizeof(u8)), -EINVAL);
	assert_int_equal(vhdx_utf8_to_utf16le("\xff", u16, sizeof(u16)), -EINVAL);
	assert_int_equal(vhdx_utf8_to_utf16le("\x80", u16, sizeof(u16)), -EINVAL);
	assert_int_equal(vhdx_utf8_to_utf16le("a\xc3", u16, sizeof(u16)), -EINVAL); /* cut off */
	assert_int_equal(vhdx_utf8_to_utf16le("\xe2\x82", u16, sizeof(u16)), -EINVAL);
	assert_int_equal(vhdx_utf8_to_utf16le("abc", u16, 5), -ENOSPC);
	assert_int_equal(vhdx_utf8_to_utf16le("abc", u16, 6), 6);
	assert_int_equal(vhdx_utf8_to_utf16le("\xf0\x9f\x98\x80", u16, 3), -ENOSPC);
	n = vhdx_utf8_to_utf16le("abc", u16, sizeof(u16));
	assert_int_equal(vhdx_utf16le_to_utf8(u16, (size_t)n, u8, 3), -ENOSPC); /* NUL needs room */
	assert_int_equal(vhdx_utf16le_to_utf8(u16, (size_t)n, u8, 4), 3);
	assert_int_equal(vhdx_utf16le_to_utf8(u16, (size_t)n, u8, 0), -EINVAL);
}

/* ---- GUID constants ---- */

static void test_guid_constants(void **state)
{
	static const struct {
		const struct vdisk_guid *g;
		const char *text;
	} k[] = {
		{ &vhdx_guid_bat_region, "2DC27766-F623-4200-9D64-115E9BFD4A08" },
		{ &vhdx_guid_meta_region, "8B7CA206-4790-4B9A-B8FE-575F050F886E" },
		{ &vhdx_guid_file_params, "CAA16737-FA36-4D43-B3B6-33F0AA44E76B" },
		{ &vhdx_guid_disk_size, "2FA54224-CD1B-4876-B211-5DBED83BF4B8" },
		{ &vhdx_guid_page83, "BECA12AB-B2E6-4523-93EF-C309E000C746" },
		{ &vhdx_guid_logical_sector, "8141BF1D-A96F-4709-BA47-F233A8FAAB5F" },
		{ &vhdx_guid_physical_sector, "CDA348C7-445D-4471-9CC9-E9885251C556" },
		{ &vhdx_guid_parent_locator, "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C" },
		{ &vhdx_guid_locator_type_vhdx, "B04AEFB7-D19E-4A81-B789-25B8E9445913" },
		{ &vhdx_guid_chs, "DA02D7BC-3D3A-423C-AC88-2A36AB21479B" },
		{ &vhdx_guid_incomplete, "71CC85F0-1B69-4E28-9558-C3BF83AE75D3" },
		{ &vhdx_guid_pmem, "10E1AE8A-4B7E-4169-A40F-CD70DE928393" },
	};
	/* the on-disk bytes of the BAT GUID as printed in MS-VHDX */
	static const uint8_t bat_bytes[16] = { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
					       0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };

	for (size_t i = 0; i < ARRAY_SIZE(k); i++) {
		struct vdisk_guid g;
		char text[VDISK_GUID_STRLEN];
		assert_int_equal(vdisk_guid_parse(k[i].text, &g), 0);
		vdisk_guid_format(k[i].g, text);
		if (!vdisk_guid_equal(&g, k[i].g))
			fail_msg("constant %zu is %s, expected %s", i, text, k[i].text);
		for (size_t j = 0; j < i; j++)
			assert_false(vdisk_guid_equal(k[i].g, k[j].g));
	}
	assert_memory_equal(vhdx_guid_bat_region.b, bat_bytes, 16);
}

/* ---- decoder messages ---- */

static void test_header_decode_errors(void **state)
{
	uint8_t buf[VHDX_HEADER_SIZE];
	struct vhdx_header h = { .seq = 9, .version = 1, .log_length = 1 << 20,
				 .log_offset = 1 << 20 }, out;
	struct vdisk_err err = { 0 };

	h.file_write_guid.b[0] = 1;
	h.data_write_guid.b[15] = 2;
	h.log_guid.b[7] = 3;
	vhdx_header_encode(&h, buf);
	assert_int_equal(vhdx_header_decode(buf, &out, &err), 0);
	assert_int_equal(out.seq, 9);
	assert_int_equal(out.version, 1);
	assert_int_equal(out.log_version, 0);
	assert_int_equal(out.log_length, 1 << 20);
	assert_int_equal(out.log_offset, 1 << 20);
	assert_true(vdisk_guid_equal(&out.file_write_guid, &h.file_write_guid));
	assert_true(vdisk_guid_equal(&out.data_write_guid, &h.data_write_guid));
	assert_true(vdisk_guid_equal(&out.log_guid, &h.log_guid));
	assert_int_equal(out.checksum, get_le32(buf + 4));
	/* field offsets (section 4) */
	assert_int_equal(get_le64(buf + 8), 9);
	assert_int_equal(buf[16], 1);
	assert_int_equal(buf[47], 2);
	assert_int_equal(buf[55], 3);
	assert_int_equal(get_le16(buf + 66), 1);
	assert_int_equal(get_le32(buf + 68), 1 << 20);
	assert_int_equal(get_le64(buf + 72), 1 << 20);

	buf[4000] ^= 1; /* a reserved byte is covered by the checksum */
	assert_int_equal(vhdx_header_decode(buf, &out, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "header: checksum"));
	vdisk_err_clear(&err);
	buf[4000] ^= 1;
	memcpy(buf, "HEAD", 4);
	assert_int_equal(vhdx_header_decode(buf, &out, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "header: signature is \"HEAD\""));
}

static void test_region_decode_errors(void **state)
{
	struct vhdx_region_table *rt = calloc(1, sizeof(*rt)), *out = calloc(1, sizeof(*out));
	uint8_t *buf = malloc(VHDX_RT_SIZE);
	struct vdisk_err err = { 0 };

	assert_true(rt && out && buf);
	rt->count = 2;
	rt->entries[0] = (struct vhdx_region_entry){ vhdx_guid_bat_region, 3 << 20, 1 << 20, 1 };
	rt->entries[1] = (struct vhdx_region_entry){ vhdx_guid_meta_region, 2 << 20, 1 << 20, 1 };
	vhdx_region_encode(rt, buf);
	assert_int_equal(vhdx_region_decode(buf, out, &err), 0);
	assert_int_equal(out->count, 2);
	assert_memory_equal(&out->entries[0], &rt->entries[0], sizeof(rt->entries[0]));
	assert_memory_equal(&out->entries[1], &rt->entries[1], sizeof(rt->entries[1]));
	/* the checksum covers all 64 KiB */
	buf[VHDX_RT_SIZE - 1] = 1;
	assert_int_equal(vhdx_region_decode(buf, out, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "region table: checksum"));

#define BAD(field_setup, needle)                                                 \
	do {                                                                     \
		vdisk_err_clear(&err);                                           \
		rt->count = 2;                                                   \
		rt->entries[0] = (struct vhdx_region_entry){ vhdx_guid_bat_region, 3 << 20, \
							     1 << 20, 1 };       \
		rt->entries[1] = (struct vhdx_region_entry){ vhdx_guid_meta_region, 2 << 20, \
							     1 << 20, 1 };       \
		field_setup;                                                     \
		vhdx_region_encode(rt, buf);                                     \
		assert_int_equal(vhdx_region_decode(buf, out, &err), -EINVAL);   \
		if (!strstr(err.msg, needle))                                    \
			fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle); \
	} while (0)
	/* EntryCount past the maximum, checksum valid */
	vdisk_err_clear(&err);
	rt->count = 2;
	vhdx_region_encode(rt, buf);
	put_le32(buf + 8, 2048);
	put_le32(buf + 4, 0);
	put_le32(buf + 4, vdisk_crc32c(0, buf, VHDX_RT_SIZE));
	assert_int_equal(vhdx_region_decode(buf, out, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "EntryCount 2048"));
	BAD(rt->entries[1].file_offset = (2 << 20) + 4096, "entry 1: FileOffset 0x201000");
	BAD(rt->entries[1].file_offset = 0, "entry 1: FileOffset 0x0");
	BAD(rt->entries[0].length = 0, "entry 0: Length 0x0");
	BAD(rt->entries[0].length = 4096, "entry 0: Length 0x1000");
	BAD(rt->entries[1].guid = vhdx_guid_bat_region, "entries 0 and 1 have the same GUID");
#undef BAD
	free(rt);
	free(out);
	free(buf);
}

static void test_meta_table_decode_errors(void **state)
{
	struct vhdx_meta_table *mt = calloc(1, sizeof(*mt)), *out = calloc(1, sizeof(*out));
	uint8_t *buf = malloc(VHDX_META_TABLE_SIZE);
	struct vdisk_err err = { 0 };

	assert_true(mt && out && buf);
	mt->count = 2;
	mt->entries[0] = (struct vhdx_meta_entry){ vhdx_guid_file_params, 65536, 8, 4 };
	mt->entries[1] = (struct vhdx_meta_entry){ vhdx_guid_disk_size, 65544, 8, 6 };
	vhdx_meta_table_encode(mt, buf);
	assert_memory_equal(buf, "metadata", 8);
	assert_int_equal(get_le16(buf + 10), 2);
	assert_int_equal(get_le32(buf + 32 + 16), 65536);
	assert_int_equal(get_le32(buf + 64 + 20), 8);
	assert_int_equal(get_le32(buf + 64 + 24), 6);
	assert_int_equal(vhdx_meta_table_decode(buf, out, &err), 0);
	assert_int_equal(out->count, 2);
	assert_memory_equal(&out->entries[1], &mt->entries[1], sizeof(mt->entries[1]));
	put_le16(buf + 10, 2048);
	assert_int_equal(vhdx_meta_table_decode(buf, out, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "metadata table: EntryCount 2048"));
	vdisk_err_clear(&err);
	memcpy(buf, "metadatX", 8);
	assert_int_equal(vhdx_meta_table_decode(buf, out, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "metadata table: signature"));
	free(mt);
	free(out);
	free(buf);
}

static void test_ident_and_log_hdr(void **state)
{
	uint8_t *buf = malloc(VHDX_IDENT_SIZE);
	struct vhdx_log_entry_hdr h = { .checksum = 0x11223344, .entry_length = 8192,
					.tail = 4096, .seq = 0x1122334455667788ULL,
					.desc_count = 1, .flushed_file_offset = 5 << 20,
					.last_file_offset = 6 << 20 }, out;
	struct vdisk_err err = { 0 };
	char creator[256];

	assert_non_null(buf);
	vhdx_ident_encode("vdisk \xc3\xa9", buf);
	assert_memory_equal(buf, "vhdxfile", 8);
	assert_int_equal(get_le16(buf + 8), 'v');
	assert_int_equal(get_le16(buf + 8 + 12), 0xE9);
	assert_int_equal(vhdx_ident_decode(buf, creator, sizeof(creator), &err), 0);
	assert_string_equal(creator, "vdisk \xc3\xa9");
	buf[0] = 'V';
	assert_int_equal(vhdx_ident_decode(buf, creator, sizeof(creator), &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not a VHDX image"));
	/* a creator filling all 256 UTF-16 units, without a terminator */
	memcpy(buf, "vhdxfile", 8);
	for (int i = 0; i < 256; i++)
		put_le16(buf + 8 + 2 * i, 'c');
	assert_int_equal(vhdx_ident_decode(buf, creator, sizeof(creator), NULL), 0);
	assert_int_equal(strlen(creator), 255); /* kept, cut to fit */
	assert_int_equal(creator[0], 'c');
	/* 256 two-byte characters (512 bytes of UTF-8): cut at a character boundary */
	for (int i = 0; i < 256; i++)
		put_le16(buf + 8 + 2 * i, 0xE9);
	assert_int_equal(vhdx_ident_decode(buf, creator, sizeof(creator), NULL), 0);
	assert_int_equal(strlen(creator), 254);
	assert_memory_equal(creator + 252, "\xc3\xa9", 2);

	h.log_guid.b[3] = 0x5a;
	vhdx_log_hdr_encode(&h, buf);
	assert_memory_equal(buf, "loge", 4);
	assert_int_equal(get_le32(buf + 4), 0x11223344);
	assert_int_equal(get_le32(buf + 8), 8192);
	assert_int_equal(get_le32(buf + 12), 4096);
	assert_int_equal(get_le64(buf + 16), 0x1122334455667788ULL);
	assert_int_equal(get_le32(buf + 24), 1);
	assert_int_equal(buf[35], 0x5a);
	assert_int_equal(get_le64(buf + 48), 5 << 20);
	assert_int_equal(get_le64(buf + 56), 6 << 20);
	memset(&out, 0, sizeof(out));
	assert_int_equal(vhdx_log_hdr_decode(buf, &out), 0);
	assert_int_equal(out.checksum, h.checksum);
	assert_int_equal(out.entry_length, h.entry_length);
	assert_int_equal(out.tail, h.tail);
	assert_int_equal(out.seq, h.seq);
	assert_int_equal(out.desc_count, h.desc_count);
	assert_true(vdisk_guid_equal(&out.log_guid, &h.log_guid));
	assert_int_equal(out.flushed_file_offset, h.flushed_file_offset);
	assert_int_equal(out.last_file_offset, h.last_file_offset);
	buf[0] = 'L';
	assert_int_equal(vhdx_log_hdr_decode(buf, &out), -EINVAL);
	free(buf);
}

/* BAT geometry (section 8.1): interleaved bitmap entries. */
static void test_bat_geometry(void **state)
{
	assert_int_equal(vhdx_bat_index(0, 2048), 0);
	assert_int_equal(vhdx_bat_index(2047, 2048), 2047);
	assert_int_equal(vhdx_bat_index(2048, 2048), 2049);
	assert_int_equal(vhdx_sb_index(0, 2048), 2048);
	assert_int_equal(vhdx_sb_index(1, 2048), 4097);
	assert_int_equal(vhdx_bat_index(4095, 2048), 4096);
	assert_int_equal(vhdx_bat_index(4096, 2048), 4098);
	assert_int_equal(vhdx_sb_index(3, 16), 3 * 17 + 16);
}

/* vhdx_create refuses bad options, each with a message naming the file and the option. */
static void test_create_errors(void **state)
{
	static const struct {
		enum vhdx_type type;
		uint64_t size;
		uint32_t bs, lsec, psec, log;
		const char *needle;
	} c[] = {
		{ VHDX_TYPE_DYNAMIC, 0, 0, 512, 4096, 0, "size 0" },
		{ VHDX_TYPE_DYNAMIC, 1000, 0, 512, 4096, 0, "size 1000" },
		{ VHDX_TYPE_DYNAMIC, (64ULL << 40) + 512, 0, 512, 4096, 0, "at most 64 TiB" },
		{ VHDX_TYPE_DYNAMIC, 1 << 20, 3 << 20, 512, 4096, 0, "block size 3145728" },
		{ VHDX_TYPE_DYNAMIC, 1 << 20, 512 << 10, 512, 4096, 0, "block size 524288" },
		{ VHDX_TYPE_DYNAMIC, 1 << 20, 512u << 20, 512, 4096, 0, "block size 536870912" },
		{ VHDX_TYPE_DYNAMIC, 1 << 20, 0, 1024, 4096, 0, "logical 1024" },
		{ VHDX_TYPE_DYNAMIC, 1 << 20, 0, 4096, 512, 0, "physical not smaller than logical" },
		{ VHDX_TYPE_DYNAMIC, 1 << 20, 0, 4096, 4096, 0, NULL }, /* 1 MiB is 256 sectors: fine */
		{ VHDX_TYPE_DYNAMIC, 1 << 20, 0, 4096, 4096, 4096, "log size 4096" },
		{ VHDX_TYPE_DIFFERENCING, 1 << 20, 0, 512, 4096, 0, "needs a parent" },
	};
	const char *path = test_tmp_path("create-err.vhdx");
	struct vhdx_create_opts o;

	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		struct vdisk_err err = { 0 };
		int r;
		unlink(path);
		vhdx_create_opts_init(&o, sizeof(o));
		o.type = c[i].type;
		o.disk_size_bytes = c[i].size;
		o.block_size_bytes = c[i].bs;
		o.logical_sector_bytes = c[i].lsec;
		o.physical_sector_bytes = c[i].psec;
		o.log_size_bytes = c[i].log;
		r = vhdx_create(path, &o, &err);
		if (!c[i].needle) {
			assert_int_equal(r, 0);
			continue;
		}
		if (r != -EINVAL || !strstr(err.msg, c[i].needle) || !strstr(err.msg, path))
			fail_msg("case %zu: %d \"%s\", expected -EINVAL with \"%s\"", i, r, err.msg,
				 c[i].needle);
		assert_int_equal(access(path, F_OK), -1); /* nothing left behind */
	}
	/* an existing file is kept unless overwrite is asked for */
	{
		struct vdisk_err err = { 0 };
		vhdx_create_opts_init(&o, sizeof(o));
		o.disk_size_bytes = 1 << 20;
		assert_int_equal(vhdx_create(path, &o, &err), 0);
		assert_int_equal(vhdx_create(path, &o, &err), -EEXIST);
		assert_non_null(strstr(err.msg, path));
		o.overwrite = true;
		assert_int_equal(vhdx_create(path, &o, &err), 0);
		/* a child of a missing parent */
		vdisk_err_clear(&err);
		o.type = VHDX_TYPE_DIFFERENCING;
		o.parent_path = "/nonexistent/parent.vhdx";
		assert_int_equal(vhdx_create(path, &o, &err), -ENOENT);
		assert_non_null(strstr(err.msg, "parent"));
		assert_non_null(strstr(err.msg, "/nonexistent/parent.vhdx"));
	}
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guid_constants),
		cmocka_unit_test(test_utf16),
		cmocka_unit_test(test_header_decode_errors),
		cmocka_unit_test(test_region_decode_errors),
		cmocka_unit_test(test_meta_table_decode_errors),
		cmocka_unit_test(test_ident_and_log_hdr),
		cmocka_unit_test(test_bat_geometry),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_locator_roundtrip),
		cmocka_unit_test(test_locator_fill),
		cmocka_unit_test(test_locator_hyperv),
		cmocka_unit_test(test_roundtrip_windows),
		cmocka_unit_test(test_roundtrip_created),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
