/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk snapshot: Hyper-V style checkpoints that keep the VM's path.
 * `create` freezes FILE's content into FILE's folder as BASE@NAME.avhdx and
 * turns FILE into a differencing child of it (vhdx_snapshot_create), `list`
 * shows the snapshots of FILE's chain newest first, `revert` throws away
 * everything written after a snapshot and `delete` merges a snapshot's layer
 * away. The verb is the first positional argument; the options of every verb
 * are parsed together and then checked against the verb. Every verb first
 * removes the FILE.vdisk-tmp-PID files an interrupted create or revert left
 * beside FILE (vhdx_snapshot_clean), saying so on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <vdisk/passthrough.h>

#include "cli.h"
#include "json.h"

enum {
	OPT_NAME = CLI_OPT_FIRST_PRIVATE,
};

static const struct option snapshot_options[] = {
	{ "name", required_argument, NULL, OPT_NAME },
	CLI_LONGOPT_JSON,
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

struct snap_args {
	const char *name; /* --name */
	bool json;
	bool json_given;
};

/* "2026-11-02T14:03:11Z" for @t (UTC, ISO 8601). */
static void iso_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "@%lld", (long long)t);
}

/* The default name: the current time, ISO 8601 basic format (no ':', which names forbid). */
static void default_name(char *buf, size_t len, unsigned attempt)
{
	time_t now = time(NULL);
	struct tm tm;
	size_t n = 0;

	if (gmtime_r(&now, &tm))
		n = strftime(buf, len, "%Y%m%dT%H%M%SZ", &tm);
	if (n == 0)
		n = (size_t)snprintf(buf, len, "%lld", (long long)now);
	if (attempt > 0 && n < len)
		snprintf(buf + n, len - n, "-%u", attempt);
}

static int snap_create(const struct vdisk_cmd *cmd, const char *path, const char *name)
{
	char file[4096], autoname[64];
	struct vdisk_err err = { 0 };
	unsigned attempt = 0;
	int r;

	for (;;) {
		if (!name)
			default_name(autoname, sizeof(autoname), attempt);
		memset(&err, 0, sizeof(err));
		r = vhdx_snapshot_create(path, name ? name : autoname, file, sizeof(file), &err);
		/* two default names in one second: take the next free suffix */
		if (r == -EEXIST && !name && ++attempt < 100)
			continue;
		break;
	}
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	printf("snapshot %s: content frozen in %s\n", name ? name : autoname, file);
	return CLI_EXIT_OK;
}

/* The file size of @path on disk, 0 when it cannot be read. */
static uint64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static const char *status_of(unsigned flags)
{
	return flags & VHDX_SNAPSHOT_DELETING ? "deleting" : "ready";
}

static int list_json(const struct vhdx_snapshot *v, const unsigned *f, unsigned n)
{
	struct json_writer w;
	char t[64];

	json_init(&w, stdout);
	json_array_begin(&w, NULL);
	for (unsigned i = 0; i < n; i++) {
		iso_time(v[i].created, t, sizeof(t));
		json_object_begin(&w, NULL);
		json_string(&w, "name", v[i].name);
		json_string(&w, "created", t);
		json_i64(&w, "created-epoch", v[i].created);
		json_string(&w, "file", v[i].file);
		json_u64(&w, "virtual-size", v[i].size_bytes);
		json_u64(&w, "file-size", file_size(v[i].file));
		json_string(&w, "parent", v[i].parent[0] ? v[i].parent : NULL);
		json_string(&w, "status", status_of(f[i]));
		json_object_end(&w);
	}
	json_array_end(&w);
	return json_finish(&w);
}

static void list_human(const char *path, const struct vhdx_snapshot *v, const unsigned *f,
		       unsigned n)
{
	char t[64], h[32];

	if (n == 0) {
		printf("%s has no snapshots\n", path);
		return;
	}
	/* (STATUS last: the file names before it vary in width) */
	printf("%-24s %-20s %10s  %s  %s\n", "NAME", "CREATED", "SIZE", "FILE (PARENT)", "STATUS");
	for (unsigned i = 0; i < n; i++) {
		iso_time(v[i].created, t, sizeof(t));
		printf("%-24s %-20s %10s  %s (%s)  %s\n", v[i].name, t,
		       cli_human_size(v[i].size_bytes, h, sizeof(h)), v[i].file,
		       v[i].parent[0] ? v[i].parent : "base image", status_of(f[i]));
	}
}

static int snap_list(const struct vdisk_cmd *cmd, const char *path, bool json)
{
	struct vhdx_snapshot *v = NULL;
	struct vdisk_err err = { 0 };
	unsigned *f = NULL;
	unsigned n = 0;
	int r;

	r = vhdx_snapshot_list_flags(path, &v, &f, &n, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	if (json)
		r = list_json(v, f, n) < 0 ? cli_fail(cmd, "writing the output failed") : 0;
	else
		list_human(path, v, f, n);
	free(v);
	free(f);
	return r;
}

static int snap_revert_delete(const struct vdisk_cmd *cmd, bool revert, const char *path,
			      const char *name)
{
	struct vdisk_err err = { 0 };
	int r;

	if (revert)
		r = vhdx_snapshot_revert(path, name, &err);
	else
		r = vhdx_snapshot_delete(path, name, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	return CLI_EXIT_OK;
}

static void report_leftover(void *opaque, const char *file, long pid, int error)
{
	const struct vdisk_cmd *cmd = opaque;

	if (error == 0)
		fprintf(stderr,
			"vdisk: %s: removed %s, left by an interrupted snapshot operation (process %ld is gone)\n",
			cmd->name, file, pid);
	else
		fprintf(stderr, "vdisk: %s: cannot remove %s, left by process %ld: %s, ignoring\n",
			cmd->name, file, pid, strerror(-error));
}

/*
 * Removes what interrupted creates and reverts left beside @path. A failure
 * to look (no such image, a broken chain) is left to the verb to report.
 */
static void clean_leftovers(const struct vdisk_cmd *cmd, const char *path)
{
	vhdx_snapshot_clean(path, report_leftover, (void *)cmd, NULL);
}

static int parse_snapshot_options(const struct vdisk_cmd *cmd, int argc, char **argv,
				  struct snap_args *a)
{
	int c, r = 0;

	while (r == 0 && (c = cli_getopt(cmd, argc, argv, "", snapshot_options)) != -1) {
		switch (c) {
		case OPT_NAME:
			a->name = optarg;
			break;
		case CLI_OPT_JSON:
			a->json = a->json_given = true;
			break;
		case CLI_OPT_OUTPUT:
			r = cli_parse_output(cmd, optarg, &a->json);
			a->json_given = true;
			break;
		case CLI_OPT_HELP:
			return -1;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	return r;
}

int cmd_snapshot(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct snap_args a = { NULL, false, false };
	const char *verb;
	int r, nargs;

	r = parse_snapshot_options(cmd, argc, argv, &a);
	if (r)
		return r < 0 ? CLI_EXIT_OK : r;
	nargs = argc - optind;
	r = cli_check_nargs(cmd, nargs);
	if (r)
		return r;
	verb = argv[optind];
	argv += optind + 1;
	nargs--;
	if (nargs >= 1) {
		/* passthrough disks have no snapshots: say so rather than fail parsing */
		struct vdisk_err err = { 0 };
		r = pt_refuse_snapshot("snapshot", argv[0], &err);
		if (r < 0)
			return cli_fail_err(cmd, NULL, r, &err);
	}
	if (a.name && strcmp(verb, "create") != 0)
		return cli_usage(cmd, "--name is an option of 'snapshot create'");
	if (a.json_given && strcmp(verb, "list") != 0)
		return cli_usage(cmd, "--json is an option of 'snapshot list'");
	if (strcmp(verb, "create") == 0 || strcmp(verb, "list") == 0) {
		if (nargs != 1)
			return cli_usage(cmd, "'snapshot %s' takes one FILE", verb);
		clean_leftovers(cmd, argv[0]);
		if (verb[0] == 'c')
			return snap_create(cmd, argv[0], a.name);
		return snap_list(cmd, argv[0], a.json);
	}
	if (strcmp(verb, "revert") == 0 || strcmp(verb, "delete") == 0) {
		if (nargs != 2)
			return cli_usage(cmd, "'snapshot %s' takes FILE and NAME", verb);
		clean_leftovers(cmd, argv[0]);
		return snap_revert_delete(cmd, verb[0] == 'r', argv[0], argv[1]);
	}
	return cli_usage(cmd, "unknown action '%s' (create, list, revert or delete)", verb);
}
