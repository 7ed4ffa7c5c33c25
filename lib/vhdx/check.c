/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Consistency check and repair. Beyond what opening validates, check
 * looks at both header slots and both region-table copies, overlaps of
 * payload and bitmap blocks with each other and with every region,
 * blocks reaching past end of file, reserved bits, a dirty log, and space
 * in the file that nothing references (leaks). Repair replays the log on
 * disk, rewrites a damaged header slot or region-table copy, and gives
 * leaked space back (truncating the tail, punching holes elsewhere).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "byteorder.h"
#include "vhdx-int.h"

struct ctx {
	vhdx_check_report_fn report;
	void *opaque;
	struct vhdx_check_result *res;
	struct vhdx_image *img;
	uint64_t fsize;
};

__attribute__((format(printf, 3, 4))) static void say(struct ctx *c, enum vhdx_check_severity sev,
						      const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sev == VHDX_CHECK_CORRUPT)
		c->res->corruptions++;
	if (c->report)
		c->report(c->opaque, sev, msg);
}

bool vhdx_probe_fd(int fd)
{
	char sig[8];

	return pread(fd, sig, sizeof(sig), 0) == (ssize_t)sizeof(sig) &&
	       memcmp(sig, "vhdxfile", 8) == 0;
}

struct object {
	uint64_t start, len;
	const char *what;
	uint64_t index; /* BAT index, or UINT64_MAX */
};

static int cmp_obj(const void *a, const void *b)
{
	const struct object *x = a, *y = b;
	return x->start < y->start ? -1 : x->start > y->start;
}

static struct object *collect_objects(struct ctx *c, size_t *ret_n)
{
	struct vhdx_image *img = c->img;
	size_t cap = 2 + img->rt->count + img->bat_entries, n = 0; /* at most one per BAT entry */
	struct object *o = calloc(cap, sizeof(*o));

	if (!o)
		return NULL;
	o[n++] = (struct object){ 0, VHDX_ALIGN, "the header section", UINT64_MAX };
	o[n++] = (struct object){ img->log_offset, img->log_length, "the log", UINT64_MAX };
	for (uint32_t i = 0; i < img->rt->count; i++)
		o[n++] = (struct object){ img->rt->entries[i].file_offset, img->rt->entries[i].length,
					  "a region", UINT64_MAX };
	for (uint64_t i = 0; i < img->bat_entries; i++) {
		uint64_t e = img->bat[i], off = e & VHDX_BAT_OFFSET_MASK;
		unsigned st = e & VHDX_BAT_STATE_MASK;
		bool sb = i % (img->chunk_ratio + 1ULL) == img->chunk_ratio;

		if (sb && img->has_parent && st == VHDX_SB_PRESENT)
			o[n++] = (struct object){ off, VHDX_SB_BLOCK_SIZE, "a sector bitmap block", i };
		else if (!sb && off &&
			 (st == VHDX_BLOCK_FULLY_PRESENT || st == VHDX_BLOCK_PARTIALLY_PRESENT ||
			  st == VHDX_BLOCK_UNMAPPED || st == VHDX_BLOCK_UNDEFINED))
			o[n++] = (struct object){ off, img->block_size, "a payload block", i };
	}
	qsort(o, n, sizeof(*o), cmp_obj);
	*ret_n = n;
	return o;
}

static void check_bat_entries(struct ctx *c)
{
	struct vhdx_image *img = c->img;

	for (uint64_t i = 0; i < img->bat_entries; i++) {
		uint64_t e = img->bat[i];
		unsigned st = e & VHDX_BAT_STATE_MASK;
		bool sb = i % (img->chunk_ratio + 1ULL) == img->chunk_ratio;

		if (e & VHDX_BAT_RESERVED_MASK)
			say(c, VHDX_CHECK_CORRUPT, "BAT entry %llu: reserved bits 0x%llx are set",
			    (unsigned long long)i, (unsigned long long)(e & VHDX_BAT_RESERVED_MASK));
		if (!sb && (st == VHDX_BLOCK_NOT_PRESENT || st == VHDX_BLOCK_ZERO) &&
		    (e & VHDX_BAT_OFFSET_MASK))
			say(c, VHDX_CHECK_CORRUPT,
			    "BAT entry %llu: state %u with a non-zero file offset 0x%llx (reserved, must be 0)",
			    (unsigned long long)i, st, (unsigned long long)(e & VHDX_BAT_OFFSET_MASK));
		if (!sb && (st == VHDX_BLOCK_FULLY_PRESENT || st == VHDX_BLOCK_PARTIALLY_PRESENT)) {
			c->res->allocated_blocks++;
			if ((e & VHDX_BAT_OFFSET_MASK) + img->block_size > c->fsize)
				say(c, VHDX_CHECK_CORRUPT,
				    "BAT entry %llu: block at 0x%llx ends past the end of the file (0x%llx)",
				    (unsigned long long)i,
				    (unsigned long long)(e & VHDX_BAT_OFFSET_MASK),
				    (unsigned long long)c->fsize);
		}
	}
	c->res->total_blocks = img->nr_blocks;
}

/* Overlaps between any two objects, then unreferenced space holding data. */
static void check_space(struct ctx *c, bool repair)
{
	size_t n = 0;
	struct object *o = collect_objects(c, &n);
	uint64_t covered = 0;

	if (!o) {
		say(c, VHDX_CHECK_CORRUPT, "out of memory while checking overlaps");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (i && o[i].start < o[i - 1].start + o[i - 1].len)
			say(c, VHDX_CHECK_CORRUPT,
			    "%s at 0x%llx%s overlaps %s at 0x%llx", o[i].what,
			    (unsigned long long)o[i].start, o[i].index != UINT64_MAX ? " (BAT entry)" : "",
			    o[i - 1].what, (unsigned long long)o[i - 1].start);
		if (o[i].start > covered && o[i].start <= c->fsize) {
			/* a gap: leaked when the file system holds data there */
			off_t d = lseek(c->img->fd, (off_t)covered, SEEK_DATA);
			if (d >= 0 && (uint64_t)d < o[i].start) {
				uint64_t len = o[i].start - (uint64_t)d;
				c->res->leaks += DIV_ROUND_UP(len, VHDX_ALIGN);
				c->res->leaked_bytes += len;
				say(c, VHDX_CHECK_LEAK, "leaked space: 0x%llx..0x%llx is referenced by nothing",
				    (unsigned long long)d, (unsigned long long)o[i].start);
				if (repair && fallocate(c->img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
							d, (off_t)len) == 0)
					c->res->repaired++;
			}
		}
		covered = MAX(covered, o[i].start + o[i].len);
	}
	if (c->fsize > covered) {
		off_t d = lseek(c->img->fd, (off_t)covered, SEEK_DATA);
		if (d >= 0 && (uint64_t)d < c->fsize) {
			c->res->leaks += DIV_ROUND_UP(c->fsize - covered, VHDX_ALIGN);
			c->res->leaked_bytes += c->fsize - covered;
			say(c, VHDX_CHECK_LEAK, "leaked space: 0x%llx..0x%llx after the last object",
			    (unsigned long long)covered, (unsigned long long)c->fsize);
			if (repair && ftruncate(c->img->fd, (off_t)covered) == 0)
				c->res->repaired++;
		}
	}
	free(o);
}

/* Header slots and region-table copies: both must be valid (and the copies equal). */
static void check_copies(struct ctx *c, bool repair)
{
	struct vhdx_image *img = c->img;
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(VHDX_RT_SIZE);
	VDISK_AUTOFREE uint8_t *good = vdisk_aligned_alloc(VHDX_RT_SIZE);
	struct vhdx_header h;
	bool bad_slot = false;

	if (!buf || !good)
		return;
	for (int i = 0; i < 2; i++) {
		struct vdisk_err e = { 0 };
		uint64_t off = i ? VHDX_HEADER2_OFFSET : VHDX_HEADER1_OFFSET;
		if (vhdx_meta_pread(img, buf, VHDX_HEADER_SIZE, off) == 0 &&
		    vhdx_header_decode(buf, &h, &e) == 0)
			continue;
		say(c, VHDX_CHECK_CORRUPT, "header %d at 0x%llx is not valid: %s", i + 1,
		    (unsigned long long)off, e.msg);
		bad_slot = true;
	}
	if (bad_slot && repair) {
		pthread_mutex_lock(&img->lock);
		if (vhdx_session_begin_locked(img, false) == 0)
			c->res->repaired++;
		pthread_mutex_unlock(&img->lock);
	}
	vhdx_region_encode(img->rt, good);
	for (int i = 0; i < 2; i++) {
		uint64_t off = i ? VHDX_RT2_OFFSET : VHDX_RT1_OFFSET;
		if (vhdx_meta_pread(img, buf, VHDX_RT_SIZE, off) < 0 ||
		    memcmp(buf, good, VHDX_RT_SIZE) != 0) {
			say(c, VHDX_CHECK_CORRUPT,
			    "region table copy %d at 0x%llx is damaged or differs from the copy in use",
			    i + 1, (unsigned long long)off);
			if (repair && vdisk_pwrite_full(img->fd, good, VHDX_RT_SIZE, off) == 0 &&
			    fsync(img->fd) == 0)
				c->res->repaired++;
		}
	}
}

static int check_open_image(struct ctx *c, bool repair)
{
	struct stat st;

	if (fstat(c->img->fd, &st) < 0)
		return -errno;
	c->fsize = MAX((uint64_t)st.st_size, c->img->virt_file_size);
	c->res->opened = true;
	if (c->img->log_replayed) {
		c->res->log_was_dirty = true;
		if (repair) {
			say(c, VHDX_CHECK_REPAIRED, "the log was dirty and has been replayed");
			c->res->repaired++;
		} else {
			say(c, VHDX_CHECK_CORRUPT,
			    "the log is dirty (the image was not closed cleanly): it was replayed in memory for this check; run check --repair or open it writable to replay it on disk");
		}
	}
	check_copies(c, repair);
	check_bat_entries(c);
	check_space(c, repair);
	return 0;
}

int vhdx_check(const char *path, unsigned flags, vhdx_check_report_fn report, void *opaque,
	       struct vhdx_check_result *res, struct vdisk_err *err)
{
	bool repair = flags & VHDX_CHECK_REPAIR;
	struct ctx c = { .report = report, .opaque = opaque, .res = res };
	struct vdisk_err oerr = { 0 };
	int r;

	memset(res, 0, sizeof(*res));
	r = vhdx_open_layer(path, (repair ? 0 : VHDX_OPEN_RDONLY) | VHDX_OPEN_NO_PARENT, &c.img,
			    &oerr);
	if (r == -EBUSY || r == -ENOENT || r == -EACCES || r == -EPERM)
		return vdisk_err_set(err, r, "%s", oerr.msg);
	if (r < 0) {
		/* the image cannot be opened: that is the finding */
		say(&c, VHDX_CHECK_CORRUPT, "%s", oerr.msg);
		return 0;
	}
	r = check_open_image(&c, repair);
	if (repair) {
		r = vhdx_close(c.img, err);
		if (r < 0)
			return r;
		/* report what is left after repair */
		struct vhdx_check_result after;
		uint64_t repaired = res->repaired;
		bool dirty = res->log_was_dirty;
		r = vhdx_check(path, 0, report, opaque, &after, err);
		*res = after;
		res->repaired = repaired;
		res->log_was_dirty = dirty;
		return r;
	}
	vhdx_free(c.img);
	return r < 0 ? vdisk_err_set(err, r, "%s: check failed: %s", path, strerror(-r)) : 0;
}
