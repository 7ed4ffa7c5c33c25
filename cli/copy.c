/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The copy pipeline of vdisk convert. A reader thread translates SRC, reads
 * its data extents straight from the layer files into a ring of buffers
 * (virtually contiguous extents share a buffer; a buffer never crosses a
 * 4 MiB boundary of the virtual disk) and marks all-zero buffers; the
 * calling thread writes them (cli/copy-write.c). Unallocated and zero
 * extents are never read: DST is new and already reads as zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copy.h"
#include "extent.h"

#define COPY_EXTENTS       256
#define COPY_SPLIT_EXTENTS 1024
#define READAHEAD_WINDOW   (64u << 20) /* data asked for ahead of the reads (WILLNEED) */

/* Reader: waits for a free buffer. NULL when the writer asked to stop. */
static struct copy_buf *get_free(struct copy_pipe *p)
{
	struct copy_buf *b = NULL;

	pthread_mutex_lock(&p->lock);
	while (p->free == 0 && !p->stop)
		pthread_cond_wait(&p->cond, &p->lock);
	if (!p->stop)
		b = &p->bufs[p->head];
	pthread_mutex_unlock(&p->lock);
	return b;
}

/* Reader: hands the current buffer to the writer. */
static void hand_over(struct copy_pipe *p)
{
	struct copy_buf *b = p->cur;

	if (!b)
		return;
	b->zero = cli_is_zero(b->data, b->len);
	pthread_mutex_lock(&p->lock);
	p->head = (p->head + 1) % COPY_BUFS;
	p->free--;
	p->ready++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	p->cur = NULL;
}

static int pread_zfill(int fd, char *buf, size_t len, uint64_t off)
{
	ssize_t n;

	while (len > 0) {
		n = pread(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			memset(buf, 0, len); /* past the end of a raw file */
			return 0;
		}
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Reader: appends one DATA extent to the buffers. 0, 1 when told to stop, or -errno. */
static int read_extent(struct copy_pipe *p, struct cli_readahead *ra, const struct vdisk_extent *e)
{
	uint64_t done = 0, voff, boundary, n;
	struct copy_buf *b;
	int r;

	while (done < e->length) {
		voff = e->offset + done;
		if (p->cur && p->cur->offset + p->cur->len != voff)
			hand_over(p);
		if (!p->cur) {
			p->cur = get_free(p);
			if (!p->cur)
				return 1;
			p->cur->offset = voff;
			p->cur->len = 0;
		}
		b = p->cur;
		cli_readahead_to(ra, voff + READAHEAD_WINDOW);
		boundary = (b->offset / COPY_CHUNK + 1) * COPY_CHUNK;
		n = MIN_U64(boundary - voff, e->length - done);
		r = pread_zfill(e->fd, b->data + b->len, (size_t)n, e->file_offset + done);
		if (r < 0) {
			p->err_offset = voff;
			return r;
		}
		b->len += (size_t)n;
		done += n;
		if (voff + n == boundary)
			hand_over(p);
	}
	return 0;
}

static int read_all(struct copy_pipe *p)
{
	static struct vdisk_extent got[COPY_EXTENTS], ext[COPY_SPLIT_EXTENTS];
	uint64_t size = vdisk_disk_size(p->src), off = 0;
	struct cli_readahead ra;
	int i, n, r = 0;

	while (off < size && r == 0) {
		n = vdisk_disk_translate(p->src, off, size - off, got, COPY_EXTENTS);
		if (n <= 0) {
			p->err_offset = off;
			return n < 0 ? n : -EIO;
		}
		n = cli_split_holes(got, n, ext, COPY_SPLIT_EXTENTS);
		cli_readahead_init(&ra, ext, n);
		for (i = 0; i < n && r == 0; i++)
			if (ext[i].type == VDISK_EXTENT_DATA)
				r = read_extent(p, &ra, &ext[i]);
		off = ext[n - 1].offset + ext[n - 1].length;
	}
	if (r == 0)
		hand_over(p);
	return r < 0 ? r : 0;
}

static void *reader_main(void *opaque)
{
	struct copy_pipe *p = opaque;
	int r = read_all(p);

	pthread_mutex_lock(&p->lock);
	p->read_err = r;
	p->reader_done = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct copy_buf *copy_take(struct copy_pipe *p, bool block, bool *done)
{
	struct copy_buf *b = NULL;

	pthread_mutex_lock(&p->lock);
	while (block && p->ready == 0 && !p->reader_done)
		pthread_cond_wait(&p->cond, &p->lock);
	if (p->ready > 0) {
		b = &p->bufs[p->taken];
		p->taken = (p->taken + 1) % COPY_BUFS;
		p->ready--;
	} else if (p->reader_done) {
		*done = true;
	}
	pthread_mutex_unlock(&p->lock);
	return b;
}

void copy_release(struct copy_pipe *p)
{
	pthread_mutex_lock(&p->lock);
	p->tail = (p->tail + 1) % COPY_BUFS;
	p->free++;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void copy_stop(struct copy_pipe *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static int pipe_init(struct copy_pipe *p, struct vdisk_disk *src)
{
	unsigned i;

	memset(p, 0, sizeof(*p));
	p->src = src;
	p->free = COPY_BUFS;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	for (i = 0; i < COPY_BUFS; i++) {
		/* page-aligned: ready for O_DIRECT files */
		if (posix_memalign((void **)&p->bufs[i].data, 4096, COPY_CHUNK) != 0)
			return -ENOMEM;
	}
	return 0;
}

static void pipe_destroy(struct copy_pipe *p)
{
	unsigned i;

	for (i = 0; i < COPY_BUFS; i++)
		free(p->bufs[i].data);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
}

static int run_pipe(const struct vdisk_cmd *cmd, struct copy_pipe *p, struct copy_writer *w,
		    struct vdisk_disk *dst, struct progress *bar, const char *spath,
		    const char *dpath)
{
	pthread_t reader;
	uint64_t at = 0;
	int r, wr;

	r = pthread_create(&reader, NULL, reader_main, p);
	if (r != 0)
		return cli_fail(cmd, "cannot start the reader thread: %s", strerror(r));
	wr = copy_writer_run(w, p, bar, &at);
	pthread_join(reader, NULL);
	if (p->read_err < 0)
		return cli_fail(cmd, "%s: reading at %llu: %s", spath,
				(unsigned long long)p->err_offset, strerror(-p->read_err));
	if (wr < 0)
		return cli_fail(cmd, "%s: writing at %llu: %s", dpath, (unsigned long long)at,
				strerror(-wr));
	/* fdatasync is per file: it covers what went through the O_DIRECT descriptor too */
	r = vdisk_disk_flush(dst);
	if (r < 0)
		return cli_fail(cmd, "%s: flush: %s", dpath, strerror(-r));
	return 0;
}

int convert_copy(const struct vdisk_cmd *cmd, const struct convert_opts *o, struct vdisk_disk *src,
		 const char *spath, struct vdisk_disk *dst, const char *dpath)
{
	struct copy_writer *w;
	struct copy_pipe p;
	struct progress bar;
	int r;

	if (pipe_init(&p, src) < 0 || copy_writer_open(dst, dpath, &w) < 0) {
		pipe_destroy(&p);
		return cli_fail(cmd, "%s", strerror(ENOMEM));
	}
	progress_init(&bar, o->progress, vdisk_disk_size(src));
	r = run_pipe(cmd, &p, w, dst, &bar, spath, dpath);
	progress_end(&bar, r == 0);
	copy_writer_close(w);
	pipe_destroy(&p);
	return r;
}
