/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk rebase: gives a differencing image a new parent through
 * vhdx_rebase(). The safe mode first copies into CHILD every sector where
 * its old backing content differs from NEWPARENT's, so what CHILD reads does
 * not change; --unsafe only rewrites the parent locator (for a parent that
 * was moved or copied, whose content is known to be the same).
 */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"

enum {
	OPT_PARENT = CLI_OPT_FIRST_PRIVATE,
	OPT_UNSAFE,
};

static const struct option rebase_options[] = {
	{ "parent", required_argument, NULL, OPT_PARENT },
	{ "unsafe", no_argument, NULL, OPT_UNSAFE },
	{ "progress", no_argument, NULL, 'p' },
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct progress *p = opaque;

	p->total = total;
	progress_update(p, done);
}

int cmd_rebase(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct vdisk_err err = { 0 };
	struct progress bar;
	const char *parent = NULL, *child;
	unsigned flags = 0;
	bool show = false;
	int c, r;

	while ((c = cli_getopt(cmd, argc, argv, "p", rebase_options)) != -1) {
		switch (c) {
		case OPT_PARENT:
			parent = optarg;
			break;
		case OPT_UNSAFE:
			flags |= VHDX_REBASE_UNSAFE;
			break;
		case 'p':
			show = true;
			break;
		case CLI_OPT_HELP:
			return CLI_EXIT_OK;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	r = cli_check_nargs(cmd, argc - optind);
	if (r)
		return r;
	if (!parent)
		return cli_usage(cmd, "--parent NEWPARENT is required");
	child = argv[optind];
	progress_init(&bar, (show || isatty(STDERR_FILENO)) && !(flags & VHDX_REBASE_UNSAFE), 0);
	r = vhdx_rebase(child, parent, flags, on_progress, &bar, &err);
	progress_end(&bar, r == 0);
	if (r < 0)
		return cli_fail_err(cmd, child, r, &err);
	return CLI_EXIT_OK;
}
