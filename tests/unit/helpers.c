/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared helpers for the cmocka unit tests. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static const char *tmpdir(void)
{
	static char dir[512];

	if (!dir[0]) {
		const char *d = getenv("VDISK_TEST_TMPDIR");
		snprintf(dir, sizeof(dir), "%s/%d", d && *d ? d : "/tmp/vdisk-test", (int)getpid());
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
		if (system(cmd) != 0)
			abort();
	}
	return dir;
}

const char *test_tmp_path(const char *name)
{
	static char bufs[8][600];
	static int slot;
	char *b = bufs[slot++ & 7];

	snprintf(b, sizeof(bufs[0]), "%s/%s", tmpdir(), name);
	return b;
}

const char *test_shared_fixture(const char *name)
{
	static char b[600];
	const char *d = getenv("VDISK_SHARED");

	if (!d || !*d)
		return NULL;
	snprintf(b, sizeof(b), "%s/fixtures/windows/%s", d, name);
	return access(b, R_OK) == 0 ? b : NULL;
}

const char *test_gunzip_fixture(const char *gz_name, const char *out_name)
{
	const char *src = test_shared_fixture(gz_name);
	const char *dst;

	if (!src)
		return NULL;
	dst = test_tmp_path(out_name);
	if (test_system("gzip -dc '%s' > '%s'", src, dst) != 0)
		return NULL;
	return dst;
}

void test_fill_pattern(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

int test_system(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st < 0 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}
