/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VHDX log (section 10): finding the active sequence and replaying it
 * on open (on disk for a writer, into an in-memory overlay for a reader),
 * and writing our own entries: each commit journals whole 4 KiB images of
 * the dirty BAT and sector-bitmap pages in one entry, flushes, then writes
 * them in place. Data is flushed before the entry that maps it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "vhdx-int.h"

#define SECTOR VHDX_LOG_SECTOR

/* ---- reading ---- */

struct log_view {
	const uint8_t *buf; /* the whole log */
	uint32_t len;
	const struct vdisk_guid *guid;
};

struct parsed_entry {
	struct vhdx_log_entry_hdr h;
	uint32_t pos;
};

static const uint8_t *at(const struct log_view *lv, uint64_t off)
{
	return lv->buf + off % lv->len;
}

static uint32_t desc_sectors(uint32_t count)
{
	return (uint32_t)DIV_ROUND_UP(VHDX_LOG_ENTRY_HDR_SIZE + (uint64_t)VHDX_LOG_DESC_SIZE * count,
				      SECTOR);
}

static const uint8_t *desc_ptr(const struct log_view *lv, uint32_t pos, uint32_t i)
{
	uint64_t o = VHDX_LOG_ENTRY_HDR_SIZE + (uint64_t)VHDX_LOG_DESC_SIZE * i;
	/* a descriptor never straddles a sector: 64 + 32 i packs exactly */
	return at(lv, pos + o);
}

/* Validates the entry at @pos (section 10.4 step 2). Returns 0 when valid. */
static int parse_entry(const struct log_view *lv, uint32_t pos, struct parsed_entry *pe)
{
	struct vhdx_log_entry_hdr *h = &pe->h;
	uint32_t ndata = 0, nsec;
	uint32_t crc = 0;

	if (vhdx_log_hdr_decode(at(lv, pos), h) < 0)
		return -EINVAL;
	if (!vdisk_guid_equal(&h->log_guid, lv->guid) || h->entry_length == 0 ||
	    h->entry_length % SECTOR || h->entry_length >= lv->len || h->tail % SECTOR ||
	    h->tail >= lv->len || h->seq == 0 ||
	    (uint64_t)h->desc_count * VHDX_LOG_DESC_SIZE > h->entry_length)
		return -EINVAL;
	nsec = desc_sectors(h->desc_count);
	for (uint32_t i = 0; i < h->desc_count; i++) {
		const uint8_t *d = desc_ptr(lv, pos, i);
		bool data = memcmp(d, "desc", 4) == 0;
		if (!data && memcmp(d, "zero", 4) != 0)
			return -EINVAL;
		if (get_le64(d + 24) != h->seq || get_le64(d + 16) % SECTOR)
			return -EINVAL;
		if (!data && get_le64(d + 8) % SECTOR)
			return -EINVAL;
		ndata += data;
	}
	if ((uint64_t)SECTOR * (nsec + ndata) != h->entry_length)
		return -EINVAL;
	for (uint32_t k = 0; k < ndata; k++) {
		const uint8_t *s = at(lv, pos + (uint64_t)(nsec + k) * SECTOR);
		if (memcmp(s, "data", 4) != 0 || get_le32(s + 4) != (uint32_t)(h->seq >> 32) ||
		    get_le32(s + 4092) != (uint32_t)h->seq)
			return -EINVAL;
	}
	/* CRC over the whole entry with the checksum field zeroed, sector by sector (may wrap) */
	for (uint32_t k = 0; k < h->entry_length / SECTOR; k++) {
		const uint8_t *s = at(lv, pos + (uint64_t)k * SECTOR);
		if (k == 0) {
			static const uint8_t zero4[4];
			crc = vdisk_crc32c(crc, s, 4);
			crc = vdisk_crc32c(crc, zero4, 4);
			crc = vdisk_crc32c(crc, s + 8, SECTOR - 8);
		} else {
			crc = vdisk_crc32c(crc, s, SECTOR);
		}
	}
	if (crc != h->checksum)
		return -EINVAL;
	pe->pos = pos;
	return 0;
}

/*
 * Finds the active sequence (section 10.4): the valid sequence whose head has
 * the highest sequence number. Returns the number of entries from its tail to
 * its head in @seq (at most @max), 0 when none.
 */
static unsigned find_active(const struct log_view *lv, struct parsed_entry *seq, unsigned max)
{
	struct parsed_entry *cur = calloc(max, sizeof(*cur));
	unsigned best_n = 0;
	uint64_t best_seq = 0;

	if (!cur)
		return 0;
	for (uint32_t cand = 0; cand < lv->len; cand += SECTOR) {
		unsigned n = 0;
		uint64_t used = 0;
		uint32_t pos = cand;

		while (n < max && parse_entry(lv, pos, &cur[n]) == 0) {
			if (n && cur[n].h.seq != cur[n - 1].h.seq + 1)
				break;
			if (used + cur[n].h.entry_length >= lv->len)
				break;
			used += cur[n].h.entry_length;
			pos = (uint32_t)((pos + cur[n].h.entry_length) % lv->len);
			n++;
		}
		if (n == 0 || cur[n - 1].h.seq <= best_seq)
			continue;
		/* valid when the head's tail is one of the entries of the sequence */
		for (unsigned t = 0; t < n; t++) {
			if (cur[t].pos != cur[n - 1].h.tail)
				continue;
			best_seq = cur[n - 1].h.seq;
			best_n = n - t;
			memcpy(seq, cur + t, best_n * sizeof(*seq));
			break;
		}
	}
	free(cur);
	return best_n;
}

/* ---- replay ---- */

static int add_overlay(struct vhdx_image *img, uint64_t off, uint64_t len, const uint8_t *page)
{
	struct vhdx_overlay *n = realloc(img->ov, (img->nr_ov + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	img->ov = n;
	n[img->nr_ov] = (struct vhdx_overlay){ .offset = off, .length = len };
	if (page) {
		n[img->nr_ov].data = malloc(SECTOR);
		if (!n[img->nr_ov].data)
			return -ENOMEM;
		memcpy(n[img->nr_ov].data, page, SECTOR);
	}
	img->nr_ov++;
	return 0;
}

static int check_target(const struct vhdx_image *img, uint64_t off, uint64_t len,
			struct vdisk_err *err)
{
	uint64_t end;

	if (add_overflows_u64(off, len, &end) || off < VHDX_RT1_OFFSET ||
	    (off < img->log_offset + img->log_length && img->log_offset < end))
		return vdisk_err_set(err, -EINVAL,
				     "log: a descriptor targets 0x%llx (+%llu bytes): the identifier, the headers and the log itself are never written through the log",
				     (unsigned long long)off, (unsigned long long)len);
	return 0;
}

static int apply_entry(struct vhdx_image *img, const struct log_view *lv,
		       const struct parsed_entry *pe, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *page = vdisk_aligned_alloc(SECTOR);
	uint32_t nsec = desc_sectors(pe->h.desc_count), k = 0;
	int r = 0;

	if (!page)
		return -ENOMEM;
	for (uint32_t i = 0; i < pe->h.desc_count && r == 0; i++) {
		const uint8_t *d = desc_ptr(lv, pe->pos, i);
		uint64_t off = get_le64(d + 16);

		if (memcmp(d, "zero", 4) == 0) {
			uint64_t len = get_le64(d + 8);
			r = check_target(img, off, len, err);
			if (r == 0 && img->readonly)
				r = add_overlay(img, off, len, NULL);
			else if (r == 0)
				for (uint64_t z = 0; z < len && r == 0; z += SECTOR) {
					memset(page, 0, SECTOR);
					r = vhdx_meta_pwrite(img, page, SECTOR, off + z);
				}
			continue;
		}
		/* data descriptor: rebuild the page from the data sector + leading/trailing bytes */
		memcpy(page, at(lv, pe->pos + (uint64_t)(nsec + k++) * SECTOR), SECTOR);
		memcpy(page, d + 8, 8);
		memcpy(page + 4092, d + 4, 4);
		r = check_target(img, off, SECTOR, err);
		if (r == 0)
			r = img->readonly ? add_overlay(img, off, SECTOR, page)
					  : vhdx_meta_pwrite(img, page, SECTOR, off);
	}
	if (r < 0)
		return vdisk_err_set(err, r, "log: replaying entry %llu at log offset 0x%x failed: %s",
				     (unsigned long long)pe->h.seq, pe->pos, strerror(-r));
	return 0;
}

/* Every descriptor of @pe targets a legal place; checked before the replay writes anything. */
static int check_entry_targets(const struct vhdx_image *img, const struct log_view *lv,
			       const struct parsed_entry *pe, struct vdisk_err *err)
{
	for (uint32_t i = 0; i < pe->h.desc_count; i++) {
		const uint8_t *d = desc_ptr(lv, pe->pos, i);
		bool zero = memcmp(d, "zero", 4) == 0;
		int r = check_target(img, get_le64(d + 16), zero ? get_le64(d + 8) : SECTOR, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int replay_sequence(struct vhdx_image *img, const struct log_view *lv,
			   const struct parsed_entry *seq, unsigned n, struct vdisk_err *err)
{
	const struct vhdx_log_entry_hdr *head = &seq[n - 1].h;
	struct vhdx_header h = img->hdr;
	struct stat st;
	int r;

	if (fstat(img->fd, &st) < 0)
		return vdisk_err_set(err, -errno, "fstat: %s", strerror(errno));
	if ((uint64_t)st.st_size < head->flushed_file_offset)
		return vdisk_err_set(err, -EINVAL,
				     "log: the file is %llu bytes but the log says %llu bytes were already durable: the image was truncated",
				     (unsigned long long)st.st_size,
				     (unsigned long long)head->flushed_file_offset);
	for (unsigned i = 0; i < n; i++) {
		r = check_entry_targets(img, lv, &seq[i], err);
		if (r < 0)
			return r;
	}
	if (!img->readonly) {
		/* section 10.5: a new FileWriteGuid first, keeping LogGuid so a crash replays again */
		r = vdisk_guid_generate(&h.file_write_guid);
		if (r == 0)
			r = vhdx_header_update(img, &h);
		if (r < 0)
			return vdisk_err_set(err, r, "log: header update before replay failed: %s",
					     strerror(-r));
		img->session = 1;
	}
	for (unsigned i = 0; i < n; i++) {
		r = apply_entry(img, lv, &seq[i], err);
		if (r < 0)
			return r;
	}
	if (img->readonly) {
		img->virt_file_size = head->last_file_offset;
		return 0;
	}
	if ((uint64_t)st.st_size < head->last_file_offset &&
	    ftruncate(img->fd, (off_t)head->last_file_offset) < 0)
		return vdisk_err_set(err, -errno, "log: extending the file failed: %s",
				     strerror(errno));
	if (fsync(img->fd) < 0)
		return vdisk_err_set(err, -errno, "log: fsync after replay failed: %s",
				     strerror(errno));
	memset(&h.log_guid, 0, sizeof(h.log_guid));
	h.file_write_guid = img->hdr.file_write_guid;
	r = vhdx_header_update(img, &h);
	if (r < 0)
		return vdisk_err_set(err, r, "log: header update after replay failed: %s",
				     strerror(-r));
	return 0;
}

int vhdx_log_replay(struct vhdx_image *img, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *buf = NULL;
	VDISK_AUTOFREE struct parsed_entry *seq = NULL;
	unsigned max = img->log_length / SECTOR;
	struct log_view lv = { .len = img->log_length, .guid = &img->hdr.log_guid };
	struct stat st;
	unsigned n;
	int r;

	/* bound the allocation by what the file can hold before trusting LogLength */
	if (fstat(img->fd, &st) < 0)
		return vdisk_err_set(err, -errno, "fstat: %s", strerror(errno));
	if (img->log_offset + img->log_length > (uint64_t)st.st_size)
		return vdisk_err_set(err, -EINVAL,
				     "log at 0x%llx, %u bytes: reaches past the end of the file (%llu bytes); the log cannot be replayed",
				     (unsigned long long)img->log_offset, img->log_length,
				     (unsigned long long)st.st_size);
	buf = vdisk_aligned_alloc(img->log_length);
	seq = calloc(max, sizeof(*seq));
	lv.buf = buf;
	if (!buf || !seq)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	img->found_log_guid = img->hdr.log_guid;
	r = vdisk_pread_zfill(img->fd, buf, img->log_length, img->log_offset);
	if (r < 0)
		return vdisk_err_set(err, r, "log at 0x%llx: read failed: %s",
				     (unsigned long long)img->log_offset, strerror(-r));
	n = find_active(&lv, seq, max);
	if (n == 0) {
		char g[VDISK_GUID_STRLEN];
		vdisk_guid_format(&img->hdr.log_guid, g);
		return vdisk_err_set(err, -EINVAL,
				     "log at 0x%llx: LogGuid %s is set but no valid log sequence carries it; the log is corrupt",
				     (unsigned long long)img->log_offset, g);
	}
	r = replay_sequence(img, &lv, seq, n, err);
	if (r < 0)
		return r;
	img->log_replayed = true;
	return 0;
}

/* ---- writing ---- */

struct page_ref {
	uint64_t file_offset;
	const uint8_t *data; /* 4 KiB */
};

/* Collects the dirty pages (BAT pages re-encoded little-endian into @scratch). */
static size_t collect_pages(struct vhdx_image *img, struct page_ref *pages, uint8_t *scratch)
{
	uint64_t nbat_pages = img->bat_length / SECTOR;
	size_t n = 0;

	for (uint64_t p = 0; p < nbat_pages; p++) {
		if (!(img->dirty[p / 8] & (1u << (p % 8))))
			continue;
		uint8_t *dst = scratch + n * SECTOR;
		for (unsigned i = 0; i < 512; i++)
			put_le64(dst + 8 * i, __atomic_load_n(&img->bat[p * 512 + i], __ATOMIC_ACQUIRE));
		pages[n].file_offset = img->bat_offset + p * SECTOR;
		pages[n++].data = dst;
	}
	for (uint64_t k = 0; img->sbm && k < img->nr_chunks * 256; k++) {
		uint64_t c = k / 256, p = k % 256;
		if (!(img->sbm_dirty[k / 8] & (1u << (k % 8))))
			continue;
		uint64_t e = img->bat[vhdx_sb_index(c, img->chunk_ratio)];
		memcpy(scratch + n * SECTOR, img->sbm[c] + p * SECTOR, SECTOR);
		pages[n].file_offset = (e & VHDX_BAT_OFFSET_MASK) + p * SECTOR;
		pages[n].data = scratch + n * SECTOR;
		n++;
	}
	for (size_t i = 0; i < img->nr_extra; i++) {
		pages[n].file_offset = img->extra[i].offset;
		pages[n++].data = img->extra[i].data;
	}
	return n;
}

/* Builds one entry of @n data descriptors into @buf; returns its length. */
static uint32_t build_entry(struct vhdx_image *img, const struct page_ref *pages, size_t n,
			    const struct vdisk_guid *guid, uint8_t *buf)
{
	uint32_t nsec = desc_sectors((uint32_t)n);
	uint32_t len = (uint32_t)((nsec + n) * SECTOR);
	struct vhdx_log_entry_hdr h = {
		.entry_length = len,
		.tail = img->log_head,
		.seq = img->log_seq + 1,
		.desc_count = (uint32_t)n,
		.log_guid = *guid,
		.flushed_file_offset = img->flushed_end,
		.last_file_offset = img->file_end,
	};

	memset(buf, 0, len);
	for (size_t i = 0; i < n; i++) {
		uint8_t *d = buf + VHDX_LOG_ENTRY_HDR_SIZE + VHDX_LOG_DESC_SIZE * i;
		uint8_t *s = buf + (nsec + i) * SECTOR;
		memcpy(d, "desc", 4);
		memcpy(d + 4, pages[i].data + 4092, 4);
		memcpy(d + 8, pages[i].data, 8);
		put_le64(d + 16, pages[i].file_offset);
		put_le64(d + 24, h.seq);
		memcpy(s, "data", 4);
		put_le32(s + 4, (uint32_t)(h.seq >> 32));
		memcpy(s + 8, pages[i].data + 8, 4084);
		put_le32(s + 4092, (uint32_t)h.seq);
	}
	vhdx_log_hdr_encode(&h, buf);
	put_le32(buf + 4, vdisk_crc32c(0, buf, len));
	return len;
}

/*
 * Writes one entry (wrapping to the log start when it does not fit), flushes,
 * applies. When the header has no LogGuid yet (first commit of a session),
 * the entry is written under a fresh GUID first and the header takes that GUID
 * only once the entry is durable, so a crash never leaves a LogGuid that no
 * valid entry carries; older entries never match the fresh GUID (section 10.6).
 */
static int commit_batch(struct vhdx_image *img, const struct page_ref *pages, size_t n,
			uint8_t *buf)
{
	uint32_t len = desc_sectors((uint32_t)n) * SECTOR + (uint32_t)n * SECTOR;
	bool fresh = vdisk_guid_is_zero(&img->hdr.log_guid);
	struct vhdx_header h = img->hdr;
	int r = 0;

	if (fresh) {
		r = vdisk_guid_generate(&h.log_guid);
		img->log_head = 0;
		img->log_seq = 0;
	}
	if (img->log_head + len > img->log_length)
		img->log_head = 0;
	len = build_entry(img, pages, n, &h.log_guid, buf);
	if (r == 0)
		r = vhdx_meta_pwrite(img, buf, len, img->log_offset + img->log_head);
	if (r == 0 && fdatasync(img->fd) < 0)
		r = -errno;
	if (r == 0 && fresh)
		r = vhdx_header_update(img, &h);
	if (r < 0)
		return r;
	/* the entry is durable and the header names it: this is the commit point */
	img->log_seq++;
	img->log_head = (img->log_head + len) % img->log_length;
	for (size_t i = 0; i < n && r == 0; i++)
		r = vhdx_meta_pwrite(img, pages[i].data, SECTOR, pages[i].file_offset);
	return r;
}

int vhdx_log_commit_locked(struct vhdx_image *img)
{
	size_t total = img->nr_dirty + img->nr_sbm_dirty + img->nr_extra;
	/* keep one sector free (section 10.3) and one for descriptors of every 126 pages */
	size_t per_entry = MIN((size_t)(img->log_length / SECTOR) * 126 / 128 - 2, 4000);
	VDISK_AUTOFREE uint8_t *scratch = vdisk_aligned_alloc(total * SECTOR);
	VDISK_AUTOFREE struct page_ref *pages = calloc(total, sizeof(*pages));
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc((per_entry + per_entry / 126 + 2) * SECTOR);
	size_t n, i;
	int r;

	if (!scratch || !pages || !buf)
		return -ENOMEM;
	n = collect_pages(img, pages, scratch);
	r = 0;
	for (i = 0; i < n && r == 0; i += per_entry) {
		if (i > 0 && fdatasync(img->fd) < 0)
			r = -errno; /* the previous entry's pages are in place before its space is reused */
		if (r == 0)
			r = commit_batch(img, pages + i, MIN(per_entry, n - i), buf);
	}
	if (r < 0)
		return img->sticky_err = r;
	memset(img->dirty, 0, DIV_ROUND_UP(img->bat_length / SECTOR, 8));
	if (img->sbm_dirty)
		memset(img->sbm_dirty, 0, DIV_ROUND_UP(img->nr_chunks * 256, 8));
	img->nr_dirty = img->nr_sbm_dirty = 0;
	for (size_t k = 0; k < img->nr_extra; k++)
		free(img->extra[k].data);
	free(img->extra);
	img->extra = NULL;
	img->nr_extra = 0;
	return 0;
}

int vhdx_log_close(struct vhdx_image *img)
{
	struct vhdx_header h = img->hdr;

	if (vdisk_guid_is_zero(&h.log_guid))
		return 0;
	/* every entry is applied; make the in-place pages durable, then mark the log empty */
	if (fsync(img->fd) < 0)
		return -errno;
	memset(&h.log_guid, 0, sizeof(h.log_guid));
	return vhdx_header_update(img, &h);
}
