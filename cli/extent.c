/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Splitting data extents at file holes. A VHDX payload block that was
 * only partly written is sparse in the file (the library extends the file
 * rather than writing zeros), and a raw layer may be sparse too: reading
 * those holes would cost the kernel a zeroed page each and the tool a zero
 * scan, for bytes known to be zero.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "extent.h"

static struct vdisk_extent piece(const struct vdisk_extent *e, uint64_t file_pos, uint64_t len,
				 uint16_t type)
{
	struct vdisk_extent x = *e;

	x.offset = e->offset + (file_pos - e->file_offset);
	x.length = len;
	x.file_offset = file_pos;
	x.type = type;
	return x;
}

/* Appends the data and hole pieces of DATA extent @e to @out from index @k. Returns the new count. */
static int split_one(const struct vdisk_extent *e, struct vdisk_extent *out, int k, int max)
{
	uint64_t pos = e->file_offset, end = e->file_offset + e->length, next;
	off_t r;

	while (pos < end && k < max) {
		r = lseek(e->fd, (off_t)pos, SEEK_DATA);
		if (r < 0)
			next =
			    errno == ENXIO ? end : pos; /* ENXIO: a hole to the end of the file */
		else
			next = (uint64_t)r < end ? (uint64_t)r : end;
		if (next > pos) {
			out[k++] = piece(e, pos, next - pos, VDISK_EXTENT_ZERO);
			pos = next;
			continue;
		}
		r = lseek(e->fd, (off_t)pos, SEEK_HOLE);
		next = r < 0 || (uint64_t)r > end ? end : (uint64_t)r;
		if (next <= pos)
			next = end; /* no progress: take the rest as data */
		out[k++] = piece(e, pos, next - pos, VDISK_EXTENT_DATA);
		pos = next;
	}
	return k;
}

int cli_split_holes(const struct vdisk_extent *in, int n, struct vdisk_extent *out, int max)
{
	int i, k = 0;

	for (i = 0; i < n && k < max; i++) {
		if (in[i].type == VDISK_EXTENT_DATA && in[i].fd >= 0)
			k = split_one(&in[i], out, k, max);
		else
			out[k++] = in[i];
	}
	return k;
}

void cli_readahead_init(struct cli_readahead *ra, const struct vdisk_extent *ext, int n)
{
	ra->ext = ext;
	ra->n = n;
	ra->idx = 0;
	ra->done = 0;
}

void cli_readahead_to(struct cli_readahead *ra, uint64_t upto)
{
	const struct vdisk_extent *e;
	uint64_t start, len;

	while (ra->idx < ra->n) {
		e = &ra->ext[ra->idx];
		start = e->offset + ra->done;
		if (e->type == VDISK_EXTENT_DATA && start >= upto)
			return;
		if (e->type == VDISK_EXTENT_DATA) {
			len = (e->offset + e->length < upto ? e->offset + e->length : upto) - start;
			posix_fadvise(e->fd, (off_t)(e->file_offset + ra->done), (off_t)len,
				      POSIX_FADV_WILLNEED);
			ra->done += len;
			if (ra->done < e->length)
				return;
		}
		ra->idx++;
		ra->done = 0;
	}
}
