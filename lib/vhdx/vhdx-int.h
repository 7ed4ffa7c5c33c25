/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/vhdx internals shared between its files: on-disk constants, the
 * decoded forms of each structure with their decode/encode pairs, and the
 * in-memory image. Section numbers refer to MS-VHDX / docs/vhdx-format.md.
 */
#ifndef VHDX_INT_H
#define VHDX_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <vdisk/vhdx.h>

#include "util.h"

/* Section 2: file layout. */
#define VHDX_IDENT_OFFSET 0
#define VHDX_IDENT_SIZE (64 * 1024)
#define VHDX_HEADER_SIZE 4096
#define VHDX_HEADER1_OFFSET (64 * 1024)
#define VHDX_HEADER2_OFFSET (128 * 1024)
#define VHDX_RT1_OFFSET (192 * 1024)
#define VHDX_RT2_OFFSET (256 * 1024)
#define VHDX_RT_SIZE (64 * 1024)
#define VHDX_RT_MAX_ENTRIES 2047
#define VHDX_META_TABLE_SIZE (64 * 1024)
#define VHDX_META_MAX_ENTRIES 2047
#define VHDX_META_ITEM_MAX (1024 * 1024)
#define VHDX_ALIGN (1024 * 1024)
#define VHDX_GROW_STEP (64ULL * 1024 * 1024) /* sparse run-way added when the file grows */
#define VHDX_LOG_SECTOR 4096
#define VHDX_SB_BLOCK_SIZE (1024 * 1024)
#define VHDX_SECTORS_PER_CHUNK (1ULL << 23)
#define VHDX_MAX_BAT_BYTES (513ULL * 1024 * 1024)
#define VHDX_MAX_LOG_LENGTH (1024ULL * 1024 * 1024)
#define VHDX_MAX_META_REGION (128ULL * 1024 * 1024)

/* Section 8.3: BAT entry bits. */
#define VHDX_BAT_STATE_MASK 0x7ULL
#define VHDX_BAT_RESERVED_MASK 0xFFFF8ULL
#define VHDX_BAT_OFFSET_MASK 0xFFFFFFFFFFF00000ULL
#define VHDX_SB_NOT_PRESENT 0
#define VHDX_SB_PRESENT 6

/* Known GUIDs, in on-disk byte order (section 5, 6.1, 7). */
extern const struct vdisk_guid vhdx_guid_bat_region;
extern const struct vdisk_guid vhdx_guid_meta_region;
extern const struct vdisk_guid vhdx_guid_file_params;
extern const struct vdisk_guid vhdx_guid_disk_size;
extern const struct vdisk_guid vhdx_guid_page83;
extern const struct vdisk_guid vhdx_guid_logical_sector;
extern const struct vdisk_guid vhdx_guid_physical_sector;
extern const struct vdisk_guid vhdx_guid_parent_locator;
extern const struct vdisk_guid vhdx_guid_locator_type_vhdx;
extern const struct vdisk_guid vhdx_guid_chs;
extern const struct vdisk_guid vhdx_guid_incomplete;
extern const struct vdisk_guid vhdx_guid_pmem;

/* ---- decoded structures (format.c) ---- */

struct vhdx_header {
	uint32_t checksum;
	uint64_t seq;
	struct vdisk_guid file_write_guid;
	struct vdisk_guid data_write_guid;
	struct vdisk_guid log_guid;
	uint16_t log_version;
	uint16_t version;
	uint32_t log_length;
	uint64_t log_offset;
};

struct vhdx_region_entry {
	struct vdisk_guid guid;
	uint64_t file_offset;
	uint32_t length;
	uint32_t required;
};

struct vhdx_region_table {
	uint32_t count;
	struct vhdx_region_entry entries[VHDX_RT_MAX_ENTRIES];
};

#define VHDX_META_IS_USER 0x1
#define VHDX_META_IS_VIRTUAL_DISK 0x2
#define VHDX_META_IS_REQUIRED 0x4

struct vhdx_meta_entry {
	struct vdisk_guid item_id;
	uint32_t offset; /* from the start of the metadata region */
	uint32_t length;
	uint32_t flags;
};

struct vhdx_meta_table {
	uint16_t count;
	struct vhdx_meta_entry entries[VHDX_META_MAX_ENTRIES];
};

struct vhdx_log_entry_hdr {
	uint32_t checksum;
	uint32_t entry_length;
	uint32_t tail;
	uint64_t seq;
	uint32_t desc_count;
	struct vdisk_guid log_guid;
	uint64_t flushed_file_offset;
	uint64_t last_file_offset;
};

#define VHDX_LOG_ENTRY_HDR_SIZE 64
#define VHDX_LOG_DESC_SIZE 32

_Static_assert(VHDX_HEADER_SIZE == 4096, "header is one 4 KiB structure");
_Static_assert(16 + 32 * VHDX_RT_MAX_ENTRIES <= VHDX_RT_SIZE, "region table fits 64 KiB");
_Static_assert(32 + 32 * VHDX_META_MAX_ENTRIES <= VHDX_META_TABLE_SIZE, "metadata table fits");

/* Each decoder validates what it can alone and says what is wrong in @err (no file name). */
int vhdx_ident_decode(const uint8_t *buf, char *creator, size_t creator_len, struct vdisk_err *err);
void vhdx_ident_encode(const char *creator, uint8_t *buf);
int vhdx_header_decode(const uint8_t *buf, struct vhdx_header *out, struct vdisk_err *err);
void vhdx_header_encode(const struct vhdx_header *h, uint8_t *buf);
int vhdx_region_decode(const uint8_t *buf, struct vhdx_region_table *out, struct vdisk_err *err);
void vhdx_region_encode(const struct vhdx_region_table *rt, uint8_t *buf);
int vhdx_meta_table_decode(const uint8_t *buf, struct vhdx_meta_table *out, struct vdisk_err *err);
void vhdx_meta_table_encode(const struct vhdx_meta_table *mt, uint8_t *buf);
int vhdx_log_hdr_decode(const uint8_t *buf, struct vhdx_log_entry_hdr *out);
void vhdx_log_hdr_encode(const struct vhdx_log_entry_hdr *h, uint8_t *buf);

/* Parent locator (section 7), keys and values converted to UTF-8. */
struct vhdx_locator {
	struct vdisk_guid type;
	unsigned count;
	struct vhdx_locator_entry entries[VHDX_MAX_LOCATOR_ENTRIES];
};
int vhdx_locator_decode(const uint8_t *buf, size_t len, struct vhdx_locator *out,
			struct vdisk_err *err);
/* Encodes into @buf (capacity @cap); returns the encoded length or -ENOSPC. */
int vhdx_locator_encode(const struct vhdx_locator *loc, uint8_t *buf, size_t cap);
const char *vhdx_locator_get(const struct vhdx_locator *loc, const char *key);
/* Fills a VHDX-type locator the way Hyper-V writes one, for a child in @child_dir. */
int vhdx_locator_fill(struct vhdx_locator *loc, const char *linkage, const char *abs_parent,
		      const char *child_dir, struct vdisk_err *err);

/* UTF-16LE <-> UTF-8 (BMP + surrogate pairs). Return output length or -EINVAL/-ENOSPC. */
int vhdx_utf16le_to_utf8(const uint8_t *in, size_t in_len, char *out, size_t out_cap);
int vhdx_utf8_to_utf16le(const char *in, uint8_t *out, size_t out_cap);

/* ---- geometry ---- */

/* @chunk_ratio is a power of two (2^23 * sector / block size, both powers of two): a shift */
static inline uint64_t vhdx_bat_index(uint64_t block, uint32_t chunk_ratio)
{
	return block + (block >> __builtin_ctz(chunk_ratio));
}

static inline uint64_t vhdx_sb_index(uint64_t chunk, uint32_t chunk_ratio)
{
	return chunk * ((uint64_t)chunk_ratio + 1) + chunk_ratio;
}

/* ---- the image ---- */

/* A page the log replay produced, overlaid on metadata reads of a read-only open. */
struct vhdx_overlay {
	uint64_t offset;
	uint64_t length;
	uint8_t *data; /* NULL: zeros */
};

struct vhdx_image {
	char *path;
	int fd;
	unsigned flags;
	bool readonly;

	/* headers */
	struct vhdx_header hdr; /* current */
	int cur_slot;           /* 0 or 1 */
	char creator[256];

	/* regions and metadata */
	struct vhdx_region_table *rt;
	bool rt1_bad; /* region table 1 damaged, copy 2 in use */
	uint64_t bat_offset;
	uint64_t bat_length;
	uint64_t meta_offset;
	uint64_t meta_length;
	struct vhdx_meta_table *mt;
	uint32_t block_size;
	uint32_t lsec;
	uint32_t psec;
	uint64_t disk_size;
	struct vdisk_guid page83;
	bool leave_alloc;
	bool has_parent;
	struct vhdx_locator *locator;

	/* BAT, in CPU order; entries accessed atomically */
	uint32_t chunk_ratio;
	uint8_t block_shift, lsec_shift; /* log2 of block_size and lsec */
	uint64_t nr_blocks;
	uint64_t nr_chunks;
	uint64_t bat_entries; /* capacity: bat_length / 8 */
	uint64_t *bat;
	uint8_t **sbm; /* nr_chunks pointers to 1 MiB sector bitmaps (NULL: not present) */

	/* chain */
	struct vhdx_image *parent;
	unsigned depth; /* 0 for the opened image */

	/* write session: everything below under lock */
	pthread_mutex_t lock;
	int session;       /* atomic: 0 none, 1 file changed, 2 data changed */
	uint64_t file_end;  /* allocation pointer, 1 MiB aligned */
	uint64_t file_size; /* the file's size: file_end plus a sparse run-way (VHDX_GROW_STEP) */
	uint64_t flushed_end;
	uint8_t *dirty;    /* one bit per 4 KiB page of the BAT region */
	uint64_t nr_dirty;
	uint8_t *sbm_dirty; /* one bit per 4 KiB page of each bitmap: nr_chunks * 256 bits */
	uint64_t nr_sbm_dirty;
	int sticky_err;
	struct vhdx_overlay *extra; /* changed metadata-region pages for the next commit */
	size_t nr_extra;
	struct vdisk_guid next_dwg; /* non-zero: the DataWriteGuid the next data session takes */

	/* log */
	uint64_t log_offset;
	uint32_t log_length;
	uint32_t log_head; /* next entry position, from the log start */
	uint64_t log_seq;  /* last sequence number written */
	struct vdisk_guid found_log_guid;
	bool log_replayed;
	struct vhdx_overlay *ov;
	size_t nr_ov;
	uint64_t virt_file_size; /* read-only replay: LastFileOffset when larger than the file */

	/* fault injection for tests: stop after this many metadata writes (0 = off) */
	int fail_after_writes;
};

/* open.c */
int vhdx_meta_pread(struct vhdx_image *img, void *buf, size_t len, uint64_t off);
int vhdx_open_layer(const char *path, unsigned flags, struct vhdx_image **ret_img,
		    struct vdisk_err *err);
void vhdx_free(struct vhdx_image *img);
/* Writes a new header (seq + 1 in the non-current slot, then seq + 2 in the other). */
int vhdx_header_update(struct vhdx_image *img, const struct vhdx_header *h);
/* Starts a writable session before the first change; @data: a user-visible change. */
int vhdx_session_begin_locked(struct vhdx_image *img, bool data);
int vhdx_meta_pwrite(struct vhdx_image *img, const void *buf, size_t len, uint64_t off);

/* log.c */
int vhdx_log_replay(struct vhdx_image *img, struct vdisk_err *err);
/* Journals and applies every dirty BAT and bitmap page. Caller holds lock; data already flushed. */
int vhdx_log_commit_locked(struct vhdx_image *img);
/* After all commits, at clean close: clears LogGuid. */
int vhdx_log_close(struct vhdx_image *img);

/* bat.c */
int vhdx_bat_load(struct vhdx_image *img, struct vdisk_err *err);
void vhdx_bat_set_locked(struct vhdx_image *img, uint64_t idx, uint64_t entry);
void vhdx_sbm_mark_dirty_locked(struct vhdx_image *img, uint64_t chunk, uint64_t bit_first,
				uint64_t bit_count);

/* meta.c */
extern const struct vdisk_guid vhdx_guid_vdisk_snapshot;
int vhdx_meta_set_item_locked(struct vhdx_image *img, const struct vdisk_guid *id,
			      uint32_t flags, const uint8_t *data, uint32_t len);
/* Replaces the parent locator (journaled at the next flush). */
int vhdx_set_locator(struct vhdx_image *img, const struct vhdx_locator *loc);
int vhdx_get_user_item(struct vhdx_image *img, const struct vdisk_guid *id, uint8_t *buf,
		       size_t cap, size_t *ret_len);
int vhdx_set_user_item(struct vhdx_image *img, const struct vdisk_guid *id, const uint8_t *data,
		       uint32_t len);

/* chain.c */
int vhdx_chain_open(struct vhdx_image *img, const struct vhdx_open_opts *o,
		    struct vdisk_err *err);

/*
 * Decodes vdisk's snapshot item (snapshot.c): le64 time, le16 name length,
 * the name, optionally le32 state flags. False when @len cannot hold what
 * the item claims or the name does not fit @cap (with its NUL).
 */
bool vhdx_snap_item_decode(const uint8_t *buf, size_t len, char *name, size_t cap,
			   int64_t *ret_time, uint32_t *ret_flags);

#endif /* VHDX_INT_H */
