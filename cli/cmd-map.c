/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk map: the layout of the virtual disk as translate sees it, adjacent
 * extents of one kind merged: data (with the chain depth and file offset
 * it comes from), zero, unallocated. The JSON form has the fields of
 * `qemu-img map --output=json` (start, length, depth, present, zero, data,
 * offset).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "json.h"

#define MAP_EXTENTS 1024

static const struct option map_options[] = {
	CLI_LONGOPT_JSON,
	CLI_LONGOPT_SEARCH_DIR,
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

struct map_ctx {
	struct vdisk_disk *d;
	bool json;
	struct json_writer w;
	unsigned layers; /* images in the chain, >= 1 */
};

static const char *extent_type_name(uint16_t type)
{
	switch (type) {
	case VDISK_EXTENT_DATA:
		return "data";
	case VDISK_EXTENT_ZERO:
		return "zero";
	default:
		return "unallocated";
	}
}

/* Path of the image at chain depth @layer (0 = the opened one). */
static const char *layer_path(struct map_ctx *ctx, unsigned layer, const char *top)
{
	struct vhdx_image *img = vdisk_disk_vhdx(ctx->d);

	if (!img)
		return top;
	while (layer-- > 0 && img)
		img = vhdx_parent(img);
	return img ? vhdx_path(img) : top;
}

/* qemu reports unallocated ranges at the depth of the last layer it looked in. */
static unsigned extent_depth(const struct map_ctx *ctx, const struct vdisk_extent *e)
{
	return e->type == VDISK_EXTENT_UNALLOCATED ? ctx->layers - 1 : e->layer;
}

static void emit(struct map_ctx *ctx, const struct vdisk_extent *e, const char *path)
{
	bool data = e->type == VDISK_EXTENT_DATA;

	if (ctx->json) {
		json_object_begin(&ctx->w, NULL);
		json_u64(&ctx->w, "start", e->offset);
		json_u64(&ctx->w, "length", e->length);
		json_u64(&ctx->w, "depth", extent_depth(ctx, e));
		json_bool(&ctx->w, "present", e->type != VDISK_EXTENT_UNALLOCATED);
		json_bool(&ctx->w, "zero", !data);
		json_bool(&ctx->w, "data", data);
		if (data)
			json_u64(&ctx->w, "offset", e->file_offset);
		json_object_end(&ctx->w);
		return;
	}
	printf("0x%-16llx  0x%-16llx  ", (unsigned long long)e->offset,
	       (unsigned long long)e->length);
	if (data)
		printf("%-12s  %-5u  0x%-16llx  %s\n", "data", e->layer,
		       (unsigned long long)e->file_offset, layer_path(ctx, e->layer, path));
	else
		printf("%s\n", extent_type_name(e->type));
}

static bool mergeable(const struct vdisk_extent *a, const struct vdisk_extent *b)
{
	if (a->type != b->type || a->offset + a->length != b->offset)
		return false;
	if (a->type != VDISK_EXTENT_DATA)
		return a->type == VDISK_EXTENT_UNALLOCATED || a->layer == b->layer;
	return a->layer == b->layer && a->fd == b->fd &&
	       a->file_offset + a->length == b->file_offset;
}

static int walk(const struct vdisk_cmd *cmd, struct map_ctx *ctx, const char *path)
{
	static struct vdisk_extent ext[MAP_EXTENTS];
	struct vdisk_extent pending = { .length = 0 };
	uint64_t size = vdisk_disk_size(ctx->d), off = 0;
	int i, n;

	while (off < size) {
		n = vdisk_disk_translate(ctx->d, off, size - off, ext, MAP_EXTENTS);
		if (n <= 0)
			return cli_fail(cmd, "%s: translate at %llu: %s", path,
					(unsigned long long)off, strerror(n < 0 ? -n : EIO));
		for (i = 0; i < n; i++) {
			if (pending.length && mergeable(&pending, &ext[i])) {
				pending.length += ext[i].length;
				continue;
			}
			if (pending.length)
				emit(ctx, &pending, path);
			pending = ext[i];
		}
		off = ext[n - 1].offset + ext[n - 1].length;
	}
	if (pending.length)
		emit(ctx, &pending, path);
	return 0;
}

static int show_map(const struct vdisk_cmd *cmd, const char *path, bool json,
		    const struct cli_search_dirs *dirs)
{
	struct map_ctx ctx = { .json = json, .layers = 1 };
	struct vhdx_image *img;
	int r;

	r = cli_open_chain(cmd, path, VDISK_OPEN_RDONLY, dirs, &ctx.d);
	if (r)
		return r;
	for (img = vdisk_disk_vhdx(ctx.d); img && vhdx_parent(img); img = vhdx_parent(img))
		ctx.layers++;
	if (json) {
		json_init(&ctx.w, stdout);
		json_array_begin(&ctx.w, NULL);
	} else {
		printf("%-18s  %-18s  %-12s  %-5s  %-18s  %s\n", "Offset", "Length", "Type",
		       "Depth", "Mapped to", "File");
	}
	r = walk(cmd, &ctx, path);
	if (json) {
		json_array_end(&ctx.w);
		if (json_finish(&ctx.w) < 0 && r == 0)
			r = cli_fail(cmd, "writing the output failed");
	}
	vdisk_disk_close(ctx.d, NULL);
	return r;
}

int cmd_map(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct cli_search_dirs dirs = { { NULL }, 0 };
	bool json = false;
	int c, r;

	while ((c = cli_getopt(cmd, argc, argv, "", map_options)) != -1) {
		switch (c) {
		case CLI_OPT_JSON:
			json = true;
			break;
		case CLI_OPT_OUTPUT:
			r = cli_parse_output(cmd, optarg, &json);
			if (r)
				return r;
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
	return show_map(cmd, argv[optind], json, &dirs);
}
