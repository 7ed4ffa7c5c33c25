/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The writer of the convert pipeline. Each buffer's non-zero 4 KiB runs go
 * into the extents vdisk_disk_allocate() hands out, written through an
 * O_DIRECT descriptor of DST on an I/O engine (io_uring, else libaio), so
 * several writes are in flight while the next buffers are read, nothing is
 * copied into the page cache and the final flush has no writeback left.
 * Each completed write is reported with vdisk_disk_write_done().
 * Buffers are released in order once all their writes completed. Pieces
 * that are not 4 KiB aligned, a full queue, or no O_DIRECT (tmpfs) take
 * the synchronous buffered path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/io.h>

#include "copy.h"

#define ZERO_GRAIN     4096u
#define DIRECT_ALIGN   4096u
#define DIRECT_EXTENTS 16
#define REQS_PER_BUF   32
#define REAP_BATCH     64

struct write_req {
	struct vdisk_io io;
	struct iovec iov;
	uint64_t voff; /* virtual offset: vdisk_disk_write_done, the error message */
	struct buf_state *st;
};

struct buf_state {
	unsigned pending; /* writes in flight */
	unsigned nreq;    /* reqs used */
	struct write_req reqs[REQS_PER_BUF];
};

struct copy_writer {
	struct vdisk_disk *dst;
	struct vdisk_engine *eng; /* NULL: synchronous writes only */
	int dfd;                  /* O_DIRECT descriptor of DST, or -1 */
	int lib_fd;               /* the library's descriptor known to be DST, or -1 */
	unsigned held;            /* buffers taken and not yet released */
	int err;                  /* first write error */
	uint64_t err_at;
	struct buf_state st[COPY_BUFS];
};

int copy_writer_open(struct vdisk_disk *dst, const char *dpath, struct copy_writer **ret_w)
{
	struct copy_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->dst = dst;
	w->lib_fd = -1;
	w->dfd = open(dpath, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (w->dfd >= 0 &&
	    vdisk_engine_open(VDISK_ENGINE_AUTO, COPY_BUFS * REQS_PER_BUF, &w->eng, NULL) < 0) {
		w->eng = NULL;
		close(w->dfd); /* direct writes one at a time would be slower than the page cache */
		w->dfd = -1;
	}
	*ret_w = w;
	return 0;
}

void copy_writer_close(struct copy_writer *w)
{
	if (!w)
		return;
	vdisk_engine_close(w->eng);
	if (w->dfd >= 0)
		close(w->dfd);
	free(w);
}

static bool aligned(uint64_t v)
{
	return v % DIRECT_ALIGN == 0;
}

/* True when the library's @fd is DST itself, so the O_DIRECT descriptor may write for it. */
static bool same_file(struct copy_writer *w, int fd)
{
	struct stat a, b;

	if (fd == w->lib_fd)
		return true;
	if (w->lib_fd >= 0 || fstat(fd, &a) < 0 || fstat(w->dfd, &b) < 0)
		return false;
	if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return false;
	w->lib_fd = fd;
	return true;
}

static int pwrite_all(int fd, const char *buf, size_t len, uint64_t off)
{
	ssize_t n;

	while (len > 0) {
		n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Queues one extent's write on the engine. 0 queued, 1 not possible (write it synchronously). */
static int queue_write(struct copy_writer *w, struct buf_state *st, const char *buf,
		       const struct vdisk_extent *e)
{
	struct write_req *q;

	if (!aligned(e->offset) || !aligned(e->length) || !aligned(e->file_offset) ||
	    st->nreq == REQS_PER_BUF || !same_file(w, e->fd))
		return 1;
	q = &st->reqs[st->nreq];
	q->iov = (struct iovec){ .iov_base = (void *)buf, .iov_len = e->length };
	q->io = (struct vdisk_io){ .op = VDISK_IO_WRITEV,
				   .fd = w->dfd,
				   .iov = &q->iov,
				   .iovcnt = 1,
				   .offset = e->file_offset,
				   .priv = q };
	q->voff = e->offset;
	q->st = st;
	if (vdisk_engine_queue(w->eng, &q->io) < 0)
		return 1;
	st->nreq++;
	st->pending++;
	return 0;
}

/* Writes an aligned run into the extents allocate returns. 0 or -errno. */
static int write_extents(struct copy_writer *w, struct buf_state *st, const char *buf, size_t len,
			 uint64_t off)
{
	struct vdisk_extent ext[DIRECT_EXTENTS];
	const struct vdisk_extent *e;
	uint64_t covered;
	int i, n, r;

	while (len > 0) {
		n = vdisk_disk_allocate(w->dst, off, len, ext, DIRECT_EXTENTS);
		if (n <= 0)
			return n < 0 ? n : -EIO;
		for (i = 0; i < n; i++) {
			e = &ext[i];
			r = queue_write(w, st, buf + (e->offset - off), e);
			if (r > 0) {
				r = pwrite_all(e->fd, buf + (e->offset - off), e->length,
					       e->file_offset);
				if (r == 0)
					r = vdisk_disk_write_done(w->dst, e->offset, e->length);
			}
			if (r < 0)
				return r;
		}
		covered = ext[n - 1].offset + ext[n - 1].length - off;
		buf += covered;
		off += covered;
		len -= covered;
	}
	return 0;
}

static int write_run(struct copy_writer *w, struct buf_state *st, const char *buf, size_t len,
		     uint64_t off)
{
	int r;

	if (w->eng && aligned(off) && aligned(len))
		r = write_extents(w, st, buf, len, off);
	else
		r = vdisk_disk_pwrite(w->dst, buf, len, off);
	if (r < 0 && w->err == 0) {
		w->err = r;
		w->err_at = off;
	}
	return r;
}

/* Starts the writes of the runs of non-zero 4 KiB grains of @b. 0 or -errno. */
static int issue(struct copy_writer *w, struct buf_state *st, const struct copy_buf *b)
{
	size_t pos = 0, start, g;
	int r;

	st->pending = 0;
	st->nreq = 0;
	while (!b->zero && pos < b->len) {
		g = MIN_U64(ZERO_GRAIN, b->len - pos);
		if (cli_is_zero(b->data + pos, g)) {
			pos += g;
			continue;
		}
		start = pos;
		do {
			pos += g;
			g = MIN_U64(ZERO_GRAIN, b->len - pos);
		} while (pos < b->len && !cli_is_zero(b->data + pos, g));
		r = write_run(w, st, b->data + start, pos - start, b->offset + start);
		if (r < 0)
			return r;
	}
	if (st->nreq > 0) {
		r = vdisk_engine_submit(w->eng);
		if (r < 0)
			return r;
	}
	return 0;
}

/*
 * A completed write: 0 when whole. A short one is finished through the
 * library's buffered descriptor (no alignment rules there), so that the
 * error, if any, is the real one (ENOSPC) rather than a bare short count.
 */
static int finish_short(struct copy_writer *w, const struct write_req *q, int result)
{
	size_t len = q->iov.iov_len;

	if (result < 0 || (size_t)result == len)
		return result < 0 ? result : 0;
	return pwrite_all(w->lib_fd, (const char *)q->iov.iov_base + result, len - (size_t)result,
			  q->io.offset + (uint64_t)result);
}

/* Reaps completed writes, waiting for at least @min_wait. 0 or -errno. */
static int reap(struct copy_writer *w, unsigned min_wait)
{
	struct vdisk_io *done[REAP_BATCH];
	struct write_req *q;
	int i, n, r;

	n = vdisk_engine_reap(w->eng, done, REAP_BATCH, min_wait);
	if (n < 0)
		return n;
	for (i = 0; i < n; i++) {
		q = done[i]->priv;
		q->st->pending--;
		r = finish_short(w, q, done[i]->result);
		if (r == 0) /* the data is in DST: a child may mark these sectors present */
			r = vdisk_disk_write_done(w->dst, q->voff, q->iov.iov_len);
		if (r < 0 && w->err == 0) {
			w->err = r;
			w->err_at = q->voff;
		}
	}
	return 0;
}

/* Gives back, in order, the held buffers whose writes have all completed. */
static void release_done(struct copy_writer *w, struct copy_pipe *p, struct progress *bar)
{
	struct copy_buf *b;

	while (w->held > 0 && w->st[p->tail].pending == 0) {
		b = &p->bufs[p->tail];
		progress_update(bar, b->offset + b->len);
		copy_release(p);
		w->held--;
	}
}

int copy_writer_run(struct copy_writer *w, struct copy_pipe *p, struct progress *bar,
		    uint64_t *ret_at)
{
	unsigned inflight = 0;
	struct copy_buf *b;
	bool done = false;
	int r;

	while (!(done || w->err) || w->held > 0) {
		b = NULL;
		if (!done && !w->err && w->held < COPY_BUFS)
			b = copy_take(p, inflight == 0, &done);
		if (b) {
			w->held++;
			r = issue(w, &w->st[b - p->bufs], b);
			if (r < 0 && w->err == 0)
				w->err = r, w->err_at = b->offset;
		} else if (inflight > 0) {
			r = reap(w, 1);
			if (r < 0) {
				/* the engine itself failed: its buffers stay held, stop here */
				copy_stop(p);
				*ret_at = 0;
				return r;
			}
		}
		release_done(w, p, bar);
		inflight = w->eng ? vdisk_engine_inflight(w->eng) : 0;
	}
	if (w->err) {
		copy_stop(p);
		*ret_at = w->err_at;
	}
	return w->err;
}
