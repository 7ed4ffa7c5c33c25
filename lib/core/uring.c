/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io_uring backend (liburing). One ring per engine, with at least @depth
 * submission entries and twice as many completion entries, so with the
 * depth budget of engine.c the SQ always has room and the CQ cannot
 * overflow. A request travels as the SQE's user_data and comes back as the
 * CQE's; the only per-engine array is the CQE batch used by reap.
 *
 * An engine belongs to one thread (io.h), so on kernels that have them the
 * ring is set up for a single issuer with deferred task work: completions
 * are run when the owner waits or reaps, not by interrupting it, which
 * saves a wake-up per completion on a busy queue. The ring starts disabled
 * and is enabled by the first submit, so the thread that uses the engine,
 * not the one that opened it, becomes its issuer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>

#include "engine-int.h"
#include "util.h"

struct uring_engine {
	struct vdisk_engine base;
	struct io_uring ring;
	struct io_uring_cqe **cqes; /* depth entries, for io_uring_peek_batch_cqe */
	bool disabled;              /* IORING_SETUP_R_DISABLED until the first submit */
	bool defer;                 /* IORING_SETUP_DEFER_TASKRUN: completions need an enter */
};

static inline struct uring_engine *to_uring(struct vdisk_engine *e)
{
	return engine_container_of(e, struct uring_engine, base);
}

static int ring_init(unsigned depth, struct uring_engine *u)
{
	/*
	 * Newest first, each falling back to the one below on -EINVAL:
	 * SINGLE_ISSUER + DEFER_TASKRUN (6.1), COOP_TASKRUN (5.19),
	 * SUBMIT_ALL (5.18: a bad SQE does not stop the rest of the batch).
	 */
	static const unsigned flags[] = {
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		    IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_SUBMIT_ALL,
		0,
	};
	int r = -EINVAL;

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]) && r == -EINVAL; i++) {
		r = io_uring_queue_init(depth, &u->ring, flags[i]);
		if (r == 0) {
			u->disabled = flags[i] & IORING_SETUP_R_DISABLED;
			u->defer = flags[i] & IORING_SETUP_DEFER_TASKRUN;
		}
	}
	return r;
}

static int uring_open(unsigned depth, struct vdisk_engine **ret_engine, struct vdisk_err *err)
{
	struct uring_engine *u;
	int r;

	if (vdisk_uring_disabled())
		return vdisk_err_set(
		    err, -ENOSYS, "io_uring disabled by VDISK_IO_URING_DISABLE in the environment");
	u = calloc(1, sizeof(*u));
	if (!u)
		return vdisk_err_set(err, -ENOMEM, "io_uring engine: out of memory");
	u->cqes = calloc(depth, sizeof(*u->cqes));
	if (!u->cqes) {
		r = vdisk_err_set(err, -ENOMEM, "io_uring engine (depth %u): out of memory", depth);
		goto out_free;
	}
	r = ring_init(depth, u);
	if (r < 0) {
		vdisk_err_set(err, r, "io_uring_queue_init(depth %u): %s", depth, strerror(-r));
		goto out_free_cqes;
	}
	*ret_engine = &u->base;
	return 0;

out_free_cqes:
	free(u->cqes);
out_free:
	free(u);
	return r;
}

static void uring_close(struct vdisk_engine *e)
{
	struct uring_engine *u = to_uring(e);

	io_uring_queue_exit(&u->ring);
	free(u->cqes);
	free(u);
}

static int uring_queue(struct vdisk_engine *e, struct vdisk_io *io)
{
	struct uring_engine *u = to_uring(e);
	struct io_uring_sqe *sqe;

	if (unlikely(io->op > VDISK_IO_FALLOCATE))
		return -EINVAL;
	sqe = io_uring_get_sqe(&u->ring);
	if (unlikely(!sqe))
		return -EAGAIN;
	switch (io->op) {
	case VDISK_IO_READV:
		io_uring_prep_readv(sqe, io->fd, io->iov, io->iovcnt, io->offset);
		sqe->rw_flags = io->rw_flags;
		break;
	case VDISK_IO_WRITEV:
		io_uring_prep_writev(sqe, io->fd, io->iov, io->iovcnt, io->offset);
		sqe->rw_flags = io->rw_flags;
		break;
	case VDISK_IO_FSYNC:
		io_uring_prep_fsync(sqe, io->fd, 0);
		break;
	case VDISK_IO_FDATASYNC:
		io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
		break;
	case VDISK_IO_FALLOCATE:
		io_uring_prep_fallocate(sqe, io->fd, io->mode, (off_t)io->offset,
					(off_t)io->length);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
	return 0;
}

/* The first submit makes the calling thread the ring's single issuer. */
static inline int enable(struct uring_engine *u)
{
	if (likely(!u->disabled))
		return 0;
	/* liburing 2.3 declares io_uring_enable_rings() but does not export it */
	if (syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL,
		    0) < 0)
		return -errno;
	u->disabled = false;
	return 0;
}

static int uring_submit(struct vdisk_engine *e)
{
	struct uring_engine *u = to_uring(e);
	int done = 0, r = enable(u);

	if (unlikely(r < 0))
		return r;
	/*
	 * Without SUBMIT_ALL the kernel stops at the first SQE it rejects
	 * (that one still gets an error CQE); go on with the rest.
	 */
	while (io_uring_sq_ready(&u->ring) > 0) {
		r = io_uring_submit(&u->ring);
		if (r < 0) {
			if (r == -EINTR)
				continue;
			return done > 0 ? done : r;
		}
		if (r == 0)
			break;
		done += r;
	}
	return done;
}

static int uring_submit_wait(struct vdisk_engine *e, unsigned min_wait)
{
	struct uring_engine *u = to_uring(e);
	int r = enable(u);

	if (unlikely(r < 0))
		return r;
	do
		r = io_uring_submit_and_wait(&u->ring, min_wait);
	while (r == -EINTR);
	if (r < 0 || io_uring_sq_ready(&u->ring) == 0)
		return r;
	/* stopped at a rejected SQE (no SUBMIT_ALL): submit the rest as submit() does */
	{
		int more = uring_submit(e);

		return more > 0 ? r + more : r;
	}
}

static int uring_reap(struct vdisk_engine *e, struct vdisk_io **done, unsigned max,
		      unsigned min_wait)
{
	struct uring_engine *u = to_uring(e);
	unsigned n;

	if (min_wait > 0) {
		struct io_uring_cqe *cqe;
		int r;

		do
			r = io_uring_wait_cqe_nr(&u->ring, &cqe, min_wait);
		while (r == -EINTR);
		if (r < 0)
			return r;
	}
	n = io_uring_peek_batch_cqe(&u->ring, u->cqes, MIN(max, e->depth));
	if (n == 0 && u->defer && min_wait == 0) {
		/* deferred completions are posted only when we enter the kernel */
		io_uring_get_events(&u->ring);
		n = io_uring_peek_batch_cqe(&u->ring, u->cqes, MIN(max, e->depth));
	}
	for (unsigned i = 0; i < n; i++) {
		struct vdisk_io *io = io_uring_cqe_get_data(u->cqes[i]);

		io->result = u->cqes[i]->res;
		done[i] = io;
	}
	io_uring_cq_advance(&u->ring, n);
	return (int)n;
}

const struct vdisk_engine_ops vdisk_uring_ops = {
	.name = "io_uring",
	.kind = VDISK_ENGINE_IO_URING,
	.open = uring_open,
	.close = uring_close,
	.queue = uring_queue,
	.submit = uring_submit,
	.reap = uring_reap,
	.submit_wait = uring_submit_wait,
};
