/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk checksum: XXH3-128 of the virtual content, printed like
 * `xxhsum -H2` (high 64 bits then low 64 bits, lower-case hex, two spaces,
 * the name), so a raw file and a VHDX holding the same bytes print the same
 * line. Zero and unallocated extents, and holes of the layer files, are
 * hashed from a zero buffer without reading anything; data extents are read
 * straight from the layer file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "cli.h"
#include "extent.h"

#define SUM_CHUNK         (4u << 20)
#define SUM_EXTENTS       256
#define SUM_SPLIT_EXTENTS 1024
#define SUM_READAHEAD     (64u << 20)

struct sum_ctx {
	XXH3_state_t *state;
	char *buf;        /* SUM_CHUNK bytes for data */
	const char *zero; /* SUM_CHUNK zero bytes */
	struct cli_search_dirs dirs;
};

static int hash_zero(struct sum_ctx *s, uint64_t length)
{
	size_t n;

	while (length > 0) {
		n = length < SUM_CHUNK ? (size_t)length : SUM_CHUNK;
		XXH3_128bits_update(s->state, s->zero, n);
		length -= n;
	}
	return 0;
}

/* Hashes a DATA extent by reading its layer file directly. 0 or -errno. */
static int hash_data(struct sum_ctx *s, struct cli_readahead *ra, const struct vdisk_extent *e)
{
	uint64_t done = 0;
	ssize_t n;
	size_t want;

	while (done < e->length) {
		want = e->length - done < SUM_CHUNK ? (size_t)(e->length - done) : SUM_CHUNK;
		cli_readahead_to(ra, e->offset + done + SUM_READAHEAD);
		n = pread(e->fd, s->buf, want, (off_t)(e->file_offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) {
			/* past the end of a (raw) file: reads as zeros */
			memset(s->buf, 0, want);
			n = (ssize_t)want;
		}
		XXH3_128bits_update(s->state, s->buf, (size_t)n);
		done += (uint64_t)n;
	}
	return 0;
}

static int hash_disk(const struct vdisk_cmd *cmd, struct sum_ctx *s, struct vdisk_disk *d,
		     const char *path)
{
	static struct vdisk_extent got[SUM_EXTENTS], ext[SUM_SPLIT_EXTENTS];
	uint64_t size = vdisk_disk_size(d), off = 0;
	struct cli_readahead ra;
	int i, n, r = 0;

	XXH3_128bits_reset(s->state);
	while (off < size) {
		n = vdisk_disk_translate(d, off, size - off, got, SUM_EXTENTS);
		if (n <= 0)
			return cli_fail(cmd, "%s: translate at %llu: %s", path,
					(unsigned long long)off, strerror(n < 0 ? -n : EIO));
		n = cli_split_holes(got, n, ext, SUM_SPLIT_EXTENTS);
		cli_readahead_init(&ra, ext, n);
		for (i = 0; i < n && r == 0; i++) {
			if (ext[i].type == VDISK_EXTENT_DATA)
				r = hash_data(s, &ra, &ext[i]);
			else
				r = hash_zero(s, ext[i].length);
			if (r < 0)
				return cli_fail(cmd, "%s: reading at %llu: %s", path,
						(unsigned long long)ext[i].offset, strerror(-r));
		}
		off = ext[n - 1].offset + ext[n - 1].length;
	}
	return 0;
}

static int checksum_file(const struct vdisk_cmd *cmd, struct sum_ctx *s, const char *path)
{
	struct vdisk_disk *d;
	XXH128_hash_t h;
	int r;

	r = cli_open_chain(cmd, path, VDISK_OPEN_RDONLY, &s->dirs, &d);
	if (r)
		return r;
	r = hash_disk(cmd, s, d, path);
	vdisk_disk_close(d, NULL);
	if (r)
		return r;
	h = XXH3_128bits_digest(s->state);
	printf("%016llx%016llx  %s\n", (unsigned long long)h.high64, (unsigned long long)h.low64,
	       path);
	return 0;
}

int cmd_checksum(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct sum_ctx s = { 0 };
	int i, r, ret = 0;

	r = cli_parse_search_dirs_only(cmd, argc, argv, &s.dirs);
	if (r >= 0)
		return r;
	r = cli_check_nargs(cmd, argc - optind);
	if (r)
		return r;
	s.state = XXH3_createState();
	s.buf = malloc(SUM_CHUNK);
	s.zero = calloc(1, SUM_CHUNK);
	if (!s.state || !s.buf || !s.zero) {
		ret = cli_fail(cmd, "%s", strerror(ENOMEM));
		goto out;
	}
	/* like xxhsum: go on with the next file after a failure, exit 1 at the end */
	for (i = optind; i < argc; i++)
		if (checksum_file(cmd, &s, argv[i]))
			ret = CLI_EXIT_FAIL;
out:
	XXH3_freeState(s.state);
	free(s.buf);
	free((void *)s.zero);
	return ret;
}
