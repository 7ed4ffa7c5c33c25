/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Creating images the way Hyper-V does (section 14): log 1 MiB at 1 MiB,
 * metadata 1 MiB at 2 MiB, BAT at 3 MiB sized for SB x (CR+1) entries,
 * regions marked Required, both headers valid, metadata items in Windows
 * order. Fixed images get every block allocated and FULLY_PRESENT.
 * Differencing children copy the parent's virtual-disk items and get a
 * full parent locator.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "byteorder.h"
#include "vhdx-int.h"

#define LOG_OFFSET (1 * MiB)
#define META_OFFSET (2 * MiB)
#define BAT_OFFSET (3 * MiB)
#define META_LENGTH (1 * MiB)
#define LOCATOR_MAX (64 * 1024)

void vhdx_create_opts_init(struct vhdx_create_opts *o, size_t size)
{
	memset(o, 0, size);
	o->struct_size = size;
	o->type = VHDX_TYPE_DYNAMIC;
	o->logical_sector_bytes = 512;
	o->physical_sector_bytes = 4096;
}

struct layout {
	uint32_t block_size, lsec, psec, log_length, chunk_ratio;
	uint64_t disk_size, nr_blocks, nr_chunks, bat_length, data_offset;
	bool fixed, child;
	struct vdisk_guid page83, parent_dwg;
	struct vhdx_locator loc;
	const char *snap_name;
	int64_t snap_time;
};

static int validate(const struct vhdx_create_opts *o, struct layout *L, struct vdisk_err *err)
{
	L->lsec = o->logical_sector_bytes ? o->logical_sector_bytes : 512;
	L->psec = o->physical_sector_bytes ? o->physical_sector_bytes : 4096;
	L->fixed = o->type == VHDX_TYPE_FIXED;
	L->child = o->type == VHDX_TYPE_DIFFERENCING;
	L->block_size = o->block_size_bytes ? o->block_size_bytes
					    : (L->fixed || L->child ? 2 * MiB : 32 * MiB);
	L->log_length = o->log_size_bytes ? o->log_size_bytes : 1 * MiB;
	L->disk_size = o->disk_size_bytes;
	if ((L->lsec != 512 && L->lsec != 4096) || (L->psec != 512 && L->psec != 4096) ||
	    L->psec < L->lsec)
		return vdisk_err_set(err, -EINVAL,
				     "sector sizes logical %u / physical %u: each must be 512 or 4096, physical not smaller than logical",
				     L->lsec, L->psec);
	if (!IS_POW2(L->block_size) || L->block_size < VHDX_MIN_BLOCK_SIZE ||
	    L->block_size > VHDX_MAX_BLOCK_SIZE)
		return vdisk_err_set(err, -EINVAL,
				     "block size %u: must be a power of two from 1 MiB to 256 MiB",
				     L->block_size);
	if (!IS_ALIGNED(L->log_length, MiB) || L->log_length == 0 ||
	    L->log_length > VHDX_MAX_LOG_LENGTH)
		return vdisk_err_set(err, -EINVAL, "log size %u: must be a multiple of 1 MiB up to 1 GiB",
				     L->log_length);
	if (L->disk_size == 0 || L->disk_size > VHDX_MAX_DISK_SIZE || L->disk_size % L->lsec)
		return vdisk_err_set(err, -EINVAL,
				     "size %llu: must be a non-zero multiple of the %u-byte logical sector, at most 64 TiB",
				     (unsigned long long)L->disk_size, L->lsec);
	return 0;
}

static void compute(struct layout *L)
{
	L->chunk_ratio = (uint32_t)(VHDX_SECTORS_PER_CHUNK * L->lsec / L->block_size);
	L->nr_blocks = DIV_ROUND_UP(L->disk_size, L->block_size);
	L->nr_chunks = DIV_ROUND_UP(L->nr_blocks, L->chunk_ratio);
	/* section 8.2: room for SB x (CR+1) entries so any image can become a parent or child */
	L->bat_length = ROUND_UP(L->nr_chunks * (L->chunk_ratio + 1ULL) * 8, MiB);
	L->data_offset = ROUND_UP(LOG_OFFSET + L->log_length, MiB);
	L->data_offset = MAX(L->data_offset, BAT_OFFSET) + L->bat_length;
}

/* Fills the parent locator and inherits the parent's virtual-disk items. */
static int setup_child(const struct vhdx_create_opts *o, const char *child, struct layout *L,
		       struct vdisk_err *err)
{
	struct vhdx_open_opts oo;
	struct vhdx_image *p;
	char abs_parent[PATH_MAX], dirbuf[PATH_MAX], linkage[VDISK_GUID_STRLEN + 2], g[VDISK_GUID_STRLEN];
	int r;

	vhdx_open_opts_init(&oo, sizeof(oo));
	oo.flags = VHDX_OPEN_RDONLY;
	r = vhdx_open(o->parent_path, &oo, &p, err);
	if (r < 0)
		return (vdisk_err_prefix(err, "parent: "), r);
	L->disk_size = o->disk_size_bytes ? o->disk_size_bytes : p->disk_size;
	L->lsec = p->lsec;
	L->psec = p->psec;
	L->page83 = p->page83;
	L->parent_dwg = p->hdr.data_write_guid;
	vhdx_close(p, NULL);
	if (!realpath(o->parent_path, abs_parent))
		return vdisk_err_set(err, -errno, "parent %s: %s", o->parent_path, strerror(errno));
	snprintf(dirbuf, sizeof(dirbuf), "%s", child);
	vdisk_guid_format(&L->parent_dwg, g);
	snprintf(linkage, sizeof(linkage), "{%s}", g);
	return vhdx_locator_fill(&L->loc, linkage, abs_parent, dirname(dirbuf), err);
}

static int write_meta(int fd, const struct layout *L, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(META_LENGTH);
	struct vhdx_meta_table mt = { 0 };
	uint32_t pos = VHDX_META_TABLE_SIZE;
	int r;

	if (!buf)
		return -ENOMEM;
#define ITEM(guid, len_, flags_)                                                              \
	mt.entries[mt.count++] = (struct vhdx_meta_entry){ .item_id = (guid), .offset = pos, \
							   .length = (len_), .flags = (flags_) }; \
	pos += (len_)
	put_le32(buf + pos, L->block_size);
	put_le32(buf + pos + 4, (L->fixed ? 1 : 0) | (L->child ? 2 : 0));
	ITEM(vhdx_guid_file_params, 8, VHDX_META_IS_REQUIRED);
	put_le64(buf + pos, L->disk_size);
	ITEM(vhdx_guid_disk_size, 8, VHDX_META_IS_VIRTUAL_DISK | VHDX_META_IS_REQUIRED);
	put_le32(buf + pos, L->lsec);
	ITEM(vhdx_guid_logical_sector, 4, VHDX_META_IS_VIRTUAL_DISK | VHDX_META_IS_REQUIRED);
	put_le32(buf + pos, L->psec);
	ITEM(vhdx_guid_physical_sector, 4, VHDX_META_IS_VIRTUAL_DISK | VHDX_META_IS_REQUIRED);
	memcpy(buf + pos, L->page83.b, 16);
	ITEM(vhdx_guid_page83, 16, VHDX_META_IS_VIRTUAL_DISK | VHDX_META_IS_REQUIRED);
	if (L->child) {
		r = vhdx_locator_encode(&L->loc, buf + pos, LOCATOR_MAX);
		if (r < 0)
			return vdisk_err_set(err, r, "parent locator does not fit");
		ITEM(vhdx_guid_parent_locator, (uint32_t)r, VHDX_META_IS_REQUIRED);
	}
	if (L->child && L->snap_name) {
		size_t nl = strlen(L->snap_name);
		if (nl > 255)
			return vdisk_err_set(err, -EINVAL, "snapshot name longer than 255 bytes");
		put_le64(buf + pos, (uint64_t)L->snap_time);
		put_le16(buf + pos + 8, (uint16_t)nl);
		memcpy(buf + pos + 10, L->snap_name, nl);
		ITEM(vhdx_guid_vdisk_snapshot, (uint32_t)(10 + nl), VHDX_META_IS_USER);
	}
#undef ITEM
	vhdx_meta_table_encode(&mt, buf);
	r = vdisk_pwrite_full(fd, buf, META_LENGTH, META_OFFSET);
	return r < 0 ? vdisk_err_set(err, r, "writing metadata: %s", strerror(-r)) : 0;
}

static int write_bat(int fd, const struct layout *L, struct vdisk_err *err)
{
	size_t chunk = 4 * MiB;
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(chunk);
	uint64_t next = L->data_offset;
	int r;

	if (!buf)
		return -ENOMEM;
	if (!L->fixed)
		return 0; /* a sparse, all-zero BAT: every block NOT_PRESENT */
	for (uint64_t base = 0; base < L->bat_length; base += chunk) {
		memset(buf, 0, chunk);
		for (uint64_t i = 0; i < chunk / 8 && base / 8 + i < L->nr_blocks + L->nr_chunks; i++) {
			uint64_t idx = base / 8 + i;
			if (idx % (L->chunk_ratio + 1ULL) == L->chunk_ratio)
				continue;
			if (idx - idx / (L->chunk_ratio + 1ULL) >= L->nr_blocks)
				break;
			put_le64(buf + 8 * i, next | VHDX_BLOCK_FULLY_PRESENT);
			next += L->block_size;
		}
		r = vdisk_pwrite_full(fd, buf, MIN(chunk, L->bat_length - base), BAT_OFFSET + base);
		if (r < 0)
			return vdisk_err_set(err, r, "writing the BAT: %s", strerror(-r));
	}
	/* section 14: every payload block really allocated */
	if (fallocate(fd, 0, (off_t)L->data_offset, (off_t)(L->nr_blocks * L->block_size)) < 0)
		return vdisk_err_set(err, -errno, "allocating %llu bytes for a fixed image: %s",
				     (unsigned long long)(L->nr_blocks * L->block_size),
				     strerror(errno));
	return 0;
}

static int write_headers(int fd, const struct layout *L, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(VHDX_RT_SIZE);
	struct vhdx_region_table *rt = calloc(1, sizeof(*rt));
	struct vhdx_header h = { .version = 1, .log_length = L->log_length, .log_offset = LOG_OFFSET };
	char creator[64];
	int r = 0;

	if (!buf || !rt) {
		free(rt);
		return -ENOMEM;
	}
	rt->count = 2;
	rt->entries[0] = (struct vhdx_region_entry){ vhdx_guid_bat_region, BAT_OFFSET,
						     (uint32_t)L->bat_length, 1 };
	rt->entries[1] = (struct vhdx_region_entry){ vhdx_guid_meta_region, META_OFFSET,
						     META_LENGTH, 1 };
	vhdx_region_encode(rt, buf);
	free(rt);
	r = vdisk_pwrite_full(fd, buf, VHDX_RT_SIZE, VHDX_RT1_OFFSET);
	if (r == 0)
		r = vdisk_pwrite_full(fd, buf, VHDX_RT_SIZE, VHDX_RT2_OFFSET);
	if (r == 0)
		r = vdisk_guid_generate(&h.file_write_guid);
	if (r == 0)
		r = vdisk_guid_generate(&h.data_write_guid);
	for (int slot = 0; slot < 2 && r == 0; slot++) {
		h.seq = (uint64_t)slot + 1;
		vhdx_header_encode(&h, buf);
		r = vdisk_pwrite_full(fd, buf, VHDX_HEADER_SIZE,
				      slot ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET);
	}
	snprintf(creator, sizeof(creator), "vdisk %s", VDISK_VERSION_STRING);
	vhdx_ident_encode(creator, buf);
	if (r == 0)
		r = vdisk_pwrite_full(fd, buf, VHDX_IDENT_SIZE, 0);
	return r < 0 ? vdisk_err_set(err, r, "writing headers: %s", strerror(-r)) : 0;
}

int vhdx_create(const char *path, const struct vhdx_create_opts *o, struct vdisk_err *err)
{
	struct layout L = { 0 };
	int fd, r;

	if (o->type == VHDX_TYPE_DIFFERENCING) {
		if (!o->parent_path)
			return vdisk_err_set(err, -EINVAL, "%s: a differencing image needs a parent",
					     path);
		r = setup_child(o, path, &L, err);
		if (r < 0)
			return (vdisk_err_prefix(err, "%s: ", path), r);
	}
	{
		struct vhdx_create_opts c = *o;
		if (o->type == VHDX_TYPE_DIFFERENCING) {
			c.disk_size_bytes = L.disk_size;
			c.logical_sector_bytes = L.lsec;
			c.physical_sector_bytes = L.psec;
		}
		r = validate(&c, &L, err);
	}
	if (r < 0)
		return (vdisk_err_prefix(err, "%s: ", path), r);
	L.snap_name = o->snapshot_name;
	L.snap_time = o->snapshot_time;
	if (!L.child && (r = vdisk_guid_generate(&L.page83)) < 0)
		return vdisk_err_set(err, r, "%s: random GUID: %s", path, strerror(-r));
	compute(&L);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (o->overwrite ? O_TRUNC : O_EXCL), 0644);
	if (fd < 0)
		return vdisk_err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
	r = ftruncate(fd, (off_t)L.data_offset) < 0 ? -errno : 0;
	if (r == 0)
		r = write_meta(fd, &L, err);
	if (r == 0)
		r = write_bat(fd, &L, err);
	if (r == 0)
		r = write_headers(fd, &L, err);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	if (r < 0) {
		vdisk_err_set(err, r, "%s", strerror(-r));
		unlink(path);
		return (vdisk_err_prefix(err, "%s: ", path), r);
	}
	return 0;
}
