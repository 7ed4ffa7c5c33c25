/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal helpers: aligned buffers, full-length positioned I/O, OFD locks, zero test. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "util.h"

void *vdisk_aligned_alloc(size_t len)
{
	void *p = NULL;

	if (len == 0)
		len = 4096;
	if (posix_memalign(&p, 4096, ROUND_UP(len, 4096)) != 0)
		return NULL;
	memset(p, 0, ROUND_UP(len, 4096));
	return p;
}

static int pread_loop(int fd, void *buf, size_t len, uint64_t off, bool zfill)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t r = pread(fd, p, len, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0) {
			if (!zfill)
				return -EIO;
			memset(p, 0, len);
			return 0;
		}
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int vdisk_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	return pread_loop(fd, buf, len, off, false);
}

int vdisk_pread_zfill(int fd, void *buf, size_t len, uint64_t off)
{
	return pread_loop(fd, buf, len, off, true);
}

int vdisk_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int vdisk_lock_fd(int fd, bool write)
{
	struct flock fl = {
		.l_type = write ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 0,
	};

	if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
		return (errno == EACCES || errno == EAGAIN) ? -EAGAIN : -errno;
	return 0;
}

bool vdisk_is_zero(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	static const uint8_t zero[64];

	while (len >= sizeof(zero)) {
		if (memcmp(p, zero, sizeof(zero)) != 0)
			return false;
		p += sizeof(zero);
		len -= sizeof(zero);
	}
	return len == 0 || memcmp(p, zero, len) == 0;
}
