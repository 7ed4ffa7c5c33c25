/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Changing metadata items of an existing image (section 6): the parent
 * locator when a child is re-linked, and vdisk's own snapshot item. The
 * changed pages of the metadata table and item data go through the log in
 * the next commit, like BAT pages. Locator and snapshot-name changes do not
 * change what the virtual disk reads, so they change FileWriteGuid only:
 * changing DataWriteGuid would orphan this image's own children.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "vhdx-int.h"

/* vdisk snapshot item: IsUser, never required, ignored by other readers. */
const struct vdisk_guid vhdx_guid_vdisk_snapshot = {
	.b = { 0x5d, 0x1a, 0x6b, 0x3e, 0x91, 0x0c, 0x4f, 0x4b, 0x8e, 0x27, 0x76, 0x64, 0x69, 0x73,
	       0x6b, 0x31 }
};

static int add_page_locked(struct vhdx_image *img, uint64_t off, const uint8_t *data)
{
	struct vhdx_overlay *n;

	for (size_t i = 0; i < img->nr_extra; i++)
		if (img->extra[i].offset == off) {
			memcpy(img->extra[i].data, data, 4096);
			return 0;
		}
	n = realloc(img->extra, (img->nr_extra + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	img->extra = n;
	n[img->nr_extra].data = malloc(4096);
	if (!n[img->nr_extra].data)
		return -ENOMEM;
	memcpy(n[img->nr_extra].data, data, 4096);
	n[img->nr_extra].offset = off;
	n[img->nr_extra].length = 4096;
	img->nr_extra++;
	return 0;
}

/* Current content of a metadata page: pending change first, else the file. */
static int read_page(struct vhdx_image *img, uint64_t off, uint8_t *page)
{
	for (size_t i = 0; i < img->nr_extra; i++)
		if (img->extra[i].offset == off) {
			memcpy(page, img->extra[i].data, 4096);
			return 0;
		}
	return vhdx_meta_pread(img, page, 4096, off);
}

static int put_bytes_locked(struct vhdx_image *img, uint64_t off, const uint8_t *data, size_t len)
{
	uint8_t page[4096];

	while (len > 0) {
		uint64_t p = off & ~4095ULL;
		size_t in = MIN(len, 4096 - (off - p));
		int r = read_page(img, p, page);
		if (r < 0)
			return r;
		memcpy(page + (off - p), data, in);
		r = add_page_locked(img, p, page);
		if (r < 0)
			return r;
		off += in;
		data += in;
		len -= in;
	}
	return 0;
}

static uint32_t items_end(const struct vhdx_meta_table *mt)
{
	uint32_t end = VHDX_META_TABLE_SIZE;

	for (unsigned i = 0; i < mt->count; i++)
		if (mt->entries[i].length)
			end = MAX(end, mt->entries[i].offset + mt->entries[i].length);
	return end;
}

int vhdx_meta_set_item_locked(struct vhdx_image *img, const struct vdisk_guid *id,
			      uint32_t flags, const uint8_t *data, uint32_t len)
{
	struct vhdx_meta_table *mt = img->mt;
	struct vhdx_meta_entry *e = NULL;
	VDISK_AUTOFREE uint8_t *table = vdisk_aligned_alloc(VHDX_META_TABLE_SIZE);
	int r;

	if (!table)
		return -ENOMEM;
	if (len > VHDX_META_ITEM_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < mt->count; i++)
		if (vdisk_guid_equal(&mt->entries[i].item_id, id) &&
		    (mt->entries[i].flags & VHDX_META_IS_USER) == (flags & VHDX_META_IS_USER))
			e = &mt->entries[i];
	if (!e) {
		if (mt->count >= VHDX_META_MAX_ENTRIES)
			return -ENOSPC;
		e = &mt->entries[mt->count++];
		e->item_id = *id;
		e->length = 0;
	}
	if (len > e->length) {
		uint32_t off = ROUND_UP(items_end(mt), 8);
		if ((uint64_t)off + len > img->meta_length)
			return -ENOSPC;
		e->offset = off;
	}
	e->length = len;
	e->flags = flags;
	r = vhdx_session_begin_locked(img, false);
	if (r == 0 && len)
		r = put_bytes_locked(img, img->meta_offset + e->offset, data, len);
	if (r < 0)
		return r;
	vhdx_meta_table_encode(mt, table);
	for (uint32_t p = 0; p < VHDX_META_TABLE_SIZE && r == 0; p += 4096)
		r = add_page_locked(img, img->meta_offset + p, table + p);
	return r;
}

int vhdx_set_locator(struct vhdx_image *img, const struct vhdx_locator *loc)
{
	VDISK_AUTOFREE uint8_t *buf = malloc(64 * 1024);
	int len, r;

	if (!buf)
		return -ENOMEM;
	if (!img->has_parent || !img->locator)
		return -EINVAL;
	len = vhdx_locator_encode(loc, buf, 64 * 1024);
	if (len < 0)
		return len;
	pthread_mutex_lock(&img->lock);
	r = vhdx_meta_set_item_locked(img, &vhdx_guid_parent_locator, VHDX_META_IS_REQUIRED, buf,
				      (uint32_t)len);
	if (r == 0)
		*img->locator = *loc;
	pthread_mutex_unlock(&img->lock);
	return r;
}

int vhdx_get_user_item(struct vhdx_image *img, const struct vdisk_guid *id, uint8_t *buf,
		       size_t cap, size_t *ret_len)
{
	for (unsigned i = 0; i < img->mt->count; i++) {
		const struct vhdx_meta_entry *e = &img->mt->entries[i];
		if (!(e->flags & VHDX_META_IS_USER) || !vdisk_guid_equal(&e->item_id, id))
			continue;
		if (e->length > cap)
			return -ENOSPC;
		*ret_len = e->length;
		return vhdx_meta_pread(img, buf, e->length, img->meta_offset + e->offset);
	}
	return -ENOENT;
}

int vhdx_set_user_item(struct vhdx_image *img, const struct vdisk_guid *id, const uint8_t *data,
		       uint32_t len)
{
	int r;

	pthread_mutex_lock(&img->lock);
	r = vhdx_meta_set_item_locked(img, id, VHDX_META_IS_USER, data, len);
	pthread_mutex_unlock(&img->lock);
	return r;
}
