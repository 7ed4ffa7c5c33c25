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

void test_fill_fast(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
		z ^= z >> 31;
		memcpy(p + i, &z, len - i < 8 ? len - i : 8);
	}
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

/* ---- added for the VHDX tests: SHA-256 and file helpers ---- */

#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>

static const uint32_t sha_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
	0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
	0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
	0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
	0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
	0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
	0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
	0xc67178f2,
};

#define ROR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

/* FIPS 180-4 section 6.2.2, one 64-byte block at a time. */
static void sha256_blocks_c(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	for (; nblocks; nblocks--, p += 64) {
		uint32_t w[64], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5],
				g = h[6], hh = h[7];

		for (int t = 0; t < 16; t++)
			w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
			       (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
		for (int t = 16; t < 64; t++) {
			uint32_t s0 = ROR32(w[t - 15], 7) ^ ROR32(w[t - 15], 18) ^ (w[t - 15] >> 3);
			uint32_t s1 = ROR32(w[t - 2], 17) ^ ROR32(w[t - 2], 19) ^ (w[t - 2] >> 10);
			w[t] = w[t - 16] + s0 + w[t - 7] + s1;
		}
		for (int t = 0; t < 64; t++) {
			uint32_t t1 = hh + (ROR32(e, 6) ^ ROR32(e, 11) ^ ROR32(e, 25)) +
				      ((e & f) ^ (~e & g)) + sha_k[t] + w[t];
			uint32_t t2 = (ROR32(a, 2) ^ ROR32(a, 13) ^ ROR32(a, 22)) +
				      ((a & b) ^ (a & c) ^ (b & c));
			hh = g;
			g = f;
			f = e;
			e = d + t1;
			d = c;
			c = b;
			b = a;
			a = t1 + t2;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
		h[5] += f;
		h[6] += g;
		h[7] += hh;
	}
}

/* The same with the SHA extensions: state kept as ABEF/CDGH, four rounds per step. */
__attribute__((target("sha,sse4.1,ssse3"))) static void
sha256_blocks_ni(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i t = _mm_loadu_si128((const __m128i *)&h[0]);
	__m128i s1 = _mm_loadu_si128((const __m128i *)&h[4]);
	__m128i s0;

	t = _mm_shuffle_epi32(t, 0xB1);
	s1 = _mm_shuffle_epi32(s1, 0x1B);
	s0 = _mm_alignr_epi8(t, s1, 8);
	s1 = _mm_blend_epi16(s1, t, 0xF0);
	for (; nblocks; nblocks--, p += 64) {
		__m128i save0 = s0, save1 = s1, m[4], msg;

		for (int i = 0; i < 16; i++) {
			if (i < 4) {
				m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)),
							bswap);
			} else {
				__m128i x = _mm_sha256msg1_epu32(m[i % 4], m[(i + 1) % 4]);
				x = _mm_add_epi32(x, _mm_alignr_epi8(m[(i + 3) % 4], m[(i + 2) % 4], 4));
				m[i % 4] = _mm_sha256msg2_epu32(x, m[(i + 3) % 4]);
			}
			msg = _mm_add_epi32(m[i % 4], _mm_loadu_si128((const __m128i *)&sha_k[4 * i]));
			s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
			msg = _mm_shuffle_epi32(msg, 0x0E);
			s0 = _mm_sha256rnds2_epu32(s0, s1, msg);
		}
		s0 = _mm_add_epi32(s0, save0);
		s1 = _mm_add_epi32(s1, save1);
	}
	t = _mm_shuffle_epi32(s0, 0x1B);
	s1 = _mm_shuffle_epi32(s1, 0xB1);
	s0 = _mm_blend_epi16(t, s1, 0xF0);
	s1 = _mm_alignr_epi8(s1, t, 8);
	_mm_storeu_si128((__m128i *)&h[0], s0);
	_mm_storeu_si128((__m128i *)&h[4], s1);
}

int test_sha256_force_portable;

static void sha256_blocks(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
	static int have_ni = -1;

	if (have_ni < 0) {
		unsigned a, b, c, d;
		have_ni = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) &&
			  __builtin_cpu_supports("sse4.1");
	}
	if (have_ni && !test_sha256_force_portable)
		sha256_blocks_ni(h, p, nblocks);
	else
		sha256_blocks_c(h, p, nblocks);
}

void test_sha256_init(struct test_sha256 *s)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };

	memcpy(s->h, iv, sizeof(iv));
	s->total = 0;
	s->fill = 0;
}

void test_sha256_update(struct test_sha256 *s, const void *data, size_t len)
{
	const uint8_t *p = data;

	s->total += len;
	if (s->fill) {
		size_t n = 64 - s->fill < len ? 64 - s->fill : len;
		memcpy(s->buf + s->fill, p, n);
		s->fill += n;
		p += n;
		len -= n;
		if (s->fill < 64)
			return;
		sha256_blocks(s->h, s->buf, 1);
		s->fill = 0;
	}
	if (len >= 64) {
		sha256_blocks(s->h, p, len / 64);
		p += len / 64 * 64;
		len %= 64;
	}
	memcpy(s->buf, p, len);
	s->fill = len;
}

void test_sha256_final_hex(struct test_sha256 *s, char hex[65])
{
	uint64_t bits = s->total * 8;
	uint8_t pad[72] = { 0x80 };
	size_t padlen = (s->fill < 56 ? 56 : 120) - s->fill;

	for (int i = 0; i < 8; i++)
		pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
	test_sha256_update(s, pad, padlen + 8);
	for (int i = 0; i < 8; i++)
		snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
}

int test_sha256_file(const char *path, char hex[65])
{
	struct test_sha256 s;
	uint8_t *buf = malloc(1 << 20);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0 || !buf) {
		free(buf);
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	test_sha256_init(&s);
	while ((n = read(fd, buf, 1 << 20)) > 0)
		test_sha256_update(&s, buf, (size_t)n);
	close(fd);
	free(buf);
	if (n < 0)
		return -EIO;
	test_sha256_final_hex(&s, hex);
	return 0;
}

uint8_t *test_read_file(const char *path, size_t *ret_len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return NULL;
	}
	for (size_t done = 0; done < (size_t)st.st_size;) {
		ssize_t n = pread(fd, buf + done, (size_t)st.st_size - done, (off_t)done);
		if (n <= 0) {
			free(buf);
			close(fd);
			return NULL;
		}
		done += (size_t)n;
	}
	close(fd);
	*ret_len = (size_t)st.st_size;
	return buf;
}

int test_copy_file(const char *src, const char *dst)
{
	return test_system("cp --sparse=always '%s' '%s'", src, dst);
}

int test_files_equal(const char *a, const char *b)
{
	return test_system("cmp -s '%s' '%s'", a, b) == 0;
}

static int file_io(const char *path, void *buf, size_t len, uint64_t off, int write)
{
	int fd = open(path, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	size_t done = 0;

	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t n = write ? pwrite(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done))
				  : pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
		if (n <= 0) {
			close(fd);
			return n < 0 ? -errno : -EIO;
		}
		done += (size_t)n;
	}
	close(fd);
	return 0;
}

int test_file_pread(const char *path, void *buf, size_t len, uint64_t off)
{
	return file_io(path, buf, len, off, 0);
}

int test_file_pwrite(const char *path, const void *buf, size_t len, uint64_t off)
{
	return file_io(path, (void *)buf, len, off, 1);
}

int test_have_program(const char *name)
{
	if (test_system("command -v '%s' >/dev/null 2>&1", name) == 0)
		return 1;
	fprintf(stderr, "required peer program %s is not installed (run scripts/setup.sh)\n", name);
	return 0;
}

#include <vdisk/vhdx.h>

int test_vhdx_sha256(struct vhdx_image *img, char hex[65])
{
	/* zero extents are hashed from one small zero buffer, data is read with vhdx_pread */
	const size_t chunk = 1 << 20;
	uint64_t size = vhdx_disk_size(img), off = 0;
	struct vdisk_extent ext[64];
	struct test_sha256 s;
	uint8_t *buf = malloc(chunk), *zero = calloc(1, chunk);

	if (!buf || !zero) {
		free(buf);
		free(zero);
		return -ENOMEM;
	}
	test_sha256_init(&s);
	while (off < size) {
		int n = vhdx_translate(img, off, size - off > (1ULL << 30) ? 1ULL << 30 : size - off,
				       ext, 64);
		if (n <= 0) {
			free(buf);
			free(zero);
			return n < 0 ? n : -EIO;
		}
		for (int i = 0; i < n; i++) {
			for (uint64_t p = 0; p < ext[i].length;) {
				size_t m = ext[i].length - p < chunk ? (size_t)(ext[i].length - p) : chunk;
				int r = 0;
				if (ext[i].type == VDISK_EXTENT_DATA)
					r = vhdx_pread(img, buf, m, ext[i].offset + p);
				if (r < 0) {
					free(buf);
					free(zero);
					return r;
				}
				test_sha256_update(&s, ext[i].type == VDISK_EXTENT_DATA ? buf : zero, m);
				p += m;
			}
			off += ext[i].length;
		}
	}
	free(buf);
	free(zero);
	test_sha256_final_hex(&s, hex);
	return 0;
}

int test_vhdx_sha256_path(const char *path, unsigned flags, char hex[65])
{
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vdisk_err err = { 0 };
	int r;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = flags;
	r = vhdx_open(path, &o, &img, &err);
	if (r < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return r;
	}
	r = test_vhdx_sha256(img, hex);
	vhdx_close(img, NULL);
	return r;
}

/* cmocka's fail_msg needs these before its header */
#include <setjmp.h>
#include <stddef.h>
#include <cmocka.h>

void test_create_image_sectors(const char *path, enum vhdx_type type, uint64_t size, uint32_t bs,
			       uint32_t lsec, uint32_t psec, const char *parent)
{
	struct vhdx_create_opts o;
	struct vdisk_err err = { 0 };

	vhdx_create_opts_init(&o, sizeof(o));
	o.type = type;
	o.disk_size_bytes = size;
	o.block_size_bytes = bs;
	o.logical_sector_bytes = lsec;
	o.physical_sector_bytes = psec;
	o.parent_path = parent;
	o.overwrite = true;
	if (vhdx_create(path, &o, &err) < 0)
		fail_msg("vhdx_create %s: %s", path, err.msg);
}

void test_create_image(const char *path, enum vhdx_type type, uint64_t size, uint32_t bs,
		       const char *parent)
{
	test_create_image_sectors(path, type, size, bs, 0, 0, parent);
}

struct vhdx_image *test_open_image(const char *path, unsigned flags)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img = NULL;
	struct vdisk_err err = { 0 };

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = flags;
	if (vhdx_open(path, &o, &img, &err) < 0)
		fail_msg("open %s: %s", path, err.msg);
	return img;
}
