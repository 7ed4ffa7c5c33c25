/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internals of the FUSE front end shared between its files: the mounted
 * state (disk handle, the namespace of `disk` and `pN` files, the data-path
 * settings), the open-file handle, and the functions each file provides.
 *
 * Locking: the data path (read, write, lseek) touches no lock: each open
 * file carries its own copy of its geometry, and the disk handle's
 * translate/allocate are thread-safe. The namespace (partition list) is
 * under @lock, rebuilt lazily after the `disk` file was written. Flushes are
 * serialised by @flush_lock; unaligned writes of a VHDX (read-modify-write
 * of a logical sector) by @rmw_lock.
 */
#ifndef VFUSE_INT_H
#define VFUSE_INT_H

#define FUSE_USE_VERSION 312

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <vdisk/disk.h>

#include "partition.h"
#include "vfuse.h"

#define VFUSE_INO_ROOT 1
#define VFUSE_INO_DISK 2
#define VFUSE_MAX_IO (1u << 20)     /* max_read/max_write: libfuse's buffer holds 256 pages */
#define VFUSE_MIN_SPLICE_READ (256u << 10) /* smallest max_read worth trading for splice */
#define VFUSE_MAX_EXTENTS 64        /* extents per request on the zero-copy read path */
#define VFUSE_COMMIT_INTERVAL_S 5   /* metadata of allocating writes is committed this often */
#define VFUSE_READAHEAD_KB 4096     /* kernel readahead of the mount (root only; default 128) */
#define VFUSE_XATTR_PID "user.vdisk.pid"
#define VFUSE_XATTR_IMAGE "user.vdisk.image"
#define VFUSE_XATTR_SECTOR "user.vdisk.logical-sector"

/* A file of the mount: `disk` or `pN`. */
struct vfuse_node {
	fuse_ino_t ino;
	char name[16];
	uint64_t start_bytes;
	uint64_t size_bytes;
};

/* One open file (fuse_file_info.fh): its geometry is fixed for the life of the handle. */
struct vfuse_handle {
	uint64_t start_bytes;
	uint64_t size_bytes;
	bool is_disk;
	bool writable;
};

/* Size of a file the extents point into, so that no zero-copy reply runs past its end. */
struct vfuse_fd_size {
	int fd;
	uint64_t size;
};

struct vfuse {
	struct vdisk_disk *disk;
	char *image;               /* absolute path */
	uint64_t disk_bytes;
	uint32_t lsec;
	bool is_vhdx;
	bool rw;
	bool foreground;
	bool direct_io;             /* FOPEN_DIRECT_IO for every open: no page cache on the mount */
	bool direct_io_writable;    /* FOPEN_DIRECT_IO for writable opens (the default) */
	unsigned readahead_kb;
	uid_t uid;
	gid_t gid;
	struct timespec t0;        /* mount time: the files' times */
	struct fuse_session *se;

	/* namespace */
	pthread_rwlock_t lock;
	struct vfuse_node *nodes;  /* nodes[0] is `disk`, then the partitions by number */
	unsigned nr_nodes;
	fuse_ino_t next_ino;
	int table_stale;           /* atomic: `disk` written since the last scan */
	struct vfuse_table table;  /* last scan, under @lock */

	/* data path */
	int dirty;                 /* atomic: written since the last flush */
	pthread_mutex_t flush_lock;
	pthread_mutex_t rmw_lock;
	unsigned max_read;         /* VFUSE_MAX_IO, less when that lets replies be spliced */
	bool splice_write;         /* zero-copy replies wanted (and possible) */
	bool splice_read;
	bool splice_on;            /* negotiated with the kernel */
	bool kflags;               /* add INIT flags libfuse cannot ask for (kflags.c) */
	bool init_seen;            /* atomic: the INIT request was read */
	bool init_patched;         /* atomic: its reply went out */
	uint64_t init_unique;
	uint64_t init_offered;     /* the kernel's INIT flags (flags2 << 32 | flags) */
	pthread_key_t buf_key;     /* per-thread bounce buffer of VFUSE_MAX_IO bytes */
	struct vfuse_fd_size fd_sizes[16];
	unsigned nr_fd_sizes;
	pthread_mutex_t fd_size_lock;

	/* background commit */
	pthread_t committer;
	bool committer_started;
	bool stop;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
};

/* fs.c: the operation table and the namespace. */
extern const struct fuse_lowlevel_ops vfuse_ops;
int vfuse_state_init(struct vfuse *fs, struct vdisk_disk *d, const char *image, bool rw,
		     struct vdisk_err *err);
void vfuse_state_free(struct vfuse *fs);

/* io.c: the data path. */
void vfuse_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		struct fuse_file_info *fi);
void vfuse_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *bufv, off_t off,
		     struct fuse_file_info *fi);
void vfuse_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void vfuse_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void vfuse_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
		     struct fuse_file_info *fi);
void vfuse_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		 struct fuse_file_info *fi);
/* Commits everything written so far (data, then the VHDX metadata). 0 or -errno. */
int vfuse_commit(struct vfuse *fs);
/* Reads through the disk handle (the partition scanner's callback). */
int vfuse_disk_read(void *opaque, void *buf, size_t len, uint64_t offset);

/* kflags.c: after fuse_session_mount(), hooks the session's I/O to add INIT flags. */
void vfuse_kflags_setup(struct vfuse *fs);

/* mount.c: messages from the serving process (stderr in the foreground, else syslog). */
void vfuse_log(struct vfuse *fs, int priority, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* umount.c: the device number of the vdisk (fuse.vdisk) mount at @mnt. 0, -ENOENT or -errno. */
int vfuse_mount_devno(const char *mnt, unsigned *ret_major, unsigned *ret_minor);

/* loop.c: --fs (loop device + mount(8)) and its teardown. */
int vfuse_fs_attach(const struct vfuse_opts *o, struct vdisk_err *err);
/* Unmounts file systems on loop devices backed by files under @mountpoint, detaches the loops. */
int vfuse_fs_detach(const char *mountpoint, struct vdisk_err *err);
/* Runs @argv (PATH lookup), waiting for it. Returns its exit status, or -errno. */
int vfuse_run(char *const argv[]);

#endif /* VFUSE_INT_H */
