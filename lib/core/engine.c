/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine front end of include/vdisk/io.h: picks a backend (io_uring,
 * else libaio; VDISK_IO_ENGINE overrides AUTO), keeps the depth budget that
 * makes -EAGAIN deterministic, and forwards queue/submit/reap to the
 * backend's vtable. Closing drains everything in flight so the kernel never
 * touches caller buffers after vdisk_engine_close() returns.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/io.h>

#include "engine-int.h"
#include "util.h"

int vdisk_engine_kind_parse(const char *s, enum vdisk_engine_kind *ret_kind)
{
	static const struct {
		const char *name;
		enum vdisk_engine_kind kind;
	} names[] = {
		{ "auto", VDISK_ENGINE_AUTO },      { "io_uring", VDISK_ENGINE_IO_URING },
		{ "uring", VDISK_ENGINE_IO_URING }, { "libaio", VDISK_ENGINE_LIBAIO },
		{ "aio", VDISK_ENGINE_LIBAIO },
	};

	if (!s)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		if (strcmp(s, names[i].name) == 0) {
			*ret_kind = names[i].kind;
			return 0;
		}
	}
	return -EINVAL;
}

bool vdisk_uring_disabled(void)
{
	const char *v = getenv("VDISK_IO_URING_DISABLE");

	return v && *v && strcmp(v, "0") != 0;
}

/* AUTO, unless VDISK_IO_ENGINE names an engine. */
static int kind_from_env(enum vdisk_engine_kind *ret_kind, struct vdisk_err *err)
{
	const char *v = getenv("VDISK_IO_ENGINE");

	*ret_kind = VDISK_ENGINE_AUTO;
	if (!v || !*v)
		return 0;
	if (vdisk_engine_kind_parse(v, ret_kind) < 0)
		return vdisk_err_set(err, -EINVAL,
				     "VDISK_IO_ENGINE=%s: unknown I/O engine (expected io_uring, "
				     "libaio or auto)",
				     v);
	return 0;
}

static int open_ops(const struct vdisk_engine_ops *ops, unsigned depth,
		    struct vdisk_engine **ret_engine, struct vdisk_err *err)
{
	struct vdisk_engine *e = NULL;
	int r;

	r = ops->open(depth, &e, err);
	if (r < 0)
		return r;
	e->ops = ops;
	e->depth = depth;
	e->queued = 0;
	e->inflight = 0;
	*ret_engine = e;
	return 0;
}

/* io_uring, else libaio; when both fail, the message names both reasons. */
static int open_auto(unsigned depth, struct vdisk_engine **ret_engine, struct vdisk_err *err)
{
	struct vdisk_err uring_err = { 0 }, aio_err = { 0 };
	int r;

	r = open_ops(&vdisk_uring_ops, depth, ret_engine, &uring_err);
	if (r == 0)
		return 0;
	r = open_ops(&vdisk_aio_ops, depth, ret_engine, &aio_err);
	if (r == 0)
		return 0;
	return vdisk_err_set(err, r, "no usable I/O engine: %s; %s", uring_err.msg, aio_err.msg);
}

int vdisk_engine_open(enum vdisk_engine_kind kind, unsigned depth, struct vdisk_engine **ret_engine,
		      struct vdisk_err *err)
{
	int r;

	if (depth == 0 || depth > VDISK_ENGINE_MAX_DEPTH)
		return vdisk_err_set(err, -EINVAL, "I/O engine depth %u out of range (1..%u)",
				     depth, VDISK_ENGINE_MAX_DEPTH);
	if (kind == VDISK_ENGINE_AUTO) {
		r = kind_from_env(&kind, err);
		if (r < 0)
			return r;
	}
	switch (kind) {
	case VDISK_ENGINE_AUTO:
		return open_auto(depth, ret_engine, err);
	case VDISK_ENGINE_IO_URING:
		return open_ops(&vdisk_uring_ops, depth, ret_engine, err);
	case VDISK_ENGINE_LIBAIO:
		return open_ops(&vdisk_aio_ops, depth, ret_engine, err);
	}
	return vdisk_err_set(err, -EINVAL, "unknown I/O engine kind %d", (int)kind);
}

/*
 * Submits what is queued and reaps until nothing is in flight. Requests the
 * kernel keeps refusing while nothing else is in flight never started and
 * are dropped; on a reap error the backend's close does the waiting.
 */
static void drain(struct vdisk_engine *e)
{
	struct vdisk_io *done[64];

	while (e->inflight > 0) {
		if (e->queued > 0 && vdisk_engine_submit(e) <= 0 && e->inflight == e->queued)
			break;
		if (e->inflight > e->queued) {
			int r = vdisk_engine_reap(e, done, ARRAY_SIZE(done), 1);
			if (r < 0 && r != -EINTR)
				break;
		}
	}
}

void vdisk_engine_close(struct vdisk_engine *e)
{
	if (!e)
		return;
	drain(e);
	e->ops->close(e);
}

const char *vdisk_engine_name(const struct vdisk_engine *e)
{
	return e->ops->name;
}

enum vdisk_engine_kind vdisk_engine_kind(const struct vdisk_engine *e)
{
	return e->ops->kind;
}

int vdisk_engine_queue(struct vdisk_engine *e, struct vdisk_io *io)
{
	int r;

	if (unlikely(e->inflight >= e->depth))
		return -EAGAIN;
	r = e->ops->queue(e, io);
	if (unlikely(r < 0))
		return r;
	e->queued++;
	e->inflight++;
	return 0;
}

int vdisk_engine_submit(struct vdisk_engine *e)
{
	int r;

	if (e->queued == 0)
		return 0;
	r = e->ops->submit(e);
	if (r > 0)
		e->queued -= (unsigned)r;
	return r;
}

int vdisk_engine_reap(struct vdisk_engine *e, struct vdisk_io **done, unsigned max,
		      unsigned min_wait)
{
	unsigned submitted = e->inflight - e->queued;
	int r;

	if (max == 0 || submitted == 0)
		return 0;
	/* never wait for more than can complete (that would block forever) or be returned */
	max = MIN(max, submitted);
	min_wait = MIN(min_wait, max);
	r = e->ops->reap(e, done, max, min_wait);
	if (r > 0)
		e->inflight -= (unsigned)r;
	return r;
}

int vdisk_engine_submit_reap(struct vdisk_engine *e, struct vdisk_io **done, unsigned max,
			     unsigned min_wait)
{
	int r;

	if (e->queued == 0 || max == 0 || min_wait == 0 || !e->ops->submit_wait) {
		r = vdisk_engine_submit(e);
		if (r < 0 && e->inflight == e->queued)
			return r;
		return vdisk_engine_reap(e, done, max, min_wait);
	}
	r = e->ops->submit_wait(e, MIN(min_wait, MIN(max, e->inflight)));
	if (r < 0 && e->inflight == e->queued)
		return r;
	if (r > 0)
		e->queued -= (unsigned)r;
	/* the wait is done: collect without another one */
	return vdisk_engine_reap(e, done, max, 0);
}

unsigned vdisk_engine_inflight(const struct vdisk_engine *e)
{
	return e->inflight;
}
