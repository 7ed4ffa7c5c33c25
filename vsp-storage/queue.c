/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The request executor shared by the NBD and vhost-user-blk transports. A
 * queue belongs to one thread and owns one I/O engine. A read or write is
 * translated (vdisk_disk_translate) or allocated (vdisk_disk_allocate) into
 * extents of the image chain, and each DATA extent becomes one readv/writev
 * whose iovec slices point straight into the caller's buffers (guest memory
 * for virtio): no copy, no allocation. Zero/unallocated extents of a read are
 * zero-filled in place. Raw images skip translation (1:1 on the image fd).
 *
 * A write that completed in full is reported (vdisk_disk_write_done) before
 * it is acknowledged: a differencing child marks its sectors present only
 * then, never before their data is in the file.
 *
 * FLUSH is a barrier on its queue: it waits until the writes in flight on
 * the queue have completed (virtio: a flush covers the writes completed
 * before it), then commits through vdisk_disk_flush(), which for VHDX makes
 * the metadata of every allocating write durable as one log entry. Requests
 * arriving meanwhile are parked in order behind it.
 *
 * The rare path: buffers or offsets that O_DIRECT cannot take (unaligned NBD
 * requests, oddly aligned guest buffers) go through an aligned bounce
 * buffer; unaligned writes first drain the queue and read the partial
 * sectors synchronously (read-modify-write).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vsp-int.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ALIGN_DOWN(n, a) ((n) / (a) * (a))
#define ALIGN_UP(n, a) (((n) + (a)-1) / (a) * (a))

/*
 * O_DIRECT descriptors for the files behind extents. The disk is opened
 * without O_DIRECT (lib/vhdx's metadata I/O uses unaligned buffers), and
 * the data path reopens each image file once through /proc/self/fd with
 * O_DIRECT. A lookup is one atomic load; a miss (once per file) takes a
 * mutex.
 */
#define FDMAP_SIZE 65536
static _Atomic int fdmap[FDMAP_SIZE];
static pthread_mutex_t fdmap_lock = PTHREAD_MUTEX_INITIALIZER;

static int direct_fd(const struct vsp_export *e, int fd)
{
	char path[64];
	int d, fl;

	if (!e->conf.direct || fd < 0 || fd >= FDMAP_SIZE || (e->raw && fd == e->raw_fd))
		return fd;
	d = atomic_load_explicit(&fdmap[fd], memory_order_acquire);
	if (likely(d > 0))
		return d - 1;
	pthread_mutex_lock(&fdmap_lock);
	d = atomic_load(&fdmap[fd]);
	if (d == 0) {
		fl = fcntl(fd, F_GETFL);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		d = fl < 0 ? -1 : open(path, (fl & O_ACCMODE) | O_DIRECT | O_CLOEXEC);
		if (d < 0) {
			vsp_log(VSP_LOG_WARN, e->conf.name,
				"cannot reopen image fd %d with O_DIRECT: %s; using the page cache", fd,
				strerror(errno));
			d = fd;
		}
		atomic_store_explicit(&fdmap[fd], d + 1, memory_order_release);
	} else {
		d--;
	}
	pthread_mutex_unlock(&fdmap_lock);
	return d;
}

int vsp_export_flush(struct vsp_export *e)
{
	int err = atomic_load_explicit(&e->flush_err, memory_order_acquire);

	if (err)
		return err; /* the pages that failed to write back are gone: never report success */
	/* writes completing from here on need a later flush */
	atomic_store_explicit(&e->dirty, false, memory_order_relaxed);
	return vdisk_disk_flush(e->disk);
}

void vsp_direct_fds_close(void)
{
	pthread_mutex_lock(&fdmap_lock);
	for (int i = 0; i < FDMAP_SIZE; i++) {
		int d = atomic_load(&fdmap[i]);
		if (d > 0 && d - 1 != i)
			close(d - 1);
		atomic_store(&fdmap[i], 0);
	}
	pthread_mutex_unlock(&fdmap_lock);
}

enum {
	RS_IDLE = 0,
	RS_PARKED,  /* waiting for the barrier or engine room */
	RS_RUNNING, /* extents in flight or more to issue */
};

int vsp_queue_init(struct vsp_queue *q, struct vsp_export *exp, unsigned depth,
		   vsp_complete_fn complete, void *owner, const char *ctx)
{
	struct vdisk_err err = { 0 };
	int r;

	memset(q, 0, sizeof(*q));
	q->exp = exp;
	q->complete = complete;
	q->owner = owner;
	q->ctx = ctx;
	q->depth = depth;
	r = vdisk_engine_open(exp->conf.engine, depth, &q->eng, &err);
	if (r < 0) {
		vsp_log(VSP_LOG_ERR, ctx, "cannot open I/O engine: %s", err.msg);
		return r;
	}
	return 0;
}

void vsp_queue_fini(struct vsp_queue *q)
{
	if (!q->eng)
		return;
	vsp_queue_drain(q);
	vdisk_engine_close(q->eng);
	q->eng = NULL;
}

static void park(struct vsp_queue *q, struct vsp_req *r)
{
	r->state = RS_PARKED;
	r->next = NULL;
	if (q->wait_tail)
		q->wait_tail->next = r;
	else
		q->wait_head = r;
	q->wait_tail = r;
}

static unsigned engine_room(struct vsp_queue *q, unsigned depth)
{
	unsigned used = vdisk_engine_inflight(q->eng);

	return used >= depth ? 0 : depth - used;
}

/* Zero-fills @len bytes of @r's data at the iov cursor and advances it. */
static void cursor_zero(struct vsp_req *r, uint64_t len)
{
	while (len > 0 && r->cur_iov < r->iovcnt) {
		const struct iovec *v = &r->iov[r->cur_iov];
		size_t n = v->iov_len - r->cur_off;

		if (n > len)
			n = (size_t)len;
		memset((char *)v->iov_base + r->cur_off, 0, n);
		r->cur_off += n;
		len -= n;
		if (r->cur_off == v->iov_len) {
			r->cur_iov++;
			r->cur_off = 0;
		}
	}
}

/*
 * Takes @len bytes at the cursor as iovec slices starting at @slice[*used].
 * Returns the number of slices, or 0 when @max slices are not enough.
 */
static unsigned cursor_slice(struct vsp_req *r, uint64_t len, unsigned *used)
{
	unsigned first = *used, n = 0, ci = r->cur_iov;
	size_t co = r->cur_off;

	while (len > 0 && ci < r->iovcnt) {
		const struct iovec *v = &r->iov[ci];
		size_t k = v->iov_len - co;

		if (first + n == VSP_MAX_SLICE)
			return 0;
		if (k > len)
			k = (size_t)len;
		r->slice[first + n].iov_base = (char *)v->iov_base + co;
		r->slice[first + n].iov_len = k;
		n++;
		co += k;
		len -= k;
		if (co == v->iov_len) {
			ci++;
			co = 0;
		}
	}
	if (len > 0)
		return 0; /* iovs shorter than the request: the transport checked this */
	r->cur_iov = ci;
	r->cur_off = co;
	*used += n;
	return n;
}

static int queue_io(struct vsp_queue *q, struct vsp_req *r, int fd, uint64_t file_off,
		    const struct iovec *iov, unsigned iovcnt)
{
	struct vdisk_io *io = &r->io[r->pending];
	int ret;

	io->op = r->op == VSP_OP_READ ? VDISK_IO_READV : VDISK_IO_WRITEV;
	io->fd = direct_fd(q->exp, fd);
	io->iov = iov;
	io->iovcnt = iovcnt;
	io->offset = file_off;
	io->length = 0;
	io->mode = 0;
	io->rw_flags = (r->op == VSP_OP_WRITE && r->fua && q->exp->raw) ? RWF_DSYNC : 0;
	io->result = 0;
	io->priv = r;
	ret = vdisk_engine_queue(q->eng, io);
	if (ret < 0)
		return ret;
	r->pending++;
	return 0;
}

/*
 * Issues as much of @r as the engine and the request's io slots allow.
 * Returns 0, or -errno when the request failed (nothing more is issued).
 */
static int issue(struct vsp_queue *q, struct vsp_req *r)
{
	struct vdisk_extent ext[VSP_REQ_MAX_IO];
	unsigned used = 0; /* a pass starts with nothing in flight: io[] and slice[] are free */

	while (r->issued < r->length && r->pending < VSP_REQ_MAX_IO) {
		unsigned room = engine_room(q, q->depth), max = VSP_REQ_MAX_IO - r->pending;
		uint64_t off = r->offset + r->issued, len = r->length - r->issued;
		int n;

		if (room == 0)
			break;
		if (max > room)
			max = room;
		if (q->exp->raw) {
			ext[0] = (struct vdisk_extent){ .offset = off, .length = len, .file_offset = off,
							.fd = q->exp->raw_fd, .type = VDISK_EXTENT_DATA };
			n = 1;
		} else if (r->op == VSP_OP_READ) {
			n = vdisk_disk_translate(q->exp->disk, off, len, ext, max);
		} else {
			n = vdisk_disk_allocate(q->exp->disk, off, len, ext, max);
		}
		if (n <= 0)
			return n < 0 ? n : -EIO;
		for (int i = 0; i < n; i++) {
			unsigned first = used, k;
			int ret;

			if (ext[i].type != VDISK_EXTENT_DATA) {
				if (r->op != VSP_OP_READ)
					return -EIO;
				cursor_zero(r, ext[i].length);
				r->issued += ext[i].length;
				continue;
			}
			if (q->exp->raw && r->iovcnt <= VSP_MAX_SLICE &&
			    r->cur_iov == 0 && r->cur_off == 0) {
				/* whole request, 1:1: the caller's iovec as is */
				ret = queue_io(q, r, ext[i].fd, ext[i].file_offset, r->iov, r->iovcnt);
				if (ret < 0)
					return ret == -EAGAIN ? 0 : ret;
				r->cur_iov = r->iovcnt;
				r->issued += ext[i].length;
				continue;
			}
			k = cursor_slice(r, ext[i].length, &used);
			if (k == 0) {
				if (r->pending == 0)
					return -EINVAL;
				return 0; /* out of slices: continue when these complete */
			}
			ret = queue_io(q, r, ext[i].fd, ext[i].file_offset, r->slice + first, k);
			if (ret < 0)
				return ret;
			r->issued += ext[i].length;
		}
	}
	return 0;
}

static bool mem_aligned(const struct vsp_queue *q, const struct vsp_req *r)
{
	uint32_t ma = q->exp->mem_align, oa = q->exp->off_align;

	if (r->offset % oa || r->length % oa)
		return false;
	for (unsigned i = 0; i < r->iovcnt; i++)
		if ((uintptr_t)r->iov[i].iov_base % ma || r->iov[i].iov_len % oa)
			return false;
	return true;
}

static void copy_from_iov(void *dst, const struct iovec *iov, unsigned cnt, size_t len)
{
	char *p = dst;

	for (unsigned i = 0; i < cnt && len > 0; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : len;
		memcpy(p, iov[i].iov_base, n);
		p += n;
		len -= n;
	}
}

static void copy_to_iov(const struct iovec *iov, unsigned cnt, const void *src, size_t len)
{
	const char *p = src;

	for (unsigned i = 0; i < cnt && len > 0; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : len;
		memcpy(iov[i].iov_base, p, n);
		p += n;
		len -= n;
	}
}

static uint64_t io_bytes(const struct vdisk_io *io)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < io->iovcnt; i++)
		n += io->iov[i].iov_len;
	return n;
}

/* A short read (end of file) leaves the rest of the buffers: they read as zeros. */
static void zero_tail(const struct vdisk_io *io, uint64_t from)
{
	uint64_t pos = 0;

	for (unsigned i = 0; i < io->iovcnt; i++) {
		uint64_t s = pos, e = pos + io->iov[i].iov_len;
		if (e > from) {
			uint64_t z = s > from ? s : from;
			memset((char *)io->iov[i].iov_base + (z - s), 0, e - z);
		}
		pos = e;
	}
}

/* Checks one finished engine request against what it asked for. 0 or -errno. */
static int io_result(const struct vdisk_io *io)
{
	uint64_t want = io_bytes(io);

	if (io->result < 0)
		return io->result;
	if ((uint64_t)io->result == want)
		return 0;
	if (io->op == VDISK_IO_READV) {
		zero_tail(io, (uint64_t)io->result);
		return 0;
	}
	return -EIO;
}

/*
 * Synchronous aligned read of [@off, @off+@len) into @buf on the idle
 * engine (rare path only: the caller drained the queue first).
 */
static int sync_read(struct vsp_queue *q, void *buf, uint64_t off, uint64_t len)
{
	struct vsp_req *tmp = calloc(1, sizeof(*tmp));
	struct vdisk_io *done[VSP_REQ_MAX_IO];
	struct iovec v = { .iov_base = buf, .iov_len = len };
	int ret = 0;

	if (!tmp)
		return -ENOMEM;
	tmp->op = VSP_OP_READ;
	tmp->offset = off;
	tmp->length = len;
	tmp->iov = &v;
	tmp->iovcnt = 1;
	while (ret == 0 && tmp->issued < tmp->length) {
		ret = issue(q, tmp);
		if (vdisk_engine_submit(q->eng) < 0 && tmp->pending > 0 && ret == 0)
			ret = -EIO;
		while (tmp->pending > 0) {
			int n = vdisk_engine_reap(q->eng, done, VSP_REQ_MAX_IO, 1);
			if (n < 0) {
				free(tmp);
				return n;
			}
			for (int i = 0; i < n; i++) {
				int e = io_result(done[i]);
				if (e < 0 && ret == 0)
					ret = e;
				tmp->pending--;
			}
		}
	}
	free(tmp);
	return ret;
}

/* Sets up the bounce buffer of a request O_DIRECT cannot take as it is. 0 or -errno. */
static int bounce_setup(struct vsp_queue *q, struct vsp_req *r)
{
	uint32_t a = q->exp->off_align;
	uint64_t bo = ALIGN_DOWN(r->offset, a), be = ALIGN_UP(r->offset + r->length, a);
	void *buf;
	int ret;

	if (be > q->exp->size && !q->exp->raw)
		return -EINVAL;
	if (posix_memalign(&buf, q->exp->mem_align > 4096 ? q->exp->mem_align : 4096,
			   (size_t)(be - bo)))
		return -ENOMEM;
	q->stat_bounce++;
	r->bounce = buf;
	r->bounce_off = bo;
	r->bounce_len = be - bo;
	if (r->op == VSP_OP_WRITE) {
		if (bo != r->offset || be != r->offset + r->length) {
			/* read-modify-write of the partial sectors, on an idle engine */
			while (vdisk_engine_inflight(q->eng) > 0)
				vsp_queue_poll(q, true);
			if (bo != r->offset || be - bo <= a) {
				ret = sync_read(q, buf, bo, a);
				if (ret < 0)
					return ret;
			}
			if (be != r->offset + r->length && be - a > bo) {
				ret = sync_read(q, (char *)buf + (be - a - bo), be - a, a);
				if (ret < 0)
					return ret;
			}
		}
		copy_from_iov((char *)buf + (r->offset - bo), r->iov, r->iovcnt, r->length);
	}
	r->orig_iov = r->iov;
	r->orig_iovcnt = r->iovcnt;
	r->orig_offset = r->offset;
	r->orig_length = r->length;
	r->bounce_iov.iov_base = buf;
	r->bounce_iov.iov_len = be - bo;
	r->iov = &r->bounce_iov;
	r->iovcnt = 1;
	r->offset = bo;
	r->length = be - bo;
	return 0;
}

static void bounce_finish(struct vsp_req *r)
{
	if (!r->bounce)
		return;
	if (r->op == VSP_OP_READ && r->status == 0)
		copy_to_iov(r->orig_iov, r->orig_iovcnt,
			    (char *)r->bounce + (r->orig_offset - r->bounce_off), r->orig_length);
	r->iov = r->orig_iov;
	r->iovcnt = r->orig_iovcnt;
	r->offset = r->orig_offset;
	r->length = r->orig_length;
	free(r->bounce);
	r->bounce = NULL;
}

/* The request is over: account, run the transport's callback. */
static void finish(struct vsp_queue *q, struct vsp_req *r)
{
	/*
	 * Every extent of the write completed: only now may a child's bitmap mark
	 * its sectors present (a commit before this would, after a crash, show
	 * never-written sectors instead of the parent's). Before FUA's flush and
	 * before the flush barrier sees this write gone. The range is the
	 * (sector-aligned) bounce range when there is one: all of it was written.
	 */
	if (r->op == VSP_OP_WRITE && r->status == 0 && r->length > 0 && !q->exp->raw)
		r->status = vdisk_disk_write_done(q->exp->disk, r->offset, r->length);
	if (r->op != VSP_OP_READ && r->op != VSP_OP_FLUSH && r->status == 0) {
		if (r->fua && (!q->exp->raw || r->op != VSP_OP_WRITE))
			r->status = vsp_export_flush(q->exp);
		else
			vsp_export_mark_dirty(q->exp);
	}
	bounce_finish(r);
	if (r->counted)
		q->inflight_writes--;
	r->counted = false;
	q->inflight_reqs--;
	r->state = RS_IDLE;
	q->complete(q, r);
}

/* Runs all of @r as the one engine request @io (a sync or a punch). True when queued. */
static bool queue_whole(struct vsp_queue *q, struct vsp_req *r, const struct vdisk_io *io)
{
	if (engine_room(q, q->depth) == 0)
		return false;
	r->io[0] = *io;
	r->io[0].priv = r;
	if (vdisk_engine_queue(q->eng, &r->io[0]) < 0)
		return false;
	r->pending = 1;
	r->state = RS_RUNNING;
	return true;
}

/*
 * When a data sync is all the flush needs (raw files and devices; VHDX with
 * no metadata waiting for a commit), it goes through the engine and the
 * queue keeps serving meanwhile; a commit runs synchronously (run_flush).
 * True when the sync was queued.
 */
static bool flush_async(struct vsp_queue *q, struct vsp_req *r)
{
	struct vsp_export *e = q->exp;
	struct vdisk_io io = { .op = VDISK_IO_FDATASYNC };

	if (atomic_load_explicit(&e->flush_err, memory_order_acquire))
		return false;
	if (e->raw)
		io.fd = e->raw_fd;
	else if (vdisk_disk_flush_fd(e->disk, &io.fd) != 1)
		return false;
	atomic_store_explicit(&e->dirty, false, memory_order_relaxed);
	if (!queue_whole(q, r, &io))
		return false;
	q->stat_flushes++;
	return true;
}

/*
 * Discard and write-zeroes on a raw file: a hole punched through the engine
 * (reads zeros either way, as vdisk_disk_discard/write_zeroes do), so the
 * queue keeps serving meanwhile. Devices (BLKDISCARD/BLKZEROOUT) and VHDX
 * (BAT changes) run synchronously. True when queued.
 */
static bool punch_async(struct vsp_queue *q, struct vsp_req *r)
{
	const struct vdisk_io io = { .op = VDISK_IO_FALLOCATE, .fd = q->exp->raw_fd,
				     .offset = r->offset, .length = r->length,
				     .mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE };

	return q->exp->raw_file && queue_whole(q, r, &io);
}

static void run_flush(struct vsp_queue *q, struct vsp_req *r)
{
	q->stat_flushes++;
	r->status = q->exp->conf.readonly ? 0 : vsp_export_flush(q->exp);
	if (r->status < 0)
		vsp_log(VSP_LOG_ERR, q->ctx, "flush failed: %s", strerror(-r->status));
	finish(q, r);
}

static bool range_ok(const struct vsp_queue *q, const struct vsp_req *r)
{
	uint64_t end;

	return !__builtin_add_overflow(r->offset, r->length, &end) && end <= q->exp->size;
}

/*
 * Moves @r on: issues what it can; finishes it when nothing is left in
 * flight. Returns false when it must wait for engine room (parked by the caller).
 */
static bool advance(struct vsp_queue *q, struct vsp_req *r)
{
	int ret;

	if (r->status == 0 && r->issued < r->length && r->pending == 0) {
		ret = issue(q, r);
		if (ret < 0)
			r->status = ret;
	}
	if (r->pending > 0) {
		r->state = RS_RUNNING;
		return true;
	}
	if (r->status == 0 && r->issued < r->length)
		return false; /* no engine room at all */
	finish(q, r);
	return true;
}

/* Runs a request that is allowed to start now. Returns false to keep it parked. */
static bool run(struct vsp_queue *q, struct vsp_req *r)
{
	int ret;

	switch (r->op) {
	case VSP_OP_FLUSH:
		if (q->inflight_writes > 0) {
			q->barrier = true;
			return false;
		}
		q->barrier = false;
		if (q->exp->conf.readonly || !flush_async(q, r))
			run_flush(q, r);
		return true;
	case VSP_OP_DISCARD:
	case VSP_OP_WRITE_ZEROES:
		if (!q->exp->conf.readonly && r->length > 0 && punch_async(q, r))
			return true;
		if (q->exp->conf.readonly)
			r->status = -EROFS;
		else if (r->length > 0)
			r->status = r->op == VSP_OP_DISCARD
					    ? vdisk_disk_discard(q->exp->disk, r->offset, r->length)
					    : vdisk_disk_write_zeroes(q->exp->disk, r->offset, r->length);
		finish(q, r);
		return true;
	case VSP_OP_READ:
	case VSP_OP_WRITE:
		if (r->op == VSP_OP_WRITE && !r->counted) {
			/* flushes wait for the writes that started before them */
			r->counted = true;
			q->inflight_writes++;
		}
		if (r->state != RS_RUNNING && !mem_aligned(q, r) && !r->bounce) {
			ret = bounce_setup(q, r);
			if (ret < 0) {
				r->status = ret;
				finish(q, r);
				return true;
			}
		}
		return advance(q, r);
	}
	r->status = -EOPNOTSUPP;
	finish(q, r);
	return true;
}

void vsp_queue_start(struct vsp_queue *q, struct vsp_req *r)
{
	r->status = 0;
	r->pending = 0;
	r->issued = 0;
	r->cur_iov = 0;
	r->cur_off = 0;
	r->bounce = NULL;
	r->state = RS_IDLE;
	q->inflight_reqs++;
	q->stat_reqs++;
	r->counted = false;
	if (r->op != VSP_OP_FLUSH && !range_ok(q, r)) {
		r->status = -EINVAL;
		finish(q, r);
		return;
	}
	if ((r->op == VSP_OP_WRITE || r->op == VSP_OP_DISCARD || r->op == VSP_OP_WRITE_ZEROES) &&
	    q->exp->conf.readonly) {
		r->status = -EROFS;
		finish(q, r);
		return;
	}
	if (r->op != VSP_OP_FLUSH && r->length == 0) {
		finish(q, r);
		return;
	}
	if (q->wait_head || !run(q, r))
		park(q, r);
}

/* Restarts parked requests in order, stopping at a flush that must still wait. */
static void unpark(struct vsp_queue *q)
{
	while (q->wait_head) {
		struct vsp_req *r = q->wait_head;

		q->wait_head = r->next;
		if (!q->wait_head)
			q->wait_tail = NULL;
		if (!run(q, r)) {
			/* back to the front */
			r->next = q->wait_head;
			q->wait_head = r;
			if (!q->wait_tail)
				q->wait_tail = r;
			r->state = RS_PARKED;
			return;
		}
	}
}

void vsp_queue_submit(struct vsp_queue *q)
{
	int r = vdisk_engine_submit(q->eng);

	if (r < 0 && r != -EAGAIN && r != -EINTR)
		vsp_log(VSP_LOG_WARN, q->ctx, "I/O submit failed: %s, retrying", strerror(-r));
}

int vsp_queue_poll(struct vsp_queue *q, bool wait)
{
	int n, completed = 0;

	if (vdisk_engine_inflight(q->eng) == 0) {
		unpark(q);
		vsp_queue_submit(q);
		return 0;
	}
	/* what is queued goes out with the wait: one system call with io_uring */
	n = vdisk_engine_submit_reap(q->eng, q->done, sizeof(q->done) / sizeof(q->done[0]),
				     wait ? 1 : 0);
	if (n < 0) {
		if (n != -EINTR && n != -EAGAIN)
			vsp_log(VSP_LOG_WARN, q->ctx, "reaping I/O failed: %s", strerror(-n));
		return 0;
	}
	for (int i = 0; i < n; i++) {
		struct vdisk_io *io = q->done[i];
		struct vsp_req *r = io->priv;
		int e;

		if (unlikely(!r)) {
			/* the transport's own request (a socket read) */
			q->aux(q, io);
			continue;
		}
		e = io_result(io);

		if (e < 0 && r->status == 0)
			r->status = e;
		if (e < 0 && r->op == VSP_OP_FLUSH) {
			int none = 0;
			atomic_compare_exchange_strong(&q->exp->flush_err, &none, e);
			vsp_log(VSP_LOG_ERR, q->ctx, "flush failed: %s", strerror(-e));
		}
		r->pending--;
		if (r->pending == 0) {
			if (!advance(q, r))
				park(q, r);
			else if (r->state == RS_IDLE)
				completed++;
		}
	}
	unpark(q);
	vsp_queue_submit(q);
	return completed;
}

void vsp_queue_drain(struct vsp_queue *q)
{
	while (q->inflight_reqs > 0) {
		if (vdisk_engine_inflight(q->eng) == 0) {
			unpark(q);
			vsp_queue_submit(q);
			if (vdisk_engine_inflight(q->eng) == 0 && q->inflight_reqs > 0 &&
			    !q->wait_head)
				break; /* nothing can move: should not happen */
			continue;
		}
		vsp_queue_poll(q, true);
	}
}
