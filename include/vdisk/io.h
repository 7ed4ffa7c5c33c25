/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk I/O engines: asynchronous, batched file I/O over io_uring (liburing)
 * or Linux AIO (libaio). An engine is owned by one thread; requests are
 * queued, submitted in a batch, and reaped in batches.
 */
#ifndef VDISK_IO_H
#define VDISK_IO_H

#include <stdint.h>
#include <sys/uio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum vdisk_io_op {
	VDISK_IO_READV = 0,
	VDISK_IO_WRITEV = 1,
	VDISK_IO_FSYNC = 2,
	VDISK_IO_FDATASYNC = 3,
	VDISK_IO_FALLOCATE = 4, /* @mode as fallocate(2), range @offset/@length */
};

/*
 * One request. Owned by the caller, which must keep it and the buffers it
 * points to alive until it is returned by vdisk_engine_reap().
 */
struct vdisk_io {
	uint8_t op;         /* enum vdisk_io_op */
	int fd;
	const struct iovec *iov; /* READV/WRITEV */
	unsigned iovcnt;
	uint64_t offset;    /* bytes */
	uint64_t length;    /* FALLOCATE only */
	int mode;           /* FALLOCATE only */
	int rw_flags;       /* READV/WRITEV: RWF_* (RWF_DSYNC gives FUA) */
	int result;         /* on completion: bytes transferred or -errno */
	void *priv;         /* caller's */
};

enum vdisk_engine_kind {
	VDISK_ENGINE_AUTO = 0,   /* io_uring, else libaio; VDISK_IO_ENGINE=io_uring|libaio overrides */
	VDISK_ENGINE_IO_URING = 1,
	VDISK_ENGINE_LIBAIO = 2,
};

struct vdisk_engine;

/*
 * Opens an engine able to hold @depth requests in flight. Returns 0 or
 * -errno (-ENOSYS/-EPERM when the kernel refuses io_uring and @kind says io_uring).
 */
VDISK_API int vdisk_engine_open(enum vdisk_engine_kind kind, unsigned depth,
				struct vdisk_engine **ret_engine, struct vdisk_err *err);
/* Closes the engine. Requests still in flight are waited for. NULL-safe. */
VDISK_API void vdisk_engine_close(struct vdisk_engine *e);
/* "io_uring" or "libaio". */
VDISK_API const char *vdisk_engine_name(const struct vdisk_engine *e);
VDISK_API enum vdisk_engine_kind vdisk_engine_kind(const struct vdisk_engine *e);
/* Parses "io_uring", "uring", "libaio", "aio" or "auto". Returns 0 or -EINVAL. */
VDISK_API int vdisk_engine_kind_parse(const char *s, enum vdisk_engine_kind *ret_kind);

/*
 * Queues @io for the next submit. Returns 0, or -EAGAIN when @depth requests
 * are already queued or in flight (reap first).
 */
VDISK_API int vdisk_engine_queue(struct vdisk_engine *e, struct vdisk_io *io);
/* Submits everything queued in one system call. Returns the number submitted or -errno. */
VDISK_API int vdisk_engine_submit(struct vdisk_engine *e);
/*
 * Waits for at least @min_wait completions (0: do not wait) and returns up to
 * @max finished requests in @done, each with ->result set. Returns the count or -errno.
 */
VDISK_API int vdisk_engine_reap(struct vdisk_engine *e, struct vdisk_io **done, unsigned max,
				unsigned min_wait);
/*
 * vdisk_engine_submit() and then vdisk_engine_reap(): one system call with
 * io_uring (submit and wait together), two with libaio. For an event loop
 * that has queued new requests and now waits for the next completions.
 * Returns the count reaped or -errno (requests not submitted stay queued).
 */
VDISK_API int vdisk_engine_submit_reap(struct vdisk_engine *e, struct vdisk_io **done,
				       unsigned max, unsigned min_wait);
/* Number of requests queued or in flight. */
VDISK_API unsigned vdisk_engine_inflight(const struct vdisk_engine *e);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_IO_H */
