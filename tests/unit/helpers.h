/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared helpers for the cmocka unit tests: scratch files and fixture paths. */
#ifndef VDISK_TEST_HELPERS_H
#define VDISK_TEST_HELPERS_H

#include <stddef.h>
#include <stdint.h>

/* A fresh path "DIR/NAME" in the test scratch folder (VDISK_TEST_TMPDIR or /tmp). Static buffer per call slot. */
const char *test_tmp_path(const char *name);
/* Path of a file in the shared Windows fixtures folder, or NULL when VDISK_SHARED is not set. */
const char *test_shared_fixture(const char *name);
/* Decompresses a .gz fixture to a scratch file (via gzip -dc); returns its path or NULL. */
const char *test_gunzip_fixture(const char *gz_name, const char *out_name);
/* Deterministic pseudo-random bytes (xorshift) for test data. */
void test_fill_pattern(void *buf, size_t len, uint64_t seed);
/* Runs a shell command; returns its exit status (or -1). */
int test_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
