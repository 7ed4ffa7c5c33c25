/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD server: a listener (UNIX socket, or TCP bound to loopback unless
 * told otherwise) per export, one thread per connection. After the
 * handshake (nbd-handshake.c) a connection is one vsp_queue: requests are
 * read without blocking into preallocated slots (a write's payload lands in
 * the slot's buffer), started on the queue, and answered from the
 * completion callback, with structured replies when negotiated. Block
 * status (base:allocation) comes from the disk's translate map. Any number
 * of connections may serve one export; a flush on one covers the writes
 * completed on all of them, so CAN_MULTI_CONN is advertised.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "nbd-handshake.h"
#include "vsp-int.h"

#define NBD_SLOTS 64
#define NBD_RX_BUF (64 * 1024)
#define NBD_DEPTH 256
#define NBD_BS_EXTENTS 64
#define NBD_TX_IOV 256

struct nbd_conn;

struct nbd_slot {
	struct vsp_req req;
	struct nbd_conn *c;
	uint64_t cookie;
	uint16_t type;
	uint16_t flags;
	uint64_t offset; /* as the client asked */
	uint32_t length;
	uint8_t *buf;    /* VSP_MAX_REQ_BYTES of reserved address space, touched on use */
	struct iovec iov;
	uint8_t hdr[NBD_STRUCTURED_REPLY_SIZE + 8]; /* the reply header, until it is sent */
	int next_free;
};

struct nbd_conn {
	struct vsp_nbd_server *srv;
	struct vsp_export *exp;
	int fd;
	bool structured, base_alloc;
	bool closing; /* stop reading: NBD_CMD_DISC, end of file, protocol error */
	struct vsp_queue q;
	struct nbd_slot slots[NBD_SLOTS];
	int free_head;
	unsigned busy;
	uint8_t rx[NBD_RX_BUF];
	size_t rx_len;
	struct nbd_slot *rx_slot; /* a write whose payload is still arriving */
	size_t rx_need, rx_got;
	bool rx_discard;          /* its payload is read into the slot but not written */
	/* io_uring: the socket is read through the engine, so one wait covers both */
	bool rx_engine;
	bool rx_pending, rx_into_slot;
	struct vdisk_io rx_io;
	struct iovec rx_iov;
	/* replies batched into one sendmsg per wake-up; their slots are freed after it */
	struct iovec tx[NBD_TX_IOV];
	unsigned ntx;
	struct nbd_slot *tx_slots[NBD_SLOTS];
	unsigned ntx_slots;
	char ctx[96];
	struct nbd_conn *next;
};

struct vsp_nbd_server {
	struct vsp_export *exp;
	int lfd;
	char unix_path[PATH_MAX];
	pthread_t thr;
	bool thr_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct nbd_conn *conns;
	unsigned nconns;
	char ctx[96];
};

/* ---- replies ---- */

static uint32_t nbd_errno(int e)
{
	switch (e) {
	case 0:
		return 0;
	case -EPERM:
	case -EROFS:
		return NBD_EPERM;
	case -ENOSPC:
	case -EDQUOT:
		return NBD_ENOSPC;
	case -EINVAL:
		return NBD_EINVAL;
	case -ENOMEM:
		return NBD_ENOMEM;
	case -EOVERFLOW:
		return NBD_EOVERFLOW;
	case -ENOTSUP:
		return NBD_ENOTSUP;
	default:
		return NBD_EIO;
	}
}

int vsp_sendv_all(int fd, struct iovec *iov, unsigned iovcnt)
{
	while (iovcnt > 0) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = iovcnt };
		ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static void conn_send(struct nbd_conn *c, struct iovec *iov, unsigned n)
{
	int r;

	if (c->fd < 0)
		return;
	r = vsp_sendv_all(c->fd, iov, n);
	if (r < 0) {
		if (!c->closing)
			vsp_log(VSP_LOG_INFO, c->ctx, "send failed: %s; closing", strerror(-r));
		c->closing = true;
		shutdown(c->fd, SHUT_RDWR);
	}
}

static void simple_reply(struct nbd_conn *c, uint64_t cookie, uint32_t err, void *data,
			 size_t len)
{
	uint8_t h[NBD_SIMPLE_REPLY_SIZE];
	struct iovec v[2] = { { h, sizeof(h) }, { data, len } };

	nbd_put32(h, NBD_SIMPLE_REPLY_MAGIC);
	nbd_put32(h + 4, err);
	nbd_put64(h + 8, cookie);
	conn_send(c, v, data && len && !err ? 2 : 1);
}

static void chunk_header(uint8_t *h, uint16_t flags, uint16_t type, uint64_t cookie, uint32_t len)
{
	nbd_put32(h, NBD_STRUCTURED_REPLY_MAGIC);
	nbd_put16(h + 4, flags);
	nbd_put16(h + 6, type);
	nbd_put64(h + 8, cookie);
	nbd_put32(h + 16, len);
}

static void error_chunk(struct nbd_conn *c, uint64_t cookie, uint32_t err)
{
	uint8_t b[NBD_STRUCTURED_REPLY_SIZE + 6];
	struct iovec v = { b, sizeof(b) };

	chunk_header(b, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie, 6);
	nbd_put32(b + 20, err);
	nbd_put16(b + 24, 0);
	conn_send(c, &v, 1);
}

/* The reply to anything but a successful structured read or block status. */
static void reply_status(struct nbd_conn *c, uint64_t cookie, uint32_t err)
{
	uint8_t b[NBD_STRUCTURED_REPLY_SIZE];
	struct iovec v = { b, sizeof(b) };

	if (!c->structured) {
		simple_reply(c, cookie, err, NULL, 0);
		return;
	}
	if (err) {
		error_chunk(c, cookie, err);
		return;
	}
	chunk_header(b, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
	conn_send(c, &v, 1);
}

/* ---- slots ---- */

static struct nbd_slot *slot_get(struct nbd_conn *c)
{
	struct nbd_slot *s;

	if (c->free_head < 0)
		return NULL;
	s = &c->slots[c->free_head];
	c->free_head = s->next_free;
	c->busy++;
	return s;
}

static void slot_put(struct nbd_conn *c, struct nbd_slot *s)
{
	s->next_free = c->free_head;
	c->free_head = (int)(s - c->slots);
	c->busy--;
}

/* The slot's buffer: address space reserved once, pages faulted in by use. */
static int slot_buf(struct nbd_slot *s)
{
	void *p;

	if (s->buf)
		return 0;
	p = mmap(NULL, VSP_MAX_REQ_BYTES, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	s->buf = p;
	return 0;
}

static void tx_flush(struct nbd_conn *c)
{
	if (c->ntx > 0)
		conn_send(c, c->tx, c->ntx);
	c->ntx = 0;
	for (unsigned i = 0; i < c->ntx_slots; i++) {
		struct nbd_slot *s = c->tx_slots[i];
		/* big requests give their pages back */
		if (s->length > 1024 * 1024)
			madvise(s->buf, s->length, MADV_DONTNEED);
		slot_put(c, s);
	}
	c->ntx_slots = 0;
}

static void tx_add(struct nbd_conn *c, void *base, size_t len)
{
	c->tx[c->ntx].iov_base = base;
	c->tx[c->ntx].iov_len = len;
	c->ntx++;
}

/*
 * A request finished: its reply is queued in the slot (header) and the
 * slot's buffer (read data), and goes out with the next tx_flush().
 */
static void on_complete(struct vsp_queue *q, struct vsp_req *r)
{
	struct nbd_slot *s = (struct nbd_slot *)r;
	struct nbd_conn *c = q->owner;
	uint32_t err = nbd_errno(r->status);
	bool data = s->type == NBD_CMD_READ && !err;

	if (c->ntx + 2 > NBD_TX_IOV)
		tx_flush(c);
	if (!c->structured) {
		nbd_put32(s->hdr, NBD_SIMPLE_REPLY_MAGIC);
		nbd_put32(s->hdr + 4, err);
		nbd_put64(s->hdr + 8, s->cookie);
		tx_add(c, s->hdr, NBD_SIMPLE_REPLY_SIZE);
	} else if (data) {
		chunk_header(s->hdr, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, s->cookie,
			     8 + s->length);
		nbd_put64(s->hdr + 20, s->offset);
		tx_add(c, s->hdr, NBD_STRUCTURED_REPLY_SIZE + 8);
	} else if (err) {
		chunk_header(s->hdr, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, s->cookie, 6);
		nbd_put32(s->hdr + 20, err);
		nbd_put16(s->hdr + 24, 0);
		tx_add(c, s->hdr, NBD_STRUCTURED_REPLY_SIZE + 6);
	} else {
		chunk_header(s->hdr, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, s->cookie, 0);
		tx_add(c, s->hdr, NBD_STRUCTURED_REPLY_SIZE);
	}
	if (data && s->length)
		tx_add(c, s->buf, s->length);
	c->tx_slots[c->ntx_slots++] = s;
}

/* ---- block status ---- */

static void block_status(struct nbd_conn *c, const struct nbd_request *rq)
{
	struct vdisk_extent ext[NBD_BS_EXTENTS];
	uint8_t b[NBD_STRUCTURED_REPLY_SIZE + 4 + 8 * NBD_BS_EXTENTS];
	struct iovec v = { b, 0 };
	unsigned max = (rq->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_BS_EXTENTS;
	uint64_t end;
	int n;

	if (!c->structured || !c->base_alloc || rq->length == 0 ||
	    __builtin_add_overflow(rq->offset, rq->length, &end) || end > c->exp->size) {
		reply_status(c, rq->cookie, NBD_EINVAL);
		return;
	}
	n = vdisk_disk_translate(c->exp->disk, rq->offset, rq->length, ext, max);
	if (n <= 0) {
		reply_status(c, rq->cookie, nbd_errno(n < 0 ? n : -EIO));
		return;
	}
	nbd_put32(b + 20, NBD_META_ID_BASE_ALLOCATION);
	for (int i = 0; i < n; i++) {
		uint32_t fl = ext[i].type == VDISK_EXTENT_DATA ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO;
		nbd_put32(b + 24 + 8 * i, (uint32_t)ext[i].length);
		nbd_put32(b + 28 + 8 * i, fl);
	}
	v.iov_len = 24 + 8 * (size_t)n;
	chunk_header(b, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, rq->cookie,
		     (uint32_t)(4 + 8 * n));
	conn_send(c, &v, 1);
}

/* ---- requests ---- */

static const uint16_t cmd_flags_ok[] = {
	[NBD_CMD_READ] = NBD_CMD_FLAG_DF,
	[NBD_CMD_WRITE] = NBD_CMD_FLAG_FUA,
	[NBD_CMD_DISC] = 0,
	[NBD_CMD_FLUSH] = 0,
	[NBD_CMD_TRIM] = NBD_CMD_FLAG_FUA,
	[NBD_CMD_CACHE] = 0,
	[NBD_CMD_WRITE_ZEROES] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE,
	[NBD_CMD_BLOCK_STATUS] = NBD_CMD_FLAG_REQ_ONE,
};

static void start_slot(struct nbd_conn *c, struct nbd_slot *s)
{
	struct vsp_req *r = &s->req;

	r->fua = s->flags & NBD_CMD_FLAG_FUA;
	r->offset = s->offset;
	r->length = s->length;
	r->iov = NULL;
	r->iovcnt = 0;
	switch (s->type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
		r->op = s->type == NBD_CMD_READ ? VSP_OP_READ : VSP_OP_WRITE;
		s->iov.iov_base = s->buf;
		s->iov.iov_len = s->length;
		r->iov = &s->iov;
		r->iovcnt = 1;
		break;
	case NBD_CMD_FLUSH:
		r->op = VSP_OP_FLUSH;
		break;
	case NBD_CMD_TRIM:
		r->op = VSP_OP_DISCARD;
		break;
	default:
		r->op = VSP_OP_WRITE_ZEROES;
		break;
	}
	vsp_queue_start(&c->q, r);
}

/*
 * Handles one decoded request header. Returns the number of payload bytes
 * that follow it in the stream (a write's), or -1 to close the connection.
 */
static int64_t dispatch(struct nbd_conn *c, const struct nbd_request *rq)
{
	struct nbd_slot *s;
	uint64_t end;
	uint32_t err = 0;

	if (rq->type == NBD_CMD_DISC) {
		c->closing = true;
		return 0;
	}
	if (rq->type == NBD_CMD_WRITE && rq->length > VSP_MAX_REQ_BYTES) {
		vsp_log(VSP_LOG_WARN, c->ctx, "write of %u bytes is over the limit; closing",
			rq->length);
		return -1;
	}
	if (rq->type == NBD_CMD_BLOCK_STATUS) {
		if (rq->flags & ~(uint32_t)cmd_flags_ok[rq->type])
			reply_status(c, rq->cookie, NBD_EINVAL);
		else
			block_status(c, rq);
		return 0;
	}
	s = slot_get(c);
	if (!s)
		return -1; /* the caller checked */
	s->cookie = rq->cookie;
	s->type = rq->type;
	s->flags = rq->flags;
	s->offset = rq->offset;
	s->length = rq->length;
	if (rq->type >= sizeof(cmd_flags_ok) / sizeof(cmd_flags_ok[0]) ||
	    rq->type == NBD_CMD_CACHE)
		err = NBD_EINVAL;
	else if (rq->flags & ~(uint32_t)cmd_flags_ok[rq->type])
		err = NBD_EINVAL;
	else if (rq->type == NBD_CMD_FLUSH && (rq->offset || rq->length))
		err = NBD_EINVAL;
	else if (rq->type != NBD_CMD_FLUSH &&
		 (__builtin_add_overflow(rq->offset, (uint64_t)rq->length, &end) ||
		  end > c->exp->size))
		err = rq->type == NBD_CMD_READ || rq->type == NBD_CMD_WRITE ? NBD_EINVAL : NBD_EINVAL;
	else if (rq->type == NBD_CMD_READ && rq->length > VSP_MAX_REQ_BYTES)
		err = NBD_EOVERFLOW;
	else if (c->exp->conf.readonly &&
		 (rq->type == NBD_CMD_WRITE || rq->type == NBD_CMD_TRIM ||
		  rq->type == NBD_CMD_WRITE_ZEROES))
		err = NBD_EPERM;
	if ((rq->type == NBD_CMD_READ || rq->type == NBD_CMD_WRITE) && !err && slot_buf(s) < 0)
		err = NBD_ENOMEM;
	if (rq->type == NBD_CMD_WRITE) {
		/* the payload follows whatever we think of the request */
		if (!s->buf && slot_buf(s) < 0)
			return -1;
		c->rx_slot = s;
		c->rx_need = rq->length;
		c->rx_got = 0;
		c->rx_discard = err != 0;
		if (err)
			s->flags = (uint16_t)err; /* remembered until the payload is in */
		return rq->length;
	}
	if (err) {
		reply_status(c, rq->cookie, err);
		slot_put(c, s);
		return 0;
	}
	start_slot(c, s);
	return 0;
}

/* A write's payload is complete. */
static void payload_done(struct nbd_conn *c)
{
	struct nbd_slot *s = c->rx_slot;

	c->rx_slot = NULL;
	if (c->rx_discard) {
		reply_status(c, s->cookie, s->flags);
		slot_put(c, s);
		return;
	}
	start_slot(c, s);
}

/* Parses what the receive buffer holds. Returns -1 on a protocol error. */
static int parse_rx(struct nbd_conn *c)
{
	size_t pos = 0;
	int ret = 0;

	while (!c->closing) {
		struct nbd_request rq;
		int64_t payload;

		if (c->rx_slot) {
			size_t n = c->rx_len - pos;
			if (n > c->rx_need - c->rx_got)
				n = c->rx_need - c->rx_got;
			memcpy(c->rx_slot->buf + c->rx_got, c->rx + pos, n);
			pos += n;
			c->rx_got += n;
			if (c->rx_got < c->rx_need)
				break;
			payload_done(c);
			continue;
		}
		if (c->rx_len - pos < NBD_REQUEST_SIZE || c->free_head < 0)
			break;
		if (nbd_request_decode(c->rx + pos, &rq) < 0) {
			vsp_log(VSP_LOG_WARN, c->ctx, "bad request magic; closing");
			ret = -1;
			break;
		}
		pos += NBD_REQUEST_SIZE;
		payload = dispatch(c, &rq);
		if (payload < 0) {
			ret = -1;
			break;
		}
	}
	memmove(c->rx, c->rx + pos, c->rx_len - pos);
	c->rx_len -= pos;
	return ret;
}

/*
 * Reads what the socket has without blocking. Returns 1 when something was
 * read, 0 when nothing was there or no slot is free, -1 at end of stream.
 */
static int receive(struct nbd_conn *c)
{
	int progress = 0;

	while (!c->closing) {
		ssize_t n;

		if (c->rx_slot && c->rx_len == 0 && c->rx_need - c->rx_got >= 4096) {
			/* a large payload: straight into the slot's buffer */
			n = recv(c->fd, c->rx_slot->buf + c->rx_got, c->rx_need - c->rx_got,
				 MSG_DONTWAIT);
			if (n > 0) {
				c->rx_got += (size_t)n;
				if (c->rx_got == c->rx_need)
					payload_done(c);
				progress = 1;
				continue;
			}
		} else {
			if (!c->rx_slot && c->free_head < 0)
				break; /* back-pressure: wait for completions */
			if (c->rx_len == sizeof(c->rx))
				break;
			n = recv(c->fd, c->rx + c->rx_len, sizeof(c->rx) - c->rx_len, MSG_DONTWAIT);
			if (n > 0) {
				c->rx_len += (size_t)n;
				progress = 1;
				if (parse_rx(c) < 0)
					return -1;
				continue;
			}
		}
		if (n == 0)
			return -1;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		return -1;
	}
	return progress;
}

/* io_uring: keeps one read of the socket in flight on the engine. */
static void rx_arm(struct nbd_conn *c)
{
	size_t room;
	void *dst;

	if (c->rx_pending || c->closing)
		return;
	if (c->rx_slot && c->rx_len == 0 && c->rx_need - c->rx_got >= 4096) {
		/* a large payload: straight into the slot's buffer */
		dst = c->rx_slot->buf + c->rx_got;
		room = c->rx_need - c->rx_got;
		c->rx_into_slot = true;
	} else {
		if ((!c->rx_slot && c->free_head < 0) || c->rx_len == sizeof(c->rx))
			return; /* back-pressure: wait for completions */
		dst = c->rx + c->rx_len;
		room = sizeof(c->rx) - c->rx_len;
		c->rx_into_slot = false;
	}
	c->rx_iov.iov_base = dst;
	c->rx_iov.iov_len = room;
	c->rx_io = (struct vdisk_io){ .op = VDISK_IO_READV, .fd = c->fd, .iov = &c->rx_iov,
				      .iovcnt = 1, .priv = NULL };
	if (vdisk_engine_queue(c->q.eng, &c->rx_io) == 0)
		c->rx_pending = true;
}

/* The socket read completed (queue.c calls this for requests with no owner). */
static void rx_done(struct vsp_queue *q, struct vdisk_io *io)
{
	struct nbd_conn *c = q->owner;
	int n = io->result;

	c->rx_pending = false;
	if (n <= 0) {
		if (n < 0 && n != -ECONNRESET && !c->closing)
			vsp_log(VSP_LOG_INFO, c->ctx, "receive failed: %s", strerror(-n));
		c->closing = true;
		return;
	}
	if (c->rx_into_slot) {
		c->rx_got += (size_t)n;
		if (c->rx_got == c->rx_need)
			payload_done(c);
		return;
	}
	c->rx_len += (size_t)n;
	if (parse_rx(c) < 0)
		c->closing = true;
}

/* io_uring: one blocking wait on the engine covers the socket and the disk. */
static void transmission_engine(struct nbd_conn *c)
{
	for (;;) {
		if (!c->closing && c->rx_len > 0 && parse_rx(c) < 0)
			c->closing = true;
		rx_arm(c);
		tx_flush(c);
		if (!c->rx_pending && !vsp_queue_busy(&c->q)) {
			if (c->closing)
				break;
			if (c->free_head < 0 && !c->rx_slot)
				break; /* cannot happen: no free slot means requests in flight */
		}
		vsp_queue_poll(&c->q, true);
	}
}

/* libaio: wait in poll() when idle, on the engine when busy. */
static void transmission_poll(struct nbd_conn *c)
{
	for (;;) {
		int got = 0;

		if (!c->closing) {
			if (c->rx_len > 0 && parse_rx(c) < 0)
				c->closing = true;
			got = c->closing ? 0 : receive(c);
			if (got < 0)
				c->closing = true;
		}
		vsp_queue_submit(&c->q);
		if (vsp_queue_busy(&c->q)) {
			/* block for a completion unless the socket just gave us work */
			if (got == 0)
				tx_flush(c);
			vsp_queue_poll(&c->q, got == 0);
			continue;
		}
		tx_flush(c);
		if (c->closing)
			break;
		if (got == 0) {
			struct pollfd p = { .fd = c->fd, .events = POLLIN };
			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				break;
		}
	}
}

static void transmission(struct nbd_conn *c)
{
	c->q.aux = rx_done;
	c->rx_engine = vdisk_engine_kind(c->q.eng) == VDISK_ENGINE_IO_URING;
	if (c->rx_engine)
		transmission_engine(c);
	else
		transmission_poll(c);
	vsp_queue_drain(&c->q);
	tx_flush(c);
	if (c->rx_pending) {
		/* the read in flight ends when the socket does */
		shutdown(c->fd, SHUT_RD);
		while (c->rx_pending)
			vsp_queue_poll(&c->q, true);
	}
}

/* ---- connections ---- */

static uint16_t tflags(const struct vsp_export *e)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_SEND_DF | NBD_FLAG_CAN_MULTI_CONN;

	if (e->conf.readonly)
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
	return f;
}

static void conn_free(struct nbd_conn *c)
{
	for (unsigned i = 0; i < NBD_SLOTS; i++)
		if (c->slots[i].buf)
			munmap(c->slots[i].buf, VSP_MAX_REQ_BYTES);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

static void *conn_thread(void *arg)
{
	struct nbd_conn *c = arg;
	struct vsp_nbd_server *srv = c->srv;
	struct vsp_export *e = c->exp;
	struct nbd_hs_export hx = {
		.name = e->conf.name,
		.description = e->conf.image,
		.size = e->size,
		.tflags = tflags(e),
		.min_block = 1,
		.pref_block = e->off_align > 4096 ? e->off_align : 4096,
		.max_block = VSP_MAX_REQ_BYTES,
	};
	struct nbd_hs_result res;
	int r;

	r = vsp_nbd_handshake(c->fd, &hx, &res);
	if (r == 1) {
		c->structured = res.structured;
		c->base_alloc = res.base_alloc;
		vsp_debug(c->ctx, "transmission (structured %d, base:allocation %d)",
			  c->structured, c->base_alloc);
		if (vsp_queue_init(&c->q, e, NBD_DEPTH, on_complete, c, c->ctx) == 0) {
			transmission(c);
			vsp_queue_fini(&c->q);
		}
	} else if (r != -ECONNABORTED && r != -ECONNRESET) {
		vsp_log(VSP_LOG_INFO, c->ctx, "handshake failed: %s", strerror(-r));
	}
	vsp_debug(c->ctx, "connection closed");
	pthread_mutex_lock(&srv->lock);
	for (struct nbd_conn **p = &srv->conns; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	srv->nconns--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
	conn_free(c);
	return NULL;
}

static void new_conn(struct vsp_nbd_server *srv, int fd)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));
	pthread_attr_t a;
	pthread_t t;
	static atomic_uint seq;
	int one = 1;

	if (!c) {
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->srv = srv;
	c->exp = srv->exp;
	c->fd = fd;
	c->free_head = 0;
	for (int i = 0; i < NBD_SLOTS; i++) {
		c->slots[i].c = c;
		c->slots[i].next_free = i + 1 < NBD_SLOTS ? i + 1 : -1;
	}
	snprintf(c->ctx, sizeof(c->ctx), "%s nbd%u", srv->exp->conf.name, atomic_fetch_add(&seq, 1));
	pthread_mutex_lock(&srv->lock);
	c->next = srv->conns;
	srv->conns = c;
	srv->nconns++;
	pthread_mutex_unlock(&srv->lock);
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, conn_thread, c) != 0) {
		vsp_log(VSP_LOG_ERR, srv->ctx, "cannot start a connection thread");
		pthread_mutex_lock(&srv->lock);
		srv->conns = c->next;
		srv->nconns--;
		pthread_mutex_unlock(&srv->lock);
		conn_free(c);
	}
	pthread_attr_destroy(&a);
}

static void *accept_thread(void *arg)
{
	struct vsp_nbd_server *srv = arg;

	while (!atomic_load(&vsp_stopping)) {
		int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (!atomic_load(&vsp_stopping))
				vsp_log(VSP_LOG_ERR, srv->ctx, "accept: %s", strerror(errno));
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				usleep(100000);
				continue;
			}
			break;
		}
		if (atomic_load(&vsp_stopping)) {
			close(fd);
			break;
		}
		new_conn(srv, fd);
	}
	return NULL;
}

/* ---- listeners ---- */

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
		return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
		return IN6_IS_ADDR_LOOPBACK(&s->sin6_addr);
	}
	return false;
}

static int listen_tcp(struct vsp_nbd_server *srv, const char *spec)
{
	char host[256], *port;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	int fd = -1, one = 1, r;

	if (strlen(spec) >= sizeof(host))
		return -ENAMETOOLONG;
	strcpy(host, spec);
	port = strrchr(host, ':');
	if (!port) {
		vsp_log(VSP_LOG_ERR, srv->ctx, "--nbd tcp:%s: expected HOST:PORT", spec);
		return -EINVAL;
	}
	*port++ = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	r = getaddrinfo(host[0] ? host : "127.0.0.1", port, &hints, &ai);
	if (r != 0) {
		vsp_log(VSP_LOG_ERR, srv->ctx, "--nbd tcp:%s: %s", spec, gai_strerror(r));
		return -EINVAL;
	}
	if (!is_loopback(ai->ai_addr) && !srv->exp->conf.any_host) {
		vsp_log(VSP_LOG_ERR, srv->ctx,
			"--nbd tcp:%s is not a loopback address; add --nbd-any-host to serve the "
			"network",
			spec);
		freeaddrinfo(ai);
		return -EPERM;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0)
		goto fail;
	freeaddrinfo(ai);
	srv->lfd = fd;
	return 0;
fail:
	r = -errno;
	vsp_log(VSP_LOG_ERR, srv->ctx, "--nbd tcp:%s: %s", spec, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return r;
}

/* Binds a UNIX socket at @path, replacing a stale socket left there. */
int vsp_listen_unix(const char *path, const char *ctx)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		vsp_log(VSP_LOG_ERR, ctx, "%s: socket path too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			vsp_log(VSP_LOG_ERR, ctx, "%s exists and is not a socket", path);
			return -EEXIST;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
		r = -errno;
		vsp_log(VSP_LOG_ERR, ctx, "%s: %s", path, strerror(errno));
		close(fd);
		return r;
	}
	return fd;
}

int vsp_nbd_start(struct vsp_export *e)
{
	struct vsp_nbd_server *srv = calloc(1, sizeof(*srv));
	const char *spec = e->conf.nbd;
	int r;

	if (!srv)
		return -ENOMEM;
	srv->exp = e;
	srv->lfd = -1;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->cond, NULL);
	snprintf(srv->ctx, sizeof(srv->ctx), "%s nbd", e->conf.name);
	if (strncmp(spec, "unix:", 5) == 0) {
		r = vsp_listen_unix(spec + 5, srv->ctx);
		if (r >= 0) {
			srv->lfd = r;
			snprintf(srv->unix_path, sizeof(srv->unix_path), "%s", spec + 5);
		}
	} else if (strncmp(spec, "tcp:", 4) == 0) {
		r = listen_tcp(srv, spec + 4);
	} else {
		vsp_log(VSP_LOG_ERR, srv->ctx, "--nbd %s: expected unix:PATH or tcp:HOST:PORT", spec);
		r = -EINVAL;
	}
	if (r < 0) {
		free(srv);
		return r;
	}
	e->nbd = srv;
	if (pthread_create(&srv->thr, NULL, accept_thread, srv) != 0) {
		close(srv->lfd);
		e->nbd = NULL;
		free(srv);
		return -EAGAIN;
	}
	srv->thr_started = true;
	vsp_log(VSP_LOG_INFO, srv->ctx, "serving NBD on %s", spec);
	return 0;
}

void vsp_nbd_stop(struct vsp_export *e)
{
	struct vsp_nbd_server *srv = e->nbd;

	if (!srv)
		return;
	shutdown(srv->lfd, SHUT_RDWR);
	if (srv->thr_started)
		pthread_join(srv->thr, NULL);
	close(srv->lfd);
	if (srv->unix_path[0])
		unlink(srv->unix_path);
	/* end every connection: they drain what is in flight, then exit */
	pthread_mutex_lock(&srv->lock);
	for (struct nbd_conn *c = srv->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RD);
	while (srv->nconns > 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 5;
		if (pthread_cond_timedwait(&srv->cond, &srv->lock, &ts) == ETIMEDOUT) {
			/* a client that does not read its replies: cut it off */
			vsp_log(VSP_LOG_WARN, srv->ctx, "%u connection(s) still busy; closing them",
				srv->nconns);
			for (struct nbd_conn *c = srv->conns; c; c = c->next)
				shutdown(c->fd, SHUT_RDWR);
		}
	}
	pthread_mutex_unlock(&srv->lock);
	e->nbd = NULL;
	free(srv);
}
