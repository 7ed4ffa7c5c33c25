/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk discard FILE OFFSET LENGTH: gives a range of the virtual disk back
 * (vdisk_disk_discard()); it reads as zeros afterwards. Flushed and closed
 * before the command returns.
 */
#include <string.h>

#include "cli.h"

int cmd_discard(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct cli_search_dirs dirs = { { NULL }, 0 };
	struct vdisk_disk *d;
	uint64_t offset, length;
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
	if (!r)
		r = cli_parse_size_arg(cmd, "LENGTH", argv[optind + 2], &length);
	if (r)
		return r;
	r = cli_open_chain(cmd, path, 0, &dirs, &d);
	if (r)
		return r;
	r = cli_check_range(cmd, path, d, offset, length);
	if (!r) {
		r2 = vdisk_disk_discard(d, offset, length);
		if (r2 == 0)
			r2 = vdisk_disk_flush(d);
		if (r2 < 0)
			r = cli_fail(cmd, "%s: discard %llu+%llu: %s", path,
				     (unsigned long long)offset, (unsigned long long)length,
				     strerror(-r2));
	}
	if (r)
		vdisk_disk_close(d, NULL); /* one line per failure: the first error is reported */
	else
		r = cli_close_disk(cmd, path, d);
	return r;
}
