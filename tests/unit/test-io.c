/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the I/O engines (include/vdisk/io.h), each run against both
 * io_uring and libaio: patterned writes at queue depth 32 read back and
 * compared byte for byte (through the engine and with pread), syncs, hole
 * punching, the -EAGAIN depth budget, per-request -errno results, RWF_*
 * flags reaching the kernel, O_DIRECT, draining on close, and engine
 * selection (AUTO, VDISK_IO_ENGINE, VDISK_IO_URING_DISABLE, fallback when
 * io_uring cannot be set up).
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vdisk/io.h>

#include "helpers.h"
#include "util.h"

#define BLK   4096U
#define DEPTH 32U

static enum vdisk_engine_kind kind_uring = VDISK_ENGINE_IO_URING;
static enum vdisk_engine_kind kind_aio = VDISK_ENGINE_LIBAIO;

static enum vdisk_engine_kind state_kind(void **state)
{
	return *(enum vdisk_engine_kind *)*state;
}

/* Opens an engine of the test's kind; skips when the machine has none of that kind. */
static struct vdisk_engine *open_kind(enum vdisk_engine_kind kind, unsigned depth)
{
	struct vdisk_err err = { 0 };
	struct vdisk_engine *e = NULL;
	int r = vdisk_engine_open(kind, depth, &e, &err);

	if (r == -ENOSYS || r == -EPERM) {
		print_message("engine %d unavailable here, skipping: %s\n", (int)kind, err.msg);
		skip();
	}
	if (r != 0)
		fail_msg("vdisk_engine_open(%d, %u): %d %s", (int)kind, depth, r, err.msg);
	assert_int_equal(vdisk_engine_kind(e), kind);
	assert_string_equal(vdisk_engine_name(e),
			    kind == VDISK_ENGINE_IO_URING ? "io_uring" : "libaio");
	return e;
}

static int open_tmp(const char *name, enum vdisk_engine_kind kind, int flags)
{
	char n[128];
	int fd;

	snprintf(n, sizeof(n), "%s-%d", name, (int)kind);
	fd = open(test_tmp_path(n), flags | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		fail_msg("open %s: %s", test_tmp_path(n), strerror(errno));
	return fd;
}

static void unlink_tmp(const char *name, enum vdisk_engine_kind kind)
{
	char n[128];

	snprintf(n, sizeof(n), "%s-%d", name, (int)kind);
	unlink(test_tmp_path(n));
}

static struct vdisk_io mk_rw(uint8_t op, int fd, const struct iovec *iov, unsigned iovcnt,
			     uint64_t offset, int rw_flags)
{
	struct vdisk_io io = {
		.op = op,
		.fd = fd,
		.iov = iov,
		.iovcnt = iovcnt,
		.offset = offset,
		.rw_flags = rw_flags,
		.result = 12345,
	};
	return io;
}

static struct vdisk_io mk_op(uint8_t op, int fd, uint64_t offset, uint64_t length, int mode)
{
	struct vdisk_io io = {
		.op = op,
		.fd = fd,
		.offset = offset,
		.length = length,
		.mode = mode,
		.result = 12345,
	};
	return io;
}

/* Reaps until @n requests came back; checks each comes back exactly once. */
static void reap_n(struct vdisk_engine *e, struct vdisk_io *ios, unsigned n)
{
	struct vdisk_io *done[DEPTH * 2];
	uint8_t seen[DEPTH * 2] = { 0 };
	unsigned got = 0;

	assert_true(n <= ARRAY_SIZE(done));
	while (got < n) {
		int r = vdisk_engine_reap(e, done, ARRAY_SIZE(done), 1);
		assert_true(r > 0);
		for (int i = 0; i < r; i++) {
			ptrdiff_t k = done[i] - ios;
			assert_true(k >= 0 && k < (ptrdiff_t)n);
			assert_int_equal(seen[k], 0);
			seen[k] = 1;
		}
		got += (unsigned)r;
	}
	assert_int_equal(got, n);
}

/* Queues @n requests, submits them in one call and waits for all of them. */
static void run_batch(struct vdisk_engine *e, struct vdisk_io *ios, unsigned n)
{
	unsigned before = vdisk_engine_inflight(e);

	for (unsigned i = 0; i < n; i++)
		assert_int_equal(vdisk_engine_queue(e, &ios[i]), 0);
	assert_int_equal(vdisk_engine_inflight(e), before + n);
	assert_int_equal(vdisk_engine_submit(e), (int)n);
	reap_n(e, ios, n);
	assert_int_equal(vdisk_engine_inflight(e), before);
}

static void run_one(struct vdisk_engine *e, struct vdisk_io *io)
{
	run_batch(e, io, 1);
}

static void shuffle(unsigned *v, unsigned n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 7;

	for (unsigned i = 0; i < n; i++)
		v[i] = i;
	for (unsigned i = n - 1; i > 0; i--) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned j = (unsigned)(x % (i + 1));
		unsigned t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}

#define NBLK 256U

/*
 * Writes NBLK patterned 4 KiB blocks in a random order, 32 at a time (three
 * iovecs each), syncs, then reads them back in another order with a
 * pipelined loop that keeps the queue full, and with plain pread.
 */
static void test_roundtrip(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct vdisk_engine *e = open_kind(kind, DEPTH);
	uint8_t *data = malloc(NBLK * BLK), *back = malloc(NBLK * BLK);
	struct vdisk_io ios[DEPTH];
	struct iovec iov[DEPTH][3];
	unsigned order[NBLK];
	int fd = open_tmp("roundtrip", kind, O_RDWR | O_TRUNC);

	assert_non_null(data);
	assert_non_null(back);
	for (unsigned b = 0; b < NBLK; b++)
		test_fill_pattern(data + (size_t)b * BLK, BLK, 1000 + b);
	memset(back, 0xa5, NBLK * BLK);

	shuffle(order, NBLK, 1);
	for (unsigned base = 0; base < NBLK; base += DEPTH) {
		for (unsigned i = 0; i < DEPTH; i++) {
			uint8_t *p = data + (size_t)order[base + i] * BLK;
			iov[i][0] = (struct iovec){ p, 512 };
			iov[i][1] = (struct iovec){ p + 512, 1536 };
			iov[i][2] = (struct iovec){ p + 2048, 2048 };
			ios[i] = mk_rw(VDISK_IO_WRITEV, fd, iov[i], 3,
				       (uint64_t)order[base + i] * BLK, 0);
		}
		run_batch(e, ios, DEPTH);
		for (unsigned i = 0; i < DEPTH; i++)
			assert_int_equal(ios[i].result, (int)BLK);
	}

	ios[0] = mk_op(VDISK_IO_FDATASYNC, fd, 0, 0, 0);
	ios[1] = mk_op(VDISK_IO_FSYNC, fd, 0, 0, 0);
	run_batch(e, ios, 2);
	assert_int_equal(ios[0].result, 0);
	assert_int_equal(ios[1].result, 0);

	/* pipelined read-back: refill as completions arrive, -EAGAIN when full */
	struct vdisk_io rios[NBLK];
	struct iovec riov[NBLK][2];
	struct vdisk_io *done[DEPTH];
	unsigned next = 0, completed = 0;

	shuffle(order, NBLK, 2);
	while (completed < NBLK) {
		while (next < NBLK) {
			unsigned b = order[next];
			uint8_t *p = back + (size_t)b * BLK;
			riov[b][0] = (struct iovec){ p, 4000 };
			riov[b][1] = (struct iovec){ p + 4000, 96 };
			rios[b] = mk_rw(VDISK_IO_READV, fd, riov[b], 2, (uint64_t)b * BLK, 0);
			int r = vdisk_engine_queue(e, &rios[b]);
			if (r == -EAGAIN) {
				assert_int_equal(vdisk_engine_inflight(e), DEPTH);
				break;
			}
			assert_int_equal(r, 0);
			next++;
		}
		assert_true(vdisk_engine_submit(e) >= 0);
		int n = vdisk_engine_reap(e, done, DEPTH, 1);
		assert_true(n > 0);
		for (int i = 0; i < n; i++)
			assert_int_equal(done[i]->result, (int)BLK);
		completed += (unsigned)n;
	}
	assert_int_equal(vdisk_engine_inflight(e), 0);
	assert_memory_equal(back, data, NBLK * BLK);

	/* and the file itself, read without the engine */
	memset(back, 0, NBLK * BLK);
	assert_int_equal(vdisk_pread_full(fd, back, NBLK * BLK, 0), 0);
	assert_memory_equal(back, data, NBLK * BLK);

	vdisk_engine_close(e);
	close(fd);
	unlink_tmp("roundtrip", kind);
	free(data);
	free(back);
}

/* PUNCH_HOLE|KEEP_SIZE reads back as zeros, the rest is kept; mode 0 extends. */
static void test_punch_hole(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct vdisk_engine *e = open_kind(kind, DEPTH);
	const size_t len = 64 * KiB;
	uint8_t *data = malloc(len), *back = malloc(len), *expect = malloc(len);
	struct iovec iov[16];
	struct vdisk_io io;
	struct stat st;
	int fd = open_tmp("punch", kind, O_RDWR | O_TRUNC);

	test_fill_pattern(data, len, 77);
	for (unsigned i = 0; i < 16; i++)
		iov[i] = (struct iovec){ data + i * BLK, BLK };
	io = mk_rw(VDISK_IO_WRITEV, fd, iov, 16, 0, 0);
	run_one(e, &io);
	assert_int_equal(io.result, (int)len);
	io = mk_op(VDISK_IO_FDATASYNC, fd, 0, 0, 0);
	run_one(e, &io);
	assert_int_equal(io.result, 0);

	io = mk_op(VDISK_IO_FALLOCATE, fd, 16 * KiB, 32 * KiB,
		   FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	run_one(e, &io);
	if (io.result == -EOPNOTSUPP) {
		close(fd);
		skip(); /* the scratch filesystem cannot punch holes */
	}
	assert_int_equal(io.result, 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, (off_t)len);

	memcpy(expect, data, len);
	memset(expect + 16 * KiB, 0, 32 * KiB);
	memset(back, 0xee, len);
	struct iovec riov = { back, len };
	io = mk_rw(VDISK_IO_READV, fd, &riov, 1, 0, 0);
	run_one(e, &io);
	assert_int_equal(io.result, (int)len);
	assert_memory_equal(back, expect, len);

	/* plain allocation past EOF without KEEP_SIZE grows the file */
	io = mk_op(VDISK_IO_FALLOCATE, fd, len, len, 0);
	run_one(e, &io);
	assert_int_equal(io.result, 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, (off_t)(2 * len));

	vdisk_engine_close(e);
	close(fd);
	unlink_tmp("punch", kind);
	free(data);
	free(back);
	free(expect);
}

/* The depth budget counts queued and in-flight requests until they are reaped. */
static void test_eagain(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct vdisk_engine *e = open_kind(kind, 4);
	uint8_t buf[6][BLK];
	struct iovec iov[6];
	struct vdisk_io ios[6], *done[6];
	int fd = open_tmp("eagain", kind, O_RDWR | O_TRUNC);

	for (unsigned i = 0; i < 6; i++) {
		test_fill_pattern(buf[i], BLK, i);
		iov[i] = (struct iovec){ buf[i], BLK };
		ios[i] = mk_rw(VDISK_IO_WRITEV, fd, &iov[i], 1, (uint64_t)i * BLK, 0);
	}
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(vdisk_engine_queue(e, &ios[i]), 0);
	assert_int_equal(vdisk_engine_queue(e, &ios[4]), -EAGAIN);
	assert_int_equal(vdisk_engine_inflight(e), 4);
	assert_int_equal(vdisk_engine_submit(e), 4);
	assert_int_equal(vdisk_engine_submit(e), 0);               /* nothing left queued */
	assert_int_equal(vdisk_engine_queue(e, &ios[4]), -EAGAIN); /* in flight still counts */
	assert_int_equal(vdisk_engine_inflight(e), 4);

	/* @max bounds what one reap returns, @min_wait is met */
	assert_int_equal(vdisk_engine_reap(e, done, 2, 2), 2);
	assert_int_equal(vdisk_engine_inflight(e), 2);
	assert_int_equal(vdisk_engine_queue(e, &ios[4]), 0);
	assert_int_equal(vdisk_engine_queue(e, &ios[5]), 0);
	assert_int_equal(vdisk_engine_queue(e, &ios[0]), -EAGAIN);
	assert_int_equal(vdisk_engine_submit(e), 2);

	/* poll with min_wait 0 until everything is back */
	unsigned got = 2;
	while (got < 6) {
		int r = vdisk_engine_reap(e, done, 6, 0);
		assert_true(r >= 0);
		got += (unsigned)r;
	}
	assert_int_equal(got, 6);
	assert_int_equal(vdisk_engine_inflight(e), 0);
	assert_int_equal(vdisk_engine_reap(e, done, 6, 1), 0); /* nothing to wait for */
	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(ios[i].result, (int)BLK);

	uint8_t back[BLK];
	for (unsigned i = 0; i < 6; i++) {
		assert_int_equal(vdisk_pread_full(fd, back, BLK, (uint64_t)i * BLK), 0);
		assert_memory_equal(back, buf[i], BLK);
	}
	vdisk_engine_close(e);
	close(fd);
	unlink_tmp("eagain", kind);
}

/*
 * vdisk_engine_submit_reap: what is queued is submitted and waited for together; queued
 * writes land, each request comes back once, and with nothing queued it is a plain reap.
 */
static void test_submit_reap(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct vdisk_engine *e = open_kind(kind, 8);
	uint8_t buf[8][BLK], back[BLK];
	struct iovec iov[8];
	struct vdisk_io ios[8], *done[8];
	uint8_t seen[8] = { 0 };
	unsigned got = 0;
	int fd = open_tmp("subreap", kind, O_RDWR | O_TRUNC);

	for (unsigned i = 0; i < 8; i++) {
		test_fill_pattern(buf[i], BLK, 40 + i);
		iov[i] = (struct iovec){ buf[i], BLK };
		ios[i] = mk_rw(VDISK_IO_WRITEV, fd, &iov[i], 1, (uint64_t)i * BLK, 0);
	}
	assert_int_equal(vdisk_engine_submit_reap(e, done, 8, 1), 0); /* nothing at all */
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(vdisk_engine_queue(e, &ios[i]), 0);
	assert_int_equal(vdisk_engine_submit(e), 5);
	for (unsigned i = 5; i < 8; i++)
		assert_int_equal(vdisk_engine_queue(e, &ios[i]), 0);
	while (got < 8) {
		int r = vdisk_engine_submit_reap(e, done, 8, 1);

		assert_true(r > 0);
		for (int i = 0; i < r; i++) {
			ptrdiff_t k = done[i] - ios;

			assert_true(k >= 0 && k < 8);
			assert_int_equal(seen[k], 0);
			seen[k] = 1;
			assert_int_equal(done[i]->result, (int)BLK);
		}
		got += (unsigned)r;
		assert_int_equal(vdisk_engine_inflight(e), 8 - got);
	}
	assert_int_equal(vdisk_engine_submit(e), 0); /* all of it went out */
	for (unsigned i = 0; i < 8; i++) {
		assert_int_equal(vdisk_pread_full(fd, back, BLK, (uint64_t)i * BLK), 0);
		assert_memory_equal(back, buf[i], BLK);
	}
	vdisk_engine_close(e);
	close(fd);
	unlink_tmp("subreap", kind);
}

struct other_thread {
	struct vdisk_engine *e;
	int fd;
	int ret;
};

static void *use_engine(void *arg)
{
	struct other_thread *t = arg;
	uint8_t buf[BLK];
	struct iovec iov = { buf, BLK };
	struct vdisk_io io = mk_rw(VDISK_IO_READV, t->fd, &iov, 1, 0, 0), *done[1];

	t->ret = vdisk_engine_queue(t->e, &io);
	if (t->ret == 0)
		t->ret = vdisk_engine_submit_reap(t->e, done, 1, 1);
	if (t->ret == 1)
		t->ret = io.result;
	return NULL;
}

/* An engine opened by one thread is used by another (io.h: it is owned by one at a time). */
static void test_other_thread(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct other_thread t = { .e = open_kind(kind, 4), .ret = -1 };
	uint8_t buf[BLK];
	pthread_t thr;

	t.fd = open_tmp("thread", kind, O_RDWR | O_TRUNC);
	test_fill_pattern(buf, BLK, 7);
	assert_int_equal(pwrite(t.fd, buf, BLK, 0), (ssize_t)BLK);
	assert_int_equal(pthread_create(&thr, NULL, use_engine, &t), 0);
	assert_int_equal(pthread_join(thr, NULL), 0);
	assert_int_equal(t.ret, (int)BLK);
	vdisk_engine_close(t.e);
	close(t.fd);
	unlink_tmp("thread", kind);
}

/* Kernel errors come back per request as -errno; good neighbours still succeed. */
static void test_errors(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct vdisk_engine *e = open_kind(kind, DEPTH);
	int fd = open_tmp("errors", kind, O_RDWR | O_TRUNC);
	int wo = open_tmp("errors", kind, O_WRONLY);
	int ro = open_tmp("errors", kind, O_RDONLY);
	uint8_t a[BLK], b[BLK], c[BLK];
	struct iovec ia = { a, BLK }, ib = { b, BLK }, ic = { c, BLK };
	struct vdisk_io ios[8];

	test_fill_pattern(a, BLK, 1);
	test_fill_pattern(c, BLK, 3);
	ios[0] = mk_rw(VDISK_IO_WRITEV, fd, &ia, 1, 0, 0);
	ios[1] = mk_rw(VDISK_IO_READV, wo, &ib, 1, 0, 0);          /* not open for reading */
	ios[2] = mk_rw(VDISK_IO_WRITEV, ro, &ib, 1, 0, 0);         /* not open for writing */
	ios[3] = mk_op(VDISK_IO_FSYNC, -1, 0, 0, 0);               /* no such fd */
	ios[4] = mk_op(VDISK_IO_FALLOCATE, ro, 0, BLK, 0);         /* not open for writing */
	ios[5] = mk_rw(VDISK_IO_WRITEV, fd, &ic, 1, BLK, 1 << 30); /* unknown RWF_ flag */
	ios[6] = mk_rw(VDISK_IO_WRITEV, fd, &ic, 1, BLK, 0);
	ios[7] = mk_op(VDISK_IO_FDATASYNC, fd, 0, 0, 0);
	run_batch(e, ios, 8);
	assert_int_equal(ios[0].result, (int)BLK);
	assert_int_equal(ios[1].result, -EBADF);
	assert_int_equal(ios[2].result, -EBADF);
	assert_int_equal(ios[3].result, -EBADF);
	assert_int_equal(ios[4].result, -EBADF);
	assert_int_equal(ios[5].result, -EOPNOTSUPP); /* rw_flags reach the kernel */
	assert_int_equal(ios[6].result, (int)BLK);
	assert_int_equal(ios[7].result, 0);

	/* an error on the first request of a batch does not hold up the rest */
	ios[0] = mk_rw(VDISK_IO_READV, wo, &ib, 1, 0, 0);
	ios[1] = mk_rw(VDISK_IO_READV, fd, &ib, 1, 0, 0);
	run_batch(e, ios, 2);
	assert_int_equal(ios[0].result, -EBADF);
	assert_int_equal(ios[1].result, (int)BLK);
	assert_memory_equal(b, a, BLK);

	/* an unknown op is refused at queue time and costs no depth */
	ios[0] = mk_op(99, fd, 0, 0, 0);
	assert_int_equal(vdisk_engine_queue(e, &ios[0]), -EINVAL);
	assert_int_equal(vdisk_engine_inflight(e), 0);

	/* a read past EOF is short, not an error */
	ios[0] = mk_rw(VDISK_IO_READV, fd, &ib, 1, 10 * BLK, 0);
	run_one(e, &ios[0]);
	assert_int_equal(ios[0].result, 0);

	vdisk_engine_close(e);
	close(fd);
	close(wo);
	close(ro);
	unlink_tmp("errors", kind);
}

/* RWF_DSYNC (FUA) writes complete and land. */
static void test_dsync(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct vdisk_engine *e = open_kind(kind, DEPTH);
	int fd = open_tmp("dsync", kind, O_RDWR | O_TRUNC);
	uint8_t buf[4][BLK], back[BLK];
	struct iovec iov[4];
	struct vdisk_io ios[4];

	for (unsigned i = 0; i < 4; i++) {
		test_fill_pattern(buf[i], BLK, 40 + i);
		iov[i] = (struct iovec){ buf[i], BLK };
		ios[i] = mk_rw(VDISK_IO_WRITEV, fd, &iov[i], 1, (uint64_t)(3 - i) * BLK,
			       i == 3 ? RWF_DSYNC | RWF_SYNC : RWF_DSYNC);
	}
	run_batch(e, ios, 4);
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(ios[i].result, (int)BLK);
		assert_int_equal(vdisk_pread_full(fd, back, BLK, (uint64_t)(3 - i) * BLK), 0);
		assert_memory_equal(back, buf[i], BLK);
	}
	vdisk_engine_close(e);
	close(fd);
	unlink_tmp("dsync", kind);
}

/* O_DIRECT with 4 KiB-aligned buffers, offsets and lengths. */
static void test_odirect(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct vdisk_engine *e = open_kind(kind, DEPTH);
	const size_t len = (size_t)DEPTH * BLK;
	uint8_t *data = vdisk_aligned_alloc(len), *back = vdisk_aligned_alloc(len);
	struct iovec iov[DEPTH];
	struct vdisk_io ios[DEPTH];
	unsigned order[64];
	int fd = open_tmp("odirect", kind, O_RDWR | O_TRUNC | O_DIRECT);

	assert_non_null(data);
	assert_non_null(back);
	test_fill_pattern(data, len, 99);
	shuffle(order, 64, 3); /* 32 random blocks out of 64 */
	for (unsigned i = 0; i < DEPTH; i++) {
		iov[i] = (struct iovec){ data + (size_t)i * BLK, BLK };
		ios[i] = mk_rw(VDISK_IO_WRITEV, fd, &iov[i], 1, (uint64_t)order[i] * BLK, 0);
	}
	run_batch(e, ios, DEPTH);
	for (unsigned i = 0; i < DEPTH; i++)
		assert_int_equal(ios[i].result, (int)BLK);
	for (unsigned i = 0; i < DEPTH; i++) {
		iov[i] = (struct iovec){ back + (size_t)i * BLK, BLK };
		ios[i] = mk_rw(VDISK_IO_READV, fd, &iov[i], 1, (uint64_t)order[i] * BLK, 0);
	}
	run_batch(e, ios, DEPTH);
	for (unsigned i = 0; i < DEPTH; i++)
		assert_int_equal(ios[i].result, (int)BLK);
	assert_memory_equal(back, data, len);

	/* the blocks not written read as zeros through the page cache too */
	int bfd = open_tmp("odirect", kind, O_RDONLY);
	uint8_t blk[BLK];
	for (unsigned i = DEPTH; i < 64; i++) {
		assert_int_equal(vdisk_pread_zfill(bfd, blk, BLK, (uint64_t)order[i] * BLK), 0);
		assert_true(vdisk_is_zero(blk, BLK));
	}
	for (unsigned i = 0; i < DEPTH; i++) {
		assert_int_equal(vdisk_pread_full(bfd, blk, BLK, (uint64_t)order[i] * BLK), 0);
		assert_memory_equal(blk, data + (size_t)i * BLK, BLK);
	}
	close(bfd);
	vdisk_engine_close(e);
	close(fd);
	unlink_tmp("odirect", kind);
	free(data);
	free(back);
}

/* Close submits what is queued and waits for what is in flight. */
static void test_close_drains(void **state)
{
	enum vdisk_engine_kind kind = state_kind(state);
	struct vdisk_engine *e = open_kind(kind, DEPTH);
	const size_t len = (size_t)DEPTH * BLK;
	uint8_t *data = malloc(len), *back = malloc(len);
	struct iovec iov[DEPTH];
	struct vdisk_io ios[DEPTH];
	int fd = open_tmp("drain", kind, O_RDWR | O_TRUNC);

	test_fill_pattern(data, len, 5);
	for (unsigned i = 0; i < DEPTH; i++) {
		iov[i] = (struct iovec){ data + (size_t)i * BLK, BLK };
		ios[i] = mk_rw(VDISK_IO_WRITEV, fd, &iov[i], 1, (uint64_t)i * BLK, 0);
		assert_int_equal(vdisk_engine_queue(e, &ios[i]), 0);
		if (i == DEPTH / 2)
			assert_int_equal(vdisk_engine_submit(e), (int)(DEPTH / 2 + 1));
	}
	vdisk_engine_close(e); /* half in flight, half only queued */
	for (unsigned i = 0; i < DEPTH; i++)
		assert_int_equal(ios[i].result, (int)BLK);
	assert_int_equal(vdisk_pread_full(fd, back, len, 0), 0);
	assert_memory_equal(back, data, len);
	close(fd);
	unlink_tmp("drain", kind);
	free(data);
	free(back);
}

static void test_kind_parse(void **state)
{
	static const struct {
		const char *s;
		int r;
		enum vdisk_engine_kind kind;
	} cases[] = {
		{ "io_uring", 0, VDISK_ENGINE_IO_URING },
		{ "uring", 0, VDISK_ENGINE_IO_URING },
		{ "libaio", 0, VDISK_ENGINE_LIBAIO },
		{ "aio", 0, VDISK_ENGINE_LIBAIO },
		{ "auto", 0, VDISK_ENGINE_AUTO },
		{ "", -EINVAL, 0 },
		{ "iouring", -EINVAL, 0 },
		{ "libaio ", -EINVAL, 0 },
		{ "posix", -EINVAL, 0 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		enum vdisk_engine_kind k = (enum vdisk_engine_kind)77;
		assert_int_equal(vdisk_engine_kind_parse(cases[i].s, &k), cases[i].r);
		assert_int_equal(k, cases[i].r == 0 ? cases[i].kind : (enum vdisk_engine_kind)77);
	}
	assert_int_equal(vdisk_engine_kind_parse(NULL, &(enum vdisk_engine_kind){ 0 }), -EINVAL);
	vdisk_engine_close(NULL);
}

static void test_bad_depth(void **state)
{
	struct vdisk_err err = { 0 };
	struct vdisk_engine *e = NULL;

	assert_int_equal(vdisk_engine_open(VDISK_ENGINE_LIBAIO, 0, &e, &err), -EINVAL);
	assert_int_equal(err.code, -EINVAL);
	assert_non_null(strstr(err.msg, "depth 0"));
	assert_null(e);
	vdisk_err_clear(&err);
	assert_int_equal(vdisk_engine_open(VDISK_ENGINE_AUTO, 1U << 20, &e, &err), -EINVAL);
	assert_null(e);
}

static bool uring_available(void)
{
	struct vdisk_engine *e = NULL;

	if (vdisk_engine_open(VDISK_ENGINE_IO_URING, 4, &e, NULL) < 0)
		return false;
	vdisk_engine_close(e);
	return true;
}

#define NO_KIND ((enum vdisk_engine_kind)99)

static enum vdisk_engine_kind auto_kind(int expect_r, const char *msg_part)
{
	struct vdisk_err err = { 0 };
	struct vdisk_engine *e = NULL;
	enum vdisk_engine_kind k;
	int r = vdisk_engine_open(VDISK_ENGINE_AUTO, 8, &e, &err);

	assert_int_equal(r, expect_r);
	if (msg_part)
		assert_non_null(strstr(err.msg, msg_part));
	if (r < 0)
		return NO_KIND;
	assert_int_equal(err.code, 0);
	k = vdisk_engine_kind(e);
	vdisk_engine_close(e);
	return k;
}

/* AUTO picks io_uring; VDISK_IO_URING_DISABLE and VDISK_IO_ENGINE steer it. */
static void test_auto_select(void **state)
{
	struct vdisk_err err = { 0 };
	struct vdisk_engine *e = NULL;
	bool have_uring;

	unsetenv("VDISK_IO_ENGINE");
	unsetenv("VDISK_IO_URING_DISABLE");
	have_uring = uring_available();
	assert_int_equal(auto_kind(0, NULL),
			 have_uring ? VDISK_ENGINE_IO_URING : VDISK_ENGINE_LIBAIO);

	assert_int_equal(setenv("VDISK_IO_URING_DISABLE", "1", 1), 0);
	assert_int_equal(auto_kind(0, NULL), VDISK_ENGINE_LIBAIO);
	assert_int_equal(vdisk_engine_open(VDISK_ENGINE_IO_URING, 8, &e, &err), -ENOSYS);
	assert_null(e);
	assert_int_equal(err.code, -ENOSYS);
	assert_non_null(strstr(err.msg, "VDISK_IO_URING_DISABLE"));
	assert_int_equal(setenv("VDISK_IO_URING_DISABLE", "0", 1), 0);
	assert_int_equal(uring_available(), have_uring);
	unsetenv("VDISK_IO_URING_DISABLE");

	assert_int_equal(setenv("VDISK_IO_ENGINE", "libaio", 1), 0);
	assert_int_equal(auto_kind(0, NULL), VDISK_ENGINE_LIBAIO);
	assert_int_equal(setenv("VDISK_IO_ENGINE", "aio", 1), 0);
	assert_int_equal(auto_kind(0, NULL), VDISK_ENGINE_LIBAIO);
	if (have_uring) {
		assert_int_equal(setenv("VDISK_IO_ENGINE", "io_uring", 1), 0);
		assert_int_equal(auto_kind(0, NULL), VDISK_ENGINE_IO_URING);
		/* the variable only overrides AUTO, not an explicit kind */
		assert_int_equal(setenv("VDISK_IO_ENGINE", "libaio", 1), 0);
		assert_int_equal(vdisk_engine_open(VDISK_ENGINE_IO_URING, 8, &e, NULL), 0);
		assert_int_equal(vdisk_engine_kind(e), VDISK_ENGINE_IO_URING);
		vdisk_engine_close(e);
	}
	assert_int_equal(setenv("VDISK_IO_ENGINE", "bogus", 1), 0);
	auto_kind(-EINVAL, "VDISK_IO_ENGINE=bogus");
	unsetenv("VDISK_IO_ENGINE");
}

/* A real io_uring setup failure (no fd left for the ring) falls back to libaio. */
static void test_fallback_on_failure(void **state)
{
	struct vdisk_err err = { 0 };
	struct vdisk_engine *e = NULL;
	struct rlimit old, lim;
	int lowest, r_uring, r_auto;
	enum vdisk_engine_kind k = VDISK_ENGINE_AUTO;

	unsetenv("VDISK_IO_ENGINE");
	unsetenv("VDISK_IO_URING_DISABLE");
	if (!uring_available())
		skip();
	lowest = open("/dev/null", O_RDONLY | O_CLOEXEC); /* the lowest free fd */
	assert_true(lowest >= 0);
	close(lowest);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)lowest; /* every fd below is in use: no new fd */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
	r_uring = vdisk_engine_open(VDISK_ENGINE_IO_URING, 32, &e, &err);
	r_auto = vdisk_engine_open(VDISK_ENGINE_AUTO, 32, &e, NULL);
	if (r_auto == 0)
		k = vdisk_engine_kind(e);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);

	assert_int_equal(r_uring, -EMFILE);
	assert_int_equal(err.code, -EMFILE);
	assert_string_equal(err.msg, "io_uring_queue_init(depth 32): Too many open files");
	assert_int_equal(r_auto, 0);
	assert_int_equal(k, VDISK_ENGINE_LIBAIO);
	vdisk_engine_close(e);
}

/* clang-format off */
#define ON_URING(f) { #f "/io_uring", f, NULL, NULL, &kind_uring }
#define ON_AIO(f)   { #f "/libaio", f, NULL, NULL, &kind_aio }
/* clang-format on */

int main(void)
{
	const struct CMUnitTest tests[] = {
		ON_URING(test_roundtrip),
		ON_AIO(test_roundtrip),
		ON_URING(test_punch_hole),
		ON_AIO(test_punch_hole),
		ON_URING(test_eagain),
		ON_AIO(test_eagain),
		ON_URING(test_errors),
		ON_AIO(test_errors),
		ON_URING(test_dsync),
		ON_AIO(test_dsync),
		ON_URING(test_odirect),
		ON_AIO(test_odirect),
		ON_URING(test_close_drains),
		ON_AIO(test_close_drains),
		ON_URING(test_submit_reap),
		ON_AIO(test_submit_reap),
		ON_URING(test_other_thread),
		ON_AIO(test_other_thread),
		cmocka_unit_test(test_kind_parse),
		cmocka_unit_test(test_bad_depth),
		cmocka_unit_test(test_auto_select),
		cmocka_unit_test(test_fallback_on_failure),
	};

	return cmocka_run_group_tests_name("io", tests, NULL, NULL);
}
