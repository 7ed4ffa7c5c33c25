/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internals of the convert copy pipeline: the ring of buffers between the
 * reader thread (cli/copy.c) and the writer (cli/copy-write.c).
 *
 * Ring discipline: the reader fills bufs[head] and hands it over; the
 * writer takes buffers in order (bufs[taken]) and may hold several while
 * their writes are in flight, and releases them in the same order
 * (bufs[tail]), which gives them back to the reader.
 */
#ifndef VDISK_CLI_COPY_H
#define VDISK_CLI_COPY_H

#include <pthread.h>

#include "convert.h"
#include "progress.h"

#define COPY_CHUNK    (4u << 20)
#define COPY_BUFS     8
#define MIN_U64(a, b) ((a) < (b) ? (a) : (b))

struct copy_buf {
	char *data;      /* COPY_CHUNK bytes, page aligned */
	uint64_t offset; /* virtual offset of data[0] */
	size_t len;
	bool zero; /* every byte is zero: nothing to write */
};

struct copy_pipe {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct copy_buf bufs[COPY_BUFS];
	unsigned head, taken, tail; /* indices as above, modulo COPY_BUFS */
	unsigned ready;             /* handed over, not yet taken */
	unsigned free;              /* not handed over or already released */
	bool reader_done;
	bool stop;    /* the writer failed: the reader must end */
	int read_err; /* -errno from the reader */
	uint64_t err_offset;
	struct vdisk_disk *src;
	struct copy_buf *cur; /* reader: buffer being filled, not yet handed over */
};

/*
 * Writer: the next filled buffer, or NULL. Waits when @block; sets *@done
 * when the reader has finished and every buffer has been taken.
 */
struct copy_buf *copy_take(struct copy_pipe *p, bool block, bool *done);
/* Writer: gives the oldest held buffer back to the reader. */
void copy_release(struct copy_pipe *p);
/* Writer: tells the reader to stop (after a write error). */
void copy_stop(struct copy_pipe *p);

struct copy_writer;

/* Opens the writer for @dst (O_DIRECT and an I/O engine when available). 0 or -errno. */
int copy_writer_open(struct vdisk_disk *dst, const char *dpath, struct copy_writer **ret_w);
/* Writes every buffer the reader produces until it is done. 0 or -errno (*ret_at: where). */
int copy_writer_run(struct copy_writer *w, struct copy_pipe *p, struct progress *bar,
		    uint64_t *ret_at);
void copy_writer_close(struct copy_writer *w);

#endif /* VDISK_CLI_COPY_H */
