/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening a VHDX layer: file identifier, both headers (section 4), log
 * replay (section 10), both region tables (section 5), the metadata table
 * and its items (section 6), then the BAT. Also the header update that
 * starts a writable session (section 12) and closing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "vhdx-int.h"

/* O_DIRECT wants 4 KiB-aligned buffers, offsets and lengths: bounce anything else. */
static bool direct_misaligned(const struct vhdx_image *img, const void *buf, size_t len,
			      uint64_t off)
{
	return (img->flags & VHDX_OPEN_DIRECT) &&
	       (((uintptr_t)buf | len | off) & (VHDX_LOG_SECTOR - 1));
}

static int bounce_pread(struct vhdx_image *img, void *buf, size_t len, uint64_t off)
{
	uint64_t start = off & ~(uint64_t)(VHDX_LOG_SECTOR - 1);
	size_t span = ROUND_UP(off + len - start, VHDX_LOG_SECTOR);
	uint8_t *b = vdisk_aligned_alloc(span);
	int r;

	if (!b)
		return -ENOMEM;
	r = vdisk_pread_zfill(img->fd, b, span, start);
	if (r == 0)
		memcpy(buf, b + (off - start), len);
	free(b);
	return r;
}

int vhdx_meta_pread(struct vhdx_image *img, void *buf, size_t len, uint64_t off)
{
	int r = direct_misaligned(img, buf, len, off) ? bounce_pread(img, buf, len, off)
						       : vdisk_pread_zfill(img->fd, buf, len, off);

	if (r < 0)
		return r;
	/* A read-only open of a dirty image sees the replayed log through the overlay. */
	for (size_t i = 0; i < img->nr_ov; i++) {
		const struct vhdx_overlay *o = &img->ov[i];
		uint64_t s = MAX(o->offset, off), e = MIN(o->offset + o->length, off + len);
		if (s >= e)
			continue;
		if (o->data)
			memcpy((uint8_t *)buf + (s - off), o->data + (s - o->offset), e - s);
		else
			memset((uint8_t *)buf + (s - off), 0, e - s);
	}
	return 0;
}

int vhdx_meta_pwrite(struct vhdx_image *img, const void *buf, size_t len, uint64_t off)
{
	if (img->sticky_err)
		return img->sticky_err;
	if (img->fail_after_writes > 0 && --img->fail_after_writes == 0) {
		/* fault injection: behave as if the process died here */
		img->sticky_err = -EIO;
		return -EIO;
	}
	if (direct_misaligned(img, buf, len, off)) {
		/* metadata writes are whole 4 KiB pages; only the buffer can be unaligned */
		uint8_t *b = vdisk_aligned_alloc(len);
		int r = b ? vdisk_pwrite_full(img->fd, memcpy(b, buf, len), len, off) : -ENOMEM;
		free(b);
		return r;
	}
	return vdisk_pwrite_full(img->fd, buf, len, off);
}

static int read_headers(struct vhdx_image *img, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(VHDX_HEADER_SIZE);
	struct vhdx_header h[2];
	struct vdisk_err e[2] = { 0 };
	bool ok[2];
	int r;

	if (!buf)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	for (int i = 0; i < 2; i++) {
		uint64_t off = i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
		r = vhdx_meta_pread(img, buf, VHDX_HEADER_SIZE, off);
		if (r < 0)
			return vdisk_err_set(err, r, "header %d at 0x%llx: read failed: %s", i + 1,
					     (unsigned long long)off, strerror(-r));
		ok[i] = vhdx_header_decode(buf, &h[i], &e[i]) == 0;
	}
	if (!ok[0] && !ok[1])
		return vdisk_err_set(err, -EINVAL,
				     "no valid header: header 1 at 0x10000: %s; header 2 at 0x20000: %s",
				     e[0].msg, e[1].msg);
	/* the current header is the valid one with the greater sequence number; tie: header 1 */
	img->cur_slot = (!ok[0] || (ok[1] && h[1].seq > h[0].seq)) ? 1 : 0;
	img->hdr = h[img->cur_slot];
	return 0;
}

static int check_header(struct vhdx_image *img, struct vdisk_err *err)
{
	const struct vhdx_header *h = &img->hdr;
	unsigned long long off = img->cur_slot ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;

	if (h->version != 1)
		return vdisk_err_set(err, -EOPNOTSUPP,
				     "header %d at 0x%llx: Version is %u, only version 1 is defined",
				     img->cur_slot + 1, off, h->version);
	if (h->log_version != 0 && !vdisk_guid_is_zero(&h->log_guid))
		return vdisk_err_set(err, -EOPNOTSUPP,
				     "header %d at 0x%llx: LogVersion is %u with a log to replay; only version 0 is understood",
				     img->cur_slot + 1, off, h->log_version);
	if (!IS_ALIGNED(h->log_offset, VHDX_ALIGN) || h->log_offset < VHDX_ALIGN ||
	    !IS_ALIGNED(h->log_length, VHDX_ALIGN) || h->log_length == 0 ||
	    h->log_length > VHDX_MAX_LOG_LENGTH)
		return vdisk_err_set(err, -EINVAL,
				     "header %d at 0x%llx: log at 0x%llx length 0x%x: offset and length must be non-zero multiples of 1 MiB (length at most 1 GiB)",
				     img->cur_slot + 1, off, (unsigned long long)h->log_offset,
				     h->log_length);
	img->log_offset = h->log_offset;
	img->log_length = h->log_length;
	return 0;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int pick_regions(struct vhdx_image *img, struct vdisk_err *err)
{
	struct vhdx_region_table *rt = img->rt;
	bool have_bat = false, have_meta = false;

	for (uint32_t i = 0; i < rt->count; i++) {
		const struct vhdx_region_entry *e = &rt->entries[i];
		if (vdisk_guid_equal(&e->guid, &vhdx_guid_bat_region)) {
			img->bat_offset = e->file_offset;
			img->bat_length = e->length;
			have_bat = true;
		} else if (vdisk_guid_equal(&e->guid, &vhdx_guid_meta_region)) {
			img->meta_offset = e->file_offset;
			img->meta_length = e->length;
			have_meta = true;
		} else if (e->required & 1) {
			char g[VDISK_GUID_STRLEN];
			vdisk_guid_format(&e->guid, g);
			return vdisk_err_set(err, -EOPNOTSUPP,
					     "region table: entry %u: unknown region %s is marked Required; refusing to open",
					     i, g);
		}
		if (ranges_overlap(e->file_offset, e->length, img->log_offset, img->log_length))
			return vdisk_err_set(err, -EINVAL,
					     "region table: entry %u at 0x%llx overlaps the log at 0x%llx",
					     i, (unsigned long long)e->file_offset,
					     (unsigned long long)img->log_offset);
		for (uint32_t j = 0; j < i; j++)
			if (ranges_overlap(e->file_offset, e->length, rt->entries[j].file_offset,
					   rt->entries[j].length))
				return vdisk_err_set(err, -EINVAL,
						     "region table: entries %u and %u overlap", j,
						     i);
	}
	if (!have_bat || !have_meta)
		return vdisk_err_set(err, -EINVAL, "region table: no %s region",
				     have_bat ? "metadata" : "BAT");
	if (img->meta_length > VHDX_MAX_META_REGION || img->bat_length > VHDX_MAX_BAT_BYTES)
		return vdisk_err_set(err, -EINVAL,
				     "region table: metadata region (%llu bytes) or BAT (%llu bytes) is implausibly large",
				     (unsigned long long)img->meta_length,
				     (unsigned long long)img->bat_length);
	return 0;
}

static int read_regions(struct vhdx_image *img, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(VHDX_RT_SIZE);
	VDISK_AUTOFREE struct vhdx_region_table *rt2 = calloc(1, sizeof(*rt2));
	struct vdisk_err e1 = { 0 }, e2 = { 0 };
	int r;

	img->rt = calloc(1, sizeof(*img->rt));
	if (!buf || !rt2 || !img->rt)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	r = vhdx_meta_pread(img, buf, VHDX_RT_SIZE, VHDX_RT1_OFFSET);
	if (r == 0)
		r = vhdx_region_decode(buf, img->rt, &e1);
	if (r == 0)
		return pick_regions(img, err);
	/* section 5: copy 1 damaged; the copy at 256 KiB is equally authoritative */
	r = vhdx_meta_pread(img, buf, VHDX_RT_SIZE, VHDX_RT2_OFFSET);
	if (r == 0)
		r = vhdx_region_decode(buf, rt2, &e2);
	if (r < 0)
		return vdisk_err_set(err, -EINVAL,
				     "no valid region table: copy 1 at 0x30000: %s; copy 2 at 0x40000: %s",
				     e1.msg, e2.msg);
	memcpy(img->rt, rt2, sizeof(*rt2));
	img->rt1_bad = true;
	return pick_regions(img, err);
}

static const struct vhdx_meta_entry *find_item(const struct vhdx_meta_table *mt,
					       const struct vdisk_guid *id)
{
	for (unsigned i = 0; i < mt->count; i++)
		if (!(mt->entries[i].flags & VHDX_META_IS_USER) &&
		    vdisk_guid_equal(&mt->entries[i].item_id, id))
			return &mt->entries[i];
	return NULL;
}

static bool known_item(const struct vdisk_guid *id)
{
	const struct vdisk_guid *known[] = { &vhdx_guid_file_params, &vhdx_guid_disk_size,
					     &vhdx_guid_page83, &vhdx_guid_logical_sector,
					     &vhdx_guid_physical_sector, &vhdx_guid_parent_locator,
					     &vhdx_guid_chs, &vhdx_guid_pmem };
	for (size_t i = 0; i < ARRAY_SIZE(known); i++)
		if (vdisk_guid_equal(id, known[i]))
			return true;
	return false;
}

static int check_meta_entries(struct vhdx_image *img, struct vdisk_err *err)
{
	const struct vhdx_meta_table *mt = img->mt;

	for (unsigned i = 0; i < mt->count; i++) {
		const struct vhdx_meta_entry *m = &mt->entries[i];
		char g[VDISK_GUID_STRLEN];

		vdisk_guid_format(&m->item_id, g);
		if (m->length > VHDX_META_ITEM_MAX ||
		    (m->length && (m->offset < VHDX_META_TABLE_SIZE ||
				   (uint64_t)m->offset + m->length > img->meta_length)))
			return vdisk_err_set(err, -EINVAL,
					     "metadata table: entry %u (%s): item at offset 0x%x length %u lies outside the metadata region (0x10000..0x%llx)",
					     i, g, m->offset, m->length,
					     (unsigned long long)img->meta_length);
		if (!known_item(&m->item_id) && (m->flags & VHDX_META_IS_REQUIRED))
			return vdisk_err_set(err, -EOPNOTSUPP,
					     "metadata table: entry %u: unknown item %s is marked IsRequired; refusing to open",
					     i, g);
		for (unsigned j = 0; j < i; j++) {
			const struct vhdx_meta_entry *o = &mt->entries[j];
			if (vdisk_guid_equal(&o->item_id, &m->item_id) &&
			    (o->flags & VHDX_META_IS_USER) == (m->flags & VHDX_META_IS_USER))
				return vdisk_err_set(err, -EINVAL,
						     "metadata table: entries %u and %u are both item %s",
						     j, i, g);
			if (m->length && o->length &&
			    ranges_overlap(m->offset, m->length, o->offset, o->length))
				return vdisk_err_set(err, -EINVAL,
						     "metadata table: items of entries %u and %u overlap",
						     j, i);
		}
	}
	return 0;
}

static int read_item(struct vhdx_image *img, const struct vdisk_guid *id, const char *name,
		     uint32_t want_len, uint8_t *out, struct vdisk_err *err)
{
	const struct vhdx_meta_entry *m = find_item(img->mt, id);
	uint8_t page[4096];
	uint64_t off;
	int r;

	if (!m)
		return vdisk_err_set(err, -EINVAL, "metadata: required item %s is missing", name);
	if (m->length != want_len)
		return vdisk_err_set(err, -EINVAL, "metadata: item %s is %u bytes, expected %u",
				     name, m->length, want_len);
	off = img->meta_offset + m->offset;
	r = vhdx_meta_pread(img, page, sizeof(page), off & ~4095ULL);
	if (r < 0)
		return vdisk_err_set(err, r, "metadata: item %s: read failed: %s", name,
				     strerror(-r));
	if ((off & 4095) + want_len > sizeof(page)) {
		uint8_t two[8192];
		r = vhdx_meta_pread(img, two, sizeof(two), off & ~4095ULL);
		if (r < 0)
			return vdisk_err_set(err, r, "metadata: item %s: read failed", name);
		memcpy(out, two + (off & 4095), want_len);
		return 0;
	}
	memcpy(out, page + (off & 4095), want_len);
	return 0;
}

static int read_locator(struct vhdx_image *img, struct vdisk_err *err)
{
	const struct vhdx_meta_entry *m = find_item(img->mt, &vhdx_guid_parent_locator);
	VDISK_AUTOFREE uint8_t *buf = NULL;
	int r;

	if (!m)
		return vdisk_err_set(err, -EINVAL,
				     "metadata: HasParent is set but the parent locator item is missing");
	buf = malloc(m->length ? m->length : 1);
	img->locator = calloc(1, sizeof(*img->locator));
	if (!buf || !img->locator)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	r = vhdx_meta_pread(img, buf, m->length, img->meta_offset + m->offset);
	if (r < 0)
		return vdisk_err_set(err, r, "parent locator: read failed: %s", strerror(-r));
	r = vhdx_locator_decode(buf, m->length, img->locator, err);
	if (r < 0)
		return r;
	if (!vdisk_guid_equal(&img->locator->type, &vhdx_guid_locator_type_vhdx))
		return vdisk_err_set(err, -EOPNOTSUPP, "parent locator: unknown LocatorType");
	if (!vhdx_locator_get(img->locator, "parent_linkage"))
		return vdisk_err_set(err, -EINVAL, "parent locator: no parent_linkage key");
	return 0;
}

static int read_metadata(struct vhdx_image *img, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(VHDX_META_TABLE_SIZE);
	uint8_t fp[8], ds[8], ls[4], ps[4];
	int r;

	img->mt = calloc(1, sizeof(*img->mt));
	if (!buf || !img->mt)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	r = vhdx_meta_pread(img, buf, VHDX_META_TABLE_SIZE, img->meta_offset);
	if (r < 0)
		return vdisk_err_set(err, r, "metadata table at 0x%llx: read failed: %s",
				     (unsigned long long)img->meta_offset, strerror(-r));
	r = vhdx_meta_table_decode(buf, img->mt, err);
	if (r == 0)
		r = check_meta_entries(img, err);
	if (r == 0)
		r = read_item(img, &vhdx_guid_file_params, "File Parameters", 8, fp, err);
	if (r == 0)
		r = read_item(img, &vhdx_guid_disk_size, "Virtual Disk Size", 8, ds, err);
	if (r == 0)
		r = read_item(img, &vhdx_guid_logical_sector, "Logical Sector Size", 4, ls, err);
	if (r == 0)
		r = read_item(img, &vhdx_guid_physical_sector, "Physical Sector Size", 4, ps, err);
	if (r == 0)
		r = read_item(img, &vhdx_guid_page83, "Page 83 Data", 16, img->page83.b, err);
	if (r < 0)
		return (vdisk_err_prefix(err, "metadata region at 0x%llx: ",
					(unsigned long long)img->meta_offset), r);
	img->block_size = get_le32(fp);
	img->leave_alloc = get_le32(fp + 4) & 1;
	img->has_parent = (get_le32(fp + 4) >> 1) & 1;
	img->disk_size = get_le64(ds);
	img->lsec = get_le32(ls);
	img->psec = get_le32(ps);
	if (!IS_POW2(img->block_size) || img->block_size < VHDX_MIN_BLOCK_SIZE ||
	    img->block_size > VHDX_MAX_BLOCK_SIZE)
		return vdisk_err_set(err, -EINVAL,
				     "metadata: File Parameters: BlockSize %u is not a power of two between 1 MiB and 256 MiB",
				     img->block_size);
	if ((img->lsec != 512 && img->lsec != 4096) || (img->psec != 512 && img->psec != 4096))
		return vdisk_err_set(err, -EINVAL,
				     "metadata: sector sizes logical %u / physical %u: each must be 512 or 4096",
				     img->lsec, img->psec);
	if (img->disk_size == 0 || img->disk_size > VHDX_MAX_DISK_SIZE ||
	    img->disk_size % img->lsec)
		return vdisk_err_set(err, -EINVAL,
				     "metadata: Virtual Disk Size %llu is not a non-zero multiple of the %u-byte sector of at most 64 TiB",
				     (unsigned long long)img->disk_size, img->lsec);
	return img->has_parent ? read_locator(img, err) : 0;
}

static int compute_geometry(struct vhdx_image *img, struct vdisk_err *err)
{
	uint64_t needed;

	img->chunk_ratio = (uint32_t)((VHDX_SECTORS_PER_CHUNK * img->lsec) / img->block_size);
	/* both are powers of two (checked above): the read path shifts instead of dividing */
	img->block_shift = (uint8_t)__builtin_ctz(img->block_size);
	img->lsec_shift = (uint8_t)__builtin_ctz(img->lsec);
	img->nr_blocks = DIV_ROUND_UP(img->disk_size, img->block_size);
	img->nr_chunks = DIV_ROUND_UP(img->nr_blocks, img->chunk_ratio);
	/* section 8.2: the smaller (v1.00) count for fixed/dynamic, SB*(CR+1) for children */
	if (img->has_parent)
		needed = img->nr_chunks * ((uint64_t)img->chunk_ratio + 1);
	else
		needed = img->nr_blocks + (img->nr_blocks - 1) / img->chunk_ratio;
	img->bat_entries = img->bat_length / 8;
	if (img->bat_entries < needed)
		return vdisk_err_set(err, -EINVAL,
				     "region table: BAT region of %llu bytes holds %llu entries, the disk needs %llu",
				     (unsigned long long)img->bat_length,
				     (unsigned long long)img->bat_entries,
				     (unsigned long long)needed);
	return 0;
}

static int open_file(struct vhdx_image *img, const char *path, unsigned flags,
		     struct vdisk_err *err)
{
	int oflags = O_CLOEXEC | (img->readonly ? O_RDONLY : O_RDWR);
	int r;

	if (flags & VHDX_OPEN_DIRECT)
		oflags |= O_DIRECT;
	img->fd = open(path, oflags);
	if (img->fd < 0)
		return vdisk_err_set(err, -errno, "cannot open: %s", strerror(errno));
	if (flags & VHDX_OPEN_NOLOCK)
		return 0;
	r = vdisk_lock_fd(img->fd, !img->readonly);
	if (r == -EAGAIN)
		return vdisk_err_set(err, -EBUSY,
				     "image is in use: another process holds a %s lock on it (a running VM, a mount or another vdisk)",
				     img->readonly ? "write" : "read or write");
	if (r < 0)
		return vdisk_err_set(err, r, "cannot lock: %s", strerror(-r));
	return 0;
}

static int open_steps(struct vhdx_image *img, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(VHDX_IDENT_SIZE);
	int r;

	if (!buf)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	r = vdisk_pread_zfill(img->fd, buf, VHDX_IDENT_SIZE, 0);
	if (r < 0)
		return vdisk_err_set(err, r, "read failed: %s", strerror(-r));
	r = vhdx_ident_decode(buf, img->creator, sizeof(img->creator), err);
	if (r == 0)
		r = read_headers(img, err);
	if (r == 0)
		r = check_header(img, err);
	if (r == 0 && !vdisk_guid_is_zero(&img->hdr.log_guid))
		r = vhdx_log_replay(img, err);
	if (r == 0)
		r = read_regions(img, err);
	if (r == 0)
		r = read_metadata(img, err);
	if (r == 0)
		r = compute_geometry(img, err);
	if (r == 0)
		r = vhdx_bat_load(img, err);
	return r;
}

int vhdx_open_layer(const char *path, unsigned flags, struct vhdx_image **ret_img,
		    struct vdisk_err *err)
{
	struct vhdx_image *img = calloc(1, sizeof(*img));
	const char *fi;
	int r;

	if (!img)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	img->fd = -1;
	img->flags = flags;
	img->readonly = flags & VHDX_OPEN_RDONLY;
	pthread_mutex_init(&img->lock, NULL);
	img->path = strdup(path);
	fi = getenv("VDISK_FAULT_INJECT_WRITES");
	if (fi && !img->readonly)
		img->fail_after_writes = atoi(fi);
	r = img->path ? open_file(img, path, flags, err) : vdisk_err_set(err, -ENOMEM, "out of memory");
	if (r == 0)
		r = open_steps(img, err);
	if (r < 0) {
		vdisk_err_prefix(err, "%s: ", path);
		vhdx_free(img);
		return r;
	}
	*ret_img = img;
	return 0;
}

void vhdx_free(struct vhdx_image *img)
{
	if (!img)
		return;
	vhdx_free(img->parent);
	if (img->fd >= 0)
		close(img->fd);
	if (img->sbm)
		for (uint64_t c = 0; c < img->nr_chunks; c++)
			free(img->sbm[c]);
	for (size_t i = 0; i < img->nr_ov; i++)
		free(img->ov[i].data);
	free(img->ov);
	for (size_t i = 0; i < img->nr_extra; i++)
		free(img->extra[i].data);
	free(img->extra);
	free(img->sbm);
	free(img->sbm_dirty);
	free(img->dirty);
	free(img->bat);
	free(img->locator);
	free(img->mt);
	free(img->rt);
	free(img->path);
	pthread_mutex_destroy(&img->lock);
	free(img);
}

int vhdx_header_update(struct vhdx_image *img, const struct vhdx_header *h)
{
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(VHDX_HEADER_SIZE);
	struct vhdx_header n = *h;
	int r;

	if (!buf)
		return -ENOMEM;
	/* section 4: write the non-current slot first, flush, then the other one */
	for (int k = 0; k < 2; k++) {
		int slot = k == 0 ? !img->cur_slot : img->cur_slot;
		n.seq = img->hdr.seq + 1 + k;
		vhdx_header_encode(&n, buf);
		r = vhdx_meta_pwrite(img, buf, VHDX_HEADER_SIZE,
				     slot ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET);
		if (r == 0 && fdatasync(img->fd) < 0)
			r = -errno;
		if (r < 0)
			return img->sticky_err = r;
	}
	n.seq = img->hdr.seq + 2;
	img->hdr = n;
	return 0;
}

int vhdx_session_begin_locked(struct vhdx_image *img, bool data)
{
	int want = data ? 2 : 1;
	struct vhdx_header h = img->hdr;
	int r;

	if (img->readonly)
		return -EROFS;
	if (img->session >= want)
		return 0;
	if (img->session == 0 && (r = vdisk_guid_generate(&h.file_write_guid)) < 0)
		return r;
	if (data && !vdisk_guid_is_zero(&img->next_dwg))
		h.data_write_guid = img->next_dwg; /* a merge announced this GUID to the children first */
	else if (data && (r = vdisk_guid_generate(&h.data_write_guid)) < 0)
		return r;
	r = vhdx_header_update(img, &h);
	if (r < 0)
		return r;
	__atomic_store_n(&img->session, want, __ATOMIC_RELEASE);
	return 0;
}

void vhdx_open_opts_init(struct vhdx_open_opts *o, size_t size)
{
	memset(o, 0, size);
	o->struct_size = size;
}

int vhdx_open(const char *path, const struct vhdx_open_opts *o, struct vhdx_image **ret_img,
	      struct vdisk_err *err)
{
	struct vhdx_open_opts def;
	struct vhdx_image *img;
	int r;

	if (!o) {
		vhdx_open_opts_init(&def, sizeof(def));
		o = &def;
	}
	r = vhdx_open_layer(path, o->flags, &img, err);
	if (r < 0)
		return r;
	if (img->has_parent && !(o->flags & VHDX_OPEN_NO_PARENT)) {
		r = vhdx_chain_open(img, o, err);
		if (r < 0) {
			vhdx_free(img);
			return r;
		}
	}
	*ret_img = img;
	return 0;
}

int vhdx_close(struct vhdx_image *img, struct vdisk_err *err)
{
	int r = 0;

	if (!img)
		return 0;
	if (!img->readonly && img->session > 0 && !img->sticky_err) {
		r = vhdx_flush(img);
		if (r == 0)
			r = vhdx_log_close(img);
		/* the sparse run-way past the last block (grow_file_locked) */
		if (r == 0 && img->file_size > img->file_end &&
		    ftruncate(img->fd, (off_t)img->file_end) < 0)
			r = -errno;
		if (r < 0)
			vdisk_err_set(err, r, "%s: closing: committing metadata failed: %s",
				      img->path, strerror(-r));
	} else if (img->sticky_err) {
		r = vdisk_err_set(err, img->sticky_err,
				  "%s: closing: an earlier metadata write failed (%s); changes since the last successful flush may be lost",
				  img->path, strerror(-img->sticky_err));
	}
	vhdx_free(img);
	return r;
}

void vhdx_abandon(struct vhdx_image *img)
{
	vhdx_free(img);
}
