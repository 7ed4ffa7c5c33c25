/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk create: makes a new VHDX image through vhdx_create(), dynamic or
 * fixed, or differencing over --parent (then SIZE may be left out and is
 * taken from the parent by the library).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <vdisk/vhdx.h>

#include "cli.h"

enum {
	OPT_TYPE = CLI_OPT_FIRST_PRIVATE,
	OPT_BLOCK_SIZE,
	OPT_LOGICAL,
	OPT_PHYSICAL,
	OPT_PARENT,
	OPT_OVERWRITE,
};

static const struct option create_options[] = {
	{ "type", required_argument, NULL, OPT_TYPE },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	{ "logical-sector", required_argument, NULL, OPT_LOGICAL },
	{ "physical-sector", required_argument, NULL, OPT_PHYSICAL },
	{ "parent", required_argument, NULL, OPT_PARENT },
	{ "overwrite", no_argument, NULL, OPT_OVERWRITE },
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

int cli_parse_vhdx_type(const struct vdisk_cmd *cmd, const char *arg, enum vhdx_type *ret_type)
{
	if (strcmp(arg, "dynamic") == 0)
		*ret_type = VHDX_TYPE_DYNAMIC;
	else if (strcmp(arg, "fixed") == 0)
		*ret_type = VHDX_TYPE_FIXED;
	else
		return cli_usage(cmd, "--type: '%s' is not dynamic or fixed", arg);
	return 0;
}

static int parse_sector(const struct vdisk_cmd *cmd, const char *opt, const char *arg,
			uint32_t *ret_bytes)
{
	if (strcmp(arg, "512") == 0)
		*ret_bytes = 512;
	else if (strcmp(arg, "4096") == 0 || strcmp(arg, "4K") == 0 || strcmp(arg, "4k") == 0)
		*ret_bytes = 4096;
	else
		return cli_usage(cmd, "%s: '%s' is not 512 or 4096", opt, arg);
	return 0;
}

int cli_parse_block_size(const struct vdisk_cmd *cmd, const char *arg, uint32_t *ret_bytes)
{
	uint64_t v;
	int r = cli_parse_size_arg(cmd, "--block-size", arg, &v);

	if (r)
		return r;
	if (v < VHDX_MIN_BLOCK_SIZE || v > VHDX_MAX_BLOCK_SIZE || (v & (v - 1)) != 0)
		return cli_usage(cmd, "--block-size: %s is not a power of two from 1M to 256M",
				 arg);
	*ret_bytes = (uint32_t)v;
	return 0;
}

/* Which options were given, so the parent's geometry fills in the others. */
struct create_given {
	bool type, logical, physical;
};

static int parse_create_options(const struct vdisk_cmd *cmd, int argc, char **argv,
				struct vhdx_create_opts *o, struct create_given *given)
{
	int c, r = 0;

	while (r == 0 && (c = cli_getopt(cmd, argc, argv, "", create_options)) != -1) {
		switch (c) {
		case OPT_TYPE:
			r = cli_parse_vhdx_type(cmd, optarg, &o->type);
			given->type = true;
			break;
		case OPT_BLOCK_SIZE:
			r = cli_parse_block_size(cmd, optarg, &o->block_size_bytes);
			break;
		case OPT_LOGICAL:
			r = parse_sector(cmd, "--logical-sector", optarg, &o->logical_sector_bytes);
			given->logical = true;
			break;
		case OPT_PHYSICAL:
			r = parse_sector(cmd, "--physical-sector", optarg,
					 &o->physical_sector_bytes);
			given->physical = true;
			break;
		case OPT_PARENT:
			o->parent_path = optarg;
			break;
		case OPT_OVERWRITE:
			o->overwrite = true;
			break;
		case CLI_OPT_HELP:
			return -1;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	return r;
}

/* Fails when @given (an option or SIZE) differs from the parent's @have. 0 or exit code 1. */
static int same_as_parent(const struct vdisk_cmd *cmd, const char *what, uint64_t given,
			  uint64_t have)
{
	if (given == have)
		return 0;
	return cli_fail(cmd,
			"%s %llu differs from the parent's (%llu): a differencing image "
			"has the geometry of its parent",
			what, (unsigned long long)given, (unsigned long long)have);
}

/*
 * A differencing image has the sector sizes of its parent and at least its
 * size: fill in those not given, refuse those given differently.
 */
static int inherit_parent(const struct vdisk_cmd *cmd, struct vhdx_create_opts *o,
			  const struct create_given *given)
{
	struct vdisk_disk *parent;
	uint64_t size;
	uint32_t lss, pss;
	int r;

	r = cli_open_disk(cmd, o->parent_path, VDISK_OPEN_RDONLY, &parent);
	if (r)
		return r;
	size = vdisk_disk_size(parent);
	lss = vdisk_disk_logical_sector(parent);
	pss = vdisk_disk_physical_sector(parent);
	vdisk_disk_close(parent, NULL);
	if (o->disk_size_bytes == 0)
		o->disk_size_bytes = size;
	if (!given->logical)
		o->logical_sector_bytes = lss;
	if (!given->physical)
		o->physical_sector_bytes = pss;
	/* a child may be larger than its parent (it reads zeros past the parent's end) */
	if (o->disk_size_bytes < size)
		return cli_fail(cmd, "SIZE %llu is smaller than the parent's (%llu)",
				(unsigned long long)o->disk_size_bytes, (unsigned long long)size);
	r = same_as_parent(cmd, "--logical-sector", o->logical_sector_bytes, lss);
	if (!r)
		r = same_as_parent(cmd, "--physical-sector", o->physical_sector_bytes, pss);
	return r;
}

int cmd_create(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct vhdx_create_opts o;
	struct vdisk_err err = { 0 };
	struct create_given given = { false };
	const char *path;
	int r, nargs;

	vhdx_create_opts_init(&o, sizeof(o));
	r = parse_create_options(cmd, argc, argv, &o, &given);
	if (r)
		return r < 0 ? CLI_EXIT_OK : r;
	nargs = argc - optind;
	r = cli_check_nargs(cmd, nargs);
	if (r)
		return r;
	path = argv[optind];
	if (!o.parent_path && nargs < 2)
		return cli_usage(cmd, "SIZE is required without --parent");
	if (o.parent_path && given.type)
		return cli_usage(cmd, "--type cannot be combined with --parent");
	if (nargs == 2) {
		r = cli_parse_size_arg(cmd, "SIZE", argv[optind + 1], &o.disk_size_bytes);
		if (r)
			return r;
	}
	if (o.parent_path) {
		o.type = VHDX_TYPE_DIFFERENCING;
		r = inherit_parent(cmd, &o, &given);
		if (r)
			return r;
	}
	r = vhdx_create(path, &o, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	return CLI_EXIT_OK;
}
