/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit test of vsp-storage's request executor (vsp-storage/queue.c) on both
 * I/O engines, with an engine far shallower than the requests in flight so
 * parking and continuation run: writes then a FLUSH (which must not
 * complete before every earlier write), reads back; guest-like buffers that
 * O_DIRECT cannot take (bounce path) and unaligned offsets
 * (read-modify-write); a VHDX with 1 MiB blocks where one request spans
 * three blocks and scattered iovecs; range and read-only errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/vhdx.h>

#include "helpers.h"

#include "../../vsp-storage/config.c"
#include "../../vsp-storage/queue.c"

int vsp_log_max = VSP_LOG_WARN;
atomic_bool vsp_stopping;

void vsp_log(int level, const char *ctx, const char *fmt, ...)
{
	va_list ap;

	if (level > vsp_log_max)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "[%s] ", ctx ? ctx : "");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

static int failures;
#define CHECK(cond, ...)                                          \
	do {                                                      \
		if (!(cond)) {                                    \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);             \
			fprintf(stderr, "\n");                    \
			failures++;                               \
		}                                                 \
	} while (0)

#define NREQ 32
#define BS (64 * 1024)

struct treq {
	struct vsp_req r;
	struct iovec iov[4];
	int done;
	int order;
};

static int completed, writes_done, flush_needs = -1;

static void on_done(struct vsp_queue *q, struct vsp_req *r)
{
	struct treq *t = (struct treq *)r;

	t->done = 1;
	t->order = ++completed;
	if (r->op == VSP_OP_WRITE)
		writes_done++;
	if (r->op == VSP_OP_FLUSH && flush_needs >= 0)
		CHECK(writes_done == flush_needs, "flush completed after %d of %d earlier writes",
		      writes_done, flush_needs);
	(void)q;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static void wait_all(struct vsp_queue *q)
{
	vsp_queue_drain(q);
}

static void start(struct vsp_queue *q, struct treq *t, uint8_t op, uint64_t off, void *buf,
		  size_t len)
{
	memset(t, 0, sizeof(*t));
	t->r.op = op;
	t->r.offset = off;
	t->r.length = len;
	t->iov[0].iov_base = buf;
	t->iov[0].iov_len = len;
	t->r.iov = len ? t->iov : NULL;
	t->r.iovcnt = len ? 1 : 0;
	vsp_queue_start(q, &t->r);
	vsp_queue_submit(q);
}

static void export_init(struct vsp_export *e, const char *path, bool readonly)
{
	struct vdisk_err err = { 0 };
	int r;

	memset(e, 0, sizeof(*e));
	vsp_export_conf_init(&e->conf);
	snprintf(e->conf.name, sizeof(e->conf.name), "t");
	e->conf.readonly = readonly;
	r = vdisk_disk_open(path, VDISK_FORMAT_AUTO, readonly ? VDISK_OPEN_RDONLY : 0, &e->disk, &err);
	if (r < 0) {
		fprintf(stderr, "open %s: %s\n", path, err.msg);
		exit(1);
	}
	e->size = vdisk_disk_size(e->disk);
	e->lsec = vdisk_disk_logical_sector(e->disk);
	e->raw = vdisk_disk_format(e->disk) == VDISK_FORMAT_RAW;
	e->raw_fd = e->raw ? open(path, (readonly ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC) : -1;
	e->raw_file = e->raw;
	e->mem_align = 4096;
	e->off_align = 4096;
}

static void basic(const char *dir, enum vdisk_engine_kind kind)
{
	char path[512];
	struct vsp_export e;
	struct vsp_queue q;
	struct treq *t = calloc(2 * NREQ + 8, sizeof(*t));
	uint8_t *buf, *chk;
	int fd;

	snprintf(path, sizeof(path), "%s/raw.img", dir);
	fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
	if (fd < 0 || ftruncate(fd, 16 << 20) < 0)
		exit(1);
	close(fd);
	export_init(&e, path, false);
	e.conf.engine = kind;
	CHECK(vsp_queue_init(&q, &e, 4, on_done, NULL, "t") == 0, "queue init");
	buf = aligned_alloc(4096, (size_t)NREQ * BS + 8192);
	chk = malloc(BS + 8192);
	completed = writes_done = 0;
	/* 32 writes through a depth-4 engine, then a flush, then reads */
	for (int i = 0; i < NREQ; i++) {
		fill(buf + (size_t)i * BS, BS, (unsigned)i);
		start(&q, &t[i], VSP_OP_WRITE, (uint64_t)i * BS * 3, buf + (size_t)i * BS, BS);
	}
	flush_needs = NREQ;
	start(&q, &t[NREQ], VSP_OP_FLUSH, 0, NULL, 0);
	wait_all(&q);
	flush_needs = -1;
	CHECK(t[NREQ].done && t[NREQ].r.status == 0, "flush status %d", t[NREQ].r.status);
	memset(buf, 0, (size_t)NREQ * BS);
	for (int i = 0; i < NREQ; i++) {
		start(&q, &t[NREQ + 1 + (i % 4)], VSP_OP_READ, (uint64_t)i * BS * 3,
		      buf + (size_t)i * BS, BS);
		if (i % 4 == 3)
			wait_all(&q); /* four slots in flight at a time */
	}
	for (int i = 0; i < NREQ; i++) {
		fill(chk, BS, (unsigned)i);
		CHECK(memcmp(chk, buf + (size_t)i * BS, BS) == 0, "read back of write %d", i);
	}
	/* a buffer O_DIRECT cannot take: bounce path, both ways */
	fill(buf + 1, BS, 99);
	start(&q, &t[0], VSP_OP_WRITE, 8 << 20, buf + 1, BS);
	wait_all(&q);
	CHECK(t[0].r.status == 0, "misaligned write: %d", t[0].r.status);
	memset(chk, 0, BS + 8192);
	start(&q, &t[0], VSP_OP_READ, 8 << 20, chk + 3, BS);
	wait_all(&q);
	fill(buf, BS, 99);
	CHECK(t[0].r.status == 0 && memcmp(chk + 3, buf, BS) == 0, "misaligned read back");
	/* unaligned offset and length: read-modify-write keeps the neighbours */
	fill(buf, 3000, 7);
	start(&q, &t[0], VSP_OP_WRITE, (8 << 20) + 1000, buf, 3000);
	wait_all(&q);
	CHECK(t[0].r.status == 0, "unaligned write: %d", t[0].r.status);
	start(&q, &t[0], VSP_OP_READ, 8 << 20, chk, 8192);
	wait_all(&q);
	{
		uint8_t want[8192];
		fill(want, BS > 8192 ? 8192 : BS, 99);
		fill(want + 1000, 3000, 7);
		CHECK(memcmp(chk, want, 8192) == 0, "read-modify-write result");
	}
	/* discard and write-zeroes on a raw file: holes punched through the engine */
	for (int op = 0; op < 2; op++) {
		uint64_t at = (uint64_t)(op * 2 + 1) * BS * 3; /* writes 1 and 3 of the first pass */
		struct stat st0, st1;

		CHECK(fstat(e.raw_fd, &st0) == 0, "fstat");
		memset(&t[0], 0, sizeof(t[0]));
		t[0].r.op = op ? VSP_OP_WRITE_ZEROES : VSP_OP_DISCARD;
		t[0].r.offset = at;
		t[0].r.length = BS;
		vsp_queue_start(&q, &t[0].r);
		vsp_queue_submit(&q);
		CHECK(!t[0].done && t[0].r.state == RS_RUNNING, "raw %s did not go through the engine",
		      op ? "write-zeroes" : "discard");
		wait_all(&q);
		CHECK(t[0].done && t[0].r.status == 0, "raw discard/zeroes status %d", t[0].r.status);
		CHECK(fstat(e.raw_fd, &st1) == 0 && st1.st_blocks < st0.st_blocks &&
			      st1.st_size == st0.st_size,
		      "no hole punched (blocks %lld -> %lld)", (long long)st0.st_blocks,
		      (long long)st1.st_blocks);
		memset(chk, 0xee, BS);
		start(&q, &t[0], VSP_OP_READ, at, chk, BS);
		wait_all(&q);
		for (int i = 0; i < BS; i++)
			if (chk[i]) {
				CHECK(0, "byte %d of a discarded range reads %#x", i, chk[i]);
				break;
			}
		/* the neighbours are intact */
		start(&q, &t[0], VSP_OP_READ, at + BS * 3, chk, BS);
		wait_all(&q);
		fill(buf, BS, (unsigned)(op * 2 + 2));
		CHECK(t[0].r.status == 0 && memcmp(chk, buf, BS) == 0, "write after the hole");
	}
	/* a raw export's flush is a data sync through the engine: in flight after start() */
	start(&q, &t[0], VSP_OP_FLUSH, 0, NULL, 0);
	CHECK(!t[0].done && t[0].r.state == RS_RUNNING, "raw flush did not go through the engine");
	wait_all(&q);
	CHECK(t[0].done && t[0].r.status == 0, "async flush status %d", t[0].r.status);
	/* a failed data sync fails that flush and every later one, even if a retry would pass */
	{
		int pfd[2], keep = e.raw_fd;
		CHECK(pipe(pfd) == 0, "pipe");
		e.raw_fd = pfd[0]; /* fdatasync of a pipe: EINVAL */
		start(&q, &t[0], VSP_OP_FLUSH, 0, NULL, 0);
		wait_all(&q);
		CHECK(t[0].r.status == -EINVAL, "flush with a failing sync: %d", t[0].r.status);
		e.raw_fd = keep;
		close(pfd[0]);
		close(pfd[1]);
		start(&q, &t[0], VSP_OP_FLUSH, 0, NULL, 0);
		wait_all(&q);
		CHECK(t[0].r.status == -EINVAL, "flush after a failed sync: %d", t[0].r.status);
		atomic_store(&e.flush_err, 0);
	}
	/* errors */
	start(&q, &t[0], VSP_OP_READ, (16 << 20) - 4096, buf, 8192);
	wait_all(&q);
	CHECK(t[0].r.status == -EINVAL, "read past the end: %d", t[0].r.status);
	CHECK(q.inflight_reqs == 0 && q.inflight_writes == 0, "queue idle at the end");
	vsp_queue_fini(&q);
	vdisk_disk_close(e.disk, NULL);
	close(e.raw_fd);
	/* read-only */
	export_init(&e, path, true);
	e.conf.engine = kind;
	vsp_queue_init(&q, &e, 4, on_done, NULL, "t");
	start(&q, &t[0], VSP_OP_WRITE, 0, buf, 4096);
	wait_all(&q);
	CHECK(t[0].r.status == -EROFS, "write to a read-only export: %d", t[0].r.status);
	vsp_queue_fini(&q);
	vdisk_disk_close(e.disk, NULL);
	close(e.raw_fd);
	free(buf);
	free(chk);
	free(t);
}

/* A VHDX with 1 MiB blocks: one request over three blocks, scattered iovecs. */
static void vhdx(const char *dir, enum vdisk_engine_kind kind)
{
	char path[512];
	struct vhdx_create_opts o;
	struct vsp_export e;
	struct vsp_queue q;
	struct treq t;
	uint8_t *a = aligned_alloc(4096, 3 << 20), *b = aligned_alloc(4096, 3 << 20);
	const size_t cut[3] = { 4096, (1 << 20) + 8192, (3 << 20) - 4096 - (1 << 20) - 8192 };
	uint64_t off = (1 << 20) - 65536;

	snprintf(path, sizeof(path), "%s/img.vhdx", dir);
	vhdx_create_opts_init(&o, sizeof(o));
	o.disk_size_bytes = 64 << 20;
	o.block_size_bytes = 1 << 20;
	o.overwrite = true;
	if (vhdx_create(path, &o, NULL) < 0)
		exit(1);
	export_init(&e, path, false);
	e.conf.engine = kind;
	vsp_queue_init(&q, &e, 2, on_done, NULL, "t");
	fill(a, 3 << 20, 5);
	memset(&t, 0, sizeof(t));
	t.r.op = VSP_OP_WRITE;
	t.r.offset = off;
	t.r.length = 3 << 20;
	for (int i = 0, pos = 0; i < 3; pos += (int)cut[i], i++) {
		t.iov[i].iov_base = a + pos;
		t.iov[i].iov_len = cut[i];
	}
	t.r.iov = t.iov;
	t.r.iovcnt = 3;
	vsp_queue_start(&q, &t.r);
	wait_all(&q);
	CHECK(t.r.status == 0, "vhdx write over three blocks: %d", t.r.status);
	{
		int fd = -1;
		/* allocating writes: the flush commits metadata, synchronously */
		CHECK(vdisk_disk_flush_fd(e.disk, &fd) == 0, "metadata waiting, yet a data sync would do");
		start(&q, &t, VSP_OP_FLUSH, 0, NULL, 0);
		CHECK(t.done && t.r.status == 0, "vhdx commit flush: done %d, status %d", t.done,
		      t.r.status);
		CHECK(vdisk_disk_flush_fd(e.disk, &fd) == 1 && fd >= 0, "nothing left to commit");
		/* an overwrite allocates nothing: its flush is a data sync through the engine */
		start(&q, &t, VSP_OP_WRITE, off, a, 1 << 20);
		wait_all(&q);
		CHECK(t.r.status == 0, "vhdx overwrite: %d", t.r.status);
		start(&q, &t, VSP_OP_FLUSH, 0, NULL, 0);
		CHECK(!t.done && t.r.state == RS_RUNNING, "vhdx data-only flush did not go async");
		wait_all(&q);
		CHECK(t.r.status == 0, "vhdx async flush: %d", t.r.status);
	}
	memset(b, 0, 3 << 20);
	start(&q, &t, VSP_OP_READ, off - 4096, b, 3 << 20);
	wait_all(&q);
	CHECK(t.r.status == 0, "vhdx read: %d", t.r.status);
	CHECK(memcmp(b + 4096, a, (3 << 20) - 4096) == 0, "vhdx read back");
	for (int i = 0; i < 4096; i++)
		if (b[i]) {
			CHECK(0, "unwritten range before the write is not zero");
			break;
		}
	vsp_queue_fini(&q);
	CHECK(vdisk_disk_pread(e.disk, b, 3 << 20, off) == 0 && memcmp(a, b, 3 << 20) == 0,
	      "library read of what the queue wrote");
	vdisk_disk_close(e.disk, NULL);
	free(a);
	free(b);
}

int main(void)
{
	static const enum vdisk_engine_kind kinds[] = { VDISK_ENGINE_IO_URING, VDISK_ENGINE_LIBAIO };
	/* the unit tests' scratch folder (VDISK_TEST_TMPDIR: in the build tree, a real file system) */
	char dir[512];

	snprintf(dir, sizeof(dir), "%s", test_tmp_path("vsp-queue"));
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "mkdir %s: %s\n", dir, strerror(errno));
		return 1;
	}
	for (unsigned k = 0; k < 2; k++) {
		basic(dir, kinds[k]);
		vhdx(dir, kinds[k]);
	}
	if (test_system("rm -rf '%s'", dir) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("vsp queue: all checks passed (io_uring and libaio)\n");
	return 0;
}
