/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Synchronous, byte-granular reads and writes built on translate and
 * allocate (the CLI's path; the daemon executes extents on an I/O engine),
 * and the information getters.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "vhdx-int.h"

#define NEXT 32

int vhdx_pread(struct vhdx_image *img, void *buf, size_t len, uint64_t offset)
{
	struct vdisk_extent ext[NEXT];
	uint8_t *p = buf;

	while (len > 0) {
		int n = vhdx_translate(img, offset, len, ext, NEXT);
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (ext[i].type == VDISK_EXTENT_DATA) {
				int r = vdisk_pread_zfill(ext[i].fd, p, ext[i].length,
							  ext[i].file_offset);
				if (r < 0)
					return r;
			} else {
				memset(p, 0, ext[i].length);
			}
			p += ext[i].length;
			offset += ext[i].length;
			len -= ext[i].length;
		}
	}
	return 0;
}

static int write_aligned(struct vhdx_image *img, const uint8_t *p, size_t len, uint64_t offset)
{
	struct vdisk_extent ext[NEXT];

	while (len > 0) {
		int n = vhdx_allocate(img, offset, len, ext, NEXT), r;
		uint64_t start = offset;
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			r = vdisk_pwrite_full(ext[i].fd, p, ext[i].length, ext[i].file_offset);
			if (r < 0)
				return r;
			p += ext[i].length;
			offset += ext[i].length;
			len -= ext[i].length;
		}
		/* the data is written: only now may a child's bitmap say so */
		r = vhdx_write_done(img, start, offset - start);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Read-modify-write of the one logical sector holding [offset, offset+len). */
static int write_partial_sector(struct vhdx_image *img, const uint8_t *p, size_t len,
				uint64_t offset)
{
	uint8_t sec[4096];
	uint64_t s = offset / img->lsec * img->lsec;
	int r = vhdx_pread(img, sec, img->lsec, s);

	if (r < 0)
		return r;
	memcpy(sec + (offset - s), p, len);
	return write_aligned(img, sec, img->lsec, s);
}

int vhdx_pwrite(struct vhdx_image *img, const void *buf, size_t len, uint64_t offset)
{
	const uint8_t *p = buf;
	uint64_t end;
	int r;

	if (img->readonly)
		return -EROFS;
	if (add_overflows_u64(offset, len, &end) || end > img->disk_size)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (offset % img->lsec) {
		size_t head = MIN(len, img->lsec - offset % img->lsec);
		r = write_partial_sector(img, p, head, offset);
		if (r < 0)
			return r;
		p += head;
		offset += head;
		len -= head;
	}
	if (len >= img->lsec) {
		size_t mid = len / img->lsec * img->lsec;
		r = write_aligned(img, p, mid, offset);
		if (r < 0)
			return r;
		p += mid;
		offset += mid;
		len -= mid;
	}
	return len ? write_partial_sector(img, p, len, offset) : 0;
}

uint64_t vhdx_disk_size(const struct vhdx_image *img)
{
	return img->disk_size;
}

uint32_t vhdx_logical_sector_size(const struct vhdx_image *img)
{
	return img->lsec;
}

uint32_t vhdx_physical_sector_size(const struct vhdx_image *img)
{
	return img->psec;
}

uint32_t vhdx_block_size(const struct vhdx_image *img)
{
	return img->block_size;
}

const char *vhdx_path(const struct vhdx_image *img)
{
	return img->path;
}

struct vhdx_image *vhdx_parent(const struct vhdx_image *img)
{
	return img->parent;
}

void vhdx_get_info(struct vhdx_image *img, struct vhdx_info *ret_info)
{
	struct vhdx_info *in = ret_info;
	struct stat st;

	memset(in, 0, sizeof(*in));
	in->type = img->has_parent ? VHDX_TYPE_DIFFERENCING
				   : img->leave_alloc ? VHDX_TYPE_FIXED : VHDX_TYPE_DYNAMIC;
	in->disk_size_bytes = img->disk_size;
	in->block_size_bytes = img->block_size;
	in->logical_sector_bytes = img->lsec;
	in->physical_sector_bytes = img->psec;
	in->chunk_ratio = img->chunk_ratio;
	in->file_size_bytes = fstat(img->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	in->blocks_total = img->nr_blocks;
	for (uint64_t b = 0; b < img->nr_blocks; b++) {
		uint64_t e = __atomic_load_n(&img->bat[vhdx_bat_index(b, img->chunk_ratio)],
					     __ATOMIC_ACQUIRE);
		unsigned s = e & VHDX_BAT_STATE_MASK;
		in->blocks_by_state[s]++;
		if (s == VHDX_BLOCK_FULLY_PRESENT || s == VHDX_BLOCK_PARTIALLY_PRESENT)
			in->allocated_bytes += img->block_size;
	}
	in->header_sequence = img->hdr.seq;
	in->current_header = img->cur_slot + 1;
	in->file_write_guid = img->hdr.file_write_guid;
	in->data_write_guid = img->hdr.data_write_guid;
	in->log_guid = img->found_log_guid;
	in->page83 = img->page83;
	in->log_offset = (uint32_t)img->log_offset;
	in->log_length = img->log_length;
	in->log_replayed = img->log_replayed;
	in->leave_block_allocated = img->leave_alloc;
	in->has_parent = img->has_parent;
	in->readonly = img->readonly;
	memcpy(in->creator, img->creator, sizeof(in->creator));
	if (img->locator) {
		in->locator_count = img->locator->count;
		memcpy(in->locator, img->locator->entries,
		       img->locator->count * sizeof(in->locator[0]));
	}
	in->parent_path = img->parent ? img->parent->path : NULL;
	in->chain_depth = 1;
	for (struct vhdx_image *p = img->parent; p; p = p->parent)
		in->chain_depth++;
}
