/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The virtio-blk virtqueue worker: one thread per started queue, owning one
 * I/O engine (vsp_queue). It consumes the avail ring, walks and checks
 * each chain, and starts the request with iovecs pointing into guest
 * memory; completions write the status byte, go to the used ring in
 * batches and interrupt the guest as EVENT_IDX asks. While requests are in
 * flight the worker waits on the engine and polls the avail ring after each
 * completion batch (kicks stay suppressed); idle, it re-enables kicks and
 * sleeps on the kick eventfd.
 *
 * A chain that breaks the rules fails alone: it is returned with nothing
 * written. A ring whose avail index is bogus, or that offers a head still
 * in flight, stops being served (the connection and other queues go on).
 *
 * Inflight tracking follows the vhost-user spec's split-ring procedure:
 * each head consumed is marked (with a counter for ordering), each used
 * batch is linked from last_batch_head before the used index is published
 * and cleared after; on start, a region left by a previous daemon is
 * repaired and what was in flight is resubmitted in counter order.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vhost-int.h"

/* ---- inflight region ---- */

static uint8_t *ifl_desc(struct vhost_vq *v, unsigned i)
{
	return v->inflight + VHOST_INFLIGHT_HDR + (size_t)VHOST_INFLIGHT_DESC * i;
}

static void ifl_begin(struct vhost_vq *v, uint16_t head)
{
	uint8_t *d;

	if (!v->inflight)
		return;
	d = ifl_desc(v, head);
	v->counter++;
	memcpy(d + 8, &v->counter, 8);
	__atomic_store_n(d, (uint8_t)1, __ATOMIC_RELEASE);
}

static void ifl_push(struct vhost_vq *v, uint16_t head)
{
	uint16_t last;

	if (!v->inflight)
		return;
	memcpy(&last, v->inflight + 12, 2);
	memcpy(ifl_desc(v, head) + 6, &last, 2);
	memcpy(v->inflight + 12, &head, 2);
}

/* After the used index went out: the batch is no longer in flight. */
static void ifl_flushed(struct vhost_vq *v)
{
	if (!v->inflight)
		return;
	for (unsigned i = 0; i < v->ndone; i++)
		__atomic_store_n(ifl_desc(v, v->done[i]), (uint8_t)0, __ATOMIC_RELEASE);
	memcpy(v->inflight + 14, &v->vr.used_idx, 2);
}

static int cmp_counter(const void *a, const void *b, void *arg)
{
	struct vhost_vq *v = arg;
	uint64_t ca, cb;

	memcpy(&ca, ifl_desc(v, *(const uint16_t *)a) + 8, 8);
	memcpy(&cb, ifl_desc(v, *(const uint16_t *)b) + 8, 8);
	return ca < cb ? -1 : ca > cb;
}

static void handle_head(struct vhost_vq *v, uint16_t head);

/*
 * Adopts the region at ring start. A fresh (zero) or foreign region is
 * initialized; one left by a previous run is repaired, and its in-flight
 * heads are resubmitted in the order they were taken.
 */
static void ifl_start(struct vhost_vq *v)
{
	uint16_t version, desc_num, used_idx, guest_used = v->vr.used_idx, *heads;
	unsigned n = 0;
	uint64_t maxc = 0;

	memcpy(&version, v->inflight + 8, 2);
	memcpy(&desc_num, v->inflight + 10, 2);
	if (version != VHOST_INFLIGHT_VERSION || desc_num != v->num) {
		memset(v->inflight, 0, VHOST_INFLIGHT_HDR + (size_t)VHOST_INFLIGHT_DESC * v->num);
		version = VHOST_INFLIGHT_VERSION;
		desc_num = (uint16_t)v->num;
		memcpy(v->inflight + 8, &version, 2);
		memcpy(v->inflight + 10, &desc_num, 2);
		memcpy(v->inflight + 14, &guest_used, 2);
		return;
	}
	memcpy(&used_idx, v->inflight + 14, 2);
	if (used_idx != guest_used) {
		/* the last batch reached the guest but was not cleared here */
		uint16_t h, batch = (uint16_t)(guest_used - used_idx);
		memcpy(&h, v->inflight + 12, 2);
		for (unsigned i = 0; i < batch && i < v->num && h < v->num; i++) {
			__atomic_store_n(ifl_desc(v, h), (uint8_t)0, __ATOMIC_RELEASE);
			memcpy(&h, ifl_desc(v, h) + 6, 2);
		}
		memcpy(v->inflight + 14, &guest_used, 2);
	}
	heads = calloc(v->num, sizeof(*heads));
	if (!heads)
		return;
	for (unsigned i = 0; i < v->num; i++) {
		uint64_t c;
		memcpy(&c, ifl_desc(v, i) + 8, 8);
		if (c > maxc)
			maxc = c;
		if (__atomic_load_n(ifl_desc(v, i), __ATOMIC_ACQUIRE) == 1)
			heads[n++] = (uint16_t)i;
	}
	v->counter = maxc;
	/* everything taken from the avail ring is either used or in flight */
	v->vr.last_avail = (uint16_t)(guest_used + n);
	if (n) {
		vsp_log(VSP_LOG_INFO, v->ctx, "resubmitting %u request(s) left in flight", n);
		qsort_r(heads, n, sizeof(*heads), cmp_counter, v);
		for (unsigned i = 0; i < n; i++)
			handle_head(v, heads[i]);
	}
	free(heads);
}

/* ---- completion ---- */

static void flush_used(struct vhost_vq *v);

static void complete(struct vhost_vq *v, struct blk_slot *s, uint8_t status, uint32_t len)
{
	if (v->ndone == v->num)
		flush_used(v);
	*s->status = status;
	vsp_virtq_push(&v->vr, s->head, len);
	ifl_push(v, s->head);
	v->done[v->ndone++] = s->head;
	s->busy = false;
}

/* A chain we cannot use: give it back untouched. */
static void reject(struct vhost_vq *v, uint16_t head, int err)
{
	if (v->bad_chains++ < 10)
		vsp_log(VSP_LOG_WARN, v->ctx, "request at head %u rejected: %s", head,
			strerror(-err));
	if (v->ndone == v->num)
		flush_used(v);
	vsp_virtq_push(&v->vr, head, 0);
	ifl_push(v, head);
	v->done[v->ndone++] = head;
}

static void flush_used(struct vhost_vq *v)
{
	uint16_t old = (uint16_t)(v->vr.used_idx - v->ndone);
	bool need;

	if (v->ndone == 0)
		return;
	need = vsp_virtq_flush(&v->vr, old);
	ifl_flushed(v);
	v->ndone = 0;
	if (need && v->call_fd >= 0) {
		uint64_t one = 1;
		v->stat_calls++;
		if (write(v->call_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			vsp_log(VSP_LOG_WARN, v->ctx, "call eventfd: %s", strerror(errno));
	}
}

static uint8_t blk_status(int err)
{
	if (err == 0)
		return VIRTIO_BLK_S_OK;
	return err == -EOPNOTSUPP ? VIRTIO_BLK_S_UNSUPP : VIRTIO_BLK_S_IOERR;
}

static void on_complete(struct vsp_queue *q, struct vsp_req *r)
{
	struct blk_slot *s = (struct blk_slot *)r;
	struct vhost_vq *v = q->owner;

	if (r->status < 0 && v->bad_chains++ < 10)
		vsp_log(VSP_LOG_WARN, v->ctx, "request at head %u failed: %s", s->head,
			strerror(-r->status));
	complete(v, s, blk_status(r->status), r->status == 0 ? s->used_len : 1);
}

/* ---- requests ---- */

static int discard_zeroes(struct vhost_vq *v, const struct vsp_blk_parsed *p)
{
	struct vsp_export *e = v->dev->exp;
	uint8_t segs[VIRTIO_BLK_SEG_SIZE * VSP_BLK_MAX_SEGS];
	unsigned n = (unsigned)(p->out_bytes / VIRTIO_BLK_SEG_SIZE);
	bool zero = p->type == VIRTIO_BLK_T_WRITE_ZEROES;

	if (e->conf.readonly)
		return -EROFS;
	if (p->out_bytes % VIRTIO_BLK_SEG_SIZE || n == 0 || n > VSP_BLK_MAX_SEGS ||
	    !vsp_blk_gather(segs, p->out, p->out_cnt, n * VIRTIO_BLK_SEG_SIZE))
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *sg = segs + i * VIRTIO_BLK_SEG_SIZE;
		uint64_t sector = le64_ld(sg), off, len, end;
		uint32_t count = le32_ld(sg + 8), flags = le32_ld(sg + 12);
		int r;

		if (flags & ~(uint32_t)(zero ? VIRTIO_BLK_WZ_F_UNMAP : 0))
			return -EOPNOTSUPP; /* 5.2.6.2: unmap on discard is not ours to accept */
		if (__builtin_mul_overflow(sector, VIRTIO_BLK_SECTOR, &off))
			return -EINVAL;
		len = (uint64_t)count * VIRTIO_BLK_SECTOR;
		if (__builtin_add_overflow(off, len, &end) || end > e->size)
			return -EINVAL;
		if (len == 0)
			continue;
		r = zero ? vdisk_disk_write_zeroes(e->disk, off, len)
			 : vdisk_disk_discard(e->disk, off, len);
		if (r < 0)
			return r;
	}
	return 0;
}

static void get_id(struct vhost_vq *v, struct blk_slot *s, const struct vsp_blk_parsed *p)
{
	const char *id = v->dev->exp->serial;
	size_t n = p->in_bytes < VIRTIO_BLK_ID_BYTES ? (size_t)p->in_bytes : VIRTIO_BLK_ID_BYTES;
	size_t done = 0;
	uint8_t buf[VIRTIO_BLK_ID_BYTES];

	memset(buf, 0, sizeof(buf));
	memcpy(buf, id, strnlen(id, sizeof(buf)));
	for (unsigned i = 0; i < p->in_cnt && done < n; i++) {
		size_t k = p->in[i].iov_len < n - done ? p->in[i].iov_len : n - done;
		memcpy(p->in[i].iov_base, buf + done, k);
		done += k;
	}
	complete(v, s, VIRTIO_BLK_S_OK, (uint32_t)n + 1);
}

static void handle_head(struct vhost_vq *v, uint16_t head)
{
	struct vsp_blk_parsed *p = &v->parsed;
	struct vsp_export *e = v->dev->exp;
	struct blk_slot *s;
	uint64_t off;
	int r;

	if (head >= v->num) {
		reject(v, head, -EINVAL);
		return;
	}
	s = &v->slots[head];
	if (s->busy) {
		vsp_log(VSP_LOG_WARN, v->ctx, "head %u offered again while in flight; queue stopped",
			head);
		v->broken = true;
		return;
	}
	r = vsp_virtq_walk(&v->dev->mem, &v->vr, head, &v->chain);
	if (r == 0)
		r = vsp_blk_parse(&v->chain, p);
	if (r < 0) {
		reject(v, head, r);
		return;
	}
	v->stat_reqs++;
	s->busy = true;
	s->head = head;
	s->status = p->status;
	s->used_len = 1;
	ifl_begin(v, head);
	switch (p->type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool in = p->type == VIRTIO_BLK_T_IN;
		uint64_t len = in ? p->in_bytes : p->out_bytes;

		if ((!in && e->conf.readonly) || len % VIRTIO_BLK_SECTOR || len > VSP_MAX_REQ_BYTES ||
		    __builtin_mul_overflow(p->sector, VIRTIO_BLK_SECTOR, &off)) {
			complete(v, s, VIRTIO_BLK_S_IOERR, 1);
			return;
		}
		s->req.op = in ? VSP_OP_READ : VSP_OP_WRITE;
		s->req.fua = false;
		s->req.offset = off;
		s->req.length = len;
		memcpy(s->iov, in ? p->in : p->out, (in ? p->in_cnt : p->out_cnt) * sizeof(struct iovec));
		s->req.iov = s->iov;
		s->req.iovcnt = in ? p->in_cnt : p->out_cnt;
		s->used_len = in ? (uint32_t)len + 1 : 1;
		vsp_queue_start(&v->q, &s->req);
		return;
	}
	case VIRTIO_BLK_T_FLUSH:
		s->req.op = VSP_OP_FLUSH;
		s->req.offset = 0;
		s->req.length = 0;
		s->req.iov = NULL;
		s->req.iovcnt = 0;
		vsp_queue_start(&v->q, &s->req);
		return;
	case VIRTIO_BLK_T_GET_ID:
		get_id(v, s, p);
		return;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		r = discard_zeroes(v, p);
		if (r == 0)
			vsp_export_mark_dirty(e);
		complete(v, s, blk_status(r), 1);
		return;
	default:
		complete(v, s, VIRTIO_BLK_S_UNSUPP, 1);
		return;
	}
}

/* Consumes the avail ring. */
static void process_avail(struct vhost_vq *v)
{
	while (!v->broken && !atomic_load_explicit(&v->stop, memory_order_relaxed)) {
		uint16_t head;
		int r = vsp_virtq_pop(&v->vr, &head);

		if (r == 0)
			break;
		if (r < 0) {
			vsp_log(VSP_LOG_WARN, v->ctx, "avail index out of range; queue stopped");
			v->broken = true;
			break;
		}
		handle_head(v, head);
	}
}

#define VSP_POLL_HITS_MAX 8

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * With requests in flight, waits for the guest's next requests by watching
 * the avail ring (kicks are off while busy) for up to the export's poll
 * time before sleeping on the engine, which submits what is queued first.
 * A sleeping worker would see them only at its next completion: on virtual
 * CPUs the two wake-ups per round trip leave the device idle in between.
 * Costs CPU only while two or more requests are in flight. True when
 * there is work to do.
 */
static bool poll_briefly(struct vhost_vq *v)
{
	unsigned us = v->dev->exp->conf.poll_us;
	uint64_t end;

	/* a lone request: the guest is waiting for it, not about to send more */
	if (us == 0 || v->broken || v->q.inflight_reqs < 2)
		return false;
	/* completions wait meanwhile: after a few hits in a row, reap them */
	if (v->poll_hits >= VSP_POLL_HITS_MAX) {
		v->poll_hits = 0;
		return false;
	}
	vsp_queue_submit(&v->q);
	end = mono_ns() + (uint64_t)us * 1000;
	do {
		if (vsp_virtq_has_avail(&v->vr)) {
			v->poll_hits++;
			return true;
		}
	} while (mono_ns() < end);
	v->poll_hits = 0;
	return false;
}

static void *worker(void *arg)
{
	struct vhost_vq *v = arg;
	unsigned depth = v->num * 2 < 64 ? 64 : v->num * 2 > 1024 ? 1024 : v->num * 2;

	if (vsp_queue_init(&v->q, v->dev->exp, depth, on_complete, v, v->ctx) < 0) {
		v->broken = true;
		return NULL;
	}
	if (v->inflight)
		ifl_start(v);
	vsp_debug(v->ctx, "started: %u entries, avail %u, used %u%s", v->num, v->vr.last_avail,
		  v->vr.used_idx, v->vr.event_idx ? ", event_idx" : "");
	vsp_virtq_notify_enable(&v->vr, false);
	while (!atomic_load(&v->stop)) {
		struct pollfd pf[2] = { { .fd = v->stop_efd, .events = POLLIN },
					{ .fd = v->kick_fd, .events = POLLIN } };

		process_avail(v);
		flush_used(v);
		if (vsp_queue_busy(&v->q)) {
			/* submits what process_avail queued and waits, in one call */
			if (!poll_briefly(v))
				vsp_queue_poll(&v->q, true);
			flush_used(v);
			continue;
		}
		vsp_queue_submit(&v->q);
		if (!v->broken) {
			vsp_virtq_notify_enable(&v->vr, true);
			if (vsp_virtq_has_avail(&v->vr)) {
				vsp_virtq_notify_enable(&v->vr, false);
				continue;
			}
		}
		if (poll(pf, v->broken ? 1 : 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents & POLLIN) {
			uint64_t cnt;
			v->stat_kicks++;
			if (read(v->kick_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
				break;
		}
		if (!v->broken)
			vsp_virtq_notify_enable(&v->vr, false);
	}
	vsp_queue_drain(&v->q);
	flush_used(v);
	vsp_debug(v->ctx, "stopped: %llu requests, %llu kicks, %llu interrupts",
		  (unsigned long long)v->stat_reqs, (unsigned long long)v->stat_kicks,
		  (unsigned long long)v->stat_calls);
	vsp_queue_fini(&v->q);
	return NULL;
}

int vsp_vq_start(struct vhost_vq *v)
{
	struct vhost_dev *d = v->dev;
	uint16_t used;
	int r;

	if (v->running)
		return 0;
	if (!v->num || !v->addr_set || v->kick_fd < 0 || d->mem.n == 0) {
		vsp_log(VSP_LOG_WARN, v->ctx, "cannot start: ring not fully configured");
		return -EINVAL;
	}
	memset(&v->vr, 0, sizeof(v->vr));
	r = vsp_vring_setup(&v->vr, &d->mem, v->num, v->desc_uva, v->avail_uva, v->used_uva);
	if (r < 0) {
		vsp_log(VSP_LOG_WARN, v->ctx, "ring addresses outside guest memory or misaligned");
		return r;
	}
	v->vr.event_idx = d->features & (1ULL << VIRTIO_F_RING_EVENT_IDX);
	v->vr.indirect = d->features & (1ULL << VIRTIO_F_RING_INDIRECT_DESC);
	used = vsp_virtq_used_idx(&v->vr);
	v->vr.used_idx = used;
	v->vr.last_avail = v->base;
	v->inflight = NULL;
	if (d->inflight && v->index < d->inflight_nq && d->inflight_qsize == v->num)
		v->inflight = d->inflight + vhost_inflight_queue_bytes(v->num) * v->index;
	if (v->nslots != v->num) {
		free(v->slots);
		free(v->done);
		v->slots = calloc(v->num, sizeof(*v->slots));
		v->done = calloc(v->num, sizeof(*v->done));
		v->nslots = v->slots && v->done ? v->num : 0;
		if (!v->nslots)
			return -ENOMEM;
	}
	for (unsigned i = 0; i < v->num; i++) {
		v->slots[i].v = v;
		v->slots[i].busy = false;
	}
	v->ndone = 0;
	v->broken = false;
	v->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (v->stop_efd < 0)
		return -errno;
	atomic_store(&v->stop, false);
	if (pthread_create(&v->thr, NULL, worker, v) != 0) {
		close(v->stop_efd);
		return -EAGAIN;
	}
	v->running = true;
	v->started_once = true;
	return 0;
}

void vsp_vq_stop(struct vhost_vq *v)
{
	uint64_t one = 1;

	if (!v->running)
		return;
	atomic_store(&v->stop, true);
	if (write(v->stop_efd, &one, sizeof(one)) < 0)
		vsp_log(VSP_LOG_WARN, v->ctx, "waking the worker: %s", strerror(errno));
	pthread_join(v->thr, NULL);
	close(v->stop_efd);
	v->stop_efd = -1;
	v->running = false;
	v->base = v->vr.last_avail;
}
