/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vhost-user-blk: the back end of QEMU's vhost-user-blk-pci (and of our
 * test driver). One listening UNIX socket per export; one front end at a
 * time, served by the export's control thread, which parses and checks
 * every message (sizes, indices, fds, memory regions against their files)
 * and owns the device state. Each started virtqueue gets a worker thread
 * (blk_queue.c) with its own I/O engine; the control thread stops a queue's
 * worker (which drains it) before changing anything the worker reads:
 * memory table, ring addresses, kick or call descriptors.
 *
 * Reconnection: the front end or the guest may go away and come back; the
 * daemon then simply accepts the next connection. Inflight tracking
 * (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) keeps the state of every request
 * in a shared memory region the front end holds on to, so a restarted
 * daemon resubmits what was in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhost-int.h"

#define PROTOCOL_FEATURES                                                             \
	((1ULL << VHOST_USER_PROTOCOL_F_MQ) | (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK) | \
	 (1ULL << VHOST_USER_PROTOCOL_F_CONFIG) |                                         \
	 (1ULL << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) |                                 \
	 (1ULL << VHOST_USER_PROTOCOL_F_RESET_DEVICE))

struct vsp_vhost_server {
	struct vsp_export *exp;
	int lfd;
	char path[PATH_MAX];
	pthread_t thr;
	int conn_fd; /* current connection, for shutdown */
	pthread_mutex_t lock;
	char ctx[96];
};

struct msg {
	uint32_t request, flags, size;
	uint8_t payload[VHOST_USER_MAX_PAYLOAD];
	int fds[VHOST_USER_MAX_FDS];
	unsigned nfds;
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ---- memory ---- */

static void mem_unmap(struct vsp_mem *m)
{
	for (unsigned i = 0; i < m->n; i++)
		munmap(m->r[i].map, m->r[i].map_len);
	m->n = 0;
}

/* Maps the regions of a SET_MEM_TABLE payload. 0 or -errno (nothing kept on failure). */
static int mem_map(struct vhost_dev *d, const struct msg *m, struct vsp_mem *out)
{
	uint32_t n;

	out->n = 0;
	if (m->size < VHOST_MEM_HDR_SIZE)
		return -EINVAL;
	n = vu_ld32(m->payload);
	if (n == 0 || n > VHOST_USER_MAX_REGIONS || m->nfds != n ||
	    m->size != VHOST_MEM_HDR_SIZE + n * VHOST_MEM_REGION_SIZE)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = m->payload + VHOST_MEM_HDR_SIZE + i * VHOST_MEM_REGION_SIZE;
		struct vsp_mem_region *r = &out->r[i];
		uint64_t gpa = vu_ld64(p), size = vu_ld64(p + 8), uva = vu_ld64(p + 16);
		uint64_t moff = vu_ld64(p + 24), end;
		struct stat st;
		void *map;

		if (size == 0 || __builtin_add_overflow(moff, size, &end) ||
		    __builtin_add_overflow(gpa, size - 1, &end) ||
		    __builtin_add_overflow(uva, size - 1, &end) || moff % 4096)
			goto bad;
		/* a region past the end of its file would SIGBUS us on access */
		if (fstat(m->fds[i], &st) < 0 || (S_ISREG(st.st_mode) && (uint64_t)st.st_size < moff + size))
			goto bad;
		map = mmap(NULL, moff + size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			   m->fds[i], 0);
		if (map == MAP_FAILED)
			goto bad;
		r->gpa = gpa;
		r->size = size;
		r->uva = uva;
		r->map = map;
		r->map_len = moff + size;
		r->hva = (uint8_t *)map + moff;
		out->n = i + 1;
		vsp_debug(d->ctx, "region %u: gpa 0x%llx size 0x%llx uva 0x%llx", i,
			  (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)uva);
	}
	return 0;
bad:
	vsp_log(VSP_LOG_WARN, d->ctx, "SET_MEM_TABLE: region %u is invalid", out->n);
	mem_unmap(out);
	return -EINVAL;
}

/* ---- queues ---- */

static void stop_all(struct vhost_dev *d, bool *was)
{
	for (unsigned i = 0; i < d->nq; i++) {
		if (was)
			was[i] = d->vqs[i].running;
		vsp_vq_stop(&d->vqs[i]);
	}
}

static void restart(struct vhost_dev *d, const bool *was)
{
	for (unsigned i = 0; i < d->nq; i++)
		if (was[i])
			vsp_vq_start(&d->vqs[i]);
}

static void dev_reset(struct vhost_dev *d)
{
	stop_all(d, NULL);
	for (unsigned i = 0; i < d->nq; i++) {
		struct vhost_vq *v = &d->vqs[i];
		close_fd(&v->kick_fd);
		close_fd(&v->call_fd);
		close_fd(&v->err_fd);
		v->num = 0;
		v->addr_set = false;
		v->base = 0;
		v->enabled = false;
		v->broken = false;
	}
	d->features = 0;
	d->features_set = false;
}

static void dev_free(struct vhost_dev *d)
{
	dev_reset(d);
	mem_unmap(&d->mem);
	if (d->inflight)
		munmap(d->inflight, d->inflight_size);
	for (unsigned i = 0; i < d->nq; i++) {
		free(d->vqs[i].slots);
		free(d->vqs[i].done);
	}
	free(d->vqs);
	free(d);
}

/* ---- messages ---- */

static int recv_msg(struct vhost_dev *d, struct msg *m)
{
	char cbuf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
	uint8_t hdr[VHOST_USER_HDR_SIZE];
	struct iovec iov = { hdr, sizeof(hdr) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	ssize_t n;

	m->nfds = 0;
	do
		n = recvmsg(d->fd, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n == 0 ? -ECONNRESET : -errno;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		unsigned k = (unsigned)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		int *fds = (int *)CMSG_DATA(c);
		for (unsigned i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, &fds[i], sizeof(fd));
			if (m->nfds < VHOST_USER_MAX_FDS)
				m->fds[m->nfds++] = fd;
			else
				close(fd);
		}
	}
	if ((size_t)n != sizeof(hdr) || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)))
		return -EPROTO;
	m->request = vu_ld32(hdr);
	m->flags = vu_ld32(hdr + 4);
	m->size = vu_ld32(hdr + 8);
	if ((m->flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ||
	    m->size > VHOST_USER_MAX_PAYLOAD)
		return -EPROTO;
	if (m->size > 0) {
		do
			n = recv(d->fd, m->payload, m->size, MSG_WAITALL);
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)m->size)
			return n < 0 ? -errno : -ECONNRESET;
	}
	return 0;
}

static void close_msg_fds(struct msg *m)
{
	for (unsigned i = 0; i < m->nfds; i++)
		close_fd(&m->fds[i]);
	m->nfds = 0;
}

/* Takes the one fd a message must carry (none when the NOFD bit is set). */
static int take_fd(struct msg *m, uint64_t u64, int *ret_fd)
{
	*ret_fd = -1;
	if (u64 & VHOST_USER_VRING_NOFD)
		return m->nfds == 0 ? 0 : -EINVAL;
	if (m->nfds != 1)
		return -EINVAL;
	*ret_fd = m->fds[0];
	m->fds[0] = -1;
	m->nfds = 0;
	return 0;
}

static int send_reply(struct vhost_dev *d, uint32_t request, const void *payload, uint32_t size,
		      int fd)
{
	uint8_t buf[VHOST_USER_HDR_SIZE + VHOST_CONFIG_HDR_SIZE + VHOST_CONFIG_MAX];
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, VHOST_USER_HDR_SIZE + size };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (size > sizeof(buf) - VHOST_USER_HDR_SIZE)
		return -EINVAL;
	vu_st32(buf, request);
	vu_st32(buf + 4, VHOST_USER_VERSION | VHOST_USER_REPLY);
	vu_st32(buf + 8, size);
	if (size)
		memcpy(buf + VHOST_USER_HDR_SIZE, payload, size);
	if (fd >= 0) {
		struct cmsghdr *c;
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do
		n = sendmsg(d->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)iov.iov_len ? 0 : -EIO;
}

static int reply_u64(struct vhost_dev *d, uint32_t request, uint64_t v)
{
	uint8_t b[8];

	vu_st64(b, v);
	return send_reply(d, request, b, sizeof(b), -1);
}

/* The vring index of a message, checked. */
static struct vhost_vq *vq_of(struct vhost_dev *d, uint32_t index)
{
	if (index >= d->nq) {
		vsp_log(VSP_LOG_WARN, d->ctx, "vring index %u out of range (%u queues)", index,
			d->nq);
		return NULL;
	}
	return &d->vqs[index];
}

static int need_size(const struct msg *m, uint32_t size)
{
	return m->size == size ? 0 : -EINVAL;
}

static int set_vring_state(struct vhost_dev *d, struct msg *m)
{
	struct vhost_vq *v;
	uint32_t idx, num;

	if (need_size(m, VHOST_STATE_SIZE))
		return -EINVAL;
	idx = vu_ld32(m->payload);
	num = vu_ld32(m->payload + 4);
	v = vq_of(d, idx);
	if (!v)
		return -EINVAL;
	switch (m->request) {
	case VHOST_USER_SET_VRING_NUM:
		if (v->running || num == 0 || num > VRING_MAX_SIZE || (num & (num - 1)))
			return -EINVAL;
		v->num = num;
		return 0;
	case VHOST_USER_SET_VRING_BASE:
		if (v->running || num > 0xffff)
			return -EINVAL;
		v->base = (uint16_t)num;
		return 0;
	case VHOST_USER_SET_VRING_ENABLE:
		if (num > 1)
			return -EINVAL;
		v->enabled = num;
		return 0;
	}
	return -EINVAL;
}

static int set_vring_addr(struct vhost_dev *d, struct msg *m)
{
	struct vhost_vq *v;
	bool was;
	int r = 0;

	if (need_size(m, VHOST_ADDR_SIZE))
		return -EINVAL;
	v = vq_of(d, vu_ld32(m->payload));
	if (!v)
		return -EINVAL;
	if (vu_ld32(m->payload + 4) & VHOST_ADDR_F_LOG)
		return -EINVAL; /* no dirty logging: we never offered VHOST_F_LOG_ALL */
	was = v->running;
	vsp_vq_stop(v);
	v->desc_uva = vu_ld64(m->payload + 8);
	v->used_uva = vu_ld64(m->payload + 16);
	v->avail_uva = vu_ld64(m->payload + 24);
	v->addr_set = true;
	if (was)
		r = vsp_vq_start(v);
	return r;
}

static int set_vring_fd(struct vhost_dev *d, struct msg *m)
{
	struct vhost_vq *v;
	uint64_t u;
	int fd, r;
	bool was;

	if (need_size(m, 8))
		return -EINVAL;
	u = vu_ld64(m->payload);
	if (u & ~(uint64_t)(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD))
		return -EINVAL;
	v = vq_of(d, (uint32_t)(u & VHOST_USER_VRING_IDX_MASK));
	if (!v)
		return -EINVAL;
	r = take_fd(m, u, &fd);
	if (r < 0)
		return r;
	was = v->running;
	vsp_vq_stop(v);
	switch (m->request) {
	case VHOST_USER_SET_VRING_KICK:
		close_fd(&v->kick_fd);
		v->kick_fd = fd;
		if (fd < 0) {
			vsp_log(VSP_LOG_WARN, v->ctx, "polling mode (no kick fd) is not supported");
			return -ENOTSUP;
		}
		/* the ring starts now (the spec: on the first kick; equivalent for us) */
		return vsp_vq_start(v);
	case VHOST_USER_SET_VRING_CALL:
		close_fd(&v->call_fd);
		v->call_fd = fd;
		break;
	default:
		close_fd(&v->err_fd);
		v->err_fd = fd;
		break;
	}
	return was ? vsp_vq_start(v) : 0;
}

static int get_vring_base(struct vhost_dev *d, struct msg *m)
{
	struct vhost_vq *v;
	uint8_t b[VHOST_STATE_SIZE];
	uint32_t idx;

	if (need_size(m, VHOST_STATE_SIZE))
		return -EINVAL;
	idx = vu_ld32(m->payload);
	v = vq_of(d, idx);
	if (!v)
		return -EINVAL;
	/* the ring stops: drain it, and hand back where the avail ring is */
	vsp_vq_stop(v);
	close_fd(&v->kick_fd);
	vu_st32(b, idx);
	vu_st32(b + 4, v->base);
	v->started_once = false;
	return send_reply(d, m->request, b, sizeof(b), -1);
}

static int set_mem_table(struct vhost_dev *d, struct msg *m)
{
	struct vsp_mem nm;
	bool *was = calloc(d->nq, sizeof(bool));
	int r;

	if (!was)
		return -ENOMEM;
	r = mem_map(d, m, &nm);
	close_msg_fds(m);
	if (r < 0) {
		free(was);
		return r;
	}
	stop_all(d, was);
	mem_unmap(&d->mem);
	d->mem = nm;
	restart(d, was);
	free(was);
	return 0;
}

static int get_config(struct vhost_dev *d, struct msg *m)
{
	uint8_t cfg[VHOST_CONFIG_MAX], out[VHOST_CONFIG_HDR_SIZE + VHOST_CONFIG_MAX];
	uint32_t off, size;

	if (m->size < VHOST_CONFIG_HDR_SIZE)
		return -EINVAL;
	off = vu_ld32(m->payload);
	size = vu_ld32(m->payload + 4);
	if (size > VHOST_CONFIG_MAX || m->size != VHOST_CONFIG_HDR_SIZE + size ||
	    off > VHOST_CONFIG_MAX || size > VHOST_CONFIG_MAX - off) {
		/* a zero-length payload tells the front end it failed */
		return send_reply(d, m->request, NULL, 0, -1);
	}
	vsp_blk_config(d->exp, d->nq, cfg);
	memcpy(out, m->payload, VHOST_CONFIG_HDR_SIZE);
	memcpy(out + VHOST_CONFIG_HDR_SIZE, cfg + off, size);
	return send_reply(d, m->request, out, VHOST_CONFIG_HDR_SIZE + size, -1);
}

/* Maps an inflight region of @nq queues of @qsize entries from @fd. */
static int inflight_map(struct vhost_dev *d, int fd, uint64_t size, uint64_t off, uint16_t nq,
			uint16_t qsize)
{
	struct stat st;
	uint64_t need = vhost_inflight_queue_bytes(qsize) * nq;
	void *p;

	if (nq == 0 || nq > d->nq || qsize == 0 || qsize > VRING_MAX_SIZE || size < need ||
	    off % 4096 || fstat(fd, &st) < 0 || (uint64_t)st.st_size < off + size)
		return -EINVAL;
	bool *was;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
	if (p == MAP_FAILED)
		return -errno;
	was = calloc(d->nq, sizeof(bool));
	if (!was) {
		munmap(p, size);
		return -ENOMEM;
	}
	/* running workers write to the old region: swap it only with them stopped */
	stop_all(d, was);
	if (d->inflight)
		munmap(d->inflight, d->inflight_size);
	d->inflight = p;
	d->inflight_size = size;
	d->inflight_nq = nq;
	d->inflight_qsize = qsize;
	restart(d, was);
	free(was);
	return 0;
}

static int get_inflight_fd(struct vhost_dev *d, struct msg *m)
{
	uint8_t b[VHOST_INFLIGHT_SIZE];
	uint16_t nq, qsize;
	uint64_t size;
	int fd, r;

	if (m->size < 20)
		return -EINVAL;
	nq = vu_ld16(m->payload + 16);
	qsize = vu_ld16(m->payload + 18);
	if (nq == 0 || nq > d->nq || qsize == 0 || qsize > VRING_MAX_SIZE)
		return -EINVAL;
	size = vhost_inflight_queue_bytes(qsize) * nq;
	fd = memfd_create("vsp-inflight", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		close(fd);
		return -errno;
	}
	r = inflight_map(d, fd, size, 0, nq, qsize);
	if (r == 0) {
		memset(b, 0, sizeof(b));
		vu_st64(b, size);
		vu_st64(b + 8, 0);
		memcpy(b + 16, &nq, 2);
		memcpy(b + 18, &qsize, 2);
		r = send_reply(d, m->request, b, sizeof(b), fd);
	}
	close(fd);
	return r;
}

static int set_inflight_fd(struct vhost_dev *d, struct msg *m)
{
	int r;

	if (m->size < 20 || m->nfds != 1)
		return -EINVAL;
	r = inflight_map(d, m->fds[0], vu_ld64(m->payload), vu_ld64(m->payload + 8),
			 vu_ld16(m->payload + 16), vu_ld16(m->payload + 18));
	close_msg_fds(m);
	return r;
}

static int set_features(struct vhost_dev *d, struct msg *m)
{
	uint64_t f, offered = vsp_blk_features(d->exp);

	if (need_size(m, 8))
		return -EINVAL;
	f = vu_ld64(m->payload);
	if (f & ~offered) {
		vsp_log(VSP_LOG_WARN, d->ctx, "front end acks features 0x%llx we never offered",
			(unsigned long long)(f & ~offered));
		return -EINVAL;
	}
	for (unsigned i = 0; i < d->nq; i++)
		if (d->vqs[i].running)
			return -EBUSY; /* features change only while the device is stopped */
	d->features = f;
	d->features_set = true;
	vsp_debug(d->ctx, "features 0x%llx", (unsigned long long)f);
	return 0;
}

/*
 * Handles one message. Returns 0 (and replies where the message wants one),
 * a positive errno for a failure the front end hears about through
 * REPLY_ACK, or a negative errno to close the connection.
 */
static int handle(struct vhost_dev *d, struct msg *m, bool *replied)
{
	int r = 0;

	*replied = false;
	switch (m->request) {
	case VHOST_USER_GET_FEATURES:
		*replied = true;
		return reply_u64(d, m->request, vsp_blk_features(d->exp));
	case VHOST_USER_SET_FEATURES:
		return set_features(d, m);
	case VHOST_USER_GET_PROTOCOL_FEATURES:
		*replied = true;
		return reply_u64(d, m->request, PROTOCOL_FEATURES);
	case VHOST_USER_SET_PROTOCOL_FEATURES:
		if (need_size(m, 8))
			return -EINVAL;
		d->protocol_features = vu_ld64(m->payload) & PROTOCOL_FEATURES;
		return 0;
	case VHOST_USER_SET_OWNER:
		d->owner = true;
		return 0;
	case VHOST_USER_RESET_OWNER:
		stop_all(d, NULL);
		return 0;
	case VHOST_USER_RESET_DEVICE:
		dev_reset(d);
		return 0;
	case VHOST_USER_GET_QUEUE_NUM:
		*replied = true;
		return reply_u64(d, m->request, d->nq);
	case VHOST_USER_SET_MEM_TABLE:
		return set_mem_table(d, m);
	case VHOST_USER_SET_VRING_NUM:
	case VHOST_USER_SET_VRING_BASE:
	case VHOST_USER_SET_VRING_ENABLE:
		return set_vring_state(d, m);
	case VHOST_USER_SET_VRING_ADDR:
		return set_vring_addr(d, m);
	case VHOST_USER_GET_VRING_BASE:
		*replied = true;
		return get_vring_base(d, m);
	case VHOST_USER_SET_VRING_KICK:
	case VHOST_USER_SET_VRING_CALL:
	case VHOST_USER_SET_VRING_ERR:
		return set_vring_fd(d, m);
	case VHOST_USER_GET_CONFIG:
		*replied = true;
		return get_config(d, m);
	case VHOST_USER_SET_CONFIG:
		return EPERM; /* nothing in our configuration space is writable */
	case VHOST_USER_GET_INFLIGHT_FD:
		*replied = true;
		r = get_inflight_fd(d, m);
		if (r < 0 && r != -EIO)
			r = send_reply(d, m->request, NULL, 0, -1) < 0 ? -EIO : EINVAL;
		return r;
	case VHOST_USER_SET_INFLIGHT_FD:
		return set_inflight_fd(d, m);
	default:
		vsp_log(VSP_LOG_WARN, d->ctx, "unsupported request %u", m->request);
		return -ENOTSUP;
	}
}

static const char *req_name(uint32_t r)
{
	static const char *const names[] = {
		[1] = "GET_FEATURES", [2] = "SET_FEATURES", [3] = "SET_OWNER",
		[4] = "RESET_OWNER", [5] = "SET_MEM_TABLE", [8] = "SET_VRING_NUM",
		[9] = "SET_VRING_ADDR", [10] = "SET_VRING_BASE", [11] = "GET_VRING_BASE",
		[12] = "SET_VRING_KICK", [13] = "SET_VRING_CALL", [14] = "SET_VRING_ERR",
		[15] = "GET_PROTOCOL_FEATURES", [16] = "SET_PROTOCOL_FEATURES",
		[17] = "GET_QUEUE_NUM", [18] = "SET_VRING_ENABLE", [24] = "GET_CONFIG",
		[25] = "SET_CONFIG", [31] = "GET_INFLIGHT_FD", [32] = "SET_INFLIGHT_FD",
		[34] = "RESET_DEVICE",
	};
	return r < sizeof(names) / sizeof(names[0]) && names[r] ? names[r] : "?";
}

static void serve_conn(struct vsp_vhost_server *srv, int fd)
{
	struct vhost_dev *d = calloc(1, sizeof(*d));
	struct msg *m = malloc(sizeof(*m));
	static atomic_uint seq;
	int r;

	if (!d || !m || !(d->vqs = calloc(srv->exp->conf.queues, sizeof(*d->vqs)))) {
		free(d);
		free(m);
		close(fd);
		return;
	}
	d->exp = srv->exp;
	d->fd = fd;
	d->nq = srv->exp->conf.queues;
	snprintf(d->ctx, sizeof(d->ctx), "%s vu%u", srv->exp->conf.name, atomic_fetch_add(&seq, 1));
	for (unsigned i = 0; i < d->nq; i++) {
		struct vhost_vq *v = &d->vqs[i];
		v->dev = d;
		v->index = i;
		v->kick_fd = v->call_fd = v->err_fd = -1;
		snprintf(v->ctx, sizeof(v->ctx), "%s q%u", d->ctx, i);
	}
	vsp_log(VSP_LOG_INFO, d->ctx, "front end connected");
	for (;;) {
		bool replied;

		r = recv_msg(d, m);
		if (r < 0) {
			close_msg_fds(m);
			if (r != -ECONNRESET)
				vsp_log(VSP_LOG_WARN, d->ctx, "bad message: %s; closing", strerror(-r));
			break;
		}
		vsp_debug(d->ctx, "%s (%u) size %u fds %u", req_name(m->request), m->request,
			  m->size, m->nfds);
		r = handle(d, m, &replied);
		close_msg_fds(m);
		if (r < 0) {
			vsp_log(VSP_LOG_WARN, d->ctx, "%s: %s; closing the connection",
				req_name(m->request), strerror(-r));
			break;
		}
		if (r > 0)
			vsp_log(VSP_LOG_WARN, d->ctx, "%s failed: %s", req_name(m->request),
				strerror(r));
		if ((m->flags & VHOST_USER_NEED_REPLY) && !replied &&
		    (d->protocol_features & (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK)) &&
		    reply_u64(d, m->request, r != 0) < 0)
			break;
	}
	vsp_log(VSP_LOG_INFO, d->ctx, "front end gone");
	dev_free(d);
	free(m);
	pthread_mutex_lock(&srv->lock);
	srv->conn_fd = -1;
	pthread_mutex_unlock(&srv->lock);
	close(fd);
}

static void *listen_thread(void *arg)
{
	struct vsp_vhost_server *srv = arg;

	while (!atomic_load(&vsp_stopping)) {
		int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
				usleep(100000);
				continue;
			}
			break;
		}
		pthread_mutex_lock(&srv->lock);
		if (atomic_load(&vsp_stopping)) {
			pthread_mutex_unlock(&srv->lock);
			close(fd);
			break;
		}
		srv->conn_fd = fd;
		pthread_mutex_unlock(&srv->lock);
		serve_conn(srv, fd);
	}
	return NULL;
}

int vsp_vhost_start(struct vsp_export *e)
{
	struct vsp_vhost_server *srv = calloc(1, sizeof(*srv));
	int fd;

	if (!srv)
		return -ENOMEM;
	srv->exp = e;
	srv->conn_fd = -1;
	pthread_mutex_init(&srv->lock, NULL);
	snprintf(srv->ctx, sizeof(srv->ctx), "%s vhost", e->conf.name);
	fd = vsp_listen_unix(e->conf.vhost, srv->ctx);
	if (fd < 0) {
		free(srv);
		return fd;
	}
	srv->lfd = fd;
	snprintf(srv->path, sizeof(srv->path), "%s", e->conf.vhost);
	if (pthread_create(&srv->thr, NULL, listen_thread, srv) != 0) {
		close(fd);
		free(srv);
		return -EAGAIN;
	}
	e->vhost = srv;
	vsp_log(VSP_LOG_INFO, srv->ctx, "serving vhost-user-blk on %s (%u queues)", srv->path,
		e->conf.queues);
	return 0;
}

void vsp_vhost_stop(struct vsp_export *e)
{
	struct vsp_vhost_server *srv = e->vhost;

	if (!srv)
		return;
	shutdown(srv->lfd, SHUT_RDWR);
	pthread_mutex_lock(&srv->lock);
	if (srv->conn_fd >= 0)
		shutdown(srv->conn_fd, SHUT_RDWR);
	pthread_mutex_unlock(&srv->lock);
	pthread_join(srv->thr, NULL);
	close(srv->lfd);
	unlink(srv->path);
	e->vhost = NULL;
	free(srv);
}
