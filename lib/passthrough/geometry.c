/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The geometry a passthrough LUN shows its guest: size, logical and physical
 * sector, minimum and optimal I/O size and alignment from the BLK* ioctls on
 * the open descriptor (so they describe the very device being served), and
 * the discard and write-zeroes limits from the queue folder in sysfs, which
 * no ioctl reports. A partition's queue limits are its disk's.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pt-int.h"
#include "util.h"

/* The queue folder of @rdev: /sys/dev/block/M:m/queue, or its disk's for a partition. */
static int queue_dir(dev_t rdev, char *buf, size_t len)
{
	char link[64], real[PATH_MAX], tmp[PATH_MAX];
	uint64_t v;

	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(rdev), minor(rdev));
	if (!realpath(link, real))
		return -errno;
	pt_strlcpy(tmp, real, sizeof(tmp));
	if ((size_t)snprintf(buf, len, "%s/queue",
			     pt_read_u64(real, "partition", &v) == 0 ? dirname(tmp) : real) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int pt_geometry_from_fd(int fd, struct pt_geometry *ret_geo, struct vdisk_err *err)
{
	struct pt_geometry g = { 0 };
	char q[PATH_MAX];
	struct stat st;
	unsigned int u;
	uint64_t v;
	int i;

	if (fstat(fd, &st) < 0)
		return vdisk_err_set(err, -errno, "fstat: %s", strerror(errno));
	if (!S_ISBLK(st.st_mode))
		return vdisk_err_set(err, -ENOTBLK, "not a block device");
	if (ioctl(fd, BLKGETSIZE64, &g.size_bytes) < 0)
		return vdisk_err_set(err, -errno, "BLKGETSIZE64: %s", strerror(errno));
	if (ioctl(fd, BLKSSZGET, &i) < 0 || i <= 0)
		return vdisk_err_set(err, -EIO, "BLKSSZGET failed");
	g.logical_sector_bytes = (uint32_t)i;
	g.physical_sector_bytes = ioctl(fd, BLKPBSZGET, &u) == 0 && u ? u : g.logical_sector_bytes;
	g.minimum_io_bytes = ioctl(fd, BLKIOMIN, &u) == 0 && u ? u : g.physical_sector_bytes;
	g.optimal_io_bytes = ioctl(fd, BLKIOOPT, &u) == 0 ? u : 0;
	/* -1 means misaligned beyond repair; the guest is better told 0 than a huge number */
	g.alignment_offset_bytes = ioctl(fd, BLKALIGNOFF, &i) == 0 && i > 0 ? (uint32_t)i : 0;
	g.readonly = ioctl(fd, BLKROGET, &i) == 0 && i != 0;
	if (queue_dir(st.st_rdev, q, sizeof(q)) == 0) {
		g.rotational = pt_read_u64(q, "rotational", &v) == 0 && v != 0;
		if (pt_read_u64(q, "discard_granularity", &v) == 0)
			g.discard_granularity_bytes = v;
		if (pt_read_u64(q, "discard_max_bytes", &v) == 0)
			g.discard_max_bytes = v;
		if (pt_read_u64(q, "write_zeroes_max_bytes", &v) == 0)
			g.write_zeroes_max_bytes = v;
	}
	g.discard = g.discard_max_bytes > 0;
	g.write_zeroes = g.write_zeroes_max_bytes > 0;
	*ret_geo = g;
	return 0;
}
