/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk mount IMAGE MOUNTPOINT [DIR] and vdisk umount MOUNTPOINT: option
 * parsing for the FUSE front end (fuse/), which does the work. The mount
 * point then holds `disk` and one `pN` file per partition; --fs PART also
 * mounts that partition's file system on DIR through a loop device.
 * --search-dir folders are made absolute here: the background server runs
 * in /.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vfuse.h"

enum {
	OPT_RW = CLI_OPT_FIRST_PRIVATE,
	OPT_ALLOW_OTHER,
	OPT_FS,
};

static const struct option mount_options[] = {
	CLI_LONGOPT_HELP,
	{ "rw", no_argument, NULL, OPT_RW },
	{ "allow-other", no_argument, NULL, OPT_ALLOW_OTHER },
	{ "foreground", no_argument, NULL, 'f' },
	{ "debug", no_argument, NULL, 'd' },
	{ "fs", required_argument, NULL, OPT_FS },
	CLI_LONGOPT_SEARCH_DIR,
	{ NULL, 0, NULL, 0 },
};

static const struct option umount_options[] = {
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

/* Adds the absolute path of @dir to @dirs, its storage in @abs. 0 or an exit code. */
static int add_search_dir(const struct vdisk_cmd *cmd, struct cli_search_dirs *dirs,
			  char abs[][PATH_MAX], const char *dir)
{
	int r = cli_search_dir_add(cmd, dirs, dir);

	if (r)
		return r;
	if (!realpath(dir, abs[dirs->n - 1]))
		return cli_fail(cmd, "--search-dir %s: %s", dir, strerror(errno));
	dirs->dirs[dirs->n - 1] = abs[dirs->n - 1];
	return 0;
}

int cmd_mount(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	static char abs[CLI_MAX_SEARCH_DIRS][PATH_MAX];
	struct cli_search_dirs dirs = { { NULL }, 0 };
	struct vfuse_opts o = { 0 };
	struct vdisk_err err = { 0 };
	int c, r, nargs;

	while ((c = cli_getopt(cmd, argc, argv, "fd", mount_options)) != -1) {
		switch (c) {
		case OPT_RW:
			o.rw = true;
			break;
		case OPT_ALLOW_OTHER:
			o.allow_other = true;
			break;
		case 'f':
			o.foreground = true;
			break;
		case 'd':
			o.debug = true;
			break;
		case OPT_FS:
			o.fs_part = optarg;
			break;
		case CLI_OPT_SEARCH_DIR:
			r = add_search_dir(cmd, &dirs, abs, optarg);
			if (r)
				return r;
			break;
		case CLI_OPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	r = cli_check_nargs(cmd, nargs);
	if (r)
		return r;
	if (o.fs_part && nargs != 3)
		return cli_usage(cmd, "--fs needs DIR, the folder for the file system");
	if (!o.fs_part && nargs == 3)
		return cli_usage(cmd, "DIR is only for --fs");
	o.image = argv[optind];
	o.mountpoint = argv[optind + 1];
	o.fs_dir = o.fs_part ? argv[optind + 2] : NULL;
	o.search_dirs = dirs.n ? dirs.dirs : NULL;
	r = vfuse_mount(&o, &err);
	if (r < 0)
		return cli_fail_err(cmd, o.image, r, &err);
	return CLI_EXIT_OK;
}

int cmd_umount(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct vdisk_err err = { 0 };
	int c, r;

	while ((c = cli_getopt(cmd, argc, argv, "", umount_options)) != -1)
		return c == CLI_OPT_HELP ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	r = cli_check_nargs(cmd, argc - optind);
	if (r)
		return r;
	r = vfuse_umount(argv[optind], &err);
	if (r < 0)
		return cli_fail_err(cmd, NULL, r, &err);
	return CLI_EXIT_OK;
}
