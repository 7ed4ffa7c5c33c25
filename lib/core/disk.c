/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The disk interface: one handle over a raw file/block device or a VHDX
 * chain, format probed by content. Raw disks map 1:1 onto the file (holes
 * reported as UNALLOCATED through SEEK_DATA/SEEK_HOLE).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vdisk/disk.h>
#include <vdisk/vhdx.h>

#include "util.h"

struct vdisk_disk {
	enum vdisk_format fmt;
	struct vhdx_image *vhdx;
	int fd; /* raw */
	bool readonly;
	bool blockdev;
	uint64_t size;
	uint32_t lsec, psec;
};

static int raw_open(struct vdisk_disk *d, const char *path, unsigned flags, struct vdisk_err *err)
{
	struct stat st;
	int oflags = O_CLOEXEC | (d->readonly ? O_RDONLY : O_RDWR);
	int r;

	if (flags & VDISK_OPEN_DIRECT)
		oflags |= O_DIRECT;
	d->fd = open(path, oflags);
	if (d->fd < 0)
		return vdisk_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(d->fd, &st) < 0)
		return vdisk_err_set(err, -errno, "%s: fstat: %s", path, strerror(errno));
	d->lsec = 512;
	d->psec = 4096;
	if (S_ISBLK(st.st_mode)) {
		int ls = 512;
		unsigned ps = 4096;
		d->blockdev = true;
		if (ioctl(d->fd, BLKGETSIZE64, &d->size) < 0)
			return vdisk_err_set(err, -errno, "%s: BLKGETSIZE64: %s", path, strerror(errno));
		if (ioctl(d->fd, BLKSSZGET, &ls) == 0)
			d->lsec = (uint32_t)ls;
		if (ioctl(d->fd, BLKPBSZGET, &ps) == 0)
			d->psec = ps;
	} else {
		d->size = (uint64_t)st.st_size;
	}
	if (!(flags & VDISK_OPEN_NOLOCK)) {
		r = vdisk_lock_fd(d->fd, !d->readonly);
		if (r == -EAGAIN)
			return vdisk_err_set(err, -EBUSY,
					     "%s: image is in use: another process holds a lock on it",
					     path);
	}
	return 0;
}

void vdisk_disk_opts_init(struct vdisk_disk_opts *o, size_t size)
{
	struct vdisk_disk_opts d = { .struct_size = size };

	memcpy(o, &d, MIN(size, sizeof(d)));
}

/* The caller's options, read no further than its struct_size; defaults for the rest. */
static void copy_opts(struct vdisk_disk_opts *oc, const struct vdisk_disk_opts *o)
{
	vdisk_disk_opts_init(oc, sizeof(*oc));
	VDISK_OPTS_OVERLAY(oc, o);
}

static int vhdx_disk_open(struct vdisk_disk *d, const char *path,
			  const struct vdisk_disk_opts *o, struct vdisk_err *err)
{
	struct vhdx_open_opts vo;
	int r;

	vhdx_open_opts_init(&vo, sizeof(vo));
	vo.flags = (d->readonly ? VHDX_OPEN_RDONLY : 0) |
		   (o->flags & VDISK_OPEN_DIRECT ? VHDX_OPEN_DIRECT : 0) |
		   (o->flags & VDISK_OPEN_NOLOCK ? VHDX_OPEN_NOLOCK : 0);
	vo.search_dirs = o->search_dirs;
	r = vhdx_open(path, &vo, &d->vhdx, err);
	if (r < 0)
		return r;
	d->size = vhdx_disk_size(d->vhdx);
	d->lsec = vhdx_logical_sector_size(d->vhdx);
	d->psec = vhdx_physical_sector_size(d->vhdx);
	return 0;
}

int vdisk_disk_open_opts(const char *path, enum vdisk_format fmt,
			 const struct vdisk_disk_opts *opts, struct vdisk_disk **ret_disk,
			 struct vdisk_err *err)
{
	struct vdisk_disk_opts o;
	struct vdisk_disk *d;
	int r = 0;

	copy_opts(&o, opts);
	d = calloc(1, sizeof(*d));
	if (!d)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	d->fd = -1;
	d->readonly = o.flags & VDISK_OPEN_RDONLY;
	if (fmt == VDISK_FORMAT_AUTO) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			r = vdisk_err_set(err, -errno, "%s: cannot open: %s", path, strerror(errno));
			free(d);
			return r;
		}
		fmt = vhdx_probe_fd(fd) ? VDISK_FORMAT_VHDX : VDISK_FORMAT_RAW;
		close(fd);
	}
	d->fmt = fmt;
	if (fmt == VDISK_FORMAT_VHDX)
		r = vhdx_disk_open(d, path, &o, err);
	else
		r = raw_open(d, path, o.flags, err);
	if (r < 0) {
		vdisk_disk_close(d, NULL);
		return r;
	}
	*ret_disk = d;
	return 0;
}

int vdisk_disk_open(const char *path, enum vdisk_format fmt, unsigned flags,
		    struct vdisk_disk **ret_disk, struct vdisk_err *err)
{
	struct vdisk_disk_opts o;

	vdisk_disk_opts_init(&o, sizeof(o));
	o.flags = flags;
	return vdisk_disk_open_opts(path, fmt, &o, ret_disk, err);
}

int vdisk_disk_close(struct vdisk_disk *d, struct vdisk_err *err)
{
	int r = 0;

	if (!d)
		return 0;
	if (d->vhdx)
		r = vhdx_close(d->vhdx, err);
	if (d->fd >= 0) {
		if (!d->readonly && fsync(d->fd) < 0)
			r = vdisk_err_set(err, -errno, "fsync: %s", strerror(errno));
		close(d->fd);
	}
	free(d);
	return r;
}

enum vdisk_format vdisk_disk_format(const struct vdisk_disk *d)
{
	return d->fmt;
}

const char *vdisk_format_name(enum vdisk_format fmt)
{
	return fmt == VDISK_FORMAT_VHDX ? "vhdx" : fmt == VDISK_FORMAT_RAW ? "raw" : "auto";
}

int vdisk_format_parse(const char *s, enum vdisk_format *ret_fmt)
{
	if (strcmp(s, "raw") == 0)
		*ret_fmt = VDISK_FORMAT_RAW;
	else if (strcmp(s, "vhdx") == 0)
		*ret_fmt = VDISK_FORMAT_VHDX;
	else if (strcmp(s, "auto") == 0)
		*ret_fmt = VDISK_FORMAT_AUTO;
	else
		return -EINVAL;
	return 0;
}

uint64_t vdisk_disk_size(const struct vdisk_disk *d)
{
	return d->size;
}

uint32_t vdisk_disk_logical_sector(const struct vdisk_disk *d)
{
	return d->lsec;
}

uint32_t vdisk_disk_physical_sector(const struct vdisk_disk *d)
{
	return d->psec;
}

struct vhdx_image *vdisk_disk_vhdx(const struct vdisk_disk *d)
{
	return d->vhdx;
}

static bool range_ok(const struct vdisk_disk *d, uint64_t off, uint64_t len)
{
	uint64_t end;
	return len > 0 && !add_overflows_u64(off, len, &end) && end <= d->size;
}

static int raw_translate(struct vdisk_disk *d, uint64_t off, uint64_t len,
			 struct vdisk_extent *ext, unsigned max)
{
	unsigned n = 0;
	uint64_t end = off + len;

	while (off < end && n < max) {
		off_t data = d->blockdev ? (off_t)off : lseek(d->fd, (off_t)off, SEEK_DATA);
		uint64_t next;
		if (data < 0 && errno != ENXIO)
			data = (off_t)off; /* no SEEK_DATA: everything is data */
		if (data < 0 || (uint64_t)data >= end) {
			ext[n++] = (struct vdisk_extent){ .offset = off, .length = end - off,
							  .type = VDISK_EXTENT_UNALLOCATED, .fd = -1 };
			break;
		}
		if ((uint64_t)data > off) {
			ext[n++] = (struct vdisk_extent){ .offset = off, .length = (uint64_t)data - off,
							  .type = VDISK_EXTENT_UNALLOCATED, .fd = -1 };
			off = (uint64_t)data;
			if (n == max)
				break;
		}
		off_t hole = d->blockdev ? (off_t)end : lseek(d->fd, (off_t)off, SEEK_HOLE);
		next = hole < 0 ? end : MIN((uint64_t)hole, end);
		ext[n++] = (struct vdisk_extent){ .offset = off, .length = next - off,
						  .file_offset = off, .fd = d->fd,
						  .type = VDISK_EXTENT_DATA };
		off = next;
	}
	return (int)n;
}

int vdisk_disk_translate(struct vdisk_disk *d, uint64_t offset, uint64_t length,
			 struct vdisk_extent *ext, unsigned max)
{
	if (d->vhdx)
		return vhdx_translate(d->vhdx, offset, length, ext, max);
	if (!range_ok(d, offset, length) || max == 0)
		return -EINVAL;
	return raw_translate(d, offset, length, ext, max);
}

int vdisk_disk_allocate(struct vdisk_disk *d, uint64_t offset, uint64_t length,
			struct vdisk_extent *ext, unsigned max)
{
	if (d->vhdx)
		return vhdx_allocate(d->vhdx, offset, length, ext, max);
	if (d->readonly)
		return -EROFS;
	if (!range_ok(d, offset, length) || max == 0)
		return -EINVAL;
	ext[0] = (struct vdisk_extent){ .offset = offset, .length = length, .file_offset = offset,
					.fd = d->fd, .type = VDISK_EXTENT_DATA };
	return 1;
}

int vdisk_disk_write_done(struct vdisk_disk *d, uint64_t offset, uint64_t length)
{
	if (d->vhdx)
		return vhdx_write_done(d->vhdx, offset, length);
	if (!range_ok(d, offset, length))
		return -EINVAL;
	return d->readonly ? -EROFS : 0;
}

int vdisk_disk_flush(struct vdisk_disk *d)
{
	if (d->vhdx)
		return vhdx_flush(d->vhdx);
	if (d->readonly)
		return 0;
	return fdatasync(d->fd) < 0 ? -errno : 0;
}

int vdisk_disk_flush_fd(struct vdisk_disk *d, int *ret_fd)
{
	if (d->vhdx)
		return vhdx_flush_fd(d->vhdx, ret_fd);
	if (d->readonly)
		return 0;
	*ret_fd = d->fd;
	return 1;
}

static int raw_fallocate(struct vdisk_disk *d, uint64_t off, uint64_t len, bool zero)
{
	if (d->readonly)
		return -EROFS;
	if (!range_ok(d, off, len))
		return -EINVAL;
	if (d->blockdev) {
		uint64_t range[2] = { off, len };
		return ioctl(d->fd, zero ? BLKZEROOUT : BLKDISCARD, range) < 0 ? -errno : 0;
	}
	if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

int vdisk_disk_discard(struct vdisk_disk *d, uint64_t offset, uint64_t length)
{
	if (d->vhdx)
		return vhdx_discard(d->vhdx, offset, length);
	return raw_fallocate(d, offset, length, false);
}

int vdisk_disk_write_zeroes(struct vdisk_disk *d, uint64_t offset, uint64_t length)
{
	if (d->vhdx)
		return vhdx_write_zeroes(d->vhdx, offset, length);
	return raw_fallocate(d, offset, length, true);
}

int vdisk_disk_pread(struct vdisk_disk *d, void *buf, size_t len, uint64_t offset)
{
	if (d->vhdx)
		return vhdx_pread(d->vhdx, buf, len, offset);
	if (len == 0)
		return 0;
	if (!range_ok(d, offset, len))
		return -EINVAL;
	return vdisk_pread_zfill(d->fd, buf, len, offset);
}

int vdisk_disk_pwrite(struct vdisk_disk *d, const void *buf, size_t len, uint64_t offset)
{
	if (d->vhdx)
		return vhdx_pwrite(d->vhdx, buf, len, offset);
	if (d->readonly)
		return -EROFS;
	if (len == 0)
		return 0;
	if (!range_ok(d, offset, len))
		return -EINVAL;
	return vdisk_pwrite_full(d->fd, buf, len, offset);
}
