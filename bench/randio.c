/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * randio: random-I/O benchmark of the vdisk data path. Opens a VHDX image
 * through lib/vhdx (O_DIRECT by default) and keeps a fixed number of
 * requests in flight for a fixed time: each request picks a random aligned
 * offset, translates it (vhdx_translate for reads, vhdx_allocate for writes,
 * reported with vhdx_write_done on completion) and queues a readv/writev of
 * the resulting extent on a vdisk I/O engine;
 * submits and reaps are batched. Requests, iovecs and buffers are allocated
 * once before the run, so the loop itself never calls malloc. Prints IOPS,
 * bandwidth and p50/p99 completion latency, plus one "key=value" line for
 * scripts. --raw runs the same loop on a raw file (offset = file offset) to
 * separate the cost of translation from that of the engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/io.h>
#include <vdisk/vhdx.h>

#define MAX_DEPTH   1024
#define MAX_EXTENTS 4
#define LAT_BUCKETS 100000 /* 1 us each: 0 .. 100 ms, the last one holds the rest */

struct slot {
	struct vdisk_io io;
	struct iovec iov;
	uint64_t voff; /* virtual offset of a write, for vhdx_write_done */
	uint64_t start_ns;
};

struct bench {
	/* options */
	const char *path;
	bool write;
	bool raw;
	bool direct;
	unsigned depth;
	uint32_t bs;
	double seconds;
	uint64_t seed;
	enum vdisk_engine_kind kind;

	/* target */
	struct vhdx_image *img;
	int raw_fd;
	int data_fd; /* >= 0: our own O_DIRECT fd for the top image's data */
	uint64_t disk_bytes;

	/* run state, all preallocated */
	struct vdisk_engine *eng;
	struct slot *slots;
	struct slot **free_slots;
	unsigned nfree;
	struct vdisk_io **done;
	uint8_t *bufs;
	uint64_t rng;
	uint64_t lat_us[LAT_BUCKETS];
	uint64_t ops;
	uint64_t zero_ops; /* reads answered without I/O (unallocated/zero extents) */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: cheap and good enough to spread offsets. */
static uint64_t next_rand(struct bench *b)
{
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 0x2545F4914F6CDD1DULL;
}

static void record(struct bench *b, uint64_t start_ns, uint64_t end_ns)
{
	uint64_t us = (end_ns - start_ns) / 1000;

	b->lat_us[us < LAT_BUCKETS ? us : LAT_BUCKETS - 1]++;
	b->ops++;
}

static double percentile_us(const struct bench *b, double p)
{
	uint64_t want = (uint64_t)(p * (double)b->ops), seen = 0;

	for (unsigned i = 0; i < LAT_BUCKETS; i++) {
		seen += b->lat_us[i];
		if (seen > want)
			return i;
	}
	return LAT_BUCKETS - 1;
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: randio [OPTIONS] FILE\n"
		"  -w, --write          random writes (vhdx_allocate) instead of reads\n"
		"  -t, --time SECONDS   run time (default 10)\n"
		"  -d, --depth N        requests in flight (default 32)\n"
		"  -b, --bs BYTES       request size (default 4096; must divide the block size)\n"
		"  -e, --engine NAME    io_uring, libaio or auto (default io_uring)\n"
		"      --buffered       no O_DIRECT\n"
		"      --raw            FILE is a raw file: no VHDX translation\n"
		"      --seed N         random seed\n");
}

static int parse_args(struct bench *b, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "write", no_argument, NULL, 'w' },
		{ "time", required_argument, NULL, 't' },
		{ "depth", required_argument, NULL, 'd' },
		{ "bs", required_argument, NULL, 'b' },
		{ "engine", required_argument, NULL, 'e' },
		{ "buffered", no_argument, NULL, 'B' },
		{ "raw", no_argument, NULL, 'R' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "wt:d:b:e:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'w':
			b->write = true;
			break;
		case 't':
			b->seconds = strtod(optarg, NULL);
			break;
		case 'd':
			b->depth = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'b':
			b->bs = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'e':
			if (vdisk_engine_kind_parse(optarg, &b->kind) < 0) {
				fprintf(stderr, "randio: unknown engine '%s'\n", optarg);
				return -1;
			}
			break;
		case 'B':
			b->direct = false;
			break;
		case 'R':
			b->raw = true;
			break;
		case 'S':
			b->seed = strtoull(optarg, NULL, 0);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return -1;
	}
	b->path = argv[optind];
	if (b->depth == 0 || b->depth > MAX_DEPTH || b->bs == 0 || b->bs % 512 || b->seconds <= 0) {
		fprintf(stderr, "randio: depth must be 1..%d, bs a multiple of 512, time > 0\n",
			MAX_DEPTH);
		return -1;
	}
	return 0;
}

static int open_target(struct bench *b)
{
	struct vdisk_err err = { 0 };
	struct vhdx_open_opts o;
	struct stat st;
	int r;

	if (b->raw) {
		b->raw_fd =
		    open(b->path, (b->write ? O_RDWR : O_RDONLY) | (b->direct ? O_DIRECT : 0));
		if (b->raw_fd < 0 || fstat(b->raw_fd, &st) < 0) {
			fprintf(stderr, "randio: %s: %s\n", b->path, strerror(errno));
			return -1;
		}
		b->disk_bytes = (uint64_t)st.st_size;
	} else {
		vhdx_open_opts_init(&o, sizeof(o));
		o.flags = (b->write ? 0 : VHDX_OPEN_RDONLY) | (b->direct ? VHDX_OPEN_DIRECT : 0);
		r = vhdx_open(b->path, &o, &b->img, &err);
		if (r == -EINVAL && b->direct) {
			/*
			 * Work around a library whose metadata reads do not
			 * suit O_DIRECT: open buffered and send the data I/O of
			 * the top image through an O_DIRECT fd of our own. The
			 * data path measured is the same.
			 */
			fprintf(stderr,
				"randio: warning: VHDX_OPEN_DIRECT failed (%s); using a separate "
				"O_DIRECT fd for the data\n",
				err.msg);
			vdisk_err_clear(&err);
			o.flags &= ~(unsigned)VHDX_OPEN_DIRECT;
			r = vhdx_open(b->path, &o, &b->img, &err);
			b->data_fd = open(b->path, (b->write ? O_RDWR : O_RDONLY) | O_DIRECT);
			if (r == 0 && b->data_fd < 0)
				r = vdisk_err_set(&err, -errno, "%s: %s", b->path, strerror(errno));
		}
		if (r < 0) {
			fprintf(stderr, "randio: %s\n", err.msg[0] ? err.msg : strerror(-r));
			return -1;
		}
		b->disk_bytes = vhdx_disk_size(b->img);
		if (vhdx_block_size(b->img) % b->bs) {
			fprintf(stderr, "randio: bs %u does not divide the block size %u\n", b->bs,
				vhdx_block_size(b->img));
			return -1;
		}
	}
	if (b->disk_bytes < b->bs) {
		fprintf(stderr, "randio: %s is smaller than one request\n", b->path);
		return -1;
	}
	return 0;
}

static int setup(struct bench *b)
{
	struct vdisk_err err = { 0 };
	int r;

	r = vdisk_engine_open(b->kind, b->depth, &b->eng, &err);
	if (r < 0) {
		fprintf(stderr, "randio: engine: %s\n", err.msg[0] ? err.msg : strerror(-r));
		return -1;
	}
	b->slots = calloc(b->depth, sizeof(*b->slots));
	b->free_slots = calloc(b->depth, sizeof(*b->free_slots));
	b->done = calloc(b->depth, sizeof(*b->done));
	if (!b->slots || !b->free_slots || !b->done ||
	    posix_memalign((void **)&b->bufs, 4096, (size_t)b->depth * b->bs)) {
		fprintf(stderr, "randio: out of memory\n");
		return -1;
	}
	/* Writes carry non-zero data so no layer can take a zero shortcut. */
	for (size_t i = 0; i < (size_t)b->depth * b->bs; i++)
		b->bufs[i] = (uint8_t)(i * 31 + 7);
	for (unsigned i = 0; i < b->depth; i++) {
		struct slot *s = &b->slots[i];

		s->iov.iov_base = b->bufs + (size_t)i * b->bs;
		s->iov.iov_len = b->bs;
		s->io.iov = &s->iov;
		s->io.iovcnt = 1;
		s->io.op = b->write ? VDISK_IO_WRITEV : VDISK_IO_READV;
		s->io.priv = s;
		b->free_slots[b->nfree++] = s;
	}
	b->rng = b->seed ? b->seed : 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
	return 0;
}

/*
 * Maps one request. Returns 1 when it must be queued, 0 when it completed
 * without I/O (a read of a zero/unallocated range), -errno on failure.
 */
static int map_request(struct bench *b, struct slot *s)
{
	uint64_t off = next_rand(b) % (b->disk_bytes / b->bs) * b->bs;
	struct vdisk_extent ext[MAX_EXTENTS];
	int n;

	if (b->raw) {
		s->io.fd = b->raw_fd;
		s->io.offset = off;
		return 1;
	}
	if (b->write)
		n = vhdx_allocate(b->img, off, b->bs, ext, MAX_EXTENTS);
	else
		n = vhdx_translate(b->img, off, b->bs, ext, MAX_EXTENTS);
	if (n < 0)
		return n;
	/* bs divides the block size and offsets are bs-aligned: one extent covers it all. */
	if (n != 1 || ext[0].length != b->bs)
		return -EXDEV;
	if (ext[0].type != VDISK_EXTENT_DATA) {
		memset(s->iov.iov_base, 0, b->bs);
		return 0;
	}
	s->io.fd = b->data_fd >= 0 && ext[0].layer == 0 ? b->data_fd : ext[0].fd;
	s->io.offset = ext[0].file_offset;
	s->voff = off;
	return 1;
}

/* Fills every free slot; each slot is prepared at most once per call. */
static int fill(struct bench *b)
{
	unsigned n = b->nfree, queued = 0;

	/*
	 * Slots answered without I/O go back to the front of the free list,
	 * at an index already consumed by this pass: each is used once per call.
	 */
	b->nfree = 0;
	for (unsigned i = 0; i < n; i++) {
		struct slot *s = b->free_slots[i];
		int r;

		s->start_ns = now_ns();
		r = map_request(b, s);
		if (r < 0) {
			fprintf(stderr, "randio: %s failed: %s\n",
				b->write ? "vhdx_allocate" : "vhdx_translate", strerror(-r));
			return r;
		}
		if (r == 0) {
			record(b, s->start_ns, now_ns());
			b->zero_ops++;
			b->free_slots[b->nfree++] = s;
			continue;
		}
		r = vdisk_engine_queue(b->eng, &s->io);
		if (r < 0) {
			fprintf(stderr, "randio: queue: %s\n", strerror(-r));
			return r;
		}
		queued++;
	}
	if (queued) {
		int r = vdisk_engine_submit(b->eng);
		if (r < 0) {
			fprintf(stderr, "randio: submit: %s\n", strerror(-r));
			return r;
		}
	}
	return 0;
}

/* Reaps at least @min_wait completions. @count: record latencies. */
static int reap(struct bench *b, unsigned min_wait, bool count)
{
	int n = vdisk_engine_reap(b->eng, b->done, b->depth, min_wait);
	uint64_t t;

	if (n < 0) {
		fprintf(stderr, "randio: reap: %s\n", strerror(-n));
		return n;
	}
	t = now_ns();
	for (int i = 0; i < n; i++) {
		struct slot *s = b->done[i]->priv;

		if (s->io.result != (int)b->bs) {
			fprintf(stderr, "randio: I/O at file offset %" PRIu64 ": %s\n",
				s->io.offset,
				s->io.result < 0 ? strerror(-s->io.result) : "short transfer");
			return -EIO;
		}
		if (b->write && b->img) {
			/* as every writer must: a child marks the sectors present now */
			int r = vhdx_write_done(b->img, s->voff, b->bs);
			if (r < 0) {
				fprintf(stderr, "randio: vhdx_write_done: %s\n", strerror(-r));
				return r;
			}
		}
		if (count)
			record(b, s->start_ns, t);
		b->free_slots[b->nfree++] = s;
	}
	return n;
}

static int run(struct bench *b, double *ret_elapsed)
{
	uint64_t start = now_ns(), end = start + (uint64_t)(b->seconds * 1e9), t = start;
	int r;

	while (t < end) {
		r = fill(b);
		if (r < 0)
			return r;
		if (vdisk_engine_inflight(b->eng) > 0) {
			r = reap(b, 1, true);
			if (r < 0)
				return r;
		}
		t = now_ns();
	}
	*ret_elapsed = (double)(t - start) / 1e9;
	/* Drain what is still in flight; those completions are past the window. */
	while (vdisk_engine_inflight(b->eng) > 0) {
		r = reap(b, 1, false);
		if (r < 0)
			return r;
	}
	return 0;
}

static void report(const struct bench *b, double elapsed)
{
	double iops = (double)b->ops / elapsed;
	double p50 = percentile_us(b, 0.50), p99 = percentile_us(b, 0.99);
	const char *mode = b->write ? "randwrite" : "randread";

	printf("randio: %s %s bs=%u depth=%u engine=%s%s: %.0f IOPS, %.1f MiB/s, "
	       "p50 %.0f us, p99 %.0f us (%" PRIu64 " ops in %.2f s",
	       b->raw ? "raw" : "vhdx", mode, b->bs, b->depth, vdisk_engine_name(b->eng),
	       b->direct ? " direct" : " buffered", iops, iops * b->bs / (1 << 20), p50, p99,
	       b->ops, elapsed);
	if (b->zero_ops)
		printf(", %" PRIu64 " answered as zeros without I/O", b->zero_ops);
	printf(")\n");
	printf("iops=%.0f p50_us=%.0f p99_us=%.0f\n", iops, p50, p99);
}

int main(int argc, char **argv)
{
	static struct bench b = {
		.direct = true,
		.depth = 32,
		.bs = 4096,
		.seconds = 10,
		.kind = VDISK_ENGINE_IO_URING,
		.raw_fd = -1,
		.data_fd = -1,
	};
	double elapsed = 0;
	int ret = 1;

	if (parse_args(&b, argc, argv) < 0)
		return 2;
	if (open_target(&b) < 0 || setup(&b) < 0)
		goto out;
	if (run(&b, &elapsed) < 0)
		goto out;
	if (b.img && b.write && vhdx_flush(b.img) < 0) {
		fprintf(stderr, "randio: flush failed\n");
		goto out;
	}
	report(&b, elapsed);
	ret = 0;
out:
	vdisk_engine_close(b.eng);
	if (b.img && vhdx_close(b.img, NULL) < 0)
		ret = 1;
	if (b.raw_fd >= 0)
		close(b.raw_fd);
	if (b.data_fd >= 0)
		close(b.data_fd);
	free(b.slots);
	free(b.free_slots);
	free(b.done);
	free(b.bufs);
	return ret;
}
