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
/* The same kind of data 8 bytes per step (for large buffers; another sequence than the above). */
void test_fill_fast(void *buf, size_t len, uint64_t seed);
/* Runs a shell command; returns its exit status (or -1). */
int test_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#include <vdisk/vhdx.h>
/* Creates (overwriting) an image of @type, @size bytes, block size @bs (0: default), child of
 * @parent when not NULL; fails the running cmocka test with the library's message otherwise. */
void test_create_image(const char *path, enum vhdx_type type, uint64_t size, uint32_t bs,
		       const char *parent);
/* The same with sector sizes (0: the library's defaults). */
void test_create_image_sectors(const char *path, enum vhdx_type type, uint64_t size, uint32_t bs,
			       uint32_t lsec, uint32_t psec, const char *parent);
/* Opens @path with @flags (VHDX_OPEN_*); fails the test, with the library's message, if it cannot. */
struct vhdx_image *test_open_image(const char *path, unsigned flags);

#endif

/* ---- added for the VHDX tests ---- */

/* SHA-256, incremental (uses the SHA-NI instructions when the CPU has them). */
struct test_sha256 {
	uint32_t h[8];
	uint64_t total;
	uint8_t buf[64];
	size_t fill;
};
void test_sha256_init(struct test_sha256 *s);
/* Non-zero: use the portable code even when the CPU has SHA-NI (to test both). */
extern int test_sha256_force_portable;
void test_sha256_update(struct test_sha256 *s, const void *data, size_t len);
/* Writes 64 lower-case hex digits and a NUL into @hex. */
void test_sha256_final_hex(struct test_sha256 *s, char hex[65]);
/* SHA-256 (hex) of a whole file; 0 or -errno. */
int test_sha256_file(const char *path, char hex[65]);
/* Reads a whole file into a malloc'd buffer; NULL on failure. */
uint8_t *test_read_file(const char *path, size_t *ret_len);
/* Copies @src to @dst (sparse-aware via cp); 0 on success. */
int test_copy_file(const char *src, const char *dst);
/* True when both files exist and have identical bytes. */
int test_files_equal(const char *a, const char *b);
/* pread/pwrite of exactly @len bytes at @off of the file at @path; 0 or -errno. */
int test_file_pread(const char *path, void *buf, size_t len, uint64_t off);
int test_file_pwrite(const char *path, const void *buf, size_t len, uint64_t off);
/* True when NAME is on PATH; prints why to stderr when not. */
int test_have_program(const char *name);

struct vhdx_image;
/* SHA-256 (hex) of the whole virtual disk of @img read through vhdx_pread; 0 or -errno. */
int test_vhdx_sha256(struct vhdx_image *img, char hex[65]);
/* Opens @path with VHDX_OPEN_* @flags, hashes its virtual disk, closes; 0 or -errno. */
int test_vhdx_sha256_path(const char *path, unsigned flags, char hex[65]);
