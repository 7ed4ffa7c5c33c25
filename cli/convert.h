/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vdisk convert: options and the copy pipeline (cli/copy.c) shared with cmd-convert.c. */
#ifndef VDISK_CLI_CONVERT_H
#define VDISK_CLI_CONVERT_H

#include "cli.h"

struct convert_opts {
	enum vdisk_format format; /* of DST: VHDX or RAW */
	enum vhdx_type type;
	uint32_t block_size; /* 0: the library's default */
	bool vhdx_opts;      /* --type or --block-size given */
	bool progress;
};

/*
 * Copies every non-zero byte of @src into @dst (which reads as zeros
 * everywhere) and flushes @dst. 0, or reports the error and returns 1.
 */
int convert_copy(const struct vdisk_cmd *cmd, const struct convert_opts *o, struct vdisk_disk *src,
		 const char *spath, struct vdisk_disk *dst, const char *dpath);

#endif /* VDISK_CLI_CONVERT_H */
