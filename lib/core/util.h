/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small internal helpers shared by every library: cleanup, overflow, alignment, full I/O. */
#ifndef VDISK_UTIL_H
#define VDISK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))
#define ROUND_UP(n, a) (DIV_ROUND_UP(n, a) * (a))
#define IS_ALIGNED(n, a) (((n) & ((a)-1)) == 0)
#define IS_POW2(n) ((n) != 0 && ((n) & ((n)-1)) == 0)
/*
 * Overlays a caller's size-versioned options @src (struct_size first, as the
 * caller's header knew the struct; NULL: none) on @dst, which holds the
 * defaults: reads no further than the caller's struct_size, and @dst keeps
 * its own struct_size.
 */
#define VDISK_OPTS_OVERLAY(dst, src)                                                   \
	do {                                                                           \
		size_t opts_size_ = (dst)->struct_size;                                \
		if (src)                                                               \
			memcpy((dst), (src), MIN((src)->struct_size, sizeof(*(dst)))); \
		(dst)->struct_size = opts_size_;                                       \
	} while (0)

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define KiB (1ULL << 10)
#define MiB (1ULL << 20)
#define GiB (1ULL << 30)
#define TiB (1ULL << 40)

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define VDISK_AUTOFREE __attribute__((cleanup(freep)))

#define TAKE_PTR(p)                        \
	({                                 \
		__typeof__(p) _tp_ = (p);  \
		(p) = NULL;                \
		_tp_;                      \
	})

static inline bool add_overflows_u64(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_add_overflow(a, b, r);
}

static inline bool mul_overflows_u64(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_mul_overflow(a, b, r);
}

/* Page-aligned (4 KiB) allocation usable for O_DIRECT; zeroed. NULL on failure. */
void *vdisk_aligned_alloc(size_t len);

/* pread/pwrite that loop until done. Return 0, -errno, or -EIO on a short read past EOF. */
int vdisk_pread_full(int fd, void *buf, size_t len, uint64_t off);
int vdisk_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Like vdisk_pread_full, but bytes past end of file read as zeros. */
int vdisk_pread_zfill(int fd, void *buf, size_t len, uint64_t off);

/* Takes an OFD lock on the whole file: exclusive when @write. -EAGAIN when another holds it. */
int vdisk_lock_fd(int fd, bool write);

/* True when all @len bytes are zero. */
bool vdisk_is_zero(const void *buf, size_t len);

/* CRC-32C internals, for tests: the portable path, and forcing it (1) or the automatic choice (0). */
uint32_t vdisk_crc32c_sw(uint32_t crc, const uint8_t *p, size_t len);
void vdisk_crc32c_force_sw(int sw);

#endif /* VDISK_UTIL_H */
