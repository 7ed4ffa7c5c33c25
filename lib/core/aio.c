/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Linux AIO backend (libaio), the fallback when io_uring is unavailable.
 * All state is preallocated for @depth requests: iocb slots with a free
 * stack, the batch handed to one io_submit(), the io_getevents() buffer and
 * a FIFO of requests that completed without the kernel's AIO. Linux AIO has
 * no fallocate, so FALLOCATE runs synchronously at submit time; and the
 * kernel rejects some requests inside io_submit() (bad fd, unsupported
 * RWF_* flags) instead of completing them with an error. Both kinds land in
 * that FIFO and are reported by the next reap, so callers see the same
 * per-request -errno results as with io_uring.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libaio.h>

#include "engine-int.h"
#include "util.h"

struct aio_engine {
	struct vdisk_engine base;
	io_context_t ctx;
	struct iocb *iocbs;       /* depth slots */
	struct iocb **free_slots; /* stack of unused slots */
	unsigned nfree;
	struct iocb **pending; /* queued for the next io_submit(), in order */
	unsigned npending;
	struct vdisk_io **falloc; /* queued FALLOCATE requests */
	unsigned nfalloc;
	struct vdisk_io **ready; /* FIFO ring of completed, unreaped requests */
	unsigned ready_head, nready;
	unsigned nkernel;        /* accepted by io_submit(), not yet reaped */
	struct io_event *events; /* depth entries */
};

static inline struct aio_engine *to_aio(struct vdisk_engine *e)
{
	return engine_container_of(e, struct aio_engine, base);
}

static void aio_free(struct aio_engine *a)
{
	free(a->iocbs);
	free(a->free_slots);
	free(a->pending);
	free(a->falloc);
	free(a->ready);
	free(a->events);
	free(a);
}

static int aio_open(unsigned depth, struct vdisk_engine **ret_engine, struct vdisk_err *err)
{
	struct aio_engine *a;
	int r;

	a = calloc(1, sizeof(*a));
	if (!a)
		return vdisk_err_set(err, -ENOMEM, "libaio engine: out of memory");
	a->iocbs = calloc(depth, sizeof(*a->iocbs));
	a->free_slots = calloc(depth, sizeof(*a->free_slots));
	a->pending = calloc(depth, sizeof(*a->pending));
	a->falloc = calloc(depth, sizeof(*a->falloc));
	a->ready = calloc(depth, sizeof(*a->ready));
	a->events = calloc(depth, sizeof(*a->events));
	if (!a->iocbs || !a->free_slots || !a->pending || !a->falloc || !a->ready || !a->events) {
		aio_free(a);
		return vdisk_err_set(err, -ENOMEM, "libaio engine (depth %u): out of memory",
				     depth);
	}
	for (unsigned i = 0; i < depth; i++)
		a->free_slots[i] = &a->iocbs[depth - 1 - i];
	a->nfree = depth;
	r = io_setup((int)depth, &a->ctx); /* libaio returns -errno */
	if (r < 0) {
		aio_free(a);
		return vdisk_err_set(err, r, "io_setup(%u): %s", depth, strerror(-r));
	}
	*ret_engine = &a->base;
	return 0;
}

static void aio_close(struct vdisk_engine *e)
{
	struct aio_engine *a = to_aio(e);

	io_destroy(a->ctx); /* waits for whatever is still in the kernel */
	aio_free(a);
}

static void ready_push(struct aio_engine *a, struct vdisk_io *io, int result)
{
	io->result = result;
	a->ready[(a->ready_head + a->nready) % a->base.depth] = io;
	a->nready++;
}

static struct vdisk_io *ready_pop(struct aio_engine *a)
{
	struct vdisk_io *io = a->ready[a->ready_head];

	a->ready_head = (a->ready_head + 1) % a->base.depth;
	a->nready--;
	return io;
}

static int aio_queue(struct vdisk_engine *e, struct vdisk_io *io)
{
	struct aio_engine *a = to_aio(e);
	struct iocb *cb;

	if (io->op == VDISK_IO_FALLOCATE) {
		a->falloc[a->nfalloc++] = io;
		return 0;
	}
	if (unlikely(io->op > VDISK_IO_FALLOCATE))
		return -EINVAL;
	if (unlikely(a->nfree == 0))
		return -EAGAIN;
	cb = a->free_slots[--a->nfree];
	switch (io->op) {
	case VDISK_IO_READV:
		io_prep_preadv(cb, io->fd, io->iov, (int)io->iovcnt, (long long)io->offset);
		cb->aio_rw_flags = (unsigned)io->rw_flags;
		break;
	case VDISK_IO_WRITEV:
		io_prep_pwritev(cb, io->fd, io->iov, (int)io->iovcnt, (long long)io->offset);
		cb->aio_rw_flags = (unsigned)io->rw_flags;
		break;
	case VDISK_IO_FSYNC:
		io_prep_fsync(cb, io->fd);
		break;
	case VDISK_IO_FDATASYNC:
		io_prep_fdsync(cb, io->fd);
		break;
	}
	cb->data = io;
	a->pending[a->npending++] = cb;
	return 0;
}

/* Linux AIO has no fallocate: run it now, report it at the next reap. */
static void run_fallocs(struct aio_engine *a)
{
	for (unsigned i = 0; i < a->nfalloc; i++) {
		struct vdisk_io *io = a->falloc[i];
		int r;

		do
			r = fallocate(io->fd, io->mode, (off_t)io->offset, (off_t)io->length);
		while (r < 0 && errno == EINTR);
		ready_push(a, io, r < 0 ? -errno : 0);
	}
	a->nfalloc = 0;
}

static int aio_submit(struct vdisk_engine *e)
{
	struct aio_engine *a = to_aio(e);
	unsigned off = 0;
	int r = 0, nfalloc = (int)a->nfalloc;

	while (off < a->npending) {
		r = io_submit(a->ctx, (long)(a->npending - off), a->pending + off);
		if (r > 0) {
			off += (unsigned)r;
			a->nkernel += (unsigned)r;
			continue;
		}
		if (r == 0 || r == -EAGAIN || r == -EINTR)
			break; /* out of kernel resources: keep the rest queued */
		/* the kernel rejected pending[off] itself: that is its result */
		struct iocb *cb = a->pending[off++];
		ready_push(a, cb->data, r);
		a->free_slots[a->nfree++] = cb;
		r = 0;
	}
	if (off > 0 && off < a->npending)
		memmove(a->pending, a->pending + off, (a->npending - off) * sizeof(*a->pending));
	a->npending -= off;
	run_fallocs(a);
	if (off == 0 && nfalloc == 0 && r < 0)
		return r;
	return (int)off + nfalloc;
}

static int aio_reap(struct vdisk_engine *e, struct vdisk_io **done, unsigned max, unsigned min_wait)
{
	struct aio_engine *a = to_aio(e);
	struct timespec zero = { 0, 0 };
	unsigned n = 0;
	long want, nr;
	int r;

	while (n < max && a->nready > 0)
		done[n++] = ready_pop(a);
	if (n == max || a->nkernel == 0)
		return (int)n;
	nr = (long)MIN(max - n, a->nkernel);
	want = min_wait > n ? (long)(min_wait - n) : 0;
	want = MIN(want, nr);
	do
		r = io_getevents(a->ctx, want, nr, a->events, want > 0 ? NULL : &zero);
	while (r == -EINTR);
	if (r < 0)
		return n > 0 ? (int)n : r;
	for (int i = 0; i < r; i++) {
		struct io_event *ev = &a->events[i];
		struct vdisk_io *io = ev->data;

		io->result = (int)(long)ev->res;
		a->free_slots[a->nfree++] = ev->obj;
		done[n++] = io;
	}
	a->nkernel -= (unsigned)r;
	return (int)n;
}

const struct vdisk_engine_ops vdisk_aio_ops = {
	.name = "libaio",
	.kind = VDISK_ENGINE_LIBAIO,
	.open = aio_open,
	.close = aio_close,
	.queue = aio_queue,
	.submit = aio_submit,
	.reap = aio_reap,
};
