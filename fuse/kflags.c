/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * INIT flags that libfuse 3.14 (Debian 12) cannot ask the kernel for, added
 * to its INIT reply on the way out. The session's I/O goes through
 * fuse_session_custom_io() callbacks that do what libfuse would do itself
 * (read, writev, splice); the read callback notes the INIT request (its
 * unique id and the flags the kernel offers), the writev callback adds to
 * the matching reply, when the kernel offered them:
 *
 *   FUSE_HANDLE_KILLPRIV_V2: the server clears suid/sgid and capabilities
 *     on write. Our files never have any (fixed modes, no security xattrs),
 *     so there is nothing to clear; the kernel then marks the mount SB_NOSEC
 *     and stops sending a GETXATTR security.capability before cached writes.
 *   FUSE_DIRECT_IO_ALLOW_MMAP: files opened direct_io (writable opens) can
 *     be mapped MAP_SHARED; the kernel writes back and drops the mapped
 *     pages around each direct write.
 *
 * Every other byte of the reply is libfuse's. Should the session refuse the
 * callbacks, it runs on libfuse's own I/O without these flags.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

#include "vfuse-int.h"

#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36) /* Linux 6.6 */
#endif

#define WANTED_FLAGS ((uint64_t)FUSE_HANDLE_KILLPRIV_V2 | FUSE_DIRECT_IO_ALLOW_MMAP)

static ssize_t kf_read(int fd, void *buf, size_t len, void *userdata)
{
	struct vfuse *fs = userdata;
	ssize_t n = read(fd, buf, len);
	const struct fuse_in_header *in = buf;
	struct fuse_init_in arg;

	if (__atomic_load_n(&fs->init_seen, __ATOMIC_ACQUIRE) ||
	    n < (ssize_t)(sizeof(*in) + offsetof(struct fuse_init_in, unused)) ||
	    in->opcode != FUSE_INIT)
		return n;
	memcpy(&arg, (const char *)buf + sizeof(*in), offsetof(struct fuse_init_in, unused));
	fs->init_offered = arg.flags;
	if (arg.flags & FUSE_INIT_EXT)
		fs->init_offered |= (uint64_t)arg.flags2 << 32;
	fs->init_unique = in->unique;
	__atomic_store_n(&fs->init_seen, true, __ATOMIC_RELEASE);
	return n;
}

static ssize_t kf_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct vfuse *fs = userdata;
	const struct fuse_out_header *out = iov[0].iov_base;
	unsigned char arg[256];
	struct iovec v[2];
	uint64_t add;
	uint32_t flags, flags2;

	if (count != 2 || !__atomic_load_n(&fs->init_seen, __ATOMIC_ACQUIRE) ||
	    __atomic_load_n(&fs->init_patched, __ATOMIC_ACQUIRE) ||
	    iov[0].iov_len != sizeof(*out) || out->unique != fs->init_unique || out->error != 0 ||
	    iov[1].iov_len < offsetof(struct fuse_init_out, flags2) + sizeof(flags2) ||
	    iov[1].iov_len > sizeof(arg))
		return writev(fd, iov, count);
	__atomic_store_n(&fs->init_patched, true, __ATOMIC_RELEASE);
	add = fs->init_offered & WANTED_FLAGS;
	memcpy(arg, iov[1].iov_base, iov[1].iov_len);
	memcpy(&flags, arg + offsetof(struct fuse_init_out, flags), sizeof(flags));
	memcpy(&flags2, arg + offsetof(struct fuse_init_out, flags2), sizeof(flags2));
	flags |= (uint32_t)add;
	if (add >> 32) {
		flags |= FUSE_INIT_EXT;
		flags2 |= (uint32_t)(add >> 32);
	}
	memcpy(arg + offsetof(struct fuse_init_out, flags), &flags, sizeof(flags));
	memcpy(arg + offsetof(struct fuse_init_out, flags2), &flags2, sizeof(flags2));
	v[0] = iov[0];
	v[1].iov_base = arg;
	v[1].iov_len = iov[1].iov_len;
	return writev(fd, v, 2);
}

static ssize_t kf_splice(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			 unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

void vfuse_kflags_setup(struct vfuse *fs)
{
	static const struct fuse_custom_io io = {
		.read = kf_read,
		.writev = kf_writev,
		.splice_receive = kf_splice,
		.splice_send = kf_splice,
	};
	int r;

	if (!fs->kflags)
		return;
	r = fuse_session_custom_io(fs->se, &io, fuse_session_fd(fs->se));
	if (r != 0)
		vfuse_log(fs, LOG_NOTICE, "cannot hook the session's I/O (%s): no KILLPRIV_V2 or "
			  "DIRECT_IO_ALLOW_MMAP", strerror(r < 0 ? -r : EINVAL));
}
