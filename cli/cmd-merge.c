/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk merge: commits a differencing image (and every layer up to the
 * ancestor named by --into) into that ancestor through vhdx_merge(): only
 * sectors the merged layers hold are copied, children of CHILD are re-linked
 * to the ancestor and the merged files are removed. The library refuses when
 * the ancestor has other children (they would read changed content) unless
 * --force. Also home of --search-dir, shared by the commands that resolve
 * parents.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/passthrough.h>

#include "cli.h"
#include "progress.h"

enum {
	OPT_INTO = CLI_OPT_FIRST_PRIVATE,
	OPT_FORCE,
	OPT_KEEP_CHILD,
};

static const struct option merge_options[] = {
	{ "progress", no_argument, NULL, 'p' },
	{ "into", required_argument, NULL, OPT_INTO },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "keep-child", no_argument, NULL, OPT_KEEP_CHILD },
	{ "search-dir", required_argument, NULL, CLI_OPT_SEARCH_DIR },
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

int cli_search_dir_add(const struct vdisk_cmd *cmd, struct cli_search_dirs *s, const char *dir)
{
	struct stat st;

	if (s->n >= CLI_MAX_SEARCH_DIRS)
		return cli_usage(cmd, "--search-dir: at most %d folders", CLI_MAX_SEARCH_DIRS);
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return cli_usage(cmd, "--search-dir: '%s' is not a folder", dir);
	s->dirs[s->n++] = dir;
	s->dirs[s->n] = NULL;
	return 0;
}

/* vhdx_progress_fn over the progress bar: the library gives the total with each call. */
static void on_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct progress *p = opaque;

	p->total = total;
	progress_update(p, done);
}

struct merge_args {
	const char *into;
	unsigned flags;
	bool progress;
	struct cli_search_dirs dirs;
};

static int parse_merge_options(const struct vdisk_cmd *cmd, int argc, char **argv,
			       struct merge_args *a)
{
	int c, r = 0;

	while (r == 0 && (c = cli_getopt(cmd, argc, argv, "p", merge_options)) != -1) {
		switch (c) {
		case 'p':
			a->progress = true;
			break;
		case OPT_INTO:
			a->into = optarg;
			break;
		case OPT_FORCE:
			a->flags |= VHDX_MERGE_FORCE;
			break;
		case OPT_KEEP_CHILD:
			a->flags |= VHDX_MERGE_KEEP_CHILD;
			break;
		case CLI_OPT_SEARCH_DIR:
			r = cli_search_dir_add(cmd, &a->dirs, optarg);
			break;
		case CLI_OPT_HELP:
			return -1;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	return r;
}

int cmd_merge(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct merge_args a = { 0 };
	struct vdisk_err err = { 0 };
	struct progress bar;
	const char *child;
	int r;

	r = parse_merge_options(cmd, argc, argv, &a);
	if (r)
		return r < 0 ? CLI_EXIT_OK : r;
	r = cli_check_nargs(cmd, argc - optind);
	if (r)
		return r;
	child = argv[optind];
	r = pt_refuse_snapshot("merge", child, &err);
	if (r == 0 && a.into)
		r = pt_refuse_snapshot("merge", a.into, &err);
	if (r < 0)
		return cli_fail_err(cmd, NULL, r, &err);
	progress_init(&bar, a.progress || isatty(STDERR_FILENO), 0);
	r = vhdx_merge(child, a.into, a.flags, a.dirs.n ? a.dirs.dirs : NULL, on_progress, &bar,
		       &err);
	progress_end(&bar, r == 0);
	if (r < 0)
		return cli_fail_err(cmd, child, r, &err);
	return CLI_EXIT_OK;
}
