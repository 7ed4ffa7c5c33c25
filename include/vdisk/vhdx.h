/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/vhdx: the VHDX (MS-VHDX v2) image format. Open/validate/replay,
 * create, translate virtual ranges to extents, allocate blocks for writes,
 * journal metadata changes through the VHDX log, check and repair.
 *
 * Threading: vhdx_translate(), vhdx_allocate(), vhdx_write_done(), vhdx_flush(),
 * vhdx_discard(), vhdx_write_zeroes(), vhdx_pread() and vhdx_pwrite() may be
 * called from many threads at once on one image; translate takes no lock, the
 * others take the image's allocation lock only for what changes metadata. Opening, closing,
 * information and chain operations are slow path and must not run
 * concurrently with other calls on one image.
 */
#ifndef VDISK_VHDX_H
#define VDISK_VHDX_H

#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VHDX_MAX_DISK_SIZE (64ULL << 40)
#define VHDX_MIN_BLOCK_SIZE (1U << 20)
#define VHDX_MAX_BLOCK_SIZE (256U << 20)

enum vhdx_type {
	VHDX_TYPE_DYNAMIC = 0,
	VHDX_TYPE_FIXED = 1,
	VHDX_TYPE_DIFFERENCING = 2,
};

/* BAT payload block states (MS-VHDX 2.5.1.1). */
enum vhdx_block_state {
	VHDX_BLOCK_NOT_PRESENT = 0,
	VHDX_BLOCK_UNDEFINED = 1,
	VHDX_BLOCK_ZERO = 2,
	VHDX_BLOCK_UNMAPPED = 3,
	VHDX_BLOCK_FULLY_PRESENT = 6,
	VHDX_BLOCK_PARTIALLY_PRESENT = 7,
};

struct vhdx_image;

/* ---- create ---- */

struct vhdx_create_opts {
	size_t struct_size;             /* set by vhdx_create_opts_init() */
	enum vhdx_type type;            /* default dynamic */
	uint64_t disk_size_bytes;       /* multiple of the logical sector size, <= 64 TiB */
	uint32_t block_size_bytes;      /* 0: 32 MiB dynamic, 2 MiB differencing/fixed like Hyper-V */
	uint32_t logical_sector_bytes;  /* 512 (default) or 4096 */
	uint32_t physical_sector_bytes; /* 4096 (default, as Hyper-V) or 512 */
	uint32_t log_size_bytes;        /* 0: 1 MiB */
	const char *parent_path;        /* differencing only: the parent image */
	bool overwrite;                 /* replace an existing file */
	const char *snapshot_name;      /* differencing only: the parent is snapshot NAME (vdisk item) */
	int64_t snapshot_time;          /* its creation time, seconds since the epoch */
};

/* Fills @o with defaults; @size is sizeof(*o) as the caller knows it. */
VDISK_API void vhdx_create_opts_init(struct vhdx_create_opts *o, size_t size);

/*
 * Creates a new image at @path, Windows-style layout (log @1 MiB, metadata
 * @2 MiB, BAT @3 MiB, regions Required). Fixed images get every block
 * allocated and FULLY_PRESENT. Returns 0 or -errno with @err set.
 */
VDISK_API int vhdx_create(const char *path, const struct vhdx_create_opts *o,
			  struct vdisk_err *err);

/* ---- open / close ---- */

enum {
	VHDX_OPEN_RDONLY = 1 << 0,  /* shared lock; log replayed in memory only */
	VHDX_OPEN_DIRECT = 1 << 1,  /* O_DIRECT data path */
	VHDX_OPEN_NOLOCK = 1 << 2,  /* take no OFD lock (tests, check of a busy image) */
	VHDX_OPEN_NO_PARENT = 1 << 3, /* do not open the parent chain (info on an orphan) */
};

struct vhdx_open_opts {
	size_t struct_size;
	unsigned flags;                 /* VHDX_OPEN_* */
	const char *const *search_dirs; /* extra folders to look for parents in; NULL-terminated */
	unsigned max_chain_depth;       /* 0: 64 */
};

VDISK_API void vhdx_open_opts_init(struct vhdx_open_opts *o, size_t size);

/*
 * Opens and validates an image (and its parents, read-only). When the log
 * is dirty it is replayed: on disk for a writable open, in memory for a
 * read-only one. A writable open writes nothing until the first change.
 * @o may be NULL (writable, defaults). Returns 0 or -errno with @err set.
 */
VDISK_API int vhdx_open(const char *path, const struct vhdx_open_opts *o,
			struct vhdx_image **ret_img, struct vdisk_err *err);

/*
 * Commits pending metadata, marks the log clean and closes the image and its
 * parents. Returns 0 or -errno (the image is freed either way). NULL-safe.
 */
VDISK_API int vhdx_close(struct vhdx_image *img, struct vdisk_err *err);

/*
 * Frees the image without committing anything: simulates a crash (tests,
 * fault injection). Data already written stays written; the log may be dirty.
 */
VDISK_API void vhdx_abandon(struct vhdx_image *img);

/* ---- information ---- */

#define VHDX_MAX_LOCATOR_ENTRIES 32

struct vhdx_locator_entry {
	char key[64];
	char value[1024]; /* UTF-8 */
};

struct vhdx_info {
	enum vhdx_type type;
	uint64_t disk_size_bytes;
	uint32_t block_size_bytes;
	uint32_t logical_sector_bytes;
	uint32_t physical_sector_bytes;
	uint32_t chunk_ratio;
	uint64_t file_size_bytes;       /* apparent size of the file */
	uint64_t allocated_bytes;       /* bytes in FULLY/PARTIALLY_PRESENT payload blocks */
	uint64_t blocks_total;
	uint64_t blocks_by_state[8];    /* count of payload blocks in each state */
	uint64_t header_sequence;
	int current_header;             /* 1 or 2 */
	struct vdisk_guid file_write_guid;
	struct vdisk_guid data_write_guid;
	struct vdisk_guid log_guid;     /* as found on open (non-zero: was dirty) */
	struct vdisk_guid page83;
	uint32_t log_offset, log_length; /* log_offset < 4 GiB in every sane file */
	bool log_replayed;              /* the log was dirty and has been replayed */
	bool leave_block_allocated;
	bool has_parent;
	bool readonly;
	char creator[256];              /* UTF-8 */
	unsigned locator_count;
	struct vhdx_locator_entry locator[VHDX_MAX_LOCATOR_ENTRIES];
	const char *parent_path;        /* resolved parent file, NULL when none/not opened; borrowed */
	unsigned chain_depth;           /* 1 = no parent */
};

/* Fills @ret_info. Never fails on an open image. */
VDISK_API void vhdx_get_info(struct vhdx_image *img, struct vhdx_info *ret_info);
VDISK_API uint64_t vhdx_disk_size(const struct vhdx_image *img);
VDISK_API uint32_t vhdx_logical_sector_size(const struct vhdx_image *img);
VDISK_API uint32_t vhdx_physical_sector_size(const struct vhdx_image *img);
VDISK_API uint32_t vhdx_block_size(const struct vhdx_image *img);
VDISK_API const char *vhdx_path(const struct vhdx_image *img);
/* The parent of @img in its chain, or NULL. Borrowed. */
VDISK_API struct vhdx_image *vhdx_parent(const struct vhdx_image *img);

/* ---- translate and allocate (the data path) ---- */

/*
 * Translates the virtual range [@offset, @offset + @length) into at most
 * @max extents, following the parent chain. Adjacent extents of one kind
 * are merged. Returns the number of extents written (>= 1; they cover a
 * prefix of the range when @max is too small) or -EINVAL for a range outside
 * the disk. Lock-free; allocates nothing.
 */
VDISK_API int vhdx_translate(struct vhdx_image *img, uint64_t offset, uint64_t length,
			     struct vdisk_extent *ext, unsigned max);

/*
 * Prepares the range for writing: allocates payload blocks and returns DATA
 * extents of the top image for the caller to write into, at most @max,
 * covering a prefix. The new mapping is durable after the next vhdx_flush().
 * In a differencing image the sectors are not yet marked present: they keep
 * reading the parent until vhdx_write_done() is called for them, which every
 * caller must do once its data write has completed.
 * Returns the number of extents or -errno (-EROFS, -ENOSPC, -EIO).
 * Takes the allocation lock only when a block must be allocated.
 */
VDISK_API int vhdx_allocate(struct vhdx_image *img, uint64_t offset, uint64_t length,
			    struct vdisk_extent *ext, unsigned max);

/*
 * Reports that the data write into the extents vhdx_allocate() returned for
 * [@offset, @offset + @length) has completed successfully; call it before
 * acknowledging the write. In a differencing image this marks the sectors
 * present in the child (sector bitmap), durable after the next vhdx_flush(),
 * which syncs the data before committing the bits: a crash can never leave a
 * bit set over data that was not written. Until then the range reads the
 * parent. Sector aligned; may cover several allocate calls. No-op (0) for
 * images without a parent and for sectors already marked; takes the
 * allocation lock only when some bit is still clear. After a failed write,
 * do not call it. Returns 0 or -errno (-EINVAL, -EROFS, -EIO).
 */
VDISK_API int vhdx_write_done(struct vhdx_image *img, uint64_t offset, uint64_t length);

/*
 * Makes every completed write durable: flushes the data, then commits the
 * metadata changed since the last flush as one log entry and applies it.
 * Returns 0 or -errno.
 */
VDISK_API int vhdx_flush(struct vhdx_image *img);
/*
 * For callers that sync data asynchronously (an I/O engine's FDATASYNC):
 * returns 1 and sets *@ret_fd when a data sync of that descriptor is all
 * vhdx_flush() would do now (no metadata waiting for a commit); 0 when
 * vhdx_flush() must be called (metadata to commit, an earlier failure, a
 * read-only image or nothing written). A write acknowledged before the
 * call is covered either way: its metadata is dirty from its allocation on.
 */
VDISK_API int vhdx_flush_fd(struct vhdx_image *img, int *ret_fd);

/*
 * Discards the range: whole blocks become UNMAPPED (dynamic) or keep their
 * state (fixed); their space is given back to the file system. Reads of a
 * discarded range return zeros. Returns 0 or -errno.
 */
VDISK_API int vhdx_discard(struct vhdx_image *img, uint64_t offset, uint64_t length);

/*
 * Makes the range read as zeros: whole unallocated blocks become ZERO
 * without allocating, allocated ranges are zeroed in place (hole punched
 * unless fixed). Returns 0 or -errno.
 */
VDISK_API int vhdx_write_zeroes(struct vhdx_image *img, uint64_t offset, uint64_t length);

/* ---- synchronous byte-granular I/O built on translate/allocate ---- */

/* Read/write exactly @len bytes at virtual @offset. Return 0 or -errno. */
VDISK_API int vhdx_pread(struct vhdx_image *img, void *buf, size_t len, uint64_t offset);
VDISK_API int vhdx_pwrite(struct vhdx_image *img, const void *buf, size_t len, uint64_t offset);

/* ---- check ---- */

enum vhdx_check_severity {
	VHDX_CHECK_INFO = 0,
	VHDX_CHECK_LEAK = 1,
	VHDX_CHECK_CORRUPT = 2,
	VHDX_CHECK_REPAIRED = 3,
};

struct vhdx_check_result {
	uint64_t corruptions;
	uint64_t leaks;           /* unreferenced allocated 1 MiB units in the file */
	uint64_t leaked_bytes;
	uint64_t repaired;
	uint64_t allocated_blocks;
	uint64_t total_blocks;
	bool log_was_dirty;
	bool opened;              /* false: the image could not even be opened */
};

typedef void (*vhdx_check_report_fn)(void *opaque, enum vhdx_check_severity sev,
				     const char *msg);

enum {
	VHDX_CHECK_REPAIR = 1 << 0, /* fix what can be fixed (replays the log, rewrites region table 1, truncates leaks at the end) */
};

/*
 * Checks the image at @path in depth: identifier, both headers, both region
 * tables, metadata, the log, every BAT entry (states, alignment, overlaps of
 * blocks with each other and with regions/log, blocks beyond end of file)
 * and unreferenced space. Each finding goes to @report. Returns 0 when the
 * check ran (findings are in @res), -errno when it could not run at all.
 */
VDISK_API int vhdx_check(const char *path, unsigned flags, vhdx_check_report_fn report,
			 void *opaque, struct vhdx_check_result *res, struct vdisk_err *err);

/* ---- differencing chains: snapshots, merge, rebase ---- */

/* Progress of long operations: @done of @total bytes. May be NULL. */
typedef void (*vhdx_progress_fn)(void *opaque, uint64_t done, uint64_t total);

struct vhdx_snapshot {
	char name[128];
	int64_t created;       /* seconds since the epoch */
	char file[4096];       /* the frozen file holding the snapshot's content */
	char parent[4096];     /* that file's parent, "" for a base image */
	uint64_t size_bytes;
};

/*
 * Freezes @path's current content into a new read-only file (returned in
 * @ret_file) and turns @path itself into a differencing child of it, so
 * whatever uses @path keeps working. Atomic: a crash leaves @path either the
 * old image or the new child. The image must not be in use.
 */
VDISK_API int vhdx_snapshot_create(const char *path, const char *name, char *ret_file,
				   size_t ret_cap, struct vdisk_err *err);
/* Lists the snapshots in @path's chain, newest first. Free *ret with free(). */
VDISK_API int vhdx_snapshot_list(const char *path, struct vhdx_snapshot **ret, unsigned *ret_n,
				 struct vdisk_err *err);
/*
 * vhdx_snapshot_list, plus each snapshot's state in *ret_flags (parallel to
 * *ret; free both with free()).
 */
#define VHDX_SNAPSHOT_DELETING (1U << 0) /* a delete began and has not finished: run it again */
VDISK_API int vhdx_snapshot_list_flags(const char *path, struct vhdx_snapshot **ret,
				       unsigned **ret_flags, unsigned *ret_n,
				       struct vdisk_err *err);
/* @file was left by process @pid, now gone: removed (@error 0), or -errno of the failed removal */
typedef void (*vhdx_leftover_fn)(void *opaque, const char *file, long pid, int error);
/*
 * Removes the temporary files an interrupted snapshot operation left beside
 * @path (exactly FILE.vdisk-tmp-PID, PID gone, not a layer of @path's
 * chain), calling @fn for each. Returns how many it removed, or -errno when
 * the chain or the folder cannot be read.
 */
VDISK_API int vhdx_snapshot_clean(const char *path, vhdx_leftover_fn fn, void *opaque,
				  struct vdisk_err *err);
/* Throws away everything written after snapshot @name (and newer snapshots). */
VDISK_API int vhdx_snapshot_revert(const char *path, const char *name, struct vdisk_err *err);
/* Removes snapshot @name, merging its layer so every other snapshot keeps its content. */
VDISK_API int vhdx_snapshot_delete(const char *path, const char *name, struct vdisk_err *err);

enum {
	VHDX_MERGE_FORCE = 1 << 0,      /* merge even though the target has other children */
	VHDX_MERGE_KEEP_CHILD = 1 << 1, /* do not delete the merged layers */
};

/*
 * Commits @child (and every layer between it and @into) into the ancestor
 * @into (NULL: the direct parent): only sectors those layers hold are
 * copied. Children of @child found in its folder or @search_dirs are re-linked
 * to @into, then the merged layers are deleted. Crash-safe and restartable:
 * re-running a merge that was interrupted finishes it.
 */
VDISK_API int vhdx_merge(const char *child, const char *into, unsigned flags,
			 const char *const *search_dirs, vhdx_progress_fn progress, void *opaque,
			 struct vdisk_err *err);

enum {
	VHDX_REBASE_UNSAFE = 1 << 0, /* only rewrite the parent link, copy nothing */
};

/*
 * Makes @new_parent the parent of @child. Safe mode first copies into the
 * child every sector where the old backing content differs from the new
 * parent's, so what the child reads does not change.
 */
VDISK_API int vhdx_rebase(const char *child, const char *new_parent, unsigned flags,
			  vhdx_progress_fn progress, void *opaque, struct vdisk_err *err);

/* True when the first bytes of @fd are the VHDX file identifier. */
VDISK_API bool vhdx_probe_fd(int fd);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_VHDX_H */
