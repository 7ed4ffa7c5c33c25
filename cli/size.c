/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one size parser of the vdisk tool (create SIZE, --block-size, read and
 * write offsets...). Strict on purpose: a typo must not become a size.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "size.h"

struct size_suffix {
	char letter;
	unsigned shift;
};

static const struct size_suffix suffixes[] = {
	{ 'b', 0 }, { 'k', 10 }, { 'm', 20 }, { 'g', 30 }, { 't', 40 }, { 'p', 50 }, { 'e', 60 },
};

/* Returns the shift for suffix text @s ("" "K" "KiB" "k" "kib" ...), or -1. */
static int suffix_shift(const char *s)
{
	size_t i;
	char c = s[0];

	if (c == '\0')
		return 0;
	if (c >= 'A' && c <= 'Z')
		c = (char)(c - 'A' + 'a');
	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (suffixes[i].letter != c)
			continue;
		if (s[1] == '\0')
			return (int)suffixes[i].shift;
		/* "KiB" etc.; "BiB" makes no sense */
		if (c != 'b' && strcasecmp(s + 1, "ib") == 0)
			return (int)suffixes[i].shift;
		return -1;
	}
	return -1;
}

int vdisk_parse_size(const char *s, uint64_t *ret_bytes)
{
	uint64_t v = 0;
	const char *p = s;
	int shift;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return -ERANGE;
	}
	shift = suffix_shift(p);
	if (shift < 0)
		return -EINVAL;
	if (shift > 0 && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret_bytes = v << shift;
	return 0;
}
