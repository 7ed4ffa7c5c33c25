/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The JSON writer behind every --json output of the vdisk tool. It keeps a
 * per-level "has items" flag to place commas and newlines; values are
 * written as they come, so output streams (map of a huge disk) without a
 * document tree in memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "json.h"

void json_init(struct json_writer *w, FILE *f)
{
	memset(w, 0, sizeof(*w));
	w->f = f;
}

static void indent(struct json_writer *w)
{
	unsigned i;

	for (i = 0; i < w->depth; i++)
		fputs("    ", w->f);
}

/* Writes the separator, indentation and "key": that precede a value. */
static void member(struct json_writer *w, const char *key)
{
	if (w->depth > 0) {
		fputs(w->has_items[w->depth] ? ",\n" : "\n", w->f);
		indent(w);
	} else if (w->has_items[0]) {
		w->error = true; /* a second top-level value */
	}
	w->has_items[w->depth] = true;
	if (key) {
		json_write_escaped(w->f, key);
		fputs(": ", w->f);
	}
}

static void open_level(struct json_writer *w, const char *key, char c)
{
	member(w, key);
	fputc(c, w->f);
	if (w->depth >= JSON_MAX_DEPTH) {
		w->error = true;
		return;
	}
	w->depth++;
	w->has_items[w->depth] = false;
}

static void close_level(struct json_writer *w, char c)
{
	if (w->depth == 0) {
		w->error = true;
		return;
	}
	w->depth--;
	if (w->has_items[w->depth + 1]) {
		fputc('\n', w->f);
		indent(w);
	}
	fputc(c, w->f);
}

void json_object_begin(struct json_writer *w, const char *key)
{
	open_level(w, key, '{');
}

void json_object_end(struct json_writer *w)
{
	close_level(w, '}');
}

void json_array_begin(struct json_writer *w, const char *key)
{
	open_level(w, key, '[');
}

void json_array_end(struct json_writer *w)
{
	close_level(w, ']');
}

/* Length of the valid UTF-8 sequence at @p (1-4), or 0 when it is not valid. */
static size_t utf8_len(const unsigned char *p)
{
	unsigned cp;
	size_t n, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* overlong forms, UTF-16 surrogates, beyond U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void write_escaped_char(FILE *f, unsigned char c)
{
	switch (c) {
	case '"':
		fputs("\\\"", f);
		break;
	case '\\':
		fputs("\\\\", f);
		break;
	case '\b':
		fputs("\\b", f);
		break;
	case '\f':
		fputs("\\f", f);
		break;
	case '\n':
		fputs("\\n", f);
		break;
	case '\r':
		fputs("\\r", f);
		break;
	case '\t':
		fputs("\\t", f);
		break;
	default:
		if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
}

void json_write_escaped(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	fputc('"', f);
	while (*p) {
		n = utf8_len(p);
		if (n == 0) {
			fputs("\\ufffd", f);
			p++;
		} else if (n == 1) {
			write_escaped_char(f, *p++);
		} else {
			fwrite(p, 1, n, f);
			p += n;
		}
	}
	fputc('"', f);
}

void json_string(struct json_writer *w, const char *key, const char *val)
{
	member(w, key);
	if (val)
		json_write_escaped(w->f, val);
	else
		fputs("null", w->f);
}

void json_u64(struct json_writer *w, const char *key, uint64_t val)
{
	member(w, key);
	fprintf(w->f, "%" PRIu64, val);
}

void json_i64(struct json_writer *w, const char *key, int64_t val)
{
	member(w, key);
	fprintf(w->f, "%" PRId64, val);
}

void json_bool(struct json_writer *w, const char *key, bool val)
{
	member(w, key);
	fputs(val ? "true" : "false", w->f);
}

void json_null(struct json_writer *w, const char *key)
{
	member(w, key);
	fputs("null", w->f);
}

int json_finish(struct json_writer *w)
{
	if (w->depth != 0)
		w->error = true;
	fputc('\n', w->f);
	if (fflush(w->f) != 0 || ferror(w->f))
		w->error = true;
	return w->error ? -EIO : 0;
}
