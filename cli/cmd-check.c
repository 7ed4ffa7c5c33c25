/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk check: runs vhdx_check() on a VHDX image and prints its findings
 * and a summary in the words of qemu-img check. Exit status as qemu-img:
 * 0 clean, 1 the check could not run, 2 corruption, 3 leaks only. Like
 * qemu-img, a differencing image whose parent chain cannot be opened (not
 * found, even in the --search-dir folders, or not matching) fails with 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"

#define CHECK_EXIT_CORRUPT 2
#define CHECK_EXIT_LEAKS   3

enum {
	OPT_REPAIR = CLI_OPT_FIRST_PRIVATE
};

static const struct option check_options[] = {
	CLI_LONGOPT_JSON,
	{ "repair", no_argument, NULL, OPT_REPAIR },
	CLI_LONGOPT_SEARCH_DIR,
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

struct finding {
	enum vhdx_check_severity sev;
	char *msg;
};

struct check_ctx {
	bool json;
	struct finding *findings; /* JSON only: printed after the check */
	size_t count, cap;
	bool nomem;
};

static const char *severity_name(enum vhdx_check_severity sev)
{
	switch (sev) {
	case VHDX_CHECK_INFO:
		return "info";
	case VHDX_CHECK_LEAK:
		return "leak";
	case VHDX_CHECK_CORRUPT:
		return "corruption";
	case VHDX_CHECK_REPAIRED:
		return "repaired";
	}
	return "unknown";
}

static const char *severity_prefix(enum vhdx_check_severity sev)
{
	switch (sev) {
	case VHDX_CHECK_INFO:
		return "Info: ";
	case VHDX_CHECK_LEAK:
		return "Leaked: ";
	case VHDX_CHECK_CORRUPT:
		return "ERROR ";
	case VHDX_CHECK_REPAIRED:
		return "Repaired: ";
	}
	return "";
}

static void report(void *opaque, enum vhdx_check_severity sev, const char *msg)
{
	struct check_ctx *ctx = opaque;
	struct finding *f;

	if (!ctx->json) {
		printf("%s%s\n", severity_prefix(sev), msg);
		return;
	}
	if (ctx->count == ctx->cap) {
		size_t cap = ctx->cap ? ctx->cap * 2 : 64;

		f = realloc(ctx->findings, cap * sizeof(*f));
		if (!f) {
			ctx->nomem = true;
			return;
		}
		ctx->findings = f;
		ctx->cap = cap;
	}
	f = &ctx->findings[ctx->count];
	f->sev = sev;
	f->msg = strdup(msg);
	if (!f->msg)
		ctx->nomem = true;
	else
		ctx->count++;
}

static int print_json(const char *path, const struct vhdx_check_result *res,
		      const struct check_ctx *ctx, uint64_t end, bool repair)
{
	struct json_writer w;
	size_t i;

	json_init(&w, stdout);
	json_object_begin(&w, NULL);
	json_string(&w, "filename", path);
	json_string(&w, "format", "vhdx");
	json_u64(&w, "check-errors", 0);
	json_u64(&w, "corruptions", res->corruptions);
	json_u64(&w, "leaks", res->leaks);
	json_u64(&w, "leaked-bytes", res->leaked_bytes);
	if (repair)
		json_u64(&w, "repaired", res->repaired);
	json_u64(&w, "total-clusters", res->total_blocks);
	json_u64(&w, "allocated-clusters", res->allocated_blocks);
	json_u64(&w, "image-end-offset", end);
	json_bool(&w, "log-was-dirty", res->log_was_dirty);
	json_array_begin(&w, "findings");
	for (i = 0; i < ctx->count; i++) {
		json_object_begin(&w, NULL);
		json_string(&w, "severity", severity_name(ctx->findings[i].sev));
		json_string(&w, "message", ctx->findings[i].msg);
		json_object_end(&w);
	}
	json_array_end(&w);
	json_object_end(&w);
	return json_finish(&w);
}

static void print_human(const struct vhdx_check_result *res, uint64_t end, bool repair)
{
	if (repair && res->repaired)
		printf("%llu problem%s found and repaired.\n", (unsigned long long)res->repaired,
		       res->repaired == 1 ? " was" : "s were");
	if (res->corruptions == 0 && res->leaks == 0)
		printf("No errors were found on the image.\n");
	if (res->corruptions)
		printf("\n%llu errors were found on the image.\nData may be corrupted, or "
		       "further writes to the image may corrupt it.\n",
		       (unsigned long long)res->corruptions);
	if (res->leaks)
		printf("\n%llu leaked clusters (%llu bytes) were found on the image.\nThis "
		       "means waste of disk space, but no harm to data.\n",
		       (unsigned long long)res->leaks, (unsigned long long)res->leaked_bytes);
	if (res->total_blocks)
		printf("%llu/%llu = %.2f%% allocated\n", (unsigned long long)res->allocated_blocks,
		       (unsigned long long)res->total_blocks,
		       100.0 * (double)res->allocated_blocks / (double)res->total_blocks);
	printf("Image end offset: %llu\n", (unsigned long long)end);
}

/* Refuses anything that is not VHDX by content: a raw file has nothing to check. */
static int require_vhdx(const struct vdisk_cmd *cmd, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool vhdx;

	if (fd < 0)
		return cli_fail(cmd, "%s: %s", path, strerror(errno));
	vhdx = vhdx_probe_fd(fd);
	close(fd);
	if (!vhdx)
		return cli_fail(cmd,
				"%s: not a VHDX image (no VHDX file identifier); "
				"raw images have nothing to check",
				path);
	return 0;
}

/*
 * A differencing image's parents must be there and match: opens the chain
 * read-only, without locks (like the check itself, it may run on an image in
 * use). An image that cannot even be opened alone was reported by the check.
 * 0, or reports the error and returns 1.
 */
static int check_chain(const struct vdisk_cmd *cmd, const char *path,
		       const struct cli_search_dirs *dirs)
{
	struct vdisk_err err = { 0 };
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vhdx_info info;
	int r;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK | VHDX_OPEN_NO_PARENT;
	if (vhdx_open(path, &o, &img, &err) < 0)
		return 0;
	vhdx_get_info(img, &info);
	vhdx_close(img, NULL);
	if (!info.has_parent)
		return 0;
	o.flags &= ~(unsigned)VHDX_OPEN_NO_PARENT;
	o.search_dirs = dirs->n ? dirs->dirs : NULL;
	r = vhdx_open(path, &o, &img, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	vhdx_close(img, NULL);
	return 0;
}

static int run_check(const struct vdisk_cmd *cmd, const char *path, bool json, bool repair,
		     const struct cli_search_dirs *dirs)
{
	struct check_ctx ctx = { .json = json };
	struct vhdx_check_result res = { 0 };
	struct vdisk_err err = { 0 };
	struct stat st;
	uint64_t end;
	size_t i;
	int r;

	r = require_vhdx(cmd, path);
	if (r)
		return r;
	r = vhdx_check(path, repair ? VHDX_CHECK_REPAIR : 0, report, &ctx, &res, &err);
	if (r < 0) {
		r = cli_fail_err(cmd, path, r, &err);
		goto out_free;
	}
	end = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
	if (res.corruptions == 0 && check_chain(cmd, path, dirs))
		r = CLI_EXIT_FAIL;
	else if (ctx.nomem)
		r = cli_fail(cmd, "%s", strerror(ENOMEM));
	else if (json && print_json(path, &res, &ctx, end, repair) < 0)
		r = cli_fail(cmd, "writing the output failed");
	else if (!json)
		print_human(&res, end, repair);
	if (r == 0)
		r = res.corruptions ? CHECK_EXIT_CORRUPT : res.leaks ? CHECK_EXIT_LEAKS : 0;
out_free:
	for (i = 0; i < ctx.count; i++)
		free(ctx.findings[i].msg);
	free(ctx.findings);
	return r;
}

int cmd_check(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct cli_search_dirs dirs = { { NULL }, 0 };
	bool json = false, repair = false;
	int c, r;

	while ((c = cli_getopt(cmd, argc, argv, "", check_options)) != -1) {
		switch (c) {
		case CLI_OPT_JSON:
			json = true;
			break;
		case CLI_OPT_OUTPUT:
			r = cli_parse_output(cmd, optarg, &json);
			if (r)
				return r;
			break;
		case OPT_REPAIR:
			repair = true;
			break;
		case CLI_OPT_SEARCH_DIR:
			r = cli_search_dir_add(cmd, &dirs, optarg);
			if (r)
				return r;
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
	return run_check(cmd, argv[optind], json, repair, &dirs);
}
