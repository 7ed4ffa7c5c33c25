/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The BAT and sector bitmaps (sections 8 and 9): loading and validating
 * them, translating virtual ranges to extents (lock-free), allocating
 * blocks for writes, discard and write-zeroes, and flush (group commit of
 * the changed BAT/bitmap pages through the log).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "vhdx-int.h"

static bool is_sb_index(const struct vhdx_image *img, uint64_t idx)
{
	return idx % ((uint64_t)img->chunk_ratio + 1) == img->chunk_ratio;
}

/* A payload or bitmap block at @off of @len bytes must not touch the header section, log or regions. */
static const char *block_collides(const struct vhdx_image *img, uint64_t off, uint64_t len)
{
	if (off < VHDX_ALIGN)
		return "the header section";
	if (off < img->log_offset + img->log_length && img->log_offset < off + len)
		return "the log";
	for (uint32_t i = 0; i < img->rt->count; i++) {
		const struct vhdx_region_entry *e = &img->rt->entries[i];
		if (off < e->file_offset + e->length && e->file_offset < off + len)
			return vdisk_guid_equal(&e->guid, &vhdx_guid_bat_region) ? "the BAT region"
				: vdisk_guid_equal(&e->guid, &vhdx_guid_meta_region)
					? "the metadata region"
					: "a region";
	}
	return NULL;
}

static int check_entry(struct vhdx_image *img, uint64_t idx, uint64_t e, uint64_t fsize,
		       struct vdisk_err *err)
{
	unsigned st = e & VHDX_BAT_STATE_MASK;
	uint64_t off = e & VHDX_BAT_OFFSET_MASK;
	bool sb = is_sb_index(img, idx);
	uint64_t len = sb ? VHDX_SB_BLOCK_SIZE : img->block_size;
	const char *what;

	if (sb) {
		if (!img->has_parent)
			return 0; /* unused in fixed/dynamic files; ignored like VirtualBox does */
		if (st != VHDX_SB_NOT_PRESENT && st != VHDX_SB_PRESENT)
			return vdisk_err_set(err, -EINVAL,
					     "BAT entry %llu (sector bitmap): reserved state %u",
					     (unsigned long long)idx, st);
		if (st == VHDX_SB_NOT_PRESENT)
			return 0;
	} else if (st == 4 || st == 5 || (st == VHDX_BLOCK_PARTIALLY_PRESENT && !img->has_parent)) {
		return vdisk_err_set(err, -EINVAL,
				     "BAT entry %llu (block %llu): state %u is not valid in a %s image",
				     (unsigned long long)idx,
				     (unsigned long long)(idx - idx / (img->chunk_ratio + 1ULL)), st,
				     img->has_parent ? "differencing" : "non-differencing");
	} else if (st != VHDX_BLOCK_FULLY_PRESENT && st != VHDX_BLOCK_PARTIALLY_PRESENT) {
		return 0;
	}
	if (off == 0)
		return vdisk_err_set(err, -EINVAL,
				     "BAT entry %llu: file offset 0x0 with state %u (%s) points into the file's header area",
				     (unsigned long long)idx, st, sb ? "sector bitmap present" : "data present");
	if (off >= fsize)
		return vdisk_err_set(err, -EINVAL,
				     "BAT entry %llu: file offset 0x%llx points after end of file (0x%llx); the image has probably been truncated",
				     (unsigned long long)idx, (unsigned long long)off,
				     (unsigned long long)fsize);
	what = block_collides(img, off, len);
	if (what)
		return vdisk_err_set(err, -EINVAL,
				     "BAT entry %llu: block at 0x%llx (%llu bytes) overlaps %s",
				     (unsigned long long)idx, (unsigned long long)off,
				     (unsigned long long)len, what);
	return 0;
}

static int load_bitmaps(struct vhdx_image *img, struct vdisk_err *err)
{
	img->sbm = calloc(img->nr_chunks, sizeof(*img->sbm));
	img->sbm_dirty = calloc(DIV_ROUND_UP(img->nr_chunks * 256, 8), 1);
	if (!img->sbm || !img->sbm_dirty)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	for (uint64_t c = 0; c < img->nr_chunks; c++) {
		uint64_t e = img->bat[vhdx_sb_index(c, img->chunk_ratio)];
		int r;
		if ((e & VHDX_BAT_STATE_MASK) != VHDX_SB_PRESENT) {
			/* section 8.5: a chunk with PARTIALLY_PRESENT blocks must have its bitmap */
			uint64_t b0 = c * img->chunk_ratio;
			uint64_t b1 = MIN(b0 + img->chunk_ratio, img->nr_blocks);
			for (uint64_t b = b0; b < b1; b++)
				if ((img->bat[vhdx_bat_index(b, img->chunk_ratio)] &
				     VHDX_BAT_STATE_MASK) == VHDX_BLOCK_PARTIALLY_PRESENT)
					return vdisk_err_set(err, -EINVAL,
							     "BAT entry %llu (block %llu) is PARTIALLY_PRESENT but BAT entry %llu, the sector bitmap of chunk %llu, is not present",
							     (unsigned long long)vhdx_bat_index(b, img->chunk_ratio),
							     (unsigned long long)b,
							     (unsigned long long)vhdx_sb_index(c, img->chunk_ratio),
							     (unsigned long long)c);
			continue;
		}
		img->sbm[c] = vdisk_aligned_alloc(VHDX_SB_BLOCK_SIZE);
		if (!img->sbm[c])
			return vdisk_err_set(err, -ENOMEM, "out of memory");
		r = vhdx_meta_pread(img, img->sbm[c], VHDX_SB_BLOCK_SIZE, e & VHDX_BAT_OFFSET_MASK);
		if (r < 0)
			return vdisk_err_set(err, r, "sector bitmap of chunk %llu: read failed",
					     (unsigned long long)c);
	}
	return 0;
}

struct span {
	uint64_t start, end;
};

static int cmp_span(const void *a, const void *b)
{
	const struct span *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static bool is_kept(const struct vhdx_image *img, uint64_t i)
{
	uint64_t e = img->bat[i];

	return (e & VHDX_BAT_STATE_MASK) == VHDX_BLOCK_UNMAPPED && (e & VHDX_BAT_OFFSET_MASK) &&
	       !is_sb_index(img, i);
}

/*
 * An UNMAPPED block may keep its old file offset (section 8.4) and the next write into the
 * block reuses that space. Keep such an offset only when no other block, bitmap or kept
 * offset overlaps it, so a damaged entry can never make a write land on live data.
 */
static int drop_shared_kept_offsets(struct vhdx_image *img, uint64_t used, struct vdisk_err *err)
{
	struct span *s;
	size_t n = 0, cap = 0;
	uint64_t i;

	for (i = 0; i < used; i++)
		if (img->bat[i] & VHDX_BAT_OFFSET_MASK)
			cap++;
	for (i = 0; i < used && !is_kept(img, i); i++)
		;
	if (i == used)
		return 0;
	s = malloc(cap * sizeof(*s));
	if (!s)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	for (i = 0; i < used; i++) {
		uint64_t e = img->bat[i], off = e & VHDX_BAT_OFFSET_MASK;
		unsigned st = e & VHDX_BAT_STATE_MASK;
		bool sb = is_sb_index(img, i);
		if (!off)
			continue;
		if (sb && img->has_parent && st == VHDX_SB_PRESENT)
			s[n++] = (struct span){ off, off + VHDX_SB_BLOCK_SIZE };
		else if (!sb && (st == VHDX_BLOCK_FULLY_PRESENT ||
				 st == VHDX_BLOCK_PARTIALLY_PRESENT || st == VHDX_BLOCK_UNMAPPED))
			s[n++] = (struct span){ off, off + img->block_size };
	}
	qsort(s, n, sizeof(*s), cmp_span);
	for (i = 0; i < used; i++) {
		uint64_t off = img->bat[i] & VHDX_BAT_OFFSET_MASK, end = off + img->block_size;
		uint64_t from = off > img->block_size ? off - img->block_size : 0;
		size_t lo = 0, hi = n, hits = 0;
		if (!is_kept(img, i))
			continue;
		/* spans overlapping [off, end) start in (off - block_size, end): nothing is longer */
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (s[mid].start <= from)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (size_t k = lo; k < n && s[k].start < end; k++)
			hits += s[k].end > off;
		if (hits > 1) /* itself and another */
			img->bat[i] &= VHDX_BAT_STATE_MASK;
	}
	free(s);
	return 0;
}

/*
 * A writer that crashed leaves the sparse run-way of grow_file_locked() past
 * its last block. When nothing past the last object (@end: blocks, log,
 * regions) holds data, a writable open allocates from there again instead
 * of after the hole.
 */
static void reclaim_tail(struct vhdx_image *img, uint64_t end)
{
	off_t d;

	if (img->readonly)
		return;
	end = MAX(end, img->log_offset + img->log_length);
	for (uint32_t i = 0; i < img->rt->count; i++)
		end = MAX(end, img->rt->entries[i].file_offset + img->rt->entries[i].length);
	end = ROUND_UP(end, VHDX_ALIGN);
	if (end >= img->file_end)
		return;
	d = lseek(img->fd, (off_t)end, SEEK_DATA);
	if (d < 0 && errno == ENXIO)
		img->file_end = end; /* only holes after @end */
}

int vhdx_bat_load(struct vhdx_image *img, struct vdisk_err *err)
{
	uint64_t used = img->has_parent ? img->nr_chunks * (img->chunk_ratio + 1ULL)
					: img->nr_blocks + (img->nr_blocks - 1) / img->chunk_ratio;
	uint64_t fsize, end = 0;
	struct stat st;
	int r;

	if (fstat(img->fd, &st) < 0)
		return vdisk_err_set(err, -errno, "fstat: %s", strerror(errno));
	fsize = MAX((uint64_t)st.st_size, img->virt_file_size);
	img->bat = vdisk_aligned_alloc(img->bat_length);
	img->dirty = calloc(DIV_ROUND_UP(img->bat_length / 4096, 8) + 1, 1);
	if (!img->bat || !img->dirty)
		return vdisk_err_set(err, -ENOMEM, "out of memory for a %llu-byte BAT",
				     (unsigned long long)img->bat_length);
	r = vhdx_meta_pread(img, img->bat, img->bat_length, img->bat_offset);
	if (r < 0)
		return vdisk_err_set(err, r, "BAT at 0x%llx: read failed: %s",
				     (unsigned long long)img->bat_offset, strerror(-r));
	for (uint64_t i = 0; i < img->bat_entries; i++) {
		uint64_t e = le64toh(img->bat[i]), len;
		unsigned s = e & VHDX_BAT_STATE_MASK;

		img->bat[i] = i < used ? e : 0; /* entries past the last needed one are ignored */
		if (i >= used)
			continue;
		r = check_entry(img, i, e, fsize, err);
		if (r < 0)
			return (vdisk_err_prefix(err, "BAT at 0x%llx: ",
						(unsigned long long)img->bat_offset), r);
		len = is_sb_index(img, i) ? VHDX_SB_BLOCK_SIZE : img->block_size;
		if (s == VHDX_BLOCK_UNMAPPED && !is_sb_index(img, i) && (e & VHDX_BAT_OFFSET_MASK) &&
		    block_collides(img, e & VHDX_BAT_OFFSET_MASK, len)) {
			/* the kept offset is reused by the next write: never on top of metadata */
			img->bat[i] = s;
			continue;
		}
		if (s == VHDX_BLOCK_FULLY_PRESENT || s == VHDX_BLOCK_PARTIALLY_PRESENT ||
		    (s == VHDX_BLOCK_UNMAPPED && (e & VHDX_BAT_OFFSET_MASK)))
			end = MAX(end, (e & VHDX_BAT_OFFSET_MASK) + len);
	}
	img->file_end = ROUND_UP(MAX(fsize, end), VHDX_ALIGN);
	img->file_size = (uint64_t)st.st_size;
	reclaim_tail(img, end);
	img->flushed_end = img->file_end;
	r = drop_shared_kept_offsets(img, used, err);
	if (r < 0)
		return r;
	return img->has_parent ? load_bitmaps(img, err) : 0;
}

void vhdx_bat_set_locked(struct vhdx_image *img, uint64_t idx, uint64_t entry)
{
	uint64_t page = idx / 512;

	__atomic_store_n(&img->bat[idx], entry, __ATOMIC_RELEASE);
	if (!(img->dirty[page / 8] & (1u << (page % 8)))) {
		img->dirty[page / 8] |= (uint8_t)(1u << (page % 8));
		img->nr_dirty++;
	}
}

void vhdx_sbm_mark_dirty_locked(struct vhdx_image *img, uint64_t chunk, uint64_t bit_first,
				uint64_t bit_count)
{
	uint64_t p0 = bit_first / (4096 * 8), p1 = (bit_first + bit_count - 1) / (4096 * 8);

	for (uint64_t p = p0; p <= p1; p++) {
		uint64_t k = chunk * 256 + p;
		if (!(img->sbm_dirty[k / 8] & (1u << (k % 8)))) {
			img->sbm_dirty[k / 8] |= (uint8_t)(1u << (k % 8));
			img->nr_sbm_dirty++;
		}
	}
}

/* ---- translate ---- */

struct xlate {
	struct vdisk_extent *ext;
	unsigned n, max;
	int error;
};

static bool emit(struct xlate *o, uint64_t voff, uint64_t len, unsigned type, int fd,
		 uint64_t foff, unsigned layer)
{
	if (o->n) {
		struct vdisk_extent *p = &o->ext[o->n - 1];
		if (p->type == type && p->offset + p->length == voff &&
		    (type != VDISK_EXTENT_DATA ||
		     (p->fd == fd && p->layer == layer && p->file_offset + p->length == foff))) {
			p->length += len;
			return true;
		}
	}
	if (o->n == o->max)
		return false;
	o->ext[o->n++] = (struct vdisk_extent){ .offset = voff, .length = len, .file_offset = foff,
						.fd = fd, .type = (uint16_t)type,
						.layer = (uint16_t)layer };
	return true;
}

static uint64_t xlate(struct vhdx_image *img, unsigned layer, uint64_t off, uint64_t len,
		      struct xlate *o);

/* The parent's view of [off, off+len); beyond its end (a larger child) reads zeros. */
static uint64_t xlate_parent(struct vhdx_image *img, unsigned layer, uint64_t off, uint64_t len,
			     struct xlate *o)
{
	struct vhdx_image *p = img->parent;

	if (!p) {
		if (img->has_parent) {
			o->error = -ENOLINK; /* opened without its parent */
			return 0;
		}
		return emit(o, off, len, VDISK_EXTENT_UNALLOCATED, -1, 0, layer) ? len : 0;
	}
	if (off >= p->disk_size)
		return emit(o, off, len, VDISK_EXTENT_ZERO, -1, 0, layer) ? len : 0;
	if (off + len > p->disk_size) {
		uint64_t got = xlate(p, layer + 1, off, p->disk_size - off, o);
		if (got < p->disk_size - off)
			return got;
		return got + xlate_parent(img, layer, p->disk_size, off + len - p->disk_size, o);
	}
	return xlate(p, layer + 1, off, len, o);
}

static inline bool sbm_bit(const uint8_t *map, uint64_t bit)
{
	return (__atomic_load_n(&map[bit >> 3], __ATOMIC_ACQUIRE) >> (bit & 7)) & 1;
}

/* PARTIALLY_PRESENT: runs of sectors whose bit is set come from this file, the rest from the parent. */
static uint64_t xlate_partial(struct vhdx_image *img, unsigned layer, uint64_t off, uint64_t len,
			      uint64_t block_off, struct xlate *o)
{
	uint64_t sec = off >> img->lsec_shift, end = (off + len) >> img->lsec_shift;
	const uint8_t *map = img->sbm[sec / VHDX_SECTORS_PER_CHUNK];
	uint64_t done = 0;

	if (!map) {
		o->error = -EIO;
		return 0;
	}
	while (sec < end) {
		bool here = sbm_bit(map, sec % VHDX_SECTORS_PER_CHUNK);
		uint64_t s = sec, v, rl, got;
		while (sec < end && sbm_bit(map, sec % VHDX_SECTORS_PER_CHUNK) == here)
			sec++;
		v = s << img->lsec_shift;
		rl = (sec - s) << img->lsec_shift;
		if (here)
			got = emit(o, v, rl, VDISK_EXTENT_DATA, img->fd,
				   block_off + (v & (img->block_size - 1)), layer) ? rl : 0;
		else
			got = xlate_parent(img, layer, v, rl, o);
		done += got;
		if (got < rl)
			break;
	}
	return done;
}

static uint64_t xlate(struct vhdx_image *img, unsigned layer, uint64_t off, uint64_t len,
		      struct xlate *o)
{
	uint64_t done = 0;

	while (done < len && !o->error) {
		uint64_t v = off + done, b = v >> img->block_shift;
		uint64_t inb = v & (img->block_size - 1), run = MIN(len - done, img->block_size - inb);
		uint64_t e = __atomic_load_n(&img->bat[vhdx_bat_index(b, img->chunk_ratio)],
					     __ATOMIC_ACQUIRE);
		uint64_t got = run;

		switch (e & VHDX_BAT_STATE_MASK) {
		case VHDX_BLOCK_FULLY_PRESENT:
			if (!emit(o, v, run, VDISK_EXTENT_DATA, img->fd,
				  (e & VHDX_BAT_OFFSET_MASK) + inb, layer))
				got = 0;
			break;
		case VHDX_BLOCK_PARTIALLY_PRESENT:
			got = xlate_partial(img, layer, v, run, e & VHDX_BAT_OFFSET_MASK, o);
			break;
		case VHDX_BLOCK_NOT_PRESENT:
			got = xlate_parent(img, layer, v, run, o);
			break;
		default: /* ZERO, UNMAPPED, UNDEFINED: zeros, never the parent's data */
			if (!emit(o, v, run, VDISK_EXTENT_ZERO, -1, 0, layer))
				got = 0;
			break;
		}
		done += got;
		if (got < run)
			break;
	}
	return done;
}

static bool range_ok(const struct vhdx_image *img, uint64_t off, uint64_t len)
{
	uint64_t end;
	return len > 0 && !add_overflows_u64(off, len, &end) && end <= img->disk_size;
}

int vhdx_translate(struct vhdx_image *img, uint64_t offset, uint64_t length,
		   struct vdisk_extent *ext, unsigned max)
{
	struct xlate o = { .ext = ext, .max = max };

	if (!range_ok(img, offset, length) || max == 0)
		return -EINVAL;
	if (img->has_parent && (offset % img->lsec || length % img->lsec)) {
		/* bitmaps have sector granularity: widen, then clip the first and last extent */
		uint64_t s = offset / img->lsec * img->lsec;
		uint64_t e = ROUND_UP(offset + length, img->lsec);
		xlate(img, 0, s, e - s, &o);
		if (o.error)
			return o.error;
		ext[0].length -= offset - s;
		if (ext[0].type == VDISK_EXTENT_DATA)
			ext[0].file_offset += offset - s;
		ext[0].offset = offset;
		if (ext[o.n - 1].offset + ext[o.n - 1].length > offset + length)
			ext[o.n - 1].length = offset + length - ext[o.n - 1].offset;
		return (int)o.n;
	}
	xlate(img, 0, offset, length, &o);
	return o.error ? o.error : (int)o.n;
}

/* ---- allocation ---- */

/*
 * Takes @len bytes at the end of the file. The file is extended a step
 * ahead (a sparse tail: no space used, reads as zeros) rather than per
 * block, because a size change waits for every direct I/O in flight on
 * the file (inode_dio_wait) and would drain the queue at each allocating
 * write. vhdx_close() trims the tail; after a crash it is a hole past
 * the last object, which check does not count as a leak.
 */
static int grow_file_locked(struct vhdx_image *img, uint64_t len, uint64_t *ret_off)
{
	uint64_t off = img->file_end;

	*ret_off = 0;
	if (off + len > img->file_size) {
		uint64_t size = MAX(off + len, off + VHDX_GROW_STEP);

		if (ftruncate(img->fd, (off_t)size) < 0 &&
		    (size == off + len || ftruncate(img->fd, (off_t)(size = off + len)) < 0))
			return -errno;
		img->file_size = size;
	}
	img->file_end = off + len;
	*ret_off = off;
	return 0;
}

static int ensure_bitmap_locked(struct vhdx_image *img, uint64_t chunk)
{
	uint64_t off;
	int r;

	if (img->sbm[chunk])
		return 0;
	img->sbm[chunk] = vdisk_aligned_alloc(VHDX_SB_BLOCK_SIZE);
	if (!img->sbm[chunk])
		return -ENOMEM;
	r = grow_file_locked(img, VHDX_SB_BLOCK_SIZE, &off);
	if (r < 0) {
		free(img->sbm[chunk]);
		img->sbm[chunk] = NULL;
		return r;
	}
	vhdx_bat_set_locked(img, vhdx_sb_index(chunk, img->chunk_ratio), off | VHDX_SB_PRESENT);
	return 0;
}

/* The mask of bits [lo, hi) of one byte, 0 <= lo < hi <= 8. */
static inline uint8_t byte_mask(unsigned lo, unsigned hi)
{
	return (uint8_t)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

/* True when every bit of [first, first+n) is set. Lock-free (atomic byte loads). */
static bool bits_all_set(const uint8_t *map, uint64_t first, uint64_t n)
{
	uint64_t i = first, end = first + n;

	while (i < end) {
		unsigned lo = i & 7, hi = end - (i - lo) < 8 ? (unsigned)(end - (i - lo)) : 8;
		uint8_t m = byte_mask(lo, hi);

		if ((__atomic_load_n(&map[i >> 3], __ATOMIC_ACQUIRE) & m) != m)
			return false;
		i += hi - lo;
	}
	return true;
}

/*
 * Marks the sectors of [off, off+len) (inside one block) present in this file and their
 * bitmap pages dirty. Only after their data is in the file (see vhdx_write_done()).
 */
static void set_bits_locked(struct vhdx_image *img, uint64_t off, uint64_t len)
{
	uint64_t s = off / img->lsec, n = len / img->lsec;
	uint64_t chunk = s / VHDX_SECTORS_PER_CHUNK, bit = s % VHDX_SECTORS_PER_CHUNK;
	uint8_t *map = img->sbm[chunk];

	for (uint64_t i = bit, end = bit + n; i < end;) {
		unsigned lo = i & 7, hi = end - (i - lo) < 8 ? (unsigned)(end - (i - lo)) : 8;
		__atomic_or_fetch(&map[i >> 3], byte_mask(lo, hi), __ATOMIC_RELEASE);
		i += hi - lo;
	}
	vhdx_sbm_mark_dirty_locked(img, chunk, bit, n);
}

/*
 * Makes block @b (holding virtual offset @v) writable; returns its file offset. Caller holds
 * the lock. In a child the written sectors' bits stay clear: they keep reading the parent
 * until the caller's data write has completed (vhdx_write_done()), so no commit in between
 * can make them read never-written space after a crash.
 */
static int alloc_block_locked(struct vhdx_image *img, uint64_t b, uint64_t v,
			      uint64_t *ret_block_off)
{
	uint64_t idx = vhdx_bat_index(b, img->chunk_ratio);
	uint64_t e = img->bat[idx], off = e & VHDX_BAT_OFFSET_MASK;
	unsigned st = e & VHDX_BAT_STATE_MASK;
	int r;

	if (st == VHDX_BLOCK_FULLY_PRESENT || st == VHDX_BLOCK_PARTIALLY_PRESENT) {
		*ret_block_off = off;
		return 0;
	}
	if (st == VHDX_BLOCK_UNMAPPED && off && off + img->block_size <= img->file_end) {
		/* reuse the space we kept at discard time; make sure it reads as zeros */
		if (fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			      img->block_size) < 0)
			return -errno;
	} else {
		r = grow_file_locked(img, img->block_size, &off);
		if (r < 0)
			return r;
	}
	if (img->has_parent && st == VHDX_BLOCK_NOT_PRESENT) {
		/* section 9: the rest of the block still comes from the parent */
		r = ensure_bitmap_locked(img, v / img->lsec / VHDX_SECTORS_PER_CHUNK);
		if (r < 0)
			return r;
		vhdx_bat_set_locked(img, idx, off | VHDX_BLOCK_PARTIALLY_PRESENT);
	} else {
		/* ZERO/UNMAPPED/UNDEFINED/NOT_PRESENT without parent: the rest reads zeros */
		vhdx_bat_set_locked(img, idx, off | VHDX_BLOCK_FULLY_PRESENT);
	}
	*ret_block_off = off;
	return 0;
}

static int begin_data(struct vhdx_image *img)
{
	int r = 0;

	if (likely(__atomic_load_n(&img->session, __ATOMIC_ACQUIRE) == 2))
		return 0;
	pthread_mutex_lock(&img->lock);
	r = img->sticky_err ? img->sticky_err : vhdx_session_begin_locked(img, true);
	pthread_mutex_unlock(&img->lock);
	return r;
}

int vhdx_allocate(struct vhdx_image *img, uint64_t offset, uint64_t length,
		  struct vdisk_extent *ext, unsigned max)
{
	struct xlate o = { .ext = ext, .max = max };
	uint64_t done = 0;
	int r;

	if (img->readonly)
		return -EROFS;
	if (!range_ok(img, offset, length) || max == 0 || offset % img->lsec ||
	    length % img->lsec)
		return -EINVAL;
	r = begin_data(img);
	if (r < 0)
		return r;
	while (done < length) {
		uint64_t v = offset + done, b = v / img->block_size;
		uint64_t inb = v % img->block_size, run = MIN(length - done, img->block_size - inb);
		uint64_t e = __atomic_load_n(&img->bat[vhdx_bat_index(b, img->chunk_ratio)],
					     __ATOMIC_ACQUIRE);
		uint64_t boff = e & VHDX_BAT_OFFSET_MASK;
		unsigned st = e & VHDX_BAT_STATE_MASK;

		if (st != VHDX_BLOCK_FULLY_PRESENT && st != VHDX_BLOCK_PARTIALLY_PRESENT) {
			/* no room to hand it out: change nothing the caller will not write */
			if (o.n == max)
				break;
			pthread_mutex_lock(&img->lock);
			r = img->sticky_err ? img->sticky_err
					    : alloc_block_locked(img, b, v, &boff);
			pthread_mutex_unlock(&img->lock);
			if (r < 0)
				return o.n ? (int)o.n : r;
		}
		if (!emit(&o, v, run, VDISK_EXTENT_DATA, img->fd, boff + inb, 0))
			break;
		done += run;
	}
	return (int)o.n;
}

int vhdx_write_done(struct vhdx_image *img, uint64_t offset, uint64_t length)
{
	uint64_t done = 0;
	int r = 0;

	if (!range_ok(img, offset, length) || offset % img->lsec || length % img->lsec)
		return -EINVAL;
	if (img->readonly)
		return -EROFS;
	if (!img->has_parent)
		return 0; /* a new block's unwritten sectors read zeros, its old content */
	while (done < length && r == 0) {
		uint64_t v = offset + done, b = v / img->block_size;
		uint64_t run = MIN(length - done, img->block_size - v % img->block_size);
		uint64_t idx = vhdx_bat_index(b, img->chunk_ratio);
		uint64_t e = __atomic_load_n(&img->bat[idx], __ATOMIC_ACQUIRE);
		uint64_t s = v / img->lsec;

		done += run;
		/* FULLY_PRESENT ignores the bitmap; other states were not handed out for writing */
		if ((e & VHDX_BAT_STATE_MASK) != VHDX_BLOCK_PARTIALLY_PRESENT ||
		    bits_all_set(img->sbm[s / VHDX_SECTORS_PER_CHUNK], s % VHDX_SECTORS_PER_CHUNK,
				 run / img->lsec))
			continue;
		pthread_mutex_lock(&img->lock);
		if (img->sticky_err)
			r = img->sticky_err;
		else if ((img->bat[idx] & VHDX_BAT_STATE_MASK) == VHDX_BLOCK_PARTIALLY_PRESENT)
			set_bits_locked(img, v, run);
		pthread_mutex_unlock(&img->lock);
	}
	return r;
}

int vhdx_flush(struct vhdx_image *img)
{
	int r = 0;

	if (img->readonly || __atomic_load_n(&img->session, __ATOMIC_ACQUIRE) == 0)
		return 0;
	pthread_mutex_lock(&img->lock);
	if (img->sticky_err) {
		r = img->sticky_err;
		goto out;
	}
	/* payload data (and the in-place writes of the previous commit) first */
	if (fdatasync(img->fd) < 0) {
		r = img->sticky_err = -errno;
		goto out;
	}
	img->flushed_end = img->file_end;
	if (img->nr_dirty || img->nr_sbm_dirty || img->nr_extra)
		r = vhdx_log_commit_locked(img);
out:
	pthread_mutex_unlock(&img->lock);
	return r;
}

int vhdx_flush_fd(struct vhdx_image *img, int *ret_fd)
{
	int r = 0;

	if (img->readonly || __atomic_load_n(&img->session, __ATOMIC_ACQUIRE) == 0)
		return 0;
	pthread_mutex_lock(&img->lock);
	if (!img->sticky_err && !img->nr_dirty && !img->nr_sbm_dirty && !img->nr_extra) {
		*ret_fd = img->fd;
		r = 1;
	}
	pthread_mutex_unlock(&img->lock);
	return r;
}

/* ---- discard and write-zeroes ---- */

static int punch(struct vhdx_image *img, uint64_t off, uint64_t len)
{
	int mode = img->leave_alloc ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
				    : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

	if (fallocate(img->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	/* file system without hole punching: write zeros */
	VDISK_AUTOFREE uint8_t *z = vdisk_aligned_alloc(MIN(len, 1 * MiB));
	if (!z)
		return -ENOMEM;
	for (uint64_t d = 0; d < len; d += MIN(len - d, 1 * MiB)) {
		int r = vdisk_pwrite_full(img->fd, z, MIN(len - d, 1 * MiB), off + d);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Zeros [v, v+run) of block @b in place, allocating in a child so the parent stays hidden. */
static int zero_partial_locked(struct vhdx_image *img, uint64_t b, uint64_t v, uint64_t run)
{
	uint64_t e = img->bat[vhdx_bat_index(b, img->chunk_ratio)], boff;
	unsigned st = e & VHDX_BAT_STATE_MASK;
	int r;

	if (st == VHDX_BLOCK_FULLY_PRESENT)
		return punch(img, (e & VHDX_BAT_OFFSET_MASK) + v % img->block_size, run);
	if (st != VHDX_BLOCK_PARTIALLY_PRESENT &&
	    (st != VHDX_BLOCK_NOT_PRESENT || !img->has_parent))
		return 0; /* already reads as zeros */
	if (v % img->lsec || run % img->lsec)
		return -EINVAL;
	r = alloc_block_locked(img, b, v, &boff);
	if (r == 0)
		r = punch(img, boff + v % img->block_size, run);
	/* the zeros are in place (the next flush syncs them before committing the bits) */
	if (r == 0 && (img->bat[vhdx_bat_index(b, img->chunk_ratio)] & VHDX_BAT_STATE_MASK) ==
			      VHDX_BLOCK_PARTIALLY_PRESENT)
		set_bits_locked(img, v, run);
	return r;
}

static int unmap_range(struct vhdx_image *img, uint64_t offset, uint64_t length, bool zero)
{
	uint64_t done = 0;
	int r = begin_data(img);

	if (r < 0)
		return r;
	pthread_mutex_lock(&img->lock);
	while (done < length && r == 0) {
		uint64_t v = offset + done, b = v / img->block_size;
		uint64_t inb = v % img->block_size, run = MIN(length - done, img->block_size - inb);
		uint64_t idx = vhdx_bat_index(b, img->chunk_ratio), e = img->bat[idx];
		uint64_t off = e & VHDX_BAT_OFFSET_MASK;
		unsigned st = e & VHDX_BAT_STATE_MASK;
		bool whole = inb == 0 && (run == img->block_size || v + run == img->disk_size);
		bool mapped = st == VHDX_BLOCK_FULLY_PRESENT || st == VHDX_BLOCK_PARTIALLY_PRESENT;

		done += run;
		if (img->leave_alloc && !img->has_parent) {
			/* fixed: blocks stay allocated (section 6.2) and are zeroed in place */
			if (mapped)
				r = punch(img, off + inb, run);
			continue;
		}
		if (!whole) {
			/* a child must hide its parent's (and its own) data here too */
			if (zero || img->has_parent)
				r = zero_partial_locked(img, b, v, run);
			else if (st == VHDX_BLOCK_FULLY_PRESENT)
				r = punch(img, off + inb, run);
			continue;
		}
		if (img->has_parent) {
			/*
			 * A child must hide its parent's data here. The ZERO state would
			 * do, but libvhdi reads ZERO blocks of a child from the parent;
			 * a FULLY_PRESENT block whose space is a hole reads as zeros in
			 * every reader and costs no disk space.
			 */
			uint64_t boff = off;
			if (!mapped)
				r = grow_file_locked(img, img->block_size, &boff);
			if (r == 0)
				r = punch(img, boff, img->block_size);
			if (r == 0)
				vhdx_bat_set_locked(img, idx, boff | VHDX_BLOCK_FULLY_PRESENT);
			continue;
		}
		if (mapped)
			r = punch(img, off, img->block_size);
		if (r < 0)
			break;
		if (!zero && !img->has_parent && mapped)
			/* UNMAPPED keeps the (now hole-punched) space for reuse by the next write */
			vhdx_bat_set_locked(img, idx, off | VHDX_BLOCK_UNMAPPED);
		else if (zero || st != VHDX_BLOCK_NOT_PRESENT)
			vhdx_bat_set_locked(img, idx, VHDX_BLOCK_ZERO);
	}
	pthread_mutex_unlock(&img->lock);
	return r;
}

int vhdx_discard(struct vhdx_image *img, uint64_t offset, uint64_t length)
{
	if (img->readonly)
		return -EROFS;
	if (!range_ok(img, offset, length))
		return -EINVAL;
	return unmap_range(img, offset, length, false);
}

int vhdx_write_zeroes(struct vhdx_image *img, uint64_t offset, uint64_t length)
{
	if (img->readonly)
		return -EROFS;
	if (!range_ok(img, offset, length))
		return -EINVAL;
	return unmap_range(img, offset, length, true);
}
