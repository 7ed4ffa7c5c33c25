/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Extent helpers of the tool: refining what translate returns with the
 * holes of the layer files, so that commands which read every data extent
 * (convert, checksum) never read a hole: it reads as zeros by definition;
 * and announcing the data extents to the kernel ahead of the reads.
 */
#ifndef VDISK_CLI_EXTENT_H
#define VDISK_CLI_EXTENT_H

#include <vdisk/common.h>

/*
 * Copies @in[0..@n) to @out (at most @max entries), splitting each DATA
 * extent where its layer file has holes (SEEK_DATA/SEEK_HOLE); the holes
 * become ZERO extents. Returns the number written; when @max is too small
 * they cover a prefix of the input (continue from the end of the last one).
 */
int cli_split_holes(const struct vdisk_extent *in, int n, struct vdisk_extent *out, int max);

/* Announces the data extents of a translated batch to the kernel ahead of the reads. */
struct cli_readahead {
	const struct vdisk_extent *ext;
	int n, idx;
	uint64_t done; /* bytes of ext[idx] already announced */
};

void cli_readahead_init(struct cli_readahead *ra, const struct vdisk_extent *ext, int n);

/*
 * Asks the kernel (POSIX_FADV_WILLNEED) to read the data extents up to
 * virtual offset @upto in the background, so the device sees many requests
 * at once: one synchronous read at a time leaves it idle between reads.
 */
void cli_readahead_to(struct cli_readahead *ra, uint64_t upto);

#endif /* VDISK_CLI_EXTENT_H */
