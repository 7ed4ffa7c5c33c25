/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk read FILE OFFSET LENGTH: copies exactly LENGTH bytes of the virtual
 * disk, from OFFSET, to stdout. For scripts and tests: byte-exact, any
 * alignment, through vdisk_disk_pread().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define READ_CHUNK (4u << 20)

static int copy_out(const struct vdisk_cmd *cmd, const char *path, struct vdisk_disk *d,
		    uint64_t offset, uint64_t length)
{
	char *buf = malloc(READ_CHUNK);
	size_t n;
	int r = 0;

	if (!buf)
		return cli_fail(cmd, "%s", strerror(ENOMEM));
	while (length > 0 && r == 0) {
		n = length < READ_CHUNK ? (size_t)length : READ_CHUNK;
		r = vdisk_disk_pread(d, buf, n, offset);
		if (r < 0) {
			r = cli_fail(cmd, "%s: reading %zu bytes at %llu: %s", path, n,
				     (unsigned long long)offset, strerror(-r));
			break;
		}
		r = cli_write_all(STDOUT_FILENO, buf, n);
		if (r < 0)
			r = cli_fail(cmd, "writing to stdout: %s", strerror(-r));
		offset += n;
		length -= n;
	}
	free(buf);
	return r;
}

int cmd_read(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct cli_search_dirs dirs = { { NULL }, 0 };
	struct vdisk_disk *d;
	uint64_t offset, length;
	const char *path;
	int r;

	r = cli_parse_search_dirs_only(cmd, argc, argv, &dirs);
	if (r >= 0)
		return r;
	r = cli_check_nargs(cmd, argc - optind);
	if (r)
		return r;
	path = argv[optind];
	r = cli_parse_size_arg(cmd, "OFFSET", argv[optind + 1], &offset);
	if (!r)
		r = cli_parse_size_arg(cmd, "LENGTH", argv[optind + 2], &length);
	if (r)
		return r;
	r = cli_open_chain(cmd, path, VDISK_OPEN_RDONLY, &dirs, &d);
	if (r)
		return r;
	r = cli_check_range(cmd, path, d, offset, length);
	if (!r)
		r = copy_out(cmd, path, d, offset, length);
	vdisk_disk_close(d, NULL);
	return r;
}
