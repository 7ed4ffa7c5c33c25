/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vsp-driver: a host-side vhost-user-blk front end, for tests and
 * benchmarks with no guest in between. It connects to a back end's socket
 * as a VMM would, shares a memfd as "guest memory", sets up split
 * virtqueues (indirect descriptors, EVENT_IDX) and drives virtio-blk
 * requests:
 *
 *   vsp-driver read SOCKET OFFSET LENGTH      the disk's bytes to stdout
 *   vsp-driver write SOCKET OFFSET < DATA     stdin to the disk, then FLUSH
 *   vsp-driver info SOCKET                    capacity, queues, serial (GET_ID)
 *   vsp-driver verify SOCKET [--queues N] [--size BYTES]  patterned writes/reads on
 *                                             every queue (in the last BYTES of the disk),
 *                                             flush, discard, write-zeroes
 *   vsp-driver bench SOCKET [--rw randread|randwrite|read|write] [--bs N]
 *                    [--depth N] [--queues N] [--time S] [--size BYTES]
 *   vsp-driver hostile SOCKET                 malformed messages and descriptors;
 *                                             the back end must survive each
 *
 * bench prints "iops= mibs= p50_us= p99_us=" as its last line.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhost-user-proto.h"

#define NUM 256           /* ring entries */
#define MAXQ 16
#define SLOT_CTL 128      /* per request: 16-byte header, status byte, 3 indirect descriptors at 24 */
#define HIST_US 200000    /* latency histogram, 1 us buckets */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "vsp-driver: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* ---- connection and memory ---- */

struct dq {
	unsigned idx;
	uint8_t *desc, *avail, *used;
	uint64_t desc_gpa, avail_gpa, used_gpa;
	int kick, call;
	uint16_t avail_idx, last_used;
	uint8_t *ctl;          /* depth x SLOT_CTL */
	uint64_t ctl_gpa;
	uint8_t *data;         /* depth x bs */
	uint64_t data_gpa;
	unsigned depth;
	size_t bs;
	/* bench */
	uint64_t *t0;
	uint64_t ops, bytes;
	uint32_t *hist;
	unsigned inflight;
	uint64_t rnd;
};

struct dev {
	int sock;
	int memfd;
	uint8_t *mem;
	uint64_t memsz;
	uint64_t features;
	uint64_t capacity;    /* bytes */
	unsigned maxq, nq;
	struct dq q[MAXQ];
	bool event_idx;
};

static uint64_t gpa_of(struct dev *d, const void *p)
{
	return (uint64_t)((const uint8_t *)p - d->mem);
}

static void send_msg(struct dev *d, uint32_t req, uint32_t flags, const void *payload,
		     uint32_t size, const int *fds, unsigned nfds)
{
	uint8_t buf[VHOST_USER_HDR_SIZE + VHOST_USER_MAX_PAYLOAD + 64];
	char cbuf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
	struct iovec iov = { buf, VHOST_USER_HDR_SIZE + size };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	vu_st32(buf, req);
	vu_st32(buf + 4, VHOST_USER_VERSION | flags);
	vu_st32(buf + 8, size);
	if (size)
		memcpy(buf + VHOST_USER_HDR_SIZE, payload, size);
	if (nfds) {
		struct cmsghdr *c;
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	if (sendmsg(d->sock, &mh, MSG_NOSIGNAL) != (ssize_t)iov.iov_len)
		die("sendmsg request %u: %s", req, strerror(errno));
}

/* Receives a reply; returns its payload size or -1 when the connection is gone. */
static int recv_reply(struct dev *d, uint32_t req, void *payload, size_t cap, int *fd)
{
	uint8_t hdr[VHOST_USER_HDR_SIZE];
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { hdr, sizeof(hdr) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	uint32_t size;

	if (fd)
		*fd = -1;
	if (recvmsg(d->sock, &mh, MSG_WAITALL) != (ssize_t)sizeof(hdr))
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_type == SCM_RIGHTS && fd)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	size = vu_ld32(hdr + 8);
	if (vu_ld32(hdr) != req || !(vu_ld32(hdr + 4) & VHOST_USER_REPLY) || size > cap)
		die("bad reply to request %u", req);
	if (size && recv(d->sock, payload, size, MSG_WAITALL) != (ssize_t)size)
		return -1;
	return (int)size;
}

static uint64_t get_u64(struct dev *d, uint32_t req)
{
	uint8_t b[8];

	send_msg(d, req, 0, NULL, 0, NULL, 0);
	if (recv_reply(d, req, b, sizeof(b), NULL) != 8)
		die("no reply to request %u", req);
	return vu_ld64(b);
}

static void set_u64(struct dev *d, uint32_t req, uint64_t v, const int *fds, unsigned nfds)
{
	uint8_t b[8];

	vu_st64(b, v);
	send_msg(d, req, 0, b, 8, fds, nfds);
}

static void set_state(struct dev *d, uint32_t req, uint32_t idx, uint32_t num)
{
	uint8_t b[8];

	vu_st32(b, idx);
	vu_st32(b + 4, num);
	send_msg(d, req, 0, b, 8, NULL, 0);
}

/* Sends a message with NEED_REPLY and returns the back end's verdict (0 ok), -1 if it hung up. */
static int acked(struct dev *d, uint32_t req, const void *p, uint32_t size, const int *fds,
		 unsigned nfds)
{
	uint8_t b[8];

	send_msg(d, req, VHOST_USER_NEED_REPLY, p, size, fds, nfds);
	if (recv_reply(d, req, b, sizeof(b), NULL) != 8)
		return -1;
	return (int)vu_ld64(b);
}

static int connect_sock(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || strlen(path) >= sizeof(sa.sun_path))
		die("socket: %s", strerror(errno));
	strcpy(sa.sun_path, path);
	for (int i = 0; i < 50; i++) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		usleep(100000);
	}
	die("connect %s: %s", path, strerror(errno));
}

/* Lays out rings, control blocks and data buffers of @nq queues in the memfd. */
static void layout(struct dev *d, unsigned nq, unsigned depth, size_t bs)
{
	uint64_t per_q = 3 * 4096 + (uint64_t)depth * SLOT_CTL;
	uint64_t off = 0;

	per_q = (per_q + 4095) & ~4095ULL;
	d->memsz = nq * per_q + (uint64_t)nq * depth * bs + 4096;
	d->memsz = (d->memsz + (2 << 20) - 1) & ~((2ULL << 20) - 1);
	d->memfd = memfd_create("vsp-driver-mem", MFD_CLOEXEC);
	if (d->memfd < 0 || ftruncate(d->memfd, (off_t)d->memsz) < 0)
		die("memfd: %s", strerror(errno));
	d->mem = mmap(NULL, d->memsz, PROT_READ | PROT_WRITE, MAP_SHARED, d->memfd, 0);
	if (d->mem == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	d->nq = nq;
	for (unsigned i = 0; i < nq; i++) {
		struct dq *q = &d->q[i];
		q->idx = i;
		q->desc = d->mem + off;
		q->avail = d->mem + off + 4096;
		q->used = d->mem + off + 8192;
		q->ctl = d->mem + off + 12288;
		q->desc_gpa = gpa_of(d, q->desc);
		q->avail_gpa = gpa_of(d, q->avail);
		q->used_gpa = gpa_of(d, q->used);
		q->ctl_gpa = gpa_of(d, q->ctl);
		q->depth = depth;
		q->bs = bs;
		off += per_q;
	}
	for (unsigned i = 0; i < nq; i++) {
		d->q[i].data = d->mem + off;
		d->q[i].data_gpa = off;
		off += (uint64_t)depth * bs;
	}
}

static void mem_table(struct dev *d, uint64_t uva_base)
{
	uint8_t b[VHOST_MEM_HDR_SIZE + VHOST_MEM_REGION_SIZE];

	memset(b, 0, sizeof(b));
	vu_st32(b, 1);
	vu_st64(b + 8, 0);                    /* guest physical address */
	vu_st64(b + 16, d->memsz);            /* size */
	vu_st64(b + 24, uva_base);            /* "user" address: our mapping */
	vu_st64(b + 32, 0);                   /* mmap offset */
	if (acked(d, VHOST_USER_SET_MEM_TABLE, b, sizeof(b), &d->memfd, 1) != 0)
		die("SET_MEM_TABLE refused");
}

static void vring_addr(struct dev *d, unsigned i, uint64_t desc, uint64_t used, uint64_t avail)
{
	uint8_t b[VHOST_ADDR_SIZE];

	memset(b, 0, sizeof(b));
	vu_st32(b, i);
	vu_st64(b + 8, desc);
	vu_st64(b + 16, used);
	vu_st64(b + 24, avail);
	send_msg(d, VHOST_USER_SET_VRING_ADDR, 0, b, sizeof(b), NULL, 0);
}

static void read_config(struct dev *d)
{
	uint8_t b[VHOST_CONFIG_HDR_SIZE + VBLK_CFG_SIZE];
	int n;

	memset(b, 0, sizeof(b));
	vu_st32(b + 4, VBLK_CFG_SIZE);
	send_msg(d, VHOST_USER_GET_CONFIG, 0, b, sizeof(b), NULL, 0);
	n = recv_reply(d, VHOST_USER_GET_CONFIG, b, sizeof(b), NULL);
	if (n != (int)sizeof(b))
		die("GET_CONFIG failed");
	d->capacity = le64_ld(b + VHOST_CONFIG_HDR_SIZE + VBLK_CFG_CAPACITY) * 512;
	d->maxq = le16_ld(b + VHOST_CONFIG_HDR_SIZE + VBLK_CFG_NUM_QUEUES);
}

/* The full VMM-like set-up of @nq queues. */
static void dev_open(struct dev *d, const char *path, unsigned nq, unsigned depth, size_t bs)
{
	uint64_t want = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_RING_INDIRECT_DESC) |
			(1ULL << VIRTIO_F_RING_EVENT_IDX) | (1ULL << VHOST_USER_F_PROTOCOL_FEATURES) |
			(1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_MQ) |
			(1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
			(1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES) |
			(1ULL << VIRTIO_BLK_F_RO);
	uint64_t pf;

	memset(d, 0, sizeof(*d));
	d->sock = connect_sock(path);
	d->features = get_u64(d, VHOST_USER_GET_FEATURES) & want;
	if (!(d->features & (1ULL << VHOST_USER_F_PROTOCOL_FEATURES)))
		die("back end without protocol features");
	pf = get_u64(d, VHOST_USER_GET_PROTOCOL_FEATURES);
	pf &= (1ULL << VHOST_USER_PROTOCOL_F_MQ) | (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK) |
	      (1ULL << VHOST_USER_PROTOCOL_F_CONFIG) | (1ULL << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD);
	set_u64(d, VHOST_USER_SET_PROTOCOL_FEATURES, pf, NULL, 0);
	d->maxq = (unsigned)get_u64(d, VHOST_USER_GET_QUEUE_NUM);
	if (nq > d->maxq || nq > MAXQ)
		die("%u queues asked, the back end has %u", nq, d->maxq);
	send_msg(d, VHOST_USER_SET_OWNER, 0, NULL, 0, NULL, 0);
	read_config(d);
	d->event_idx = d->features & (1ULL << VIRTIO_F_RING_EVENT_IDX);
	set_u64(d, VHOST_USER_SET_FEATURES, d->features, NULL, 0);
	layout(d, nq, depth, bs);
	mem_table(d, (uint64_t)(uintptr_t)d->mem);
	for (unsigned i = 0; i < nq; i++) {
		struct dq *q = &d->q[i];
		q->kick = eventfd(0, EFD_CLOEXEC);
		q->call = eventfd(0, EFD_CLOEXEC);
		set_state(d, VHOST_USER_SET_VRING_NUM, i, NUM);
		set_state(d, VHOST_USER_SET_VRING_BASE, i, 0);
		vring_addr(d, i, (uint64_t)(uintptr_t)q->desc, (uint64_t)(uintptr_t)q->used,
			   (uint64_t)(uintptr_t)q->avail);
		set_u64(d, VHOST_USER_SET_VRING_CALL, i, &q->call, 1);
		set_u64(d, VHOST_USER_SET_VRING_KICK, i, &q->kick, 1);
		set_state(d, VHOST_USER_SET_VRING_ENABLE, i, 1);
	}
	/* a round trip: everything above has been processed */
	if (acked(d, VHOST_USER_SET_PROTOCOL_FEATURES, &pf, 8, NULL, 0) != 0)
		die("back end rejected the set-up");
}

static void dev_close(struct dev *d)
{
	close(d->sock);
	for (unsigned i = 0; i < d->nq; i++) {
		close(d->q[i].kick);
		close(d->q[i].call);
	}
	munmap(d->mem, d->memsz);
	close(d->memfd);
}

/* ---- requests ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void set_desc(uint8_t *d, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	le64_st(d, addr);
	le32_st(d + 8, len);
	le16_st(d + 12, flags);
	le16_st(d + 14, next);
}

static uint8_t *slot_ctl(struct dq *q, unsigned s)
{
	return q->ctl + (size_t)s * SLOT_CTL;
}

/*
 * Queues request slot @s: header, @len bytes of the slot's buffer (or none),
 * status, through a 3-entry indirect table. Not yet visible to the device.
 */
static void prep(struct dev *d, struct dq *q, unsigned s, uint32_t type, uint64_t sector,
		 uint32_t len, bool dev_writes)
{
	uint8_t *c = slot_ctl(q, s), *t = c + 24;
	uint64_t cgpa = q->ctl_gpa + (uint64_t)s * SLOT_CTL;
	unsigned n = 0;

	le32_st(c, type);
	le32_st(c + 4, 0);
	le64_st(c + 8, sector);
	c[16] = 0xff; /* status, overwritten by the device */
	set_desc(t, cgpa, 16, VRING_DESC_F_NEXT, 1);
	n++;
	if (len) {
		set_desc(t + 16 * n, q->data_gpa + (uint64_t)s * q->bs, len,
			 VRING_DESC_F_NEXT | (dev_writes ? VRING_DESC_F_WRITE : 0), (uint16_t)(n + 1));
		n++;
	}
	set_desc(t + 16 * n, cgpa + 16, 1, VRING_DESC_F_WRITE, 0);
	n++;
	set_desc(q->desc + 16 * s, cgpa + 24, 16 * n, VRING_DESC_F_INDIRECT, 0);
	le16_st(q->avail + 4 + 2 * (q->avail_idx % NUM), (uint16_t)s);
	q->avail_idx++;
	(void)d;
}

static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

/* Publishes the avail entries added since @old and kicks when the device wants it. */
static void publish(struct dev *d, struct dq *q, uint16_t old)
{
	bool kick;

	__atomic_store_n((uint16_t *)(q->avail + 2), htole16(q->avail_idx), __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (d->event_idx)
		kick = need_event(le16_ld(q->used + 4 + 8 * NUM), q->avail_idx, old);
	else
		kick = !(le16_ld(q->used) & VRING_USED_F_NO_NOTIFY);
	if (kick) {
		uint64_t one = 1;
		if (write(q->kick, &one, 8) != 8)
			die("kick: %s", strerror(errno));
	}
}

/* Takes one used element: returns its slot, or -1 when none. */
static int take_used(struct dq *q, uint32_t *len)
{
	uint16_t u = le16toh(__atomic_load_n((uint16_t *)(q->used + 2), __ATOMIC_ACQUIRE));
	uint8_t *e;

	if (u == q->last_used)
		return -1;
	e = q->used + 4 + 8 * (q->last_used % NUM);
	q->last_used++;
	*len = le32_ld(e + 4);
	return (int)le32_ld(e);
}

/* Waits for used elements (the call eventfd), up to @ms milliseconds. */
static void wait_used(struct dev *d, struct dq *q, int ms)
{
	struct pollfd p = { .fd = q->call, .events = POLLIN };
	uint64_t v;

	if (d->event_idx) {
		le16_st(q->avail + 4 + 2 * NUM, q->last_used);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	if (le16toh(__atomic_load_n((uint16_t *)(q->used + 2), __ATOMIC_ACQUIRE)) != q->last_used)
		return;
	if (poll(&p, 1, ms) > 0 && read(q->call, &v, 8) < 0)
		die("call eventfd: %s", strerror(errno));
}

/* One synchronous request on queue 0, slot 0. Returns the status byte, or -1 for used len 0. */
static int sync_req(struct dev *d, uint32_t type, uint64_t sector, uint32_t len, bool dev_writes)
{
	struct dq *q = &d->q[0];
	uint16_t old = q->avail_idx;
	uint32_t ulen;
	int s;

	prep(d, q, 0, type, sector, len, dev_writes);
	publish(d, q, old);
	for (int tries = 0; (s = take_used(q, &ulen)) < 0; tries++) {
		if (tries > 1000)
			die("no completion after 10 s (type %u)", type);
		wait_used(d, q, 10);
	}
	if (ulen == 0)
		return -1;
	return slot_ctl(q, 0)[16];
}

/* ---- commands ---- */

static uint64_t parse_u64(const char *s)
{
	char *e;
	unsigned long long v = strtoull(s, &e, 0);
	uint64_t m = 1;

	if (*e == 'K' || *e == 'k')
		m = 1024;
	else if (*e == 'M')
		m = 1024 * 1024;
	else if (*e == 'G')
		m = 1024ULL * 1024 * 1024;
	else if (*e)
		die("bad number '%s'", s);
	return v * m;
}

static int cmd_read(const char *sock, uint64_t off, uint64_t len)
{
	struct dev d;
	const size_t chunk = 1 << 20;

	dev_open(&d, sock, 1, 4, chunk);
	if (off % 512 || len % 512)
		die("OFFSET and LENGTH must be multiples of 512");
	while (len > 0) {
		uint32_t n = len < chunk ? (uint32_t)len : (uint32_t)chunk;
		int st = sync_req(&d, VIRTIO_BLK_T_IN, off / 512, n, true);
		if (st != VIRTIO_BLK_S_OK)
			die("read at %" PRIu64 ": status %d", off, st);
		if (fwrite(d.q[0].data, 1, n, stdout) != n)
			die("stdout: %s", strerror(errno));
		off += n;
		len -= n;
	}
	dev_close(&d);
	return 0;
}

static int cmd_write(const char *sock, uint64_t off)
{
	struct dev d;
	const size_t chunk = 1 << 20;
	size_t n;

	dev_open(&d, sock, 1, 4, chunk);
	while ((n = fread(d.q[0].data, 1, chunk, stdin)) > 0) {
		int st;
		if (n % 512 || off % 512)
			die("data and offset must be multiples of 512 bytes");
		st = sync_req(&d, VIRTIO_BLK_T_OUT, off / 512, (uint32_t)n, false);
		if (st != VIRTIO_BLK_S_OK)
			die("write at %" PRIu64 ": status %d", off, st);
		off += n;
	}
	if (sync_req(&d, VIRTIO_BLK_T_FLUSH, 0, 0, false) != VIRTIO_BLK_S_OK)
		die("flush failed");
	dev_close(&d);
	return 0;
}

static int cmd_info(const char *sock)
{
	struct dev d;
	int st;

	dev_open(&d, sock, 1, 2, 4096);
	memset(d.q[0].data, 0, 64);
	st = sync_req(&d, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, true);
	printf("capacity %" PRIu64 "\nqueues %u\nserial %.20s\nget_id_status %d\n", d.capacity,
	       d.maxq, (char *)d.q[0].data, st);
	dev_close(&d);
	return 0;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void fill(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t s = seed | 1;

	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = xorshift(&s);
		memcpy(p + i, &v, 8);
	}
}

/*
 * Random 4-64 KiB writes of known patterns on every queue at once (each
 * queue its own region), flush, read back and compare; then discard and
 * write-zeroes, read back as zeros; GET_ID.
 */
static int cmd_verify(const char *sock, unsigned nq, uint64_t size)
{
	struct dev d;
	const size_t bs = 64 * 1024;
	const unsigned depth = 16;
	uint64_t region, base;
	int bad = 0;

	dev_open(&d, sock, nq, depth, bs);
	/* --size: only the last SIZE bytes of the disk are touched */
	base = size && size < d.capacity ? (d.capacity - size) / bs * bs : 0;
	region = (d.capacity - base) / nq / bs * bs;
	if (region < depth * bs * 2)
		die("disk too small");
	for (unsigned round = 0; round < 4; round++) {
		for (unsigned i = 0; i < nq; i++) {
			struct dq *q = &d.q[i];
			uint16_t old = q->avail_idx;
			for (unsigned s = 0; s < depth; s++) {
				uint64_t off = base + i * region + ((round * depth + s) * 7919ULL % (region / bs)) * bs;
				fill(q->data + s * bs, bs, off ^ round);
				(void)0;
				prep(&d, q, s, VIRTIO_BLK_T_OUT, off / 512, bs, false);
			}
			publish(&d, q, old);
		}
		for (unsigned i = 0; i < nq; i++) {
			struct dq *q = &d.q[i];
			unsigned got = 0;
			while (got < depth) {
				uint32_t l;
				int s = take_used(q, &l);
				if (s < 0) {
					wait_used(&d, q, 100);
					continue;
				}
				if (slot_ctl(q, (unsigned)s)[16] != VIRTIO_BLK_S_OK)
					die("write failed on queue %u", i);
				got++;
			}
		}
		if (sync_req(&d, VIRTIO_BLK_T_FLUSH, 0, 0, false) != VIRTIO_BLK_S_OK)
			die("flush failed");
		/* read back, one request at a time on queue 0 */
		for (unsigned i = 0; i < nq; i++)
			for (unsigned s = 0; s < depth; s++) {
				uint64_t off = base + i * region + ((round * depth + s) * 7919ULL % (region / bs)) * bs;
				uint8_t *want = malloc(bs);
				fill(want, bs, off ^ round);
				if (sync_req(&d, VIRTIO_BLK_T_IN, off / 512, bs, true) != VIRTIO_BLK_S_OK)
					die("read failed");
				if (memcmp(d.q[0].data, want, bs) != 0) {
					fprintf(stderr, "mismatch at %" PRIu64 "\n", off);
					bad++;
				}
				free(want);
			}
	}
	/* discard and write-zeroes: one segment each, then the range reads as zeros */
	for (uint32_t type = VIRTIO_BLK_T_DISCARD; type <= VIRTIO_BLK_T_WRITE_ZEROES; type += 2) {
		uint8_t *seg = d.q[0].data;
		uint64_t off = base + (type == VIRTIO_BLK_T_DISCARD ? 0 : bs);
		le64_st(seg, off / 512);
		le32_st(seg + 8, bs / 512);
		le32_st(seg + 12, 0);
		if (sync_req(&d, type, 0, 16, false) != VIRTIO_BLK_S_OK)
			die("%s failed", type == VIRTIO_BLK_T_DISCARD ? "discard" : "write-zeroes");
		if (sync_req(&d, VIRTIO_BLK_T_IN, off / 512, bs, true) != VIRTIO_BLK_S_OK)
			die("read failed");
		for (size_t k = 0; k < bs; k++)
			if (d.q[0].data[k]) {
				fprintf(stderr, "%s range does not read as zeros\n",
					type == VIRTIO_BLK_T_DISCARD ? "discarded" : "zeroed");
				bad++;
				break;
			}
	}
	if (sync_req(&d, 99, 0, 0, false) != VIRTIO_BLK_S_UNSUPP) {
		fprintf(stderr, "an unknown request type did not fail with UNSUPP\n");
		bad++;
	}
	dev_close(&d);
	if (bad)
		die("%d verification failures", bad);
	printf("verify: ok (%u queues)\n", nq);
	return 0;
}

/* ---- bench ---- */

struct bench {
	struct dev *d;
	int rw;          /* 0 randread 1 randwrite 2 read 3 write */
	uint64_t size;   /* bytes of the disk used */
	double secs;
	volatile bool stop;
};

static void submit_one(struct bench *b, struct dq *q, unsigned s)
{
	uint64_t blocks = b->size / q->bs, off;
	bool wr = b->rw == 1 || b->rw == 3;

	if (b->rw >= 2) {
		off = (q->rnd % blocks) * q->bs;
		q->rnd++;
	} else {
		off = (xorshift(&q->rnd) % blocks) * q->bs;
	}
	q->t0[s] = now_ns();
	prep(b->d, q, s, wr ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, off / 512, (uint32_t)q->bs, !wr);
}

static void *bench_thread(void *arg)
{
	struct dq *q = arg;
	struct bench *b = (struct bench *)q->t0[q->depth]; /* stashed */
	uint16_t old = q->avail_idx;

	for (unsigned s = 0; s < q->depth; s++)
		submit_one(b, q, s);
	publish(b->d, q, old);
	q->inflight = q->depth;
	while (q->inflight > 0) {
		uint32_t l;
		int s, n = 0;

		old = q->avail_idx;
		while ((s = take_used(q, &l)) >= 0) {
			uint64_t us = (now_ns() - q->t0[s]) / 1000;
			if (slot_ctl(q, (unsigned)s)[16] != VIRTIO_BLK_S_OK)
				die("request failed during the benchmark");
			q->hist[us < HIST_US ? us : HIST_US - 1]++;
			q->ops++;
			q->bytes += q->bs;
			n++;
			if (b->stop)
				q->inflight--;
			else
				submit_one(b, q, (unsigned)s);
		}
		if (q->avail_idx != old)
			publish(b->d, q, old);
		if (n == 0)
			wait_used(b->d, q, 100);
	}
	return NULL;
}

static int cmd_bench(const char *sock, int rw, size_t bs, unsigned depth, unsigned nq,
		     double secs, uint64_t size)
{
	struct dev d;
	struct bench b = { .d = &d, .rw = rw, .secs = secs };
	pthread_t thr[MAXQ];
	uint64_t ops = 0, bytes = 0, t0, t1, cum = 0, p50 = 0, p99 = 0;
	uint32_t *hist = calloc(HIST_US, sizeof(*hist));

	if (depth > NUM)
		die("depth at most %u", NUM);
	dev_open(&d, sock, nq, depth, bs);
	b.size = size && size < d.capacity ? size : d.capacity;
	for (unsigned i = 0; i < nq; i++) {
		struct dq *q = &d.q[i];
		q->t0 = calloc(depth + 1, sizeof(uint64_t));
		q->hist = calloc(HIST_US, sizeof(uint32_t));
		q->t0[depth] = (uint64_t)(uintptr_t)&b;
		q->rnd = 0x9e3779b97f4a7c15ULL * (i + 1);
		if (rw >= 2)
			q->rnd = (b.size / bs / nq) * i;
	}
	t0 = now_ns();
	for (unsigned i = 0; i < nq; i++)
		pthread_create(&thr[i], NULL, bench_thread, &d.q[i]);
	usleep((useconds_t)(secs * 1e6));
	b.stop = true;
	for (unsigned i = 0; i < nq; i++)
		pthread_join(thr[i], NULL);
	t1 = now_ns();
	for (unsigned i = 0; i < nq; i++) {
		ops += d.q[i].ops;
		bytes += d.q[i].bytes;
		for (unsigned k = 0; k < HIST_US; k++)
			hist[k] += d.q[i].hist[k];
	}
	for (unsigned k = 0; k < HIST_US; k++) {
		cum += hist[k];
		if (!p50 && cum * 2 >= ops)
			p50 = k ? k : 1;
		if (!p99 && cum * 100 >= ops * 99) {
			p99 = k ? k : 1;
			break;
		}
	}
	{
		double s = (double)(t1 - t0) / 1e9;
		printf("iops= %.0f mibs= %.1f p50_us= %" PRIu64 " p99_us= %" PRIu64 "\n", ops / s,
		       bytes / s / 1048576.0, p50, p99);
	}
	dev_close(&d);
	return 0;
}

/* ---- hostile ---- */

static const char *g_sock;
static int failures;

/* After a hostile case: a fresh connection still serves a read. */
static void check_alive(const char *what)
{
	struct dev d;

	dev_open(&d, g_sock, 1, 2, 4096);
	if (sync_req(&d, VIRTIO_BLK_T_IN, 0, 4096, true) != VIRTIO_BLK_S_OK) {
		fprintf(stderr, "hostile: after '%s' the back end no longer reads\n", what);
		failures++;
	}
	dev_close(&d);
	printf("hostile: %s: survived\n", what);
}

/* True when the back end closed the connection (within 2 s). */
static bool closed_by_peer(struct dev *d)
{
	struct pollfd p = { .fd = d->sock, .events = POLLIN };
	char c;

	if (poll(&p, 1, 2000) <= 0)
		return false;
	return recv(d->sock, &c, 1, MSG_DONTWAIT) <= 0;
}

static void expect_closed(struct dev *d, const char *what)
{
	if (!closed_by_peer(d)) {
		fprintf(stderr, "hostile: %s: the back end kept the connection\n", what);
		failures++;
	}
	dev_close(d);
	check_alive(what);
}

/* A raw descriptor chain on queue 0 of a fresh device: returns the used length or -1 if none came. */
static int raw_chain(struct dev *d, uint16_t head, int timeout_ms)
{
	struct dq *q = &d->q[0];
	uint16_t old = q->avail_idx;
	uint32_t l;
	int s;

	le16_st(q->avail + 4 + 2 * (q->avail_idx % NUM), head);
	q->avail_idx++;
	publish(d, q, old);
	for (int t = 0; t < timeout_ms / 10; t++) {
		s = take_used(q, &l);
		if (s >= 0)
			return (int)l;
		wait_used(d, q, 10);
	}
	return -1;
}

/* The chain is refused (used length 0, or an error status) and the queue goes on. */
static void expect_rejected(struct dev *d, uint16_t head, const char *what)
{
	int l = raw_chain(d, head, 2000);
	uint8_t st = slot_ctl(&d->q[0], 0)[16];

	if (l < 0 || (l > 0 && st == VIRTIO_BLK_S_OK)) {
		fprintf(stderr, "hostile: %s: used len %d status %u\n", what, l, st);
		failures++;
	}
	/* the same queue still works */
	if (sync_req(d, VIRTIO_BLK_T_IN, 0, 4096, true) != VIRTIO_BLK_S_OK) {
		fprintf(stderr, "hostile: %s: the queue stopped serving\n", what);
		failures++;
	}
	printf("hostile: %s: rejected, queue alive\n", what);
}

static void hostile_descriptors(void)
{
	struct dev d;
	struct dq *q;
	uint8_t *c;
	uint64_t cgpa;

	dev_open(&d, g_sock, 1, 4, 4096);
	q = &d.q[0];
	c = slot_ctl(q, 0);
	cgpa = q->ctl_gpa;
	le32_st(c, VIRTIO_BLK_T_IN);
	le64_st(c + 8, 0);
	/* 1: a data buffer past the end of guest memory */
	set_desc(q->desc + 16 * 10, cgpa, 16, VRING_DESC_F_NEXT, 11);
	set_desc(q->desc + 16 * 11, d.memsz - 100, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 12);
	set_desc(q->desc + 16 * 12, cgpa + 16, 1, VRING_DESC_F_WRITE, 0);
	expect_rejected(&d, 10, "buffer outside guest memory");
	/* 2: an address that wraps around 2^64 */
	set_desc(q->desc + 16 * 11, UINT64_MAX - 10, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 12);
	expect_rejected(&d, 10, "buffer address wrapping around");
	/* 3: a loop */
	set_desc(q->desc + 16 * 20, cgpa, 16, VRING_DESC_F_NEXT, 21);
	set_desc(q->desc + 16 * 21, q->data_gpa, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 20);
	expect_rejected(&d, 20, "loop in a descriptor chain");
	/* 4: next index out of the table */
	set_desc(q->desc + 16 * 21, q->data_gpa, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 999);
	expect_rejected(&d, 20, "next index out of range");
	/* 5: an indirect table outside guest memory */
	set_desc(q->desc + 16 * 30, d.memsz + 4096, 48, VRING_DESC_F_INDIRECT, 0);
	expect_rejected(&d, 30, "indirect table outside guest memory");
	/* 6: nested indirect */
	set_desc(c + 24, q->ctl_gpa + 24, 48, VRING_DESC_F_INDIRECT, 0);
	set_desc(q->desc + 16 * 31, q->ctl_gpa + 24, 16, VRING_DESC_F_INDIRECT, 0);
	expect_rejected(&d, 31, "nested indirect table");
	/* 7: indirect table with a length that is not a whole number of descriptors */
	set_desc(q->desc + 16 * 32, q->ctl_gpa + 24, 47, VRING_DESC_F_INDIRECT, 0);
	expect_rejected(&d, 32, "indirect table of 47 bytes");
	/* 8: a loop inside an indirect table */
	set_desc(c + 24, cgpa, 16, VRING_DESC_F_NEXT, 1);
	set_desc(c + 40, q->data_gpa, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 0);
	set_desc(q->desc + 16 * 33, cgpa + 24, 32, VRING_DESC_F_INDIRECT, 0);
	expect_rejected(&d, 33, "loop inside an indirect table");
	/* 9: device-readable after device-writable */
	set_desc(q->desc + 16 * 40, cgpa + 16, 1, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 41);
	set_desc(q->desc + 16 * 41, cgpa, 16, 0, 0);
	expect_rejected(&d, 40, "readable after writable");
	/* 10: no status byte at all */
	set_desc(q->desc + 16 * 50, cgpa, 16, 0, 0);
	expect_rejected(&d, 50, "no device-writable status byte");
	/* 11: a read past the end of the disk */
	le64_st(c + 8, d.capacity / 512);
	set_desc(q->desc + 16 * 60, cgpa, 16, VRING_DESC_F_NEXT, 61);
	set_desc(q->desc + 16 * 61, q->data_gpa, 4096, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 62);
	set_desc(q->desc + 16 * 62, cgpa + 16, 1, VRING_DESC_F_WRITE, 0);
	expect_rejected(&d, 60, "read past the end of the disk");
	/* 12: a sector number that overflows when turned into bytes */
	le64_st(c + 8, UINT64_MAX / 256);
	expect_rejected(&d, 60, "sector overflowing 64 bits");
	/* 13: an oversized request (64 MiB claimed, inside guest memory or not) */
	le64_st(c + 8, 0);
	set_desc(q->desc + 16 * 61, 0, 64u << 20, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 62);
	expect_rejected(&d, 60, "64 MiB request");
	/* 14: a head index past the ring */
	{
		int l = raw_chain(&d, NUM + 5, 2000);
		if (l > 0) {
			fprintf(stderr, "hostile: head out of range accepted\n");
			failures++;
		}
		printf("hostile: head index out of range: used len %d\n", l);
	}
	dev_close(&d);
	check_alive("descriptor cases");

	/* 15: an avail index far ahead of the ring: that queue stops, the device does not */
	dev_open(&d, g_sock, 2, 4, 4096);
	__atomic_store_n((uint16_t *)(d.q[0].avail + 2), htole16(NUM * 3), __ATOMIC_RELEASE);
	{
		uint64_t one = 1;
		if (write(d.q[0].kick, &one, 8) != 8)
			die("kick");
	}
	usleep(200000);
	{
		struct dq save = d.q[0];
		d.q[0] = d.q[1]; /* sync_req uses queue 0: point it at queue 1 */
		if (sync_req(&d, VIRTIO_BLK_T_IN, 0, 4096, true) != VIRTIO_BLK_S_OK) {
			fprintf(stderr, "hostile: bogus avail index on q0 stopped q1\n");
			failures++;
		}
		d.q[0] = save;
	}
	printf("hostile: bogus avail index: other queue alive\n");
	dev_close(&d);
	check_alive("bogus avail index");
}

static void hostile_messages(void)
{
	struct dev d;
	uint8_t b[256];
	int fd;

	/* a memory region larger than its file */
	dev_open(&d, g_sock, 1, 2, 4096);
	memset(b, 0, sizeof(b));
	vu_st32(b, 1);
	vu_st64(b + 16, d.memsz * 4);
	vu_st64(b + 24, (uint64_t)(uintptr_t)d.mem);
	if (acked(&d, VHOST_USER_SET_MEM_TABLE, b, 40, &d.memfd, 1) == 0) {
		fprintf(stderr, "hostile: oversized region accepted\n");
		failures++;
	}
	dev_close(&d);
	check_alive("region larger than its file");

	/* region count and fd count disagree */
	dev_open(&d, g_sock, 1, 2, 4096);
	vu_st32(b, 2);
	send_msg(&d, VHOST_USER_SET_MEM_TABLE, 0, b, 8 + 64, &d.memfd, 1);
	expect_closed(&d, "region count without fds");

	/* ring size not a power of two */
	dev_open(&d, g_sock, 1, 2, 4096);
	set_state(&d, VHOST_USER_SET_VRING_NUM, 0, 100);
	set_state(&d, VHOST_USER_SET_VRING_NUM, 0, 0);
	expect_closed(&d, "ring size 100");

	/* vring index out of range */
	dev_open(&d, g_sock, 1, 2, 4096);
	set_state(&d, VHOST_USER_SET_VRING_BASE, 200, 0);
	expect_closed(&d, "vring index 200");

	/* ring addresses outside guest memory, then a kick fd to start it */
	dev_open(&d, g_sock, 1, 2, 4096);
	set_state(&d, VHOST_USER_GET_VRING_BASE, 0, 0);
	recv_reply(&d, VHOST_USER_GET_VRING_BASE, b, sizeof(b), NULL);
	vring_addr(&d, 0, 0x7fff00000000ULL, 0x7fff00010000ULL, 0x7fff00020000ULL);
	fd = eventfd(0, EFD_CLOEXEC);
	set_u64(&d, VHOST_USER_SET_VRING_KICK, 0, &fd, 1);
	close(fd);
	expect_closed(&d, "ring outside guest memory");

	/* a payload size over the limit */
	dev_open(&d, g_sock, 1, 2, 4096);
	{
		uint8_t h[12];
		vu_st32(h, VHOST_USER_SET_FEATURES);
		vu_st32(h + 4, VHOST_USER_VERSION);
		vu_st32(h + 8, 1 << 20);
		if (send(d.sock, h, sizeof(h), MSG_NOSIGNAL) != 12)
			die("send");
	}
	expect_closed(&d, "payload of 1 MiB announced");

	/* wrong version bits */
	dev_open(&d, g_sock, 1, 2, 4096);
	{
		uint8_t h[20];
		vu_st32(h, VHOST_USER_SET_FEATURES);
		vu_st32(h + 4, 2);
		vu_st32(h + 8, 8);
		vu_st64(h + 12, 0);
		if (send(d.sock, h, sizeof(h), MSG_NOSIGNAL) != 20)
			die("send");
	}
	expect_closed(&d, "protocol version 2");

	/* a truncated message, then the front end vanishes */
	dev_open(&d, g_sock, 1, 2, 4096);
	if (send(d.sock, "\x05\0\0", 3, MSG_NOSIGNAL) != 3)
		die("send");
	dev_close(&d);
	check_alive("truncated header");

	/* GET_CONFIG asking for too much: an empty reply, and the connection lives */
	dev_open(&d, g_sock, 1, 2, 4096);
	memset(b, 0, sizeof(b));
	vu_st32(b + 4, 200);
	send_msg(&d, VHOST_USER_GET_CONFIG, 0, b, 12 + 100, NULL, 0);
	if (recv_reply(&d, VHOST_USER_GET_CONFIG, b, sizeof(b), NULL) != 0) {
		fprintf(stderr, "hostile: inconsistent GET_CONFIG answered\n");
		failures++;
	}
	if (sync_req(&d, VIRTIO_BLK_T_IN, 0, 4096, true) != VIRTIO_BLK_S_OK) {
		fprintf(stderr, "hostile: device dead after a bad GET_CONFIG\n");
		failures++;
	}
	dev_close(&d);
	printf("hostile: bad GET_CONFIG: empty reply, device alive\n");

	/* the inflight region swapped under running queues, twice, with I/O between */
	dev_open(&d, g_sock, 1, 2, 4096);
	for (int round = 0; round < 2; round++) {
		uint8_t inf[VHOST_INFLIGHT_SIZE];
		uint16_t nq = 1, qs = NUM;
		int ifd = -1, n;

		memset(inf, 0, sizeof(inf));
		memcpy(inf + 16, &nq, 2);
		memcpy(inf + 18, &qs, 2);
		send_msg(&d, VHOST_USER_GET_INFLIGHT_FD, 0, inf, sizeof(inf), NULL, 0);
		n = recv_reply(&d, VHOST_USER_GET_INFLIGHT_FD, inf, sizeof(inf), &ifd);
		if (n != (int)sizeof(inf) || ifd < 0)
			die("GET_INFLIGHT_FD failed");
		if (acked(&d, VHOST_USER_SET_INFLIGHT_FD, inf, sizeof(inf), &ifd, 1) != 0) {
			fprintf(stderr, "hostile: SET_INFLIGHT_FD of its own region refused\n");
			failures++;
		}
		close(ifd);
		if (sync_req(&d, VIRTIO_BLK_T_IN, 0, 4096, true) != VIRTIO_BLK_S_OK) {
			fprintf(stderr, "hostile: no I/O after an inflight region swap\n");
			failures++;
		}
	}
	dev_close(&d);
	check_alive("inflight region swapped while running");

	/* features never offered */
	dev_open(&d, g_sock, 1, 2, 4096);
	set_u64(&d, VHOST_USER_SET_FEATURES, 1ULL << 60, NULL, 0);
	expect_closed(&d, "unoffered feature bit");

	/* unknown request */
	dev_open(&d, g_sock, 1, 2, 4096);
	send_msg(&d, 9999, 0, NULL, 0, NULL, 0);
	expect_closed(&d, "unknown request 9999");
}

static int cmd_hostile(const char *sock)
{
	g_sock = sock;
	check_alive("start");
	hostile_descriptors();
	hostile_messages();
	if (failures)
		die("%d hostile case(s) misbehaved", failures);
	printf("hostile: all cases ok\n");
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: vsp-driver read SOCKET OFFSET LENGTH\n"
			"       vsp-driver write SOCKET OFFSET < DATA\n"
			"       vsp-driver info|verify|hostile SOCKET [--queues N]\n"
			"       vsp-driver bench SOCKET [--rw randread|randwrite|read|write] [--bs N]\n"
			"                  [--depth N] [--queues N] [--time S] [--size BYTES]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rw", required_argument, NULL, 'r' },    { "bs", required_argument, NULL, 'b' },
		{ "depth", required_argument, NULL, 'd' }, { "queues", required_argument, NULL, 'q' },
		{ "time", required_argument, NULL, 't' },  { "size", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cmd, *sock;
	int rw = 0, c;
	size_t bs = 4096;
	unsigned depth = 32, nq = 1;
	double secs = 5;
	uint64_t size = 0;

	if (argc < 3)
		usage();
	cmd = argv[1];
	sock = argv[2];
	optind = 3;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			rw = !strcmp(optarg, "randread") ? 0 : !strcmp(optarg, "randwrite") ? 1
			     : !strcmp(optarg, "read") ? 2 : !strcmp(optarg, "write") ? 3 : -1;
			if (rw < 0)
				usage();
			break;
		case 'b':
			bs = parse_u64(optarg);
			break;
		case 'd':
			depth = (unsigned)parse_u64(optarg);
			break;
		case 'q':
			nq = (unsigned)parse_u64(optarg);
			break;
		case 't':
			secs = atof(optarg);
			break;
		case 's':
			size = parse_u64(optarg);
			break;
		default:
			usage();
		}
	}
	if (!strcmp(cmd, "read") && optind + 2 == argc)
		return cmd_read(sock, parse_u64(argv[optind]), parse_u64(argv[optind + 1]));
	if (!strcmp(cmd, "write") && optind + 1 == argc)
		return cmd_write(sock, parse_u64(argv[optind]));
	if (optind != argc)
		usage();
	if (!strcmp(cmd, "info"))
		return cmd_info(sock);
	if (!strcmp(cmd, "verify"))
		return cmd_verify(sock, nq, size);
	if (!strcmp(cmd, "hostile"))
		return cmd_hostile(sock);
	if (!strcmp(cmd, "bench")) {
		if (!bs || bs % 512 || !depth || !nq || nq > MAXQ)
			usage();
		return cmd_bench(sock, rw, bs, depth, nq, secs, size);
	}
	usage();
	return 2;
}
