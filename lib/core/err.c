/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The caller-owned error buffer: first error wins, context is prepended. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <vdisk/common.h>

const char *vdisk_version(void)
{
	return VDISK_VERSION_STRING;
}

int vdisk_err_set(struct vdisk_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err || err->code != 0)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int vdisk_err_prefix(struct vdisk_err *err, const char *fmt, ...)
{
	char pre[sizeof(err->msg)];
	char old[sizeof(err->msg)];
	va_list ap;

	if (!err)
		return 0;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	size_t n = strnlen(pre, sizeof(err->msg) - 1);
	memcpy(err->msg, pre, n);
	size_t m = strnlen(old, sizeof(old));
	if (m > sizeof(err->msg) - 1 - n)
		m = sizeof(err->msg) - 1 - n;
	memcpy(err->msg + n, old, m);
	err->msg[n + m] = '\0';
	return err->code;
}

void vdisk_err_clear(struct vdisk_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
