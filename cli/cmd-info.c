/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk info: what an image is. VHDX images are opened read-only without
 * their parent chain (so an orphaned differencing image still shows its
 * parent locator); anything else is shown as raw. JSON keys follow
 * qemu-img info where the meaning matches (virtual-size, cluster-size,
 * actual-size, dirty-flag, backing-filename). With --chain the parents are
 * opened too (as a read would, --search-dir folders included) and every
 * layer is shown, top first; --json then prints an array, as qemu-img info
 * --backing-chain does.
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

enum {
	OPT_CHAIN = CLI_OPT_FIRST_PRIVATE,
};

static const struct option info_options[] = {
	CLI_LONGOPT_JSON,
	{ "chain", no_argument, NULL, OPT_CHAIN },
	{ "search-dir", required_argument, NULL, CLI_OPT_SEARCH_DIR },
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

static const char *const block_state_names[8] = {
	[VHDX_BLOCK_NOT_PRESENT] = "not-present",
	[VHDX_BLOCK_UNDEFINED] = "undefined",
	[VHDX_BLOCK_ZERO] = "zero",
	[VHDX_BLOCK_UNMAPPED] = "unmapped",
	[VHDX_BLOCK_FULLY_PRESENT] = "fully-present",
	[VHDX_BLOCK_PARTIALLY_PRESENT] = "partially-present",
};

static const char *type_name(enum vhdx_type t)
{
	switch (t) {
	case VHDX_TYPE_DYNAMIC:
		return "dynamic";
	case VHDX_TYPE_FIXED:
		return "fixed";
	case VHDX_TYPE_DIFFERENCING:
		return "differencing";
	}
	return "unknown";
}

/* The parent file name as recorded in the locator (relative path first, as Hyper-V resolves). */
static const char *locator_parent(const struct vhdx_info *in)
{
	static const char *const keys[] = { "relative_path", "absolute_win32_path", "volume_path" };
	size_t k;
	unsigned i;

	for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		for (i = 0; i < in->locator_count && i < VHDX_MAX_LOCATOR_ENTRIES; i++)
			if (strcmp(in->locator[i].key, keys[k]) == 0)
				return in->locator[i].value;
	return NULL;
}

static void json_guid(struct json_writer *w, const char *key, const struct vdisk_guid *g)
{
	char s[VDISK_GUID_STRLEN];

	vdisk_guid_format(g, s);
	json_string(w, key, s);
}

static void info_vhdx_json(struct json_writer *w, const struct vhdx_info *in)
{
	unsigned i;

	json_u64(w, "cluster-size", in->block_size_bytes);
	json_bool(w, "dirty-flag", !vdisk_guid_is_zero(&in->log_guid));
	json_string(w, "type", type_name(in->type));
	json_u64(w, "allocated-size", in->allocated_bytes);
	json_u64(w, "logical-sector-size", in->logical_sector_bytes);
	json_u64(w, "physical-sector-size", in->physical_sector_bytes);
	json_u64(w, "total-blocks", in->blocks_total);
	json_object_begin(w, "block-states");
	for (i = 0; i < 8; i++)
		if (block_state_names[i])
			json_u64(w, block_state_names[i], in->blocks_by_state[i]);
	json_object_end(w);
	json_guid(w, "file-write-guid", &in->file_write_guid);
	json_guid(w, "data-write-guid", &in->data_write_guid);
	json_guid(w, "log-guid", &in->log_guid);
	json_guid(w, "page83-data", &in->page83);
	json_string(w, "creator", in->creator);
	json_u64(w, "header-sequence", in->header_sequence);
	json_u64(w, "current-header", (uint64_t)in->current_header);
	json_u64(w, "log-offset", in->log_offset);
	json_u64(w, "log-length", in->log_length);
	json_bool(w, "log-replayed", in->log_replayed);
	json_bool(w, "leave-blocks-allocated", in->leave_block_allocated);
	json_bool(w, "has-parent", in->has_parent);
	if (in->has_parent) {
		json_string(w, "backing-filename", locator_parent(in));
		json_object_begin(w, "parent-locator");
		for (i = 0; i < in->locator_count && i < VHDX_MAX_LOCATOR_ENTRIES; i++)
			json_string(w, in->locator[i].key, in->locator[i].value);
		json_object_end(w);
	}
}

static void info_object_json(struct json_writer *w, const char *path, const char *format,
			     uint64_t size, const struct stat *st, const struct vhdx_info *in)
{
	json_object_begin(w, NULL);
	json_u64(w, "virtual-size", size);
	json_string(w, "filename", path);
	json_string(w, "format", format);
	json_u64(w, "actual-size", (uint64_t)st->st_blocks * 512);
	json_u64(w, "file-size", (uint64_t)st->st_size);
	if (in)
		info_vhdx_json(w, in);
	else
		json_bool(w, "dirty-flag", false);
	if (in && in->chain_depth) {
		/* --chain: the parent file actually opened (qemu-img's full-backing-filename) */
		json_u64(w, "chain-depth", in->chain_depth);
		if (in->has_parent)
			json_string(w, "full-backing-filename", in->parent_path);
	}
	json_object_end(w);
}

static int print_json(const char *path, const char *format, uint64_t size, const struct stat *st,
		      const struct vhdx_info *in)
{
	struct json_writer w;

	json_init(&w, stdout);
	info_object_json(&w, path, format, size, st, in);
	return json_finish(&w);
}

static void print_size(const char *label, uint64_t bytes)
{
	char h[32];

	printf("%-20s %s (%llu bytes)\n", label, cli_human_size(bytes, h, sizeof(h)),
	       (unsigned long long)bytes);
}

static void print_guid(const char *label, const struct vdisk_guid *g)
{
	char s[VDISK_GUID_STRLEN];

	vdisk_guid_format(g, s);
	printf("%-20s %s\n", label, s);
}

static void info_vhdx_blocks(const struct vhdx_info *in)
{
	unsigned i;

	printf("%-20s %llu total", "blocks:", (unsigned long long)in->blocks_total);
	for (i = 0; i < 8; i++)
		if (block_state_names[i] && in->blocks_by_state[i])
			printf(", %llu %s", (unsigned long long)in->blocks_by_state[i],
			       block_state_names[i]);
	printf("\n");
}

static void info_vhdx_human(const struct vhdx_info *in)
{
	char h[32], g[VDISK_GUID_STRLEN];
	unsigned i;

	printf("%-20s %s\n", "type:", type_name(in->type));
	printf("%-20s %s\n", "block size:", cli_human_size(in->block_size_bytes, h, sizeof(h)));
	print_size("allocated:", in->allocated_bytes);
	info_vhdx_blocks(in);
	printf("%-20s %u\n", "logical sector:", in->logical_sector_bytes);
	printf("%-20s %u\n", "physical sector:", in->physical_sector_bytes);
	print_guid("file write GUID:", &in->file_write_guid);
	print_guid("data write GUID:", &in->data_write_guid);
	print_guid("page 83 data:", &in->page83);
	printf("%-20s %s\n", "creator:", in->creator);
	printf("%-20s %d (sequence %llu)\n", "current header:", in->current_header,
	       (unsigned long long)in->header_sequence);
	printf("%-20s %s at 0x%x\n", "log region:", cli_human_size(in->log_length, h, sizeof(h)),
	       in->log_offset);
	if (vdisk_guid_is_zero(&in->log_guid)) {
		printf("%-20s clean\n", "log:");
	} else {
		vdisk_guid_format(&in->log_guid, g);
		printf("%-20s dirty%s (log GUID %s)\n",
		       "log:", in->log_replayed ? ", replayed in memory" : "", g);
	}
	if (in->leave_block_allocated)
		printf("%-20s yes\n", "leave blocks allocated:");
	if (in->chain_depth)
		printf("%-20s %u\n", "chain depth:", in->chain_depth);
	if (!in->has_parent)
		return;
	printf("%-20s %s\n", "parent:", locator_parent(in) ? locator_parent(in) : "(unknown)");
	if (in->chain_depth && in->parent_path)
		printf("%-20s %s\n", "parent file:", in->parent_path);
	for (i = 0; i < in->locator_count && i < VHDX_MAX_LOCATOR_ENTRIES; i++)
		printf("  %-18s %s\n", in->locator[i].key, in->locator[i].value);
}

static void print_human(const char *path, const char *format, uint64_t size, const struct stat *st,
			const struct vhdx_info *in)
{
	printf("%-20s %s\n", "filename:", path);
	printf("%-20s %s\n", "format:", format);
	print_size("virtual size:", size);
	print_size("file size:", (uint64_t)st->st_size);
	print_size("disk usage:", (uint64_t)st->st_blocks * 512);
	if (in)
		info_vhdx_human(in);
}

/* Opens VHDX read-only with no parent chain; fills @in. 0 or exit code 1. */
static int load_vhdx(const struct vdisk_cmd *cmd, const char *path, struct vhdx_info *in)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vdisk_err err = { 0 };
	int r;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NO_PARENT;
	r = vhdx_open(path, &o, &img, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	vhdx_get_info(img, in);
	in->parent_path = NULL; /* borrowed from img */
	in->chain_depth = 0;    /* parents not opened: unknown */
	vhdx_close(img, NULL);
	return 0;
}

/* --chain: opens @path with its parents and shows every layer, top first. 0 or 1. */
static int show_chain(const struct vdisk_cmd *cmd, const char *path, bool json,
		      const char *const *search_dirs)
{
	struct vhdx_open_opts o;
	struct vhdx_image *top, *l;
	struct vdisk_err err = { 0 };
	struct vhdx_info *in = calloc(1, sizeof(*in));
	struct json_writer w;
	struct stat st;
	int r = 0;

	if (!in)
		return cli_fail(cmd, "%s", strerror(ENOMEM));
	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY;
	o.search_dirs = search_dirs;
	r = vhdx_open(path, &o, &top, &err);
	if (r < 0) {
		free(in);
		return cli_fail_err(cmd, path, r, &err);
	}
	json_init(&w, stdout);
	if (json)
		json_array_begin(&w, NULL);
	for (l = top; l && r == 0; l = vhdx_parent(l)) {
		const char *lp = vhdx_path(l);
		if (stat(lp, &st) < 0) {
			r = cli_fail(cmd, "%s: %s", lp, strerror(errno));
			break;
		}
		vhdx_get_info(l, in);
		if (json) {
			info_object_json(&w, lp, "vhdx", in->disk_size_bytes, &st, in);
		} else {
			if (l != top)
				printf("\n");
			print_human(lp, "vhdx", in->disk_size_bytes, &st, in);
		}
	}
	if (json) {
		json_array_end(&w);
		if (r == 0 && json_finish(&w) < 0)
			r = cli_fail(cmd, "writing the output failed");
	}
	vhdx_close(top, NULL);
	free(in);
	return r;
}

/* Size of a raw file or block device through the disk interface. 0 or exit code 1. */
static int load_raw(const struct vdisk_cmd *cmd, const char *path, uint64_t *ret_size)
{
	struct vdisk_disk *d;
	struct vdisk_err err = { 0 };
	int r;

	r = vdisk_disk_open(path, VDISK_FORMAT_RAW, VDISK_OPEN_RDONLY, &d, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	*ret_size = vdisk_disk_size(d);
	vdisk_disk_close(d, NULL);
	return 0;
}

/* Probes @path by content. 1 VHDX, 0 other, or a negative errno. */
static int probe_vhdx(const char *path, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;

	if (fd < 0)
		return -errno;
	if (fstat(fd, st) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = vhdx_probe_fd(fd) ? 1 : 0;
	close(fd);
	return r;
}

static int show_info(const struct vdisk_cmd *cmd, const char *path, bool json)
{
	struct vhdx_info *in = NULL;
	struct stat st;
	uint64_t size = 0;
	int r = probe_vhdx(path, &st);

	if (r < 0)
		return cli_fail(cmd, "%s: %s", path, strerror(-r));
	if (r == 1) {
		in = calloc(1, sizeof(*in));
		if (!in)
			return cli_fail(cmd, "%s", strerror(ENOMEM));
		r = load_vhdx(cmd, path, in);
		size = in->disk_size_bytes;
	} else {
		r = load_raw(cmd, path, &size);
	}
	if (r == 0 && json && print_json(path, in ? "vhdx" : "raw", size, &st, in) < 0)
		r = cli_fail(cmd, "writing the output failed");
	else if (r == 0 && !json)
		print_human(path, in ? "vhdx" : "raw", size, &st, in);
	free(in);
	return r;
}

int cmd_info(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct cli_search_dirs dirs = { { NULL }, 0 };
	bool json = false, chain = false;
	int c, r;

	while ((c = cli_getopt(cmd, argc, argv, "", info_options)) != -1) {
		switch (c) {
		case CLI_OPT_JSON:
			json = true;
			break;
		case CLI_OPT_OUTPUT:
			r = cli_parse_output(cmd, optarg, &json);
			if (r)
				return r;
			break;
		case OPT_CHAIN:
			chain = true;
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
	if (dirs.n && !chain)
		return cli_usage(cmd, "--search-dir needs --chain");
	if (chain)
		return show_chain(cmd, argv[optind], json, dirs.n ? dirs.dirs : NULL);
	return show_info(cmd, argv[optind], json);
}
