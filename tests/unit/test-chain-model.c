/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Model-based test of differencing chains. Each round builds a random chain
 * (1 to 8 images, random block sizes, 512- or 4096-byte sectors) and runs a
 * random mix of writes (aligned and byte-granular), discards, write-zeroes,
 * snapshots (create, revert, delete), new children, merges (into the parent
 * or any ancestor, from the top or from the middle of the chain), clean
 * reopens and simulated crashes (flush, abandon, reopen). An in-memory model
 * holds the expected content of the live image and of every frozen layer,
 * as copy-on-write 64 KiB pages, and every read is compared with it: random
 * reads after each step, the whole of both windows and the content of every
 * layer file (opened on its own) at checkpoints, and the snapshot list.
 *
 * The virtual disk is one sector-bitmap chunk plus 4 MiB, so writes land in
 * two 4 MiB windows: at the start and across the chunk boundary (where the
 * sector bitmaps of two chunks meet). Outside the windows the disk must
 * read as zeros.
 *
 * Environment: VDISK_MODEL_SEED (default: time), VDISK_MODEL_ROUNDS
 * (default 6), VDISK_MODEL_OPS (operations per round, default 100).
 * A failure prints the seed, the round and the operations that led to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <vdisk/vhdx.h>

#include "helpers.h"

#define PG (64 * 1024)
#define WIN (4u << 20)
#define NPAGES (2 * WIN / PG)
#define MAX_LAYERS 8
#define MAX_IO (1536 * 1024)
#define LOG_LINES 64

struct page {
	int ref;
	uint8_t d[PG];
};

/* Expected content of the two windows: NULL pages read as zeros. */
struct view {
	struct page *pg[NPAGES];
};

struct layer {
	char path[4096];
	char snap[64]; /* name of the snapshot whose frozen file is the next layer ("" none) */
	struct view v;
};

struct model {
	uint64_t rng;
	char dir[256];
	unsigned lsec;
	uint64_t size, chunk_bytes;
	struct layer L[MAX_LAYERS + 1]; /* L[0] is the live image */
	unsigned n;
	struct vhdx_image *img;        /* L[0] open for writing, or NULL */
	unsigned files;                /* counter for new file names */
	unsigned snaps;
	uint8_t *buf, *rbuf;
	/* operation log, for the failure message */
	char log[LOG_LINES][160];
	unsigned nlog;
	unsigned long long seed;
	unsigned round, op;
};

static struct model M;

/* ---- helpers ---- */

static uint64_t rnd(void)
{
	/* xorshift64* */
	M.rng ^= M.rng >> 12;
	M.rng ^= M.rng << 25;
	M.rng ^= M.rng >> 27;
	return M.rng * 0x2545F4914F6CDD1DULL;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static __attribute__((format(printf, 1, 2))) void note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(M.log[M.nlog % LOG_LINES], sizeof(M.log[0]), fmt, ap);
	va_end(ap);
	M.nlog++;
}

static void dump_log(void)
{
	unsigned first = M.nlog > LOG_LINES ? M.nlog - LOG_LINES : 0;

	fprintf(stderr, "chain model: seed %llu (VDISK_MODEL_SEED), round %u, op %u, %u layers; last operations:\n",
		M.seed, M.round, M.op, M.n);
	for (unsigned i = first; i < M.nlog; i++)
		fprintf(stderr, "  %s\n", M.log[i % LOG_LINES]);
}

#define CHECK(cond, ...)                                                                          \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			dump_log();                                                               \
			fail_msg(__VA_ARGS__);                                                    \
		}                                                                                 \
	} while (0)

#define CHECK_OK(r, err, what)                                                                    \
	CHECK((r) == 0, "%s failed: %d (%s): %s", what, (r), strerror(-(r)), (err)->msg)

/* Window offset <-> virtual offset. Window 0 is [0, WIN), window 1 straddles the chunk end. */
static uint64_t win_base(unsigned w)
{
	return w == 0 ? 0 : M.chunk_bytes - WIN / 2;
}

static void view_copy(struct view *dst, const struct view *src)
{
	for (unsigned i = 0; i < NPAGES; i++) {
		dst->pg[i] = src->pg[i];
		if (dst->pg[i])
			dst->pg[i]->ref++;
	}
}

static void view_drop(struct view *v)
{
	for (unsigned i = 0; i < NPAGES; i++) {
		if (v->pg[i] && --v->pg[i]->ref == 0)
			free(v->pg[i]);
		v->pg[i] = NULL;
	}
}

/* A private, writable page @i of @v (copy on write). */
static struct page *view_page_w(struct view *v, unsigned i)
{
	struct page *p = v->pg[i], *q;

	if (p && p->ref == 1)
		return p;
	q = malloc(sizeof(*q));
	assert_non_null(q);
	q->ref = 1;
	if (p) {
		memcpy(q->d, p->d, PG);
		p->ref--;
	} else {
		memset(q->d, 0, PG);
	}
	v->pg[i] = q;
	return q;
}

/* Writes @len bytes of @data (NULL: zeros) at window offset @woff of window @w. */
static void view_write(struct view *v, unsigned w, uint64_t woff, const uint8_t *data, size_t len)
{
	uint64_t pos = (uint64_t)w * WIN + woff;

	while (len > 0) {
		unsigned i = (unsigned)(pos / PG);
		size_t in = pos % PG, n = len < PG - in ? len : PG - in;
		if (data || v->pg[i]) {
			struct page *p = view_page_w(v, i);
			if (data)
				memcpy(p->d + in, data, n);
			else
				memset(p->d + in, 0, n);
		}
		if (data)
			data += n;
		pos += n;
		len -= n;
	}
}

static void view_read(const struct view *v, unsigned w, uint64_t woff, uint8_t *out, size_t len)
{
	uint64_t pos = (uint64_t)w * WIN + woff;

	while (len > 0) {
		unsigned i = (unsigned)(pos / PG);
		size_t in = pos % PG, n = len < PG - in ? len : PG - in;
		if (v->pg[i])
			memcpy(out, v->pg[i]->d + in, n);
		else
			memset(out, 0, n);
		out += n;
		pos += n;
		len -= n;
	}
}

/* Picks a range in a window: 0 any bytes, 1 sector-aligned, 2 4 KiB-aligned. */
static void pick_range(int align, unsigned *ret_w, uint64_t *ret_off, size_t *ret_len)
{
	uint64_t g = align == 0 ? 1 : align == 1 ? M.lsec : 4096;
	uint64_t off, len, maxlen;

	if (g < M.lsec)
		g = M.lsec;
	if (align == 0)
		g = 1;
	*ret_w = (unsigned)rnd_below(2);
	off = rnd_below(WIN / g) * g;
	maxlen = WIN - off;
	if (maxlen > MAX_IO)
		maxlen = MAX_IO;
	/* mostly small, sometimes large */
	len = rnd_below(4) == 0 ? rnd_below(maxlen / g) * g + g : rnd_below(16 * 1024 / g + 1) * g + g;
	if (len > maxlen)
		len = maxlen / g * g;
	if (len == 0)
		len = g;
	*ret_off = off;
	*ret_len = (size_t)len;
}

/* ---- checks ---- */

static void compare(const char *what, const uint8_t *got, const uint8_t *want, size_t len,
		    uint64_t voff)
{
	if (memcmp(got, want, len) == 0)
		return;
	for (size_t i = 0; i < len; i++)
		if (got[i] != want[i])
			CHECK(0, "%s: content differs at virtual offset %llu (0x%llx): read 0x%02x, model 0x%02x",
			      what, (unsigned long long)(voff + i), (unsigned long long)(voff + i),
			      got[i], want[i]);
}

static void check_range(struct vhdx_image *img, const struct view *v, const char *what, unsigned w,
			uint64_t woff, size_t len)
{
	int r = vhdx_pread(img, M.rbuf, len, win_base(w) + woff);

	CHECK(r == 0, "%s: vhdx_pread(%llu, %zu): %s", what,
	      (unsigned long long)(win_base(w) + woff), len, strerror(-r));
	view_read(v, w, woff, M.buf, len);
	compare(what, M.rbuf, M.buf, len, win_base(w) + woff);
}

/* Both windows in full, and samples outside them that must read as zeros. */
static void check_all(struct vhdx_image *img, const struct view *v, const char *what)
{
	static const uint64_t outside[] = { WIN, 8u << 20, 1u << 30 };
	int r;

	for (unsigned w = 0; w < 2; w++)
		for (uint64_t o = 0; o < WIN; o += MAX_IO)
			check_range(img, v, what, w, o, o + MAX_IO <= WIN ? MAX_IO : WIN - o);
	memset(M.buf, 0, 65536);
	for (unsigned i = 0; i < sizeof(outside) / sizeof(outside[0]); i++) {
		if (outside[i] + 65536 > win_base(1))
			continue;
		r = vhdx_pread(img, M.rbuf, 65536, outside[i]);
		CHECK(r == 0, "%s: read outside the windows: %s", what, strerror(-r));
		compare(what, M.rbuf, M.buf, 65536, outside[i]);
	}
	r = vhdx_pread(img, M.rbuf, 65536, M.size - 65536);
	CHECK(r == 0, "%s: read at the end: %s", what, strerror(-r));
	compare(what, M.rbuf, M.buf, 65536, M.size - 65536);
}

static void open_top(void)
{
	struct vdisk_err err = { 0 };
	struct vhdx_info *in;
	int r;

	if (M.img)
		return;
	r = vhdx_open(M.L[0].path, NULL, &M.img, &err);
	CHECK_OK(r, &err, "vhdx_open of the live image");
	in = malloc(sizeof(*in));
	assert_non_null(in);
	vhdx_get_info(M.img, in);
	CHECK(in->chain_depth == M.n, "chain depth %u, model %u", in->chain_depth, M.n);
	CHECK(in->logical_sector_bytes == M.lsec, "sector size");
	free(in);
}

static void close_top(void)
{
	struct vdisk_err err = { 0 };
	int r;

	if (!M.img)
		return;
	r = vhdx_close(M.img, &err);
	M.img = NULL;
	CHECK_OK(r, &err, "vhdx_close");
}

/* Every frozen layer, opened on its own (with its own parents), reads as its model. */
static void check_layers(void)
{
	struct vhdx_open_opts o;
	struct vdisk_err err = { 0 };
	char what[600];

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY;
	for (unsigned k = 1; k < M.n; k++) {
		struct vhdx_image *img;
		int r = vhdx_open(M.L[k].path, &o, &img, &err);
		CHECK_OK(r, &err, "opening a frozen layer");
		snprintf(what, sizeof(what), "layer %u (%s)", k, M.L[k].path);
		check_all(img, &M.L[k].v, what);
		vhdx_close(img, NULL);
	}
}

static void check_snapshot_list(void)
{
	struct vhdx_snapshot *v = NULL;
	struct vdisk_err err = { 0 };
	unsigned n = 0, k = 0;
	int r = vhdx_snapshot_list(M.L[0].path, &v, &n, &err);

	CHECK_OK(r, &err, "vhdx_snapshot_list");
	for (unsigned i = 0; i + 1 < M.n; i++) {
		char rp[4096];
		if (!M.L[i].snap[0])
			continue;
		CHECK(k < n, "snapshot list has %u entries, the model more (%s)", n, M.L[i].snap);
		CHECK(strcmp(v[k].name, M.L[i].snap) == 0, "snapshot %u is '%s', model '%s'", k,
		      v[k].name, M.L[i].snap);
		CHECK(realpath(M.L[i + 1].path, rp) && strcmp(rp, v[k].file) == 0,
		      "snapshot '%s' file %s, model %s", v[k].name, v[k].file, M.L[i + 1].path);
		CHECK(v[k].size_bytes == M.size, "snapshot size");
		k++;
	}
	CHECK(k == n, "snapshot list has %u entries, the model %u", n, k);
	free(v);
}

static void checkpoint(const char *why)
{
	note("checkpoint (%s)", why);
	open_top();
	check_all(M.img, &M.L[0].v, "live image");
	check_layers();
	check_snapshot_list();
}

/* ---- operations ---- */

static void op_write(void)
{
	unsigned w;
	uint64_t off;
	size_t len;
	int r;

	pick_range((int)rnd_below(3), &w, &off, &len);
	note("write w%u+%llu len %zu", w, (unsigned long long)off, len);
	test_fill_pattern(M.buf, len, rnd());
	open_top();
	r = vhdx_pwrite(M.img, M.buf, len, win_base(w) + off);
	CHECK(r == 0, "vhdx_pwrite: %s", strerror(-r));
	view_write(&M.L[0].v, w, off, M.buf, len);
}

static void op_zero(bool discard)
{
	unsigned w;
	uint64_t off;
	size_t len;
	int r;

	pick_range(1 + (int)rnd_below(2), &w, &off, &len);
	note("%s w%u+%llu len %zu", discard ? "discard" : "write-zeroes", w,
	     (unsigned long long)off, len);
	open_top();
	if (discard)
		r = vhdx_discard(M.img, win_base(w) + off, len);
	else
		r = vhdx_write_zeroes(M.img, win_base(w) + off, len);
	CHECK(r == 0, "%s: %s", discard ? "vhdx_discard" : "vhdx_write_zeroes", strerror(-r));
	view_write(&M.L[0].v, w, off, NULL, len);
}

static void op_read(void)
{
	unsigned w;
	uint64_t off;
	size_t len;

	pick_range((int)rnd_below(3), &w, &off, &len);
	open_top();
	check_range(M.img, &M.L[0].v, "live image", w, off, len);
}

static void op_reopen(bool crash)
{
	int r;

	note("%s", crash ? "flush + crash + reopen" : "close + reopen");
	if (!M.img)
		return;
	if (crash) {
		r = vhdx_flush(M.img);
		CHECK(r == 0, "vhdx_flush: %s", strerror(-r));
		vhdx_abandon(M.img);
		M.img = NULL;
	} else {
		close_top();
	}
	open_top();
}

static void insert_layer(unsigned at)
{
	memmove(&M.L[at + 1], &M.L[at], (M.n - at) * sizeof(M.L[0]));
	memset(&M.L[at], 0, sizeof(M.L[0]));
	M.n++;
}

/* Removes layers [from, to) from the model (their views dropped). */
static void remove_layers(unsigned from, unsigned to)
{
	for (unsigned k = from; k < to; k++)
		view_drop(&M.L[k].v);
	memmove(&M.L[from], &M.L[to], (M.n - to) * sizeof(M.L[0]));
	M.n -= to - from;
	memset(&M.L[M.n], 0, (to - from) * sizeof(M.L[0]));
}

static bool file_exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

static void op_snapshot_create(void)
{
	struct vdisk_err err = { 0 };
	char name[64], file[4096];
	int r;

	if (M.n >= MAX_LAYERS)
		return;
	snprintf(name, sizeof(name), "s%u", M.snaps++);
	note("snapshot create %s", name);
	close_top();
	r = vhdx_snapshot_create(M.L[0].path, name, file, sizeof(file), &err);
	CHECK_OK(r, &err, "vhdx_snapshot_create");
	insert_layer(1);
	CHECK(strlen(file) < sizeof(M.L[1].path), "snapshot file name too long");
	memcpy(M.L[1].path, file, strlen(file) + 1);
	snprintf(M.L[1].snap, sizeof(M.L[1].snap), "%s", M.L[0].snap);
	view_copy(&M.L[1].v, &M.L[0].v);
	snprintf(M.L[0].snap, sizeof(M.L[0].snap), "%s", name);
	CHECK(file_exists(file), "snapshot file %s missing", file);
}

/* A random existing snapshot: the layer index whose item names it, or -1. */
static int pick_snapshot(void)
{
	unsigned idx[MAX_LAYERS], n = 0;

	for (unsigned k = 0; k + 1 < M.n; k++)
		if (M.L[k].snap[0])
			idx[n++] = k;
	return n ? (int)idx[rnd_below(n)] : -1;
}

static void op_snapshot_revert(void)
{
	struct vdisk_err err = { 0 };
	char name[64];
	int k = pick_snapshot(), r;

	if (k < 0)
		return;
	snprintf(name, sizeof(name), "%s", M.L[k].snap);
	note("snapshot revert %s (layer %d)", name, k);
	close_top();
	r = vhdx_snapshot_revert(M.L[0].path, name, &err);
	CHECK_OK(r, &err, "vhdx_snapshot_revert");
	/* the frozen files of newer snapshots are gone; the live image is a fresh child */
	for (int i = 1; i <= k; i++)
		CHECK(!file_exists(M.L[i].path), "revert left %s", M.L[i].path);
	view_drop(&M.L[0].v);
	remove_layers(1, (unsigned)k + 1);
	view_copy(&M.L[0].v, &M.L[1].v);
	snprintf(M.L[0].snap, sizeof(M.L[0].snap), "%s", name);
}

static void op_snapshot_delete(void)
{
	struct vdisk_err err = { 0 };
	char name[64];
	int k = pick_snapshot(), r;

	if (k < 0)
		return;
	snprintf(name, sizeof(name), "%s", M.L[k].snap);
	note("snapshot delete %s (layer %d)", name, k);
	close_top();
	r = vhdx_snapshot_delete(M.L[0].path, name, &err);
	CHECK_OK(r, &err, "vhdx_snapshot_delete");
	if (k > 0) {
		/* layer k merged into its parent k+1, which takes its content */
		view_drop(&M.L[k + 1].v);
		view_copy(&M.L[k + 1].v, &M.L[k].v);
		CHECK(!file_exists(M.L[k].path), "delete left %s", M.L[k].path);
		remove_layers((unsigned)k, (unsigned)k + 1);
	} else {
		/* the live image merged into the newest snapshot, which takes the path */
		char frozen[4096];
		snprintf(frozen, sizeof(frozen), "%s", M.L[1].path);
		view_drop(&M.L[1].v);
		view_copy(&M.L[1].v, &M.L[0].v);
		snprintf(M.L[1].path, sizeof(M.L[1].path), "%s", M.L[0].path);
		remove_layers(0, 1);
		CHECK(!file_exists(frozen), "delete left %s", frozen);
	}
}

static void op_push_child(void)
{
	struct vhdx_create_opts o;
	struct vdisk_err err = { 0 };
	char path[300];
	int r;

	if (M.n >= MAX_LAYERS)
		return;
	snprintf(path, sizeof(path), "%s/c%u.avhdx", M.dir, M.files++);
	note("new child %s over %s", path, M.L[0].path);
	close_top();
	vhdx_create_opts_init(&o, sizeof(o));
	o.type = VHDX_TYPE_DIFFERENCING;
	o.parent_path = M.L[0].path;
	o.disk_size_bytes = M.size;
	o.logical_sector_bytes = M.lsec;
	o.block_size_bytes = rnd_below(2) ? 1u << 20 : 0;
	r = vhdx_create(path, &o, &err);
	CHECK_OK(r, &err, "vhdx_create of a child");
	insert_layer(0);
	snprintf(M.L[0].path, sizeof(M.L[0].path), "%s", path);
	view_copy(&M.L[0].v, &M.L[1].v);
}

static void op_merge(void)
{
	struct vdisk_err err = { 0 };
	unsigned i, j;
	int r;

	if (M.n < 2)
		return;
	i = (unsigned)rnd_below(M.n - 1);
	j = i + 1 + (unsigned)rnd_below(M.n - 1 - i);
	note("merge layer %u (%s) into layer %u (%s)", i, M.L[i].path, j, M.L[j].path);
	close_top();
	r = vhdx_merge(M.L[i].path, j == i + 1 && rnd_below(2) ? NULL : M.L[j].path, 0, NULL, NULL,
		       NULL, &err);
	CHECK_OK(r, &err, "vhdx_merge");
	for (unsigned k = i; k < j; k++)
		CHECK(!file_exists(M.L[k].path), "merge left %s", M.L[k].path);
	view_drop(&M.L[j].v);
	view_copy(&M.L[j].v, &M.L[i].v);
	remove_layers(i, j);
}

/* ---- rounds ---- */

static void new_base(void)
{
	static const uint32_t bs[] = { 1u << 20, 2u << 20, 32u << 20 };
	struct vhdx_create_opts o;
	struct vdisk_err err = { 0 };
	int r;

	vhdx_create_opts_init(&o, sizeof(o));
	o.logical_sector_bytes = M.lsec;
	o.disk_size_bytes = M.size;
	o.block_size_bytes = bs[rnd_below(3)];
	snprintf(M.L[0].path, sizeof(M.L[0].path), "%s/disk.vhdx", M.dir);
	M.n = 1;
	note("round %u: base %s, %u-byte sectors, block %u KiB, size %llu", M.round, M.L[0].path,
	     M.lsec, o.block_size_bytes >> 10, (unsigned long long)M.size);
	r = vhdx_create(M.L[0].path, &o, &err);
	CHECK_OK(r, &err, "vhdx_create of the base");
}

static void run_round(unsigned ops)
{
	unsigned depth;

	memset(M.L, 0, sizeof(M.L));
	M.n = 0;
	M.files = 0;
	M.snaps = 0;
	M.lsec = rnd_below(3) == 0 ? 4096 : 512;
	M.chunk_bytes = (1ULL << 23) * M.lsec;
	M.size = M.chunk_bytes + WIN;
	snprintf(M.dir, sizeof(M.dir), "%s", test_tmp_path("chain-model"));
	test_system("rm -rf '%s' && mkdir -p '%s'", M.dir, M.dir);
	new_base();
	/* a random starting chain of 1 to 8 images, each layer with some data */
	depth = 1 + (unsigned)rnd_below(MAX_LAYERS);
	while (M.n < depth) {
		for (unsigned k = 0; k < 3; k++)
			op_write();
		if (rnd_below(2))
			op_snapshot_create();
		else
			op_push_child();
	}
	checkpoint("start");
	for (M.op = 0; M.op < ops; M.op++) {
		unsigned x = (unsigned)rnd_below(100);
		if (x < 30)
			op_write();
		else if (x < 37)
			op_zero(true);
		else if (x < 44)
			op_zero(false);
		else if (x < 62)
			op_read();
		else if (x < 66)
			op_reopen(false);
		else if (x < 69)
			op_reopen(true);
		else if (x < 76)
			op_snapshot_create();
		else if (x < 80)
			op_snapshot_revert();
		else if (x < 85)
			op_snapshot_delete();
		else if (x < 90)
			op_push_child();
		else if (x < 97)
			op_merge();
		else
			checkpoint("random");
	}
	checkpoint("end");
	close_top();
	for (unsigned k = 0; k < M.n; k++)
		view_drop(&M.L[k].v);
	test_system("rm -rf '%s'", M.dir);
}

static unsigned env_uint(const char *name, unsigned def)
{
	const char *s = getenv(name);

	return s && *s ? (unsigned)strtoul(s, NULL, 0) : def;
}

static void test_random_chains(void **state)
{
	const char *s = getenv("VDISK_MODEL_SEED");
	unsigned rounds = env_uint("VDISK_MODEL_ROUNDS", 6), ops = env_uint("VDISK_MODEL_OPS", 100);

	(void)state;
	M.seed = s && *s ? strtoull(s, NULL, 0) : (unsigned long long)time(NULL);
	printf("# chain model: VDISK_MODEL_SEED=%llu, %u rounds of %u operations\n", M.seed, rounds,
	       ops);
	M.buf = malloc(MAX_IO);
	M.rbuf = malloc(MAX_IO);
	assert_non_null(M.buf);
	assert_non_null(M.rbuf);
	for (M.round = 0; M.round < rounds; M.round++) {
		M.rng = (M.seed + 1) * 0x9E3779B97F4A7C15ULL + M.round * 0xD1B54A32D192ED03ULL;
		if (M.rng == 0)
			M.rng = 1;
		M.nlog = 0;
		run_round(ops);
	}
	free(M.buf);
	free(M.rbuf);
}

/* The model itself: copy-on-write views keep copies apart. */
static void test_view_cow(void **state)
{
	struct view a = { { NULL } }, b = { { NULL } };
	uint8_t x[100], y[100];

	(void)state;
	memset(x, 0xAB, sizeof(x));
	view_write(&a, 1, PG - 50, x, sizeof(x));
	view_copy(&b, &a);
	memset(x, 0xCD, sizeof(x));
	view_write(&b, 1, PG - 10, x, 20);
	view_read(&a, 1, PG - 50, y, sizeof(y));
	for (unsigned i = 0; i < sizeof(y); i++)
		assert_int_equal(y[i], 0xAB);
	view_read(&b, 1, PG - 50, y, sizeof(y));
	assert_int_equal(y[39], 0xAB);
	assert_int_equal(y[40], 0xCD);
	assert_int_equal(y[59], 0xCD);
	assert_int_equal(y[60], 0xAB);
	view_write(&b, 1, 0, NULL, 2 * PG);
	view_read(&b, 1, PG - 50, y, sizeof(y));
	for (unsigned i = 0; i < 50; i++)
		assert_int_equal(y[i], 0);
	view_drop(&a);
	view_drop(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_view_cow),
		cmocka_unit_test(test_random_chains),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
