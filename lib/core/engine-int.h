/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internals of the I/O engines behind include/vdisk/io.h: the small vtable
 * each backend (uring.c, aio.c) fills in, and the common engine header that
 * engine.c uses for depth accounting. Backends embed struct vdisk_engine as
 * their first member and allocate everything a request needs at open time,
 * so the hot path (queue, submit, reap) never allocates.
 */
#ifndef VDISK_ENGINE_INT_H
#define VDISK_ENGINE_INT_H

#include <stddef.h>

#include <vdisk/common.h>
#include <vdisk/io.h>

/* Largest depth accepted by vdisk_engine_open() (io_uring's IORING_MAX_ENTRIES). */
#define VDISK_ENGINE_MAX_DEPTH 32768U

/*
 * One backend. Every callback runs on the thread that owns the engine; none
 * takes a lock. engine.c has checked the arguments and the depth budget
 * before calling, so backends may rely on:
 *   - queue() is called only while fewer than @depth requests are queued or
 *     in flight, so arrays sized by @depth never overflow;
 *   - reap() is called with 0 < @max, @min_wait <= @max, and @max no larger
 *     than the number of submitted, not yet reaped requests.
 */
struct vdisk_engine_ops {
	const char *name; /* "io_uring" or "libaio" */
	enum vdisk_engine_kind kind;

	/*
	 * Allocates the backend state for @depth requests and the kernel
	 * context. Returns 0 and sets *ret_engine, or -errno with a message
	 * in @err ("io_setup(32): Resource temporarily unavailable").
	 */
	int (*open)(unsigned depth, struct vdisk_engine **ret_engine, struct vdisk_err *err);
	/*
	 * Frees the backend. engine.c has already submitted what was queued
	 * and reaped everything in flight, so no request references the
	 * engine any more.
	 */
	void (*close)(struct vdisk_engine *e);
	/*
	 * Prepares @io for the next submit. Returns 0, -EINVAL for an unknown
	 * op, or -EAGAIN when the backend has no room (should not happen
	 * given the depth budget).
	 */
	int (*queue)(struct vdisk_engine *e, struct vdisk_io *io);
	/*
	 * Hands everything queued to the kernel. Returns how many requests
	 * left the queue (each will come back from reap(), possibly with an
	 * error result), or -errno when none did; requests not submitted stay
	 * queued for the next call.
	 */
	int (*submit)(struct vdisk_engine *e);
	/*
	 * Waits for @min_wait completions, then returns up to @max finished
	 * requests in @done with ->result set. Returns the count or -errno.
	 */
	int (*reap)(struct vdisk_engine *e, struct vdisk_io **done, unsigned max,
		    unsigned min_wait);
	/*
	 * Optional: submit() and a wait for @min_wait completions in one
	 * system call (reap() collects them). Called only with requests
	 * queued and 0 < @min_wait <= queued + in flight. Returns what
	 * submit() returns.
	 */
	int (*submit_wait)(struct vdisk_engine *e, unsigned min_wait);
};

/* The part of every engine that engine.c owns. */
struct vdisk_engine {
	const struct vdisk_engine_ops *ops;
	unsigned depth;
	unsigned queued;   /* queued, not yet submitted */
	unsigned inflight; /* queued or submitted, not yet reaped */
};

#define engine_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

extern const struct vdisk_engine_ops vdisk_uring_ops;
extern const struct vdisk_engine_ops vdisk_aio_ops;

/* True when the environment disables io_uring (VDISK_IO_URING_DISABLE=1). */
bool vdisk_uring_disabled(void);

#endif /* VDISK_ENGINE_INT_H */
