/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small streaming JSON writer for the tool's --json output, indented four
 * spaces like qemu-img's. Every value call takes the member name: pass a key
 * inside an object and NULL inside an array or at the top level. Strings are
 * escaped per RFC 8259 and bytes that are not valid UTF-8 become U+FFFD, so
 * file names never produce invalid JSON.
 */
#ifndef VDISK_CLI_JSON_H
#define VDISK_CLI_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

struct json_writer {
	FILE *f;
	unsigned depth;
	bool has_items[JSON_MAX_DEPTH + 1]; /* a member was written at this level */
	bool error;                         /* nesting misuse or a failed write */
};

void json_init(struct json_writer *w, FILE *f);
void json_object_begin(struct json_writer *w, const char *key);
void json_object_end(struct json_writer *w);
void json_array_begin(struct json_writer *w, const char *key);
void json_array_end(struct json_writer *w);
void json_string(struct json_writer *w, const char *key, const char *val); /* NULL: null */
void json_u64(struct json_writer *w, const char *key, uint64_t val);
void json_i64(struct json_writer *w, const char *key, int64_t val);
void json_bool(struct json_writer *w, const char *key, bool val);
void json_null(struct json_writer *w, const char *key);
/* Ends the document with a newline and flushes. Returns 0, or -EIO on misuse or a write error. */
int json_finish(struct json_writer *w);

/* Writes @s as a quoted, escaped JSON string. Exposed for tests. */
void json_write_escaped(FILE *f, const char *s);

#endif /* VDISK_CLI_JSON_H */
