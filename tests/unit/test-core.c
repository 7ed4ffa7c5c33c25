/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the core helpers: CRC-32C against published vectors and a
 * bitwise reference (hardware and software paths alike), GUID text
 * parse/format in the Microsoft byte layout, random version-4 GUIDs, the
 * little/big-endian accessors, and the first-error-wins error buffer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vdisk/common.h>

#include "byteorder.h"
#include "helpers.h"
#include "util.h"

/* Bit-at-a-time CRC-32C, independent of both library paths. */
static uint32_t crc32c_ref(const uint8_t *p, size_t len)
{
	uint32_t c = 0xFFFFFFFFU;

	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78U : c >> 1;
	}
	return ~c;
}

static void check_vectors(void)
{
	uint8_t buf[32];

	assert_int_equal(vdisk_crc32c(0, "123456789", 9), 0xE3069283U);
	assert_int_equal(vdisk_crc32c(0, "", 0), 0);

	/* RFC 3720 appendix B.4 */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(vdisk_crc32c(0, buf, sizeof(buf)), 0x8A9136AAU);
	memset(buf, 0xFF, sizeof(buf));
	assert_int_equal(vdisk_crc32c(0, buf, sizeof(buf)), 0x62A8AB43U);
	for (unsigned i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	assert_int_equal(vdisk_crc32c(0, buf, sizeof(buf)), 0x46DD794EU);
	for (unsigned i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	assert_int_equal(vdisk_crc32c(0, buf, sizeof(buf)), 0x113FDB5CU);

	/* the running value chains across split buffers */
	assert_int_equal(vdisk_crc32c(vdisk_crc32c(0, "1234", 4), "56789", 5), 0xE3069283U);
	assert_int_equal(vdisk_crc32c(vdisk_crc32c(0, "123456789", 9), "", 0), 0xE3069283U);
}

static void test_crc32c_vectors(void **state)
{
	vdisk_crc32c_force_sw(0);
	check_vectors();
	vdisk_crc32c_force_sw(1);
	check_vectors();
	vdisk_crc32c_force_sw(0);
	/* the raw portable path, with the inversions done by hand */
	assert_int_equal(~vdisk_crc32c_sw(0xFFFFFFFFU, (const uint8_t *)"123456789", 9),
			 0xE3069283U);
}

#define MAXLEN 4200

/* Automatic (SSE4.2 when present) and forced-software paths agree with the reference. */
static void test_crc32c_paths_agree(void **state)
{
	uint8_t *buf = malloc(MAXLEN + 16);
	uint64_t x = 12345;

	assert_non_null(buf);
	test_fill_pattern(buf, MAXLEN + 16, 42);
	for (int iter = 0; iter < 600; iter++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t align = (size_t)(x % 16);
		size_t len = iter < 80 ? (size_t)iter : (size_t)((x >> 8) % MAXLEN);
		const uint8_t *p = buf + align;
		uint32_t ref = crc32c_ref(p, len), hw, sw, split;

		vdisk_crc32c_force_sw(0);
		hw = vdisk_crc32c(0, p, len);
		size_t cut = len ? (size_t)((x >> 32) % len) : 0;
		split = vdisk_crc32c(vdisk_crc32c(0, p, cut), p + cut, len - cut);
		vdisk_crc32c_force_sw(1);
		sw = vdisk_crc32c(0, p, len);
		if (hw != ref || sw != ref || split != ref)
			fail_msg("len %zu align %zu: ref %08x auto %08x sw %08x split %08x", len,
				 align, ref, hw, sw, split);
	}
	vdisk_crc32c_force_sw(0);
	free(buf);
}

static const uint8_t doc_bytes[16] = { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
				       0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };

static void test_guid_parse_format(void **state)
{
	/* the example of vhdx-format.md, as text and in the on-disk layout */
	static const char *same[] = {
		"2DC27766-F623-4200-9D64-115E9BFD4A08",
		"2dc27766-f623-4200-9d64-115e9bfd4a08",
		"{2DC27766-F623-4200-9D64-115E9BFD4A08}",
		"{2dc27766-F623-4200-9d64-115E9bfd4A08}",
	};
	struct vdisk_guid g;
	char text[VDISK_GUID_STRLEN];

	for (size_t i = 0; i < ARRAY_SIZE(same); i++) {
		memset(&g, 0, sizeof(g));
		assert_int_equal(vdisk_guid_parse(same[i], &g), 0);
		assert_memory_equal(g.b, doc_bytes, 16);
	}
	vdisk_guid_format(&g, text);
	assert_string_equal(text, "2dc27766-f623-4200-9d64-115e9bfd4a08");
	assert_int_equal(strlen(text), VDISK_GUID_STRLEN - 1);

	/* format then parse gives the bytes back, for every byte position */
	for (unsigned i = 0; i < 16; i++) {
		struct vdisk_guid a = { 0 }, b;
		a.b[i] = (uint8_t)(0xA5 ^ i);
		a.b[15 - i] ^= 0x3C;
		vdisk_guid_format(&a, text);
		assert_int_equal(vdisk_guid_parse(text, &b), 0);
		assert_true(vdisk_guid_equal(&a, &b));
	}
	/* field 1 is little-endian: its first byte on disk is the last pair of text */
	struct vdisk_guid one = { { 0x01 } };
	vdisk_guid_format(&one, text);
	assert_string_equal(text, "00000001-0000-0000-0000-000000000000");
	assert_true(vdisk_guid_is_zero(&(struct vdisk_guid){ { 0 } }));
	assert_false(vdisk_guid_is_zero(&one));
}

static void test_guid_invalid(void **state)
{
	static const char *bad[] = {
		"",
		"{",
		"{}",
		"2DC27766-F623-4200-9D64-115E9BFD4A0",   /* short */
		"2DC27766-F623-4200-9D64-115E9BFD4A080", /* long */
		"2DC27766-F623-4200-9D64-115E9BFD4A08 ", /* trailing space */
		" 2DC27766-F623-4200-9D64-115E9BFD4A08", /* leading space */
		"2DC27766F623-4200-9D64-115E9BFD4A08-",  /* dash moved */
		"2DC27766-F6234-200-9D64-115E9BFD4A08",  /* dash moved */
		"2DC27766-F623-4200-9D64115E9BFD4A08",   /* dash missing */
		"2DC27766_F623_4200_9D64_115E9BFD4A08",  /* wrong separator */
		"2DC27766-F623-4200-9D64-115E9BFD4A0G",  /* not hex */
		"2DC2776 -F623-4200-9D64-115E9BFD4A08",  /* space in a field */
		"{2DC27766-F623-4200-9D64-115E9BFD4A08", /* unclosed brace */
		"2DC27766-F623-4200-9D64-115E9BFD4A08}", /* close without open */
		"{{2DC27766-F623-4200-9D64-115E9BFD4A08}}",
		"(2DC27766-F623-4200-9D64-115E9BFD4A08)",
		"0x2DC27766-F623-4200-9D64-115E9BFD4A08",
		"2DC27766-F623-4200-9D64-115E9BFD4A08\n",
	};
	struct vdisk_guid g;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		memset(&g, 0xAB, sizeof(g));
		if (vdisk_guid_parse(bad[i], &g) != -EINVAL)
			fail_msg("accepted invalid GUID \"%s\"", bad[i]);
		/* ret_ parameters are written only on success */
		for (unsigned k = 0; k < 16; k++)
			assert_int_equal(g.b[k], 0xAB);
	}
}

static void test_guid_generate(void **state)
{
	struct vdisk_guid prev = { 0 }, g, back;
	char text[VDISK_GUID_STRLEN];

	for (int i = 0; i < 64; i++) {
		assert_int_equal(vdisk_guid_generate(&g), 0);
		assert_int_equal(g.b[7] >> 4, 4);      /* version 4: top nibble of field 3 */
		assert_int_equal(g.b[8] & 0xC0, 0x80); /* RFC 4122 variant */
		assert_false(vdisk_guid_is_zero(&g));
		assert_false(vdisk_guid_equal(&g, &prev));
		vdisk_guid_format(&g, text);
		assert_int_equal(text[14], '4');
		assert_non_null(strchr("89ab", text[19]));
		assert_int_equal(vdisk_guid_parse(text, &back), 0);
		assert_true(vdisk_guid_equal(&g, &back));
		prev = g;
	}
}

static void test_endian(void **state)
{
	uint8_t buf[24];
	static const uint8_t le[8] = { 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01 };
	static const uint8_t be[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };

	for (size_t off = 0; off < 8; off++) { /* every misalignment */
		uint8_t *p = buf + off;

		memset(buf, 0xEE, sizeof(buf));
		put_le64(p, 0x0102030405060708ULL);
		assert_memory_equal(p, le, 8);
		assert_int_equal(get_le64(p), 0x0102030405060708ULL);
		assert_int_equal(get_le32(p), 0x05060708U);
		assert_int_equal(get_le16(p), 0x0708);
		assert_int_equal(p[8], 0xEE);
		put_le32(p, 0x05060708U);
		assert_memory_equal(p, le, 4);
		put_le16(p, 0x0708);
		assert_memory_equal(p, le, 2);

		put_be64(p, 0x0102030405060708ULL);
		assert_memory_equal(p, be, 8);
		assert_int_equal(get_be64(p), 0x0102030405060708ULL);
		assert_int_equal(get_be32(p), 0x01020304U);
		assert_int_equal(get_be16(p), 0x0102);
		put_be32(p, 0xA1B2C3D4U);
		assert_int_equal(p[0], 0xA1);
		assert_int_equal(p[3], 0xD4);
		assert_int_equal(get_be32(p), 0xA1B2C3D4U);
		put_be16(p, 0xBEEF);
		assert_int_equal(p[0], 0xBE);
		assert_int_equal(get_be16(p), 0xBEEF);
	}
	/* round trips of extreme values */
	static const uint64_t v64[] = { 0, 1, 0x8000000000000000ULL, UINT64_MAX,
					0x00FF00FF00FF00FFULL };
	for (size_t i = 0; i < ARRAY_SIZE(v64); i++) {
		put_le64(buf + 1, v64[i]);
		assert_int_equal(get_le64(buf + 1), v64[i]);
		put_be64(buf + 3, v64[i]);
		assert_int_equal(get_be64(buf + 3), v64[i]);
		put_le32(buf + 5, (uint32_t)v64[i]);
		assert_int_equal(get_le32(buf + 5), (uint32_t)v64[i]);
		put_be32(buf + 7, (uint32_t)(v64[i] >> 32));
		assert_int_equal(get_be32(buf + 7), (uint32_t)(v64[i] >> 32));
		put_le16(buf + 9, (uint16_t)v64[i]);
		assert_int_equal(get_le16(buf + 9), (uint16_t)v64[i]);
		put_be16(buf + 11, (uint16_t)(v64[i] >> 48));
		assert_int_equal(get_be16(buf + 11), (uint16_t)(v64[i] >> 48));
	}
}

static void test_err(void **state)
{
	struct vdisk_err err = { 0 };

	assert_int_equal(vdisk_err_set(&err, -EINVAL, "region table %d at 0x%x", 1, 0x30000),
			 -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	assert_string_equal(err.msg, "region table 1 at 0x30000");

	/* first error wins: a later one is returned to its caller but not recorded */
	assert_int_equal(vdisk_err_set(&err, -EIO, "cleanup failed"), -EIO);
	assert_int_equal(err.code, -EINVAL);
	assert_string_equal(err.msg, "region table 1 at 0x30000");

	/* context is prepended, outermost last */
	assert_int_equal(vdisk_err_prefix(&err, "%s: ", "a.vhdx"), -EINVAL);
	assert_string_equal(err.msg, "a.vhdx: region table 1 at 0x30000");
	assert_int_equal(vdisk_err_prefix(&err, "open: "), -EINVAL);
	assert_string_equal(err.msg, "open: a.vhdx: region table 1 at 0x30000");
	assert_int_equal(err.code, -EINVAL);

	vdisk_err_clear(&err);
	assert_int_equal(err.code, 0);
	assert_string_equal(err.msg, "");
	assert_int_equal(vdisk_err_set(&err, -ENOSPC, "full"), -ENOSPC);
	assert_string_equal(err.msg, "full");

	/* NULL buffers are allowed everywhere */
	assert_int_equal(vdisk_err_set(NULL, -EPERM, "x %d", 1), -EPERM);
	assert_int_equal(vdisk_err_prefix(NULL, "y"), 0);
	vdisk_err_clear(NULL);

	/* long messages are truncated, never overflowed, and a prefix keeps its text */
	char longs[2000];
	memset(longs, 'z', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	vdisk_err_clear(&err);
	vdisk_err_set(&err, -E2BIG, "%s", longs);
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	vdisk_err_prefix(&err, "pre: ");
	assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
	assert_int_equal(strncmp(err.msg, "pre: zzz", 8), 0);
	assert_int_equal(err.code, -E2BIG);

	assert_string_equal(vdisk_version(), VDISK_VERSION_STRING);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vectors),
		cmocka_unit_test(test_crc32c_paths_agree),
		cmocka_unit_test(test_guid_parse_format),
		cmocka_unit_test(test_guid_invalid),
		cmocka_unit_test(test_guid_generate),
		cmocka_unit_test(test_endian),
		cmocka_unit_test(test_err),
	};

	return cmocka_run_group_tests_name("core", tests, NULL, NULL);
}
