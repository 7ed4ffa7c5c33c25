/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk disk interface: one handle type over every backend (raw file or
 * block device, VHDX chain), so the CLI, the FUSE front end and the daemon
 * do not care what they serve. The format is probed by content.
 */
#ifndef VDISK_DISK_H
#define VDISK_DISK_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum vdisk_format {
	VDISK_FORMAT_AUTO = 0, /* probe: VHDX when the identifier is there, else raw */
	VDISK_FORMAT_RAW = 1,
	VDISK_FORMAT_VHDX = 2,
};

enum {
	VDISK_OPEN_RDONLY = 1 << 0,
	VDISK_OPEN_DIRECT = 1 << 1,
	VDISK_OPEN_NOLOCK = 1 << 2,
};

struct vdisk_disk;

/* Opens @path as @fmt (AUTO probes). Returns 0 or -errno with @err set. */
VDISK_API int vdisk_disk_open(const char *path, enum vdisk_format fmt, unsigned flags,
			      struct vdisk_disk **ret_disk, struct vdisk_err *err);

/*
 * Options of vdisk_disk_open_opts(). Fill with vdisk_disk_opts_init() first:
 * fields are only appended, and the library reads only the first
 * @struct_size bytes, so a program built against an older header keeps
 * working.
 */
struct vdisk_disk_opts {
	size_t struct_size;             /* sizeof(struct vdisk_disk_opts) as the caller knows it */
	unsigned flags;                 /* VDISK_OPEN_* */
	/*
	 * VHDX chains: extra folders to look for a parent in, NULL-terminated,
	 * tried in order after the parent locator's relative_path and the file
	 * name of its absolute_win32_path in the child's folder. A candidate is
	 * taken only when its DataWriteGuid matches the child's parent_linkage.
	 * Borrowed for the duration of the call only. NULL: none.
	 */
	const char *const *search_dirs;
};

/* Fills @o with defaults (no flags, no search folders); @size is sizeof(*o). */
VDISK_API void vdisk_disk_opts_init(struct vdisk_disk_opts *o, size_t size);

/*
 * vdisk_disk_open() with options: @o may be NULL (writable, defaults).
 * Returns 0 or -errno with @err set; a parent found nowhere fails with
 * -ENOENT and a message naming the child, its parent_linkage and the paths
 * tried. Any thread; the handle then has the usual single-owner rules.
 */
VDISK_API int vdisk_disk_open_opts(const char *path, enum vdisk_format fmt,
				   const struct vdisk_disk_opts *o, struct vdisk_disk **ret_disk,
				   struct vdisk_err *err);
/* Flushes and closes. Returns 0 or -errno. NULL-safe. */
VDISK_API int vdisk_disk_close(struct vdisk_disk *d, struct vdisk_err *err);

VDISK_API enum vdisk_format vdisk_disk_format(const struct vdisk_disk *d);
/* "raw" or "vhdx". */
VDISK_API const char *vdisk_format_name(enum vdisk_format fmt);
/* Parses "raw", "vhdx" or "auto". Returns 0 or -EINVAL. */
VDISK_API int vdisk_format_parse(const char *s, enum vdisk_format *ret_fmt);
VDISK_API uint64_t vdisk_disk_size(const struct vdisk_disk *d);
VDISK_API uint32_t vdisk_disk_logical_sector(const struct vdisk_disk *d);
VDISK_API uint32_t vdisk_disk_physical_sector(const struct vdisk_disk *d);
/* The VHDX image behind @d, or NULL for raw. Borrowed. */
VDISK_API struct vhdx_image *vdisk_disk_vhdx(const struct vdisk_disk *d);

/* Same contracts as vhdx_translate/vhdx_allocate; raw disks map 1:1 (holes as UNALLOCATED). */
VDISK_API int vdisk_disk_translate(struct vdisk_disk *d, uint64_t offset, uint64_t length,
				   struct vdisk_extent *ext, unsigned max);
VDISK_API int vdisk_disk_allocate(struct vdisk_disk *d, uint64_t offset, uint64_t length,
				  struct vdisk_extent *ext, unsigned max);
/*
 * Same contract as vhdx_write_done: after writing into the extents of
 * vdisk_disk_allocate() and before acknowledging, report the range written.
 * Raw disks: checks the range, nothing to do.
 */
VDISK_API int vdisk_disk_write_done(struct vdisk_disk *d, uint64_t offset, uint64_t length);
VDISK_API int vdisk_disk_flush(struct vdisk_disk *d);
/*
 * Same contract as vhdx_flush_fd: 1 and *@ret_fd when an fdatasync of it
 * is all vdisk_disk_flush() would do now (always so for a writable raw
 * disk), else 0: call vdisk_disk_flush().
 */
VDISK_API int vdisk_disk_flush_fd(struct vdisk_disk *d, int *ret_fd);
VDISK_API int vdisk_disk_discard(struct vdisk_disk *d, uint64_t offset, uint64_t length);
VDISK_API int vdisk_disk_write_zeroes(struct vdisk_disk *d, uint64_t offset, uint64_t length);
VDISK_API int vdisk_disk_pread(struct vdisk_disk *d, void *buf, size_t len, uint64_t offset);
VDISK_API int vdisk_disk_pwrite(struct vdisk_disk *d, const void *buf, size_t len,
				uint64_t offset);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_DISK_H */
