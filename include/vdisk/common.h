/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk common definitions: version, export macro, the caller-owned error
 * buffer, GUIDs in Microsoft's on-disk layout, CRC-32C and the extent type
 * that the translate API hands to I/O engines.
 */
#ifndef VDISK_COMMON_H
#define VDISK_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VDISK_VERSION_MAJOR 0
#define VDISK_VERSION_MINOR 1
#define VDISK_VERSION_PATCH 0
#define VDISK_VERSION_STRING "0.1.0"

#define VDISK_API __attribute__((visibility("default")))

/* Runtime version of the library, as "MAJOR.MINOR.PATCH". */
VDISK_API const char *vdisk_version(void);

/*
 * Error buffer owned by the caller; slow-path calls take it as their last
 * parameter and it may be NULL. The first error set wins: later calls to
 * vdisk_err_set() on a buffer that already holds an error are ignored, so a
 * failing cleanup cannot hide the root cause.
 */
struct vdisk_err {
	int code;      /* negative errno, 0 when no error */
	char msg[512]; /* what is wrong and where (file, structure, field, offset) */
};

/* Records @code (a negative errno) and a message unless one is already set. Returns @code. */
VDISK_API int vdisk_err_set(struct vdisk_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prepends a formatted context (typically "FILE: ") to the message already set. Returns the code (0 when @err is NULL: keep your own code). */
VDISK_API int vdisk_err_prefix(struct vdisk_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Clears @err so it can be reused. NULL-safe. */
VDISK_API void vdisk_err_clear(struct vdisk_err *err);

/* A GUID kept in the 16-byte Microsoft on-disk layout (LE32, LE16, LE16, 8 bytes). */
struct vdisk_guid {
	uint8_t b[16];
};

#define VDISK_GUID_STRLEN 37 /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" + NUL */

/* Formats as lower-case 8-4-4-4-12 text into @out (VDISK_GUID_STRLEN bytes). */
VDISK_API void vdisk_guid_format(const struct vdisk_guid *g, char *out);
/* Parses 8-4-4-4-12 text, optionally in braces, any case. Returns 0 or -EINVAL. */
VDISK_API int vdisk_guid_parse(const char *s, struct vdisk_guid *ret_guid);
/* Fills a random version-4 GUID from getrandom(). Returns 0 or -errno. */
VDISK_API int vdisk_guid_generate(struct vdisk_guid *ret_guid);
VDISK_API bool vdisk_guid_is_zero(const struct vdisk_guid *g);
VDISK_API bool vdisk_guid_equal(const struct vdisk_guid *a, const struct vdisk_guid *b);

/*
 * CRC-32C (Castagnoli), the checksum of every VHDX structure. @crc is the
 * running value: pass 0 to start; the usual init/final inversion is applied
 * inside, so vdisk_crc32c(0, "123456789", 9) == 0xE3069283. Uses the SSE4.2
 * instruction when the CPU has it.
 */
VDISK_API uint32_t vdisk_crc32c(uint32_t crc, const void *buf, size_t len);

/*
 * One piece of a translated virtual range. Produced by the translate API of a
 * disk backend and executed by an I/O engine; plain and copyable.
 */
enum vdisk_extent_type {
	VDISK_EXTENT_DATA = 0,        /* read/write @length bytes at @file_offset of @fd */
	VDISK_EXTENT_ZERO = 1,        /* reads as zeros; the image says so explicitly */
	VDISK_EXTENT_UNALLOCATED = 2, /* reads as zeros; nothing allocated anywhere in the chain */
};

struct vdisk_extent {
	uint64_t offset;      /* virtual offset, bytes */
	uint64_t length;      /* bytes */
	uint64_t file_offset; /* DATA only: offset in @fd */
	int fd;               /* DATA only */
	uint16_t type;        /* enum vdisk_extent_type */
	uint16_t layer;       /* chain depth that supplied the data: 0 = the opened image */
	uint32_t reserved;
};

#ifdef __cplusplus
}
#endif

#endif /* VDISK_COMMON_H */
