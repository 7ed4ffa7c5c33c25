/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk convert: copies the virtual content of SRC (any format, a
 * differencing chain flattened) into a new DST, VHDX or sparse raw. Only
 * data is copied: translate tells which extents are unallocated or zero,
 * and data chunks that turn out to be zeros are skipped too, at 4 KiB
 * granularity; the fresh DST already reads as zeros everywhere.
 *
 * A reader thread reads SRC extents straight from their layer files into a
 * ring of 4 MiB buffers and scans them for zeros, while the main thread
 * writes the previous buffers into DST, so reading and writing overlap.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "convert.h"
#include "progress.h"

enum {
	OPT_TYPE = CLI_OPT_FIRST_PRIVATE,
	OPT_BLOCK_SIZE,
};

static const struct option convert_options[] = {
	{ "progress", no_argument, NULL, 'p' },
	{ "output-format", required_argument, NULL, 'O' },
	{ "type", required_argument, NULL, OPT_TYPE },
	{ "block-size", required_argument, NULL, OPT_BLOCK_SIZE },
	CLI_LONGOPT_SEARCH_DIR,
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

static int parse_convert_options(const struct vdisk_cmd *cmd, int argc, char **argv,
				 struct convert_opts *o, struct cli_search_dirs *dirs)
{
	int c, r = 0;

	while (r == 0 && (c = cli_getopt(cmd, argc, argv, "pO:", convert_options)) != -1) {
		switch (c) {
		case 'p':
			o->progress = true;
			break;
		case 'O':
			if (strcmp(optarg, "vhdx") == 0)
				o->format = VDISK_FORMAT_VHDX;
			else if (strcmp(optarg, "raw") == 0)
				o->format = VDISK_FORMAT_RAW;
			else
				r = cli_usage(cmd, "-O: '%s' is not vhdx or raw", optarg);
			break;
		case OPT_TYPE:
			r = cli_parse_vhdx_type(cmd, optarg, &o->type);
			o->vhdx_opts = true;
			break;
		case OPT_BLOCK_SIZE:
			r = cli_parse_block_size(cmd, optarg, &o->block_size);
			o->vhdx_opts = true;
			break;
		case CLI_OPT_SEARCH_DIR: /* parents of SRC */
			r = cli_search_dir_add(cmd, dirs, optarg);
			break;
		case CLI_OPT_HELP:
			return -1;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	if (r == 0 && o->vhdx_opts && o->format != VDISK_FORMAT_VHDX)
		r = cli_usage(cmd, "--type and --block-size need -O vhdx");
	return r;
}

/*
 * A raw DST: a sparse file of SRC's size, or an existing block device at
 * least that large, zeroed first (BLKZEROOUT) since the copy skips zeros.
 */
static int create_raw(const struct vdisk_cmd *cmd, uint64_t size, const char *path,
		      struct vdisk_disk **ret_dst)
{
	struct vdisk_err err = { 0 };
	struct stat st;
	int fd, r;

	if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode)) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return cli_fail(cmd, "%s: %s", path, strerror(errno));
		r = ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
		close(fd);
		if (r < 0)
			return cli_fail(cmd, "%s: ftruncate: %s", path, strerror(-r));
	}
	r = vdisk_disk_open(path, VDISK_FORMAT_RAW, 0, ret_dst, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	if (!S_ISBLK(st.st_mode) || size == 0)
		return 0;
	if (vdisk_disk_size(*ret_dst) < size)
		r = cli_fail(cmd, "%s: the device has %llu bytes, the source %llu", path,
			     (unsigned long long)vdisk_disk_size(*ret_dst),
			     (unsigned long long)size);
	else if ((r = vdisk_disk_write_zeroes(*ret_dst, 0, size)) < 0)
		r = cli_fail(cmd, "%s: zeroing the device: %s", path, strerror(-r));
	if (r) {
		vdisk_disk_close(*ret_dst, NULL);
		*ret_dst = NULL;
	}
	return r;
}

/* A VHDX DST with the size (rounded up to a sector) and the sector sizes of @src. */
static int create_vhdx(const struct vdisk_cmd *cmd, const struct convert_opts *o,
		       struct vdisk_disk *src, const char *path, struct vdisk_disk **ret_dst)
{
	struct vhdx_create_opts c;
	struct vdisk_err err = { 0 };
	int r;

	vhdx_create_opts_init(&c, sizeof(c));
	c.type = o->type;
	c.block_size_bytes = o->block_size;
	c.logical_sector_bytes = vdisk_disk_logical_sector(src) == 4096 ? 4096 : 512;
	c.physical_sector_bytes = vdisk_disk_physical_sector(src) == 512 ? 512 : 4096;
	/* VHDX sizes are whole logical sectors; a raw file may end mid-sector */
	c.disk_size_bytes = (vdisk_disk_size(src) + c.logical_sector_bytes - 1) /
			    c.logical_sector_bytes * c.logical_sector_bytes;
	c.overwrite = true;
	r = vhdx_create(path, &c, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	r = vdisk_disk_open(path, VDISK_FORMAT_VHDX, 0, ret_dst, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	return 0;
}

/* Refuses DST naming the same file as SRC: creating it would destroy the source. */
static int check_distinct(const struct vdisk_cmd *cmd, const char *src, const char *dst)
{
	struct stat a, b;

	if (stat(src, &a) == 0 && stat(dst, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino)
		return cli_usage(cmd, "SRC and DST are the same file");
	return 0;
}

int cmd_convert(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct convert_opts o = { .format = VDISK_FORMAT_VHDX, .type = VHDX_TYPE_DYNAMIC };
	struct cli_search_dirs dirs = { { NULL }, 0 };
	struct vdisk_disk *src, *dst;
	const char *spath, *dpath;
	int r;

	r = parse_convert_options(cmd, argc, argv, &o, &dirs);
	if (r)
		return r < 0 ? CLI_EXIT_OK : r;
	r = cli_check_nargs(cmd, argc - optind);
	if (r)
		return r;
	spath = argv[optind];
	dpath = argv[optind + 1];
	r = check_distinct(cmd, spath, dpath);
	if (r)
		return r;
	if (!o.progress)
		o.progress = isatty(STDERR_FILENO);
	r = cli_open_chain(cmd, spath, VDISK_OPEN_RDONLY, &dirs, &src);
	if (r)
		return r;
	if (o.format == VDISK_FORMAT_RAW)
		r = create_raw(cmd, vdisk_disk_size(src), dpath, &dst);
	else
		r = create_vhdx(cmd, &o, src, dpath, &dst);
	if (r == 0) {
		r = convert_copy(cmd, &o, src, spath, dst, dpath);
		if (r)
			vdisk_disk_close(dst, NULL); /* one line per failure: the first error */
		else
			r = cli_close_disk(cmd, dpath, dst);
	}
	vdisk_disk_close(src, NULL);
	return r;
}
