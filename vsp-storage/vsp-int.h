/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vsp-storage internals: exports (one disk each, with its NBD and
 * vhost-user-blk front ends), the per-queue request executor shared by both
 * transports (queue.c: translate/allocate, execute extents on an I/O engine,
 * flush barriers, the rare bounce path), logging, and the entry points of
 * each transport. Each queue (an NBD connection or a virtqueue) is served by
 * one thread owning one I/O engine; nothing on the data path takes a lock
 * or allocates.
 */
#ifndef VSP_INT_H
#define VSP_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <vdisk/common.h>
#include <vdisk/disk.h>
#include <vdisk/io.h>

#define VSP_NAME "vsp-storage"

/* Extents (and so engine requests) one request may have in flight at once. */
#define VSP_REQ_MAX_IO 8
/* Data segments of one request; virtio's seg_max is derived from it. */
#define VSP_MAX_IOV 256
#define VSP_MAX_SLICE (VSP_MAX_IOV + 2 * VSP_REQ_MAX_IO)
/* Largest single request, bytes (NBD's and virtio's). */
#define VSP_MAX_REQ_BYTES (32U << 20)
#define VSP_MAX_QUEUES 64
#define VSP_DEFAULT_QUEUES 16

/* ---- logging ---- */

enum vsp_log_level {
	VSP_LOG_ERR = 3,
	VSP_LOG_WARN = 4,
	VSP_LOG_INFO = 6,
	VSP_LOG_DEBUG = 7,
};

extern int vsp_log_max;
/* "vsp-storage: [EXPORT qN] message" on stderr (with a <N> priority prefix under systemd). */
void vsp_log(int level, const char *ctx, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define vsp_debug(ctx, ...)                                     \
	do {                                                    \
		if (__builtin_expect(vsp_log_max >= VSP_LOG_DEBUG, 0)) \
			vsp_log(VSP_LOG_DEBUG, ctx, __VA_ARGS__); \
	} while (0)

/* ---- exports ---- */

#define VSP_POLL_US_DEFAULT 32
#define VSP_POLL_US_MAX 1000
#define VSP_MAX_SEARCH_DIRS 8

struct vsp_export_conf {
	char name[64];
	char image[PATH_MAX];
	char nbd[PATH_MAX + 8];   /* "unix:PATH" or "tcp:HOST:PORT", "" when off */
	char vhost[PATH_MAX];     /* vhost-user-blk socket path, "" when off */
	unsigned queues;          /* vhost-user-blk: most virtqueues offered */
	bool readonly;
	bool direct;              /* O_DIRECT (default) */
	bool any_host;            /* NBD over TCP may bind a non-loopback address */
	unsigned commit_secs;     /* commit metadata this long after a write without a flush; 0: never */
	unsigned poll_us;         /* vhost-user-blk: look for new requests this long before sleeping */
	enum vdisk_format format;
	enum vdisk_engine_kind engine;
	/* --search-dir / search-dir: extra folders to look for VHDX parents in, in order */
	char search_dirs[VSP_MAX_SEARCH_DIRS][PATH_MAX];
	unsigned nr_search_dirs;
	/* a passthrough LUN or device claimed by lib/passthrough (O_EXCL, checked): the export
	 * opens it again through /proc/self/fd/N, so it serves exactly the device that was
	 * checked even if its /dev name changes meanwhile; -1 otherwise (not from config files) */
	int claim_fd;
};

struct vsp_nbd_server;
struct vsp_vhost_server;

struct vsp_export {
	struct vsp_export_conf conf;
	struct vdisk_disk *disk;
	uint64_t size;        /* bytes */
	uint32_t lsec, psec;  /* logical/physical sector, bytes */
	uint32_t mem_align;   /* O_DIRECT buffer alignment, bytes */
	uint32_t off_align;   /* O_DIRECT offset/length alignment, bytes (>= lsec) */
	bool raw;             /* raw image: 1:1, served through raw_fd without translation */
	bool raw_file;        /* ... and a regular file: discard and write-zeroes are fallocate */
	int raw_fd;
	char serial[21];      /* virtio GET_ID */
	struct vsp_nbd_server *nbd;
	struct vsp_vhost_server *vhost;
	atomic_uint nbd_conns;
	atomic_bool dirty;    /* writes completed since the last flush (commit timer) */
	atomic_int flush_err; /* -errno of a failed asynchronous data sync: every later flush fails */
	long dirty_since;     /* main thread: when the timer first saw it dirty */
};

/* A write, discard or write-zeroes completed: the commit timer has work. */
static inline void vsp_export_mark_dirty(struct vsp_export *e)
{
	if (!atomic_load_explicit(&e->dirty, memory_order_relaxed))
		atomic_store_explicit(&e->dirty, true, memory_order_relaxed);
}

/* Commits the export (vdisk_disk_flush); the commit timer and FLUSH requests use it. */
int vsp_export_flush(struct vsp_export *e);

/* Opens the export's image. Returns 0 or -errno, logging why. */
int vsp_export_open(struct vsp_export *e);
/* Flushes and closes the image. Returns 0 or -errno. */
int vsp_export_close(struct vsp_export *e);

/* config.c: command line and configuration file */
struct vsp_config {
	struct vsp_export_conf *exports;
	unsigned nr_exports;
	int log_level;
	char pidfile[PATH_MAX];
};

void vsp_export_conf_init(struct vsp_export_conf *c);
/*
 * Appends @dir to @c's parent search folders. 0, -ENOTDIR (not a folder),
 * -E2BIG (more than VSP_MAX_SEARCH_DIRS) or -ENAMETOOLONG.
 */
int vsp_export_conf_add_search_dir(struct vsp_export_conf *c, const char *dir);
/* Parses the configuration file at @path, appending exports to @cfg. 0 or -errno (logged). */
int vsp_config_load(struct vsp_config *cfg, const char *path);
int vsp_config_add(struct vsp_config *cfg, const struct vsp_export_conf *c);
void vsp_config_free(struct vsp_config *cfg);

/* passthrough.c: LUNs of a VM as exports, and the O_EXCL claims held while serving. */
int vsp_pt_add_vm(struct vsp_config *cfg, const struct vsp_export_conf *tmpl,
		  const char *map_path, const char *vm);
int vsp_pt_claim_device(const char *path, bool readonly, int *ret_fd);
void vsp_pt_release(void);
/* "error", "warning", "info" or "debug": a VSP_LOG_* level, or -EINVAL. */
int vsp_parse_log_level(const char *v);

/* ---- the request executor (queue.c) ---- */

enum vsp_op {
	VSP_OP_READ = 0,
	VSP_OP_WRITE,
	VSP_OP_FLUSH,
	VSP_OP_DISCARD,
	VSP_OP_WRITE_ZEROES,
};

struct vsp_queue;

/*
 * One block request. Transports embed it in their request slot and fill
 * op/offset/length/iov/fua; the queue runs it and calls the queue's
 * completion callback once with ->status set (0 or -errno).
 */
struct vsp_req {
	uint8_t op;                /* enum vsp_op */
	bool fua;                  /* write: durable before completion */
	bool counted;              /* executor: counted as an in-flight write */
	uint64_t offset, length;   /* bytes */
	const struct iovec *iov;   /* data, borrowed until completion */
	unsigned iovcnt;
	int status;
	/* executor state */
	uint8_t state;
	unsigned pending;          /* engine requests in flight */
	uint64_t issued;           /* bytes handed to the engine so far */
	unsigned cur_iov;          /* iov cursor matching @issued */
	size_t cur_off;
	struct vsp_req *next;      /* waiting list */
	void *bounce;              /* rare path: aligned copy of the data */
	uint64_t bounce_off, bounce_len;
	struct iovec bounce_iov;
	const struct iovec *orig_iov;
	unsigned orig_iovcnt;
	uint64_t orig_offset, orig_length;
	struct vdisk_io io[VSP_REQ_MAX_IO];
	struct iovec slice[VSP_MAX_SLICE];
};

typedef void (*vsp_complete_fn)(struct vsp_queue *q, struct vsp_req *r);

struct vsp_queue {
	struct vsp_export *exp;
	struct vdisk_engine *eng;
	vsp_complete_fn complete;
	/* completion of an engine request the transport queued itself (->priv NULL) */
	void (*aux)(struct vsp_queue *q, struct vdisk_io *io);
	void *owner;
	const char *ctx;           /* log prefix, "export q0" */
	unsigned depth;            /* engine depth */
	unsigned inflight_reqs;    /* started, not yet completed */
	unsigned inflight_writes;
	bool barrier;              /* a flush waits for in-flight writes */
	struct vsp_req *wait_head, *wait_tail;
	struct vdisk_io *done[128];
	uint64_t stat_reqs, stat_bounce, stat_flushes;
};

int vsp_queue_init(struct vsp_queue *q, struct vsp_export *exp, unsigned depth,
		   vsp_complete_fn complete, void *owner, const char *ctx);
void vsp_queue_fini(struct vsp_queue *q);
/* Starts @r (or parks it behind a flush barrier or a full engine). Never completes inline. */
void vsp_queue_start(struct vsp_queue *q, struct vsp_req *r);
/* Submits what is queued on the engine. */
void vsp_queue_submit(struct vsp_queue *q);
/*
 * Reaps completions (waiting for one when @wait), runs completion callbacks
 * and restarts parked requests. Returns the number of requests completed.
 */
int vsp_queue_poll(struct vsp_queue *q, bool wait);
/* Completes everything in flight or parked. */
void vsp_queue_drain(struct vsp_queue *q);
/* True while requests are in flight or parked. */
static inline bool vsp_queue_busy(const struct vsp_queue *q)
{
	return q->inflight_reqs > 0;
}

/* ---- transports ---- */

int vsp_nbd_start(struct vsp_export *e);
void vsp_nbd_stop(struct vsp_export *e);
int vsp_vhost_start(struct vsp_export *e);
void vsp_vhost_stop(struct vsp_export *e);

/* Binds and listens on a UNIX socket at @path (a stale socket there is replaced). fd or -errno. */
int vsp_listen_unix(const char *path, const char *ctx);
/* O_DIRECT alignment of @path (statx STATX_DIOALIGN), defaults 512/512. */
void vsp_dio_align(const char *path, uint32_t *ret_mem, uint32_t *ret_off);

/* Closes the O_DIRECT twins of image descriptors (queue.c), after every queue stopped. */
void vsp_direct_fds_close(void);

/* Global stop flag, set on SIGTERM/SIGINT. */
extern atomic_bool vsp_stopping;

/* Writes all of @len bytes of @iov (advancing a local copy). 0 or -errno. */
int vsp_sendv_all(int fd, struct iovec *iov, unsigned iovcnt);

#endif /* VSP_INT_H */
