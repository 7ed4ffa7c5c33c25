/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The data path of a vdisk mount. A read translates its range into extents
 * and, when the kernel takes spliced replies and every extent is data,
 * answers with a buffer vector pointing at the image files themselves (fd,
 * offset): libfuse splices their page-cache pages into /dev/fuse, so the
 * data crosses user space zero times. Otherwise (holes, no splice) the
 * extents are read into a per-thread bounce buffer and sent with one writev.
 * A write (from a writable open, which is direct_io: the kernel sends the
 * writer's pages, not the mount's page cache) allocates its range
 * (vdisk_disk_allocate) and copies the request buffer straight into the
 * returned extents with pwrite, or with splice when libfuse received the
 * request into a pipe, then reports the range written
 * (vdisk_disk_write_done: a child's sectors are marked present only once
 * their data is in the file) before replying. Unaligned writes of a VHDX
 * (which has sector-granular allocation) go through a read-modify-write
 * under one lock. Nothing here allocates memory per request, apart from the
 * bounce buffer each thread allocates once.
 *
 * Durability: allocating writes change the VHDX metadata in memory only;
 * flush (close of a writable file), fsync, the commit timer and unmount call
 * vdisk_disk_flush(), which makes data and metadata durable in one journaled
 * commit.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "util.h"
#include "vfuse-int.h"

static inline struct vfuse_handle *handle_of(struct fuse_file_info *fi)
{
	return (struct vfuse_handle *)(uintptr_t)fi->fh;
}

int vfuse_disk_read(void *opaque, void *buf, size_t len, uint64_t offset)
{
	struct vfuse *fs = opaque;

	return vdisk_disk_pread(fs->disk, buf, len, offset);
}

static uint8_t *thread_buffer(struct vfuse *fs)
{
	uint8_t *b = pthread_getspecific(fs->buf_key);

	if (!b) {
		b = vdisk_aligned_alloc(VFUSE_MAX_IO);
		if (b && pthread_setspecific(fs->buf_key, b) != 0) {
			free(b);
			b = NULL;
		}
	}
	return b;
}

/*
 * True when [@off, @off + @len) of @fd lies inside the file, so that a
 * spliced reply cannot come up short at its end of file (the copy path reads
 * zeros there instead). Image files only grow while mounted; sizes are cached.
 */
static bool within_file(struct vfuse *fs, int fd, uint64_t off, uint64_t len)
{
	uint64_t end = off + len;
	struct stat st;
	unsigned i, n = __atomic_load_n(&fs->nr_fd_sizes, __ATOMIC_ACQUIRE);

	for (i = 0; i < n; i++)
		if (fs->fd_sizes[i].fd == fd &&
		    end <= __atomic_load_n(&fs->fd_sizes[i].size, __ATOMIC_RELAXED))
			return true;
	if (fstat(fd, &st) < 0)
		return false;
	pthread_mutex_lock(&fs->fd_size_lock);
	n = fs->nr_fd_sizes;
	for (i = 0; i < n; i++)
		if (fs->fd_sizes[i].fd == fd)
			break;
	if (i < ARRAY_SIZE(fs->fd_sizes)) {
		fs->fd_sizes[i].fd = fd;
		__atomic_store_n(&fs->fd_sizes[i].size, (uint64_t)st.st_size, __ATOMIC_RELAXED);
		if (i == n)
			__atomic_store_n(&fs->nr_fd_sizes, n + 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&fs->fd_size_lock);
	return end <= (uint64_t)st.st_size;
}

/* Zero-copy reply: returns false (nothing sent) when the extents do not allow it. */
static bool reply_spliced(fuse_req_t req, struct vfuse *fs, uint64_t off, size_t len)
{
	/*
	 * struct fuse_bufvec ends in buf[1]: indexing past it through the member
	 * is undefined, and gcc then assumes a one-piece vector (it did). The
	 * pieces are reached through a pointer computed from the bytes instead.
	 */
	union {
		struct fuse_bufvec v;
		unsigned char bytes[sizeof(struct fuse_bufvec) +
				    (VFUSE_MAX_EXTENTS - 1) * sizeof(struct fuse_buf)];
	} bv;
	struct fuse_buf *bufs = (struct fuse_buf *)(bv.bytes + offsetof(struct fuse_bufvec, buf));
	struct vdisk_extent ext[VFUSE_MAX_EXTENTS];
	uint64_t done = 0;
	int n;

	n = vdisk_disk_translate(fs->disk, off, len, ext, VFUSE_MAX_EXTENTS);
	if (n <= 0)
		return false;
	for (int i = 0; i < n; i++)
		done += ext[i].length;
	if (done != len)
		return false; /* more extents than one reply can carry */
	memset(&bv, 0, sizeof(bv));
	bv.v.count = (size_t)n;
	for (int i = 0; i < n; i++) {
		struct fuse_buf *b = &bufs[i];
		b->size = ext[i].length;
		if (ext[i].type == VDISK_EXTENT_DATA) {
			if (!within_file(fs, ext[i].fd, ext[i].file_offset, ext[i].length))
				return false;
			b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
			b->fd = ext[i].fd;
			b->pos = (off_t)ext[i].file_offset;
		} else {
			/* a hole: memset and writev are as cheap as anything here */
			return false;
		}
	}
	fuse_reply_data(req, &bv.v, 0);
	return true;
}

/* Reads [@off, @off + @len) of the disk into @buf (holes as zeros). 0 or -errno. */
static int read_copy(struct vfuse *fs, uint8_t *buf, uint64_t off, size_t len)
{
	struct vdisk_extent ext[VFUSE_MAX_EXTENTS];

	while (len > 0) {
		int n = vdisk_disk_translate(fs->disk, off, len, ext, VFUSE_MAX_EXTENTS);
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (ext[i].type == VDISK_EXTENT_DATA) {
				int r = vdisk_pread_zfill(ext[i].fd, buf, ext[i].length,
							  ext[i].file_offset);
				if (r < 0)
					return r;
			} else {
				memset(buf, 0, ext[i].length);
			}
			buf += ext[i].length;
			off += ext[i].length;
			len -= ext[i].length;
		}
	}
	return 0;
}

void vfuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	const struct vfuse_handle *h = handle_of(fi);
	uint8_t *buf;
	size_t len;
	int r;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= h->size_bytes || size == 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = (size_t)MIN((uint64_t)MIN(size, fs->max_read), h->size_bytes - (uint64_t)off);
	if (fs->splice_on && len >= 2 * 4096 &&
	    reply_spliced(req, fs, h->start_bytes + (uint64_t)off, len))
		return;
	buf = thread_buffer(fs);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	r = read_copy(fs, buf, h->start_bytes + (uint64_t)off, len);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_buf(req, (const char *)buf, len);
}

/* Copies the next @len bytes of @src into @fd at @pos. 0 or -errno. */
static int copy_to_fd(struct fuse_bufvec *src, int fd, uint64_t pos, size_t len)
{
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
	ssize_t n;

	dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
	dst.buf[0].fd = fd;
	dst.buf[0].pos = (off_t)pos;
	n = fuse_buf_copy(&dst, src, 0);
	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

/* Aligned (or raw) write: allocate, then copy into each extent. 0 or -errno. */
static int write_extents(struct vfuse *fs, struct fuse_bufvec *src, uint64_t off, size_t len)
{
	struct vdisk_extent ext[VFUSE_MAX_EXTENTS];

	while (len > 0) {
		int n = vdisk_disk_allocate(fs->disk, off, len, ext, VFUSE_MAX_EXTENTS), r;
		uint64_t start = off;
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			r = copy_to_fd(src, ext[i].fd, ext[i].file_offset, ext[i].length);
			if (r < 0)
				return r;
			off += ext[i].length;
			len -= ext[i].length;
		}
		/* written: a child's sectors may be marked present now, not before */
		r = vdisk_disk_write_done(fs->disk, start, off - start);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Unaligned VHDX write: the bytes must be in memory for the sector read-modify-write. */
static int write_unaligned(struct vfuse *fs, struct fuse_bufvec *src, uint64_t off, size_t len)
{
	const uint8_t *p;
	int r;

	if (src->count == 1 && !(src->buf[0].flags & FUSE_BUF_IS_FD)) {
		p = (const uint8_t *)src->buf[0].mem + src->off;
	} else {
		struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);
		uint8_t *b = thread_buffer(fs);
		if (!b)
			return -ENOMEM;
		dst.buf[0].mem = b;
		if (fuse_buf_copy(&dst, src, 0) != (ssize_t)len)
			return -EIO;
		p = b;
	}
	pthread_mutex_lock(&fs->rmw_lock);
	r = vdisk_disk_pwrite(fs->disk, p, len, off);
	pthread_mutex_unlock(&fs->rmw_lock);
	return r;
}

void vfuse_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
		     struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	struct vfuse_handle *h = handle_of(fi);
	size_t len = fuse_buf_size(bufv);
	uint64_t doff;
	int r;

	if (!h->writable) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (len == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	if ((uint64_t)off >= h->size_bytes) {
		fuse_reply_err(req, ENOSPC); /* a disk does not grow */
		return;
	}
	len = (size_t)MIN((uint64_t)len, h->size_bytes - (uint64_t)off);
	doff = h->start_bytes + (uint64_t)off;
	if (fs->is_vhdx && ((doff | len) & (fs->lsec - 1)))
		r = write_unaligned(fs, bufv, doff, len);
	else
		r = write_extents(fs, bufv, doff, len);
	/* even a failed write may have changed some blocks: commit them later */
	__atomic_store_n(&fs->dirty, 1, __ATOMIC_RELEASE);
	if (h->is_disk)
		__atomic_store_n(&fs->table_stale, 1, __ATOMIC_RELEASE);
	if (r < 0)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, len);
}

int vfuse_commit(struct vfuse *fs)
{
	int r = 0;

	if (!fs->rw)
		return 0;
	/* serialised, so that an fsync never returns while an earlier flush is still running */
	pthread_mutex_lock(&fs->flush_lock);
	if (__atomic_exchange_n(&fs->dirty, 0, __ATOMIC_ACQ_REL)) {
		r = vdisk_disk_flush(fs->disk);
		if (r < 0) {
			__atomic_store_n(&fs->dirty, 1, __ATOMIC_RELEASE);
			vfuse_log(fs, LOG_ERR, "%s: flush failed: %s", fs->image, strerror(-r));
		}
	}
	pthread_mutex_unlock(&fs->flush_lock);
	return r;
}

void vfuse_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	int r = handle_of(fi)->writable ? vfuse_commit(fs) : 0;

	fuse_reply_err(req, -r);
}

void vfuse_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);

	fuse_reply_err(req, -vfuse_commit(fs));
}

/*
 * PUNCH_HOLE (what a loop device sends for a discard) gives blocks back;
 * ZERO_RANGE makes the range read as zeros. Both keep the size; plain
 * preallocation of a range inside the disk is a no-op.
 */
void vfuse_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	struct vfuse_handle *h = handle_of(fi);
	uint64_t end;
	int r;

	if (!h->writable) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (off < 0 || len <= 0 || add_overflows_u64((uint64_t)off, (uint64_t)len, &end)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
		fuse_reply_err(req, end > h->size_bytes ? EFBIG : 0);
		return;
	}
	if ((uint64_t)off >= h->size_bytes) {
		fuse_reply_err(req, 0);
		return;
	}
	end = MIN(end, h->size_bytes);
	if (mode & FALLOC_FL_PUNCH_HOLE)
		r = vdisk_disk_discard(fs->disk, h->start_bytes + (uint64_t)off,
				       end - (uint64_t)off);
	else
		r = vdisk_disk_write_zeroes(fs->disk, h->start_bytes + (uint64_t)off,
					    end - (uint64_t)off);
	__atomic_store_n(&fs->dirty, 1, __ATOMIC_RELEASE);
	if (h->is_disk)
		__atomic_store_n(&fs->table_stale, 1, __ATOMIC_RELEASE);
	fuse_reply_err(req, r < 0 ? -r : 0);
}

/* SEEK_DATA / SEEK_HOLE from the image's map: ZERO and UNALLOCATED ranges are holes. */
void vfuse_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		 struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	const struct vfuse_handle *h = handle_of(fi);
	struct vdisk_extent ext[VFUSE_MAX_EXTENTS];
	uint64_t pos = (uint64_t)off;

	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (off < 0 || pos >= h->size_bytes) {
		fuse_reply_err(req, ENXIO);
		return;
	}
	while (pos < h->size_bytes) {
		int n = vdisk_disk_translate(fs->disk, h->start_bytes + pos, h->size_bytes - pos,
					     ext, VFUSE_MAX_EXTENTS);
		if (n < 0) {
			fuse_reply_err(req, -n);
			return;
		}
		for (int i = 0; i < n; i++) {
			bool data = ext[i].type == VDISK_EXTENT_DATA;
			if (data == (whence == SEEK_DATA)) {
				fuse_reply_lseek(req, (off_t)pos);
				return;
			}
			pos += ext[i].length;
		}
	}
	if (whence == SEEK_HOLE)
		fuse_reply_lseek(req, (off_t)h->size_bytes);
	else
		fuse_reply_err(req, ENXIO);
}
