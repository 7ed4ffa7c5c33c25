/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * GUIDs in the Microsoft binary layout: the first three fields are
 * little-endian integers, the last eight bytes are stored in order
 * (MS-VHDX 2.1 / vhdx-format.md section 1).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <vdisk/common.h>

#include "byteorder.h"

void vdisk_guid_format(const struct vdisk_guid *g, char *out)
{
	const uint8_t *b = g->b;

	snprintf(out, VDISK_GUID_STRLEN, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 get_le32(b), get_le16(b + 4), get_le16(b + 6), b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int vdisk_guid_parse(const char *s, struct vdisk_guid *ret_guid)
{
	static const int group_len[5] = { 8, 4, 4, 4, 12 };
	uint8_t raw[16];
	size_t n = 0;
	bool brace = false;

	if (*s == '{') {
		brace = true;
		s++;
	}
	for (int g = 0; g < 5; g++) {
		for (int i = 0; i < group_len[g]; i += 2) {
			int hi = hexval((unsigned char)s[0]), lo;
			if (hi < 0)
				return -EINVAL;
			lo = hexval((unsigned char)s[1]);
			if (lo < 0)
				return -EINVAL;
			raw[n++] = (uint8_t)(hi << 4 | lo);
			s += 2;
		}
		if (g < 4 && *s++ != '-')
			return -EINVAL;
	}
	if (brace && *s++ != '}')
		return -EINVAL;
	if (*s != '\0')
		return -EINVAL;
	/* raw is in text (big-endian) order; store the first three fields LE */
	ret_guid->b[0] = raw[3];
	ret_guid->b[1] = raw[2];
	ret_guid->b[2] = raw[1];
	ret_guid->b[3] = raw[0];
	ret_guid->b[4] = raw[5];
	ret_guid->b[5] = raw[4];
	ret_guid->b[6] = raw[7];
	ret_guid->b[7] = raw[6];
	memcpy(ret_guid->b + 8, raw + 8, 8);
	return 0;
}

int vdisk_guid_generate(struct vdisk_guid *ret_guid)
{
	struct vdisk_guid g;
	size_t got = 0;

	while (got < sizeof(g.b)) {
		ssize_t r = getrandom(g.b + got, sizeof(g.b) - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)r;
	}
	g.b[7] = (uint8_t)((g.b[7] & 0x0f) | 0x40); /* version 4 (high nibble of field 3) */
	g.b[8] = (uint8_t)((g.b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	*ret_guid = g;
	return 0;
}

bool vdisk_guid_is_zero(const struct vdisk_guid *g)
{
	static const struct vdisk_guid zero;
	return memcmp(g->b, zero.b, sizeof(zero.b)) == 0;
}

bool vdisk_guid_equal(const struct vdisk_guid *a, const struct vdisk_guid *b)
{
	return memcmp(a->b, b->b, sizeof(a->b)) == 0;
}
