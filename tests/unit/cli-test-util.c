/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit test of the vdisk tool's pure helpers: the size parser (a table of
 * accepted and rejected strings, including overflow at the edges) and the
 * JSON writer (escaping, invalid UTF-8, nesting, misuse), all compared
 * byte for byte with the expected text.
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

#include "json.h"
#include "size.h"

struct size_case {
	const char *in;
	int ret;
	uint64_t bytes;
};

static const struct size_case size_cases[] = {
	{ "0", 0, 0 },
	{ "1", 0, 1 },
	{ "512", 0, 512 },
	{ "4096", 0, 4096 },
	{ "1B", 0, 1 },
	{ "1b", 0, 1 },
	{ "1K", 0, 1024 },
	{ "1k", 0, 1024 },
	{ "1KiB", 0, 1024 },
	{ "1kib", 0, 1024 },
	{ "64K", 0, 65536 },
	{ "1M", 0, 1ULL << 20 },
	{ "32MiB", 0, 32ULL << 20 },
	{ "1G", 0, 1ULL << 30 },
	{ "10GiB", 0, 10ULL << 30 },
	{ "1T", 0, 1ULL << 40 },
	{ "64TiB", 0, 64ULL << 40 },
	{ "1P", 0, 1ULL << 50 },
	{ "15E", 0, 15ULL << 60 },
	{ "007", 0, 7 },
	{ "18446744073709551615", 0, UINT64_MAX },
	{ "18446744073709551616", -ERANGE, 0 },
	{ "99999999999999999999999", -ERANGE, 0 },
	{ "16E", -ERANGE, 0 },
	{ "16384P", -ERANGE, 0 },
	{ "17179869184G", -ERANGE, 0 },
	{ "17179869183G", 0, 17179869183ULL << 30 },
	{ "", -EINVAL, 0 },
	{ "K", -EINVAL, 0 },
	{ "-1", -EINVAL, 0 },
	{ "+1", -EINVAL, 0 },
	{ " 1", -EINVAL, 0 },
	{ "1 ", -EINVAL, 0 },
	{ "1 K", -EINVAL, 0 },
	{ "1.5G", -EINVAL, 0 },
	{ "0x10", -EINVAL, 0 },
	{ "1KB", -EINVAL, 0 },
	{ "1BiB", -EINVAL, 0 },
	{ "1Ki", -EINVAL, 0 },
	{ "1KiBs", -EINVAL, 0 },
	{ "1X", -EINVAL, 0 },
	{ "1Z", -EINVAL, 0 },
	{ "10M10", -EINVAL, 0 },
	{ "abc", -EINVAL, 0 },
};

static void test_parse_size(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
		const struct size_case *c = &size_cases[i];
		uint64_t v = 0xdeadbeef;
		int r = vdisk_parse_size(c->in, &v);

		if (r != c->ret || (r == 0 && v != c->bytes))
			fail_msg("vdisk_parse_size(\"%s\") = %d, %llu; expected %d, %llu", c->in, r,
				 (unsigned long long)v, c->ret, (unsigned long long)c->bytes);
		/* the output is written only on success */
		if (r != 0)
			assert_int_equal(v, 0xdeadbeef);
	}
	assert_int_equal(vdisk_parse_size(NULL, &(uint64_t){ 0 }), -EINVAL);
}

/* Runs @fn on a writer over a memory stream and returns the text (caller frees). */
static char *capture(void (*fn)(struct json_writer *w), int *ret_finish)
{
	struct json_writer w;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	json_init(&w, f);
	fn(&w);
	*ret_finish = json_finish(&w);
	fclose(f);
	return buf;
}

struct escape_case {
	const char *in;
	const char *out;
};

static const struct escape_case escape_cases[] = {
	{ "", "\"\"" },
	{ "a.vhdx", "\"a.vhdx\"" },
	{ "say \"hi\"", "\"say \\\"hi\\\"\"" },
	{ "C:\\dir\\a.vhdx", "\"C:\\\\dir\\\\a.vhdx\"" },
	{ "tab\there", "\"tab\\there\"" },
	{ "nl\ncr\r", "\"nl\\ncr\\r\"" },
	{ "\b\f", "\"\\b\\f\"" },
	{ "\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"" },
	{ "/slash/", "\"/slash/\"" },
	{ "caf\xc3\xa9", "\"caf\xc3\xa9\"" },                       /* valid 2-byte UTF-8 kept */
	{ "\xe2\x82\xac", "\"\xe2\x82\xac\"" },                     /* euro sign, 3 bytes */
	{ "\xf0\x9f\x92\xbe", "\"\xf0\x9f\x92\xbe\"" },             /* floppy disk, 4 bytes */
	{ "bad\xff", "\"bad\\ufffd\"" },                            /* invalid byte */
	{ "\xc3", "\"\\ufffd\"" },                                  /* truncated sequence */
	{ "\xc3(", "\"\\ufffd(\"" },                                /* bad continuation */
	{ "\xc0\xaf", "\"\\ufffd\\ufffd\"" },                       /* overlong '/' */
	{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },            /* UTF-16 surrogate */
	{ "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" }, /* > U+10FFFF */
};

static void test_escape(void **state)
{
	size_t i, len;

	for (i = 0; i < sizeof(escape_cases) / sizeof(escape_cases[0]); i++) {
		char *buf = NULL;
		FILE *f = open_memstream(&buf, &len);

		assert_non_null(f);
		json_write_escaped(f, escape_cases[i].in);
		fclose(f);
		if (strcmp(buf, escape_cases[i].out) != 0)
			fail_msg("case %zu: got %s, expected %s", i, buf, escape_cases[i].out);
		free(buf);
	}
}

static void doc_info(struct json_writer *w)
{
	json_object_begin(w, NULL);
	json_u64(w, "virtual-size", 18446744073709551615ULL);
	json_string(w, "filename", "a \"b\".vhdx");
	json_i64(w, "neg", -5);
	json_bool(w, "dirty-flag", false);
	json_null(w, "none");
	json_string(w, "nullstr", NULL);
	json_object_begin(w, "empty");
	json_object_end(w);
	json_array_begin(w, "list");
	json_u64(w, NULL, 1);
	json_object_begin(w, NULL);
	json_bool(w, "t", true);
	json_object_end(w);
	json_array_end(w);
	json_object_end(w);
}

static const char doc_info_text[] = "{\n"
				    "    \"virtual-size\": 18446744073709551615,\n"
				    "    \"filename\": \"a \\\"b\\\".vhdx\",\n"
				    "    \"neg\": -5,\n"
				    "    \"dirty-flag\": false,\n"
				    "    \"none\": null,\n"
				    "    \"nullstr\": null,\n"
				    "    \"empty\": {},\n"
				    "    \"list\": [\n"
				    "        1,\n"
				    "        {\n"
				    "            \"t\": true\n"
				    "        }\n"
				    "    ]\n"
				    "}\n";

static void doc_empty_array(struct json_writer *w)
{
	json_array_begin(w, NULL);
	json_array_end(w);
}

static void doc_unclosed(struct json_writer *w)
{
	json_object_begin(w, NULL);
	json_u64(w, "a", 1);
}

static void doc_overclosed(struct json_writer *w)
{
	json_array_begin(w, NULL);
	json_array_end(w);
	json_array_end(w);
}

static void doc_two_roots(struct json_writer *w)
{
	json_u64(w, NULL, 1);
	json_u64(w, NULL, 2);
}

static void doc_too_deep(struct json_writer *w)
{
	int i;

	for (i = 0; i < JSON_MAX_DEPTH + 1; i++)
		json_array_begin(w, NULL);
	for (i = 0; i < JSON_MAX_DEPTH + 1; i++)
		json_array_end(w);
}

struct doc_case {
	void (*fn)(struct json_writer *w);
	const char *text; /* NULL: not compared */
	int finish;
};

static const struct doc_case doc_cases[] = {
	{ doc_info, doc_info_text, 0 }, { doc_empty_array, "[]\n", 0 },
	{ doc_unclosed, NULL, -EIO },   { doc_overclosed, NULL, -EIO },
	{ doc_two_roots, NULL, -EIO },  { doc_too_deep, NULL, -EIO },
};

static void test_documents(void **state)
{
	size_t i;
	int fin;

	for (i = 0; i < sizeof(doc_cases) / sizeof(doc_cases[0]); i++) {
		char *text = capture(doc_cases[i].fn, &fin);

		if (fin != doc_cases[i].finish)
			fail_msg("doc %zu: json_finish %d, expected %d", i, fin,
				 doc_cases[i].finish);
		if (doc_cases[i].text && strcmp(text, doc_cases[i].text) != 0)
			fail_msg("doc %zu: got\n%s\nexpected\n%s", i, text, doc_cases[i].text);
		free(text);
	}
}

/* A failed write (full device) must surface in json_finish(). */
static void test_write_error(void **state)
{
	struct json_writer w;
	FILE *f = fopen("/dev/full", "w");
	int i;

	if (!f)
		skip();
	json_init(&w, f);
	json_array_begin(&w, NULL);
	for (i = 0; i < 10000; i++)
		json_string(&w, NULL, "fill the stdio buffer past its size");
	json_array_end(&w);
	assert_int_equal(json_finish(&w), -EIO);
	fclose(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_documents),
		cmocka_unit_test(test_write_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
