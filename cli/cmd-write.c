/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk write FILE OFFSET: copies stdin, until end of file, into the
 * virtual disk at OFFSET through vdisk_disk_pwrite(), then flushes and
 * closes, so the data is durable when the command returns 0.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define WRITE_CHUNK (4u << 20)

static int copy_in(const struct vdisk_cmd *cmd, const char *path, struct vdisk_disk *d,
		   uint64_t offset)
{
	char *buf = malloc(WRITE_CHUNK);
	ssize_t n;
	int r = 0;

	if (!buf)
		return cli_fail(cmd, "%s", strerror(ENOMEM));
	for (;;) {
		n = cli_read_full(STDIN_FILENO, buf, WRITE_CHUNK);
		if (n < 0) {
			r = cli_fail(cmd, "reading stdin: %s", strerror((int)-n));
			break;
		}
		if (n == 0)
			break;
		r = cli_check_range(cmd, path, d, offset, (uint64_t)n);
		if (r)
			break;
		r = vdisk_disk_pwrite(d, buf, (size_t)n, offset);
		if (r < 0) {
			r = cli_fail(cmd, "%s: writing %zd bytes at %llu: %s", path, n,
				     (unsigned long long)offset, strerror(-r));
			break;
		}
		offset += (uint64_t)n;
	}
	free(buf);
	return r;
}

int cmd_write(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct cli_search_dirs dirs = { { NULL }, 0 };
	struct vdisk_disk *d;
	uint64_t offset;
	const char *path;
	int r, r2;

	r = cli_parse_search_dirs_only(cmd, argc, argv, &dirs);
	if (r >= 0)
		return r;
	r = cli_check_nargs(cmd, argc - optind);
	if (r)
		return r;
	path = argv[optind];
	r = cli_parse_size_arg(cmd, "OFFSET", argv[optind + 1], &offset);
	if (r)
		return r;
	r = cli_open_chain(cmd, path, 0, &dirs, &d);
	if (r)
		return r;
	r = copy_in(cmd, path, d, offset);
	if (r == 0) {
		r2 = vdisk_disk_flush(d);
		if (r2 < 0)
			r = cli_fail(cmd, "%s: flush: %s", path, strerror(-r2));
	}
	if (r)
		vdisk_disk_close(d, NULL); /* one line per failure: the first error is reported */
	else
		r = cli_close_disk(cmd, path, d);
	return r;
}
