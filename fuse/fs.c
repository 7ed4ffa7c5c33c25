/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The namespace of a vdisk mount and the low-level operation table: a
 * read-only folder holding `disk` (inode 2) and one `pN` per partition.
 * Partition files get a fresh inode number whenever their geometry changes,
 * so the kernel never serves one partition's cached attributes for another;
 * names are looked up with a zero entry timeout, so a table rewritten
 * through `disk` (sfdisk on the mount) shows at the next lookup. The root
 * folder answers three extended attributes, user.vdisk.pid, .image and
 * .logical-sector, by which `vdisk umount` finds the serving process and
 * --fs sizes the loop device's sectors.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <syslog.h>
#include <unistd.h>

#include "util.h"
#include "vfuse-int.h"

#define ATTR_TIMEOUT 1.0

/* ---- the partition table ---- */

/* Rebuilds the node list from a fresh scan of the disk. Caller holds the write lock. */
static int rescan_locked(struct vfuse *fs)
{
	struct vfuse_table *t = &fs->table;
	struct vfuse_node *old = fs->nodes, *nodes;
	unsigned nr_old = fs->nr_nodes;
	int r = vfuse_parts_scan(vfuse_disk_read, fs, fs->disk_bytes, fs->lsec, t);

	if (r < 0) {
		vfuse_log(fs, LOG_ERR, "%s: reading the partition table: %s", fs->image,
			  strerror(-r));
		t->count = 0;
	}
	nodes = calloc(t->count + 1, sizeof(*nodes));
	if (!nodes)
		return -ENOMEM;
	nodes[0] = (struct vfuse_node){ .ino = VFUSE_INO_DISK, .name = "disk",
					.size_bytes = fs->disk_bytes };
	for (unsigned i = 0; i < t->count; i++) {
		struct vfuse_node *n = &nodes[i + 1];
		const struct vfuse_part *p = &t->parts[i];

		snprintf(n->name, sizeof(n->name), "p%u", p->number);
		n->start_bytes = p->start_bytes;
		n->size_bytes = p->size_bytes;
		n->ino = 0;
		for (unsigned k = 1; k < nr_old; k++)
			if (strcmp(old[k].name, n->name) == 0 &&
			    old[k].start_bytes == n->start_bytes &&
			    old[k].size_bytes == n->size_bytes)
				n->ino = old[k].ino;
		if (!n->ino)
			n->ino = fs->next_ino++;
	}
	if (t->note[0])
		vfuse_log(fs, LOG_NOTICE, "%s: partition table: %s", fs->image, t->note);
	fs->nodes = nodes;
	fs->nr_nodes = t->count + 1;
	free(old);
	return 0;
}

/* Takes the namespace lock for reading, rescanning first when `disk` was written. */
static void ns_lock(struct vfuse *fs)
{
	if (__atomic_load_n(&fs->table_stale, __ATOMIC_ACQUIRE)) {
		pthread_rwlock_wrlock(&fs->lock);
		if (__atomic_exchange_n(&fs->table_stale, 0, __ATOMIC_ACQ_REL))
			rescan_locked(fs);
		pthread_rwlock_unlock(&fs->lock);
	}
	pthread_rwlock_rdlock(&fs->lock);
}

static void ns_unlock(struct vfuse *fs)
{
	pthread_rwlock_unlock(&fs->lock);
}

static const struct vfuse_node *node_by_ino(const struct vfuse *fs, fuse_ino_t ino)
{
	for (unsigned i = 0; i < fs->nr_nodes; i++)
		if (fs->nodes[i].ino == ino)
			return &fs->nodes[i];
	return NULL;
}

static const struct vfuse_node *node_by_name(const struct vfuse *fs, const char *name)
{
	for (unsigned i = 0; i < fs->nr_nodes; i++)
		if (strcmp(fs->nodes[i].name, name) == 0)
			return &fs->nodes[i];
	return NULL;
}

/* ---- attributes ---- */

static void fill_attr(const struct vfuse *fs, fuse_ino_t ino, uint64_t size, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atim = st->st_mtim = st->st_ctim = fs->t0;
	st->st_blksize = MAX(fs->lsec, 4096u);
	if (ino == VFUSE_INO_ROOT) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return;
	}
	st->st_mode = S_IFREG | (fs->rw ? 0644 : 0444);
	st->st_nlink = 1;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)DIV_ROUND_UP(size, 512);
}

static void vfuse_init(void *userdata, struct fuse_conn_info *conn)
{
	struct vfuse *fs = userdata;

	conn->max_write = VFUSE_MAX_IO;
	conn->max_read = fs->max_read;
	/* the kernel keeps min(this, the bdi's read_ahead_kb, which set_readahead() raises) */
	conn->max_readahead = MAX(VFUSE_MAX_IO, fs->readahead_kb * 1024u);
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	conn->time_gran = 1;
	/* the only writer of the image is this process: no need to re-check on every read */
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE |
				  FUSE_CAP_SPLICE_READ);
	if (fs->splice_write && (conn->capable & FUSE_CAP_SPLICE_WRITE))
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	if (fs->splice_read && (conn->capable & FUSE_CAP_SPLICE_READ))
		conn->want |= FUSE_CAP_SPLICE_READ;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	fs->splice_on = conn->want & FUSE_CAP_SPLICE_WRITE;
}

static void reply_entry(fuse_req_t req, const struct vfuse *fs, const struct vfuse_node *n)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = n->ino;
	e.attr_timeout = ATTR_TIMEOUT;
	e.entry_timeout = 0; /* names follow the partition table */
	fill_attr(fs, n->ino, n->size_bytes, &e.attr);
	fuse_reply_entry(req, &e);
}

static void vfuse_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct vfuse *fs = fuse_req_userdata(req);
	const struct vfuse_node *n;

	if (parent != VFUSE_INO_ROOT) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	ns_lock(fs);
	n = node_by_name(fs, name);
	if (n)
		reply_entry(req, fs, n);
	else
		fuse_reply_err(req, ENOENT);
	ns_unlock(fs);
}

static void vfuse_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	const struct vfuse_node *n;
	struct stat st;

	if (ino == VFUSE_INO_ROOT) {
		fill_attr(fs, ino, 0, &st);
		fuse_reply_attr(req, &st, ATTR_TIMEOUT);
		return;
	}
	if (fi && fi->fh) {
		/* an open file keeps its geometry, even when the table changed since */
		const struct vfuse_handle *h = (const void *)(uintptr_t)fi->fh;
		fill_attr(fs, ino, h->size_bytes, &st);
		fuse_reply_attr(req, &st, ATTR_TIMEOUT);
		return;
	}
	ns_lock(fs);
	n = node_by_ino(fs, ino);
	if (n)
		fill_attr(fs, ino, n->size_bytes, &st);
	ns_unlock(fs);
	if (n)
		fuse_reply_attr(req, &st, ATTR_TIMEOUT);
	else
		fuse_reply_err(req, ENOENT);
}

/*
 * The files are disks: their size cannot change. Setting the size they have
 * succeeds (cp and dd may ask), and so do mode/owner/time changes, which are
 * not kept; anything else is refused. open(O_TRUNC) is ignored, as it is on a
 * block device, so `dd of=MNT/disk` works (without seek=, or with conv=notrunc).
 */
static void vfuse_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			  struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	const struct vfuse_node *n;
	uint64_t size = 0;
	bool found;
	struct stat st;

	if (ino == VFUSE_INO_ROOT) {
		fuse_reply_err(req, EPERM);
		return;
	}
	ns_lock(fs);
	n = node_by_ino(fs, ino);
	found = n != NULL;
	if (n)
		size = n->size_bytes;
	ns_unlock(fs);
	if (fi && fi->fh) {
		size = ((const struct vfuse_handle *)(uintptr_t)fi->fh)->size_bytes;
		found = true;
	}
	if (!found) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!fs->rw) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != size) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fill_attr(fs, ino, size, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void vfuse_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	char *buf;
	size_t used = 0;

	if (ino != VFUSE_INO_ROOT) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ns_lock(fs);
	/* entry i: 0 ".", 1 "..", 2.. the nodes; the offset of an entry is i + 1 */
	for (off_t i = off; i < (off_t)fs->nr_nodes + 2; i++) {
		struct stat st = { 0 };
		const char *name;
		size_t len;

		if (i < 2) {
			name = i == 0 ? "." : "..";
			st.st_ino = VFUSE_INO_ROOT;
			st.st_mode = S_IFDIR;
		} else {
			name = fs->nodes[i - 2].name;
			st.st_ino = fs->nodes[i - 2].ino;
			st.st_mode = S_IFREG;
		}
		len = fuse_add_direntry(req, buf + used, size - used, name, &st, i + 1);
		if (len > size - used)
			break;
		used += len;
	}
	ns_unlock(fs);
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void vfuse_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
	const struct vfuse_node *n;
	struct vfuse_handle *h;

	if (ino == VFUSE_INO_ROOT) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (wr && !fs->rw) {
		fuse_reply_err(req, EROFS);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ns_lock(fs);
	n = node_by_ino(fs, ino);
	if (n) {
		h->start_bytes = n->start_bytes;
		h->size_bytes = n->size_bytes;
		h->is_disk = ino == VFUSE_INO_DISK;
		h->writable = wr;
	}
	ns_unlock(fs);
	if (!n) {
		free(h);
		fuse_reply_err(req, ENOENT);
		return;
	}
	fi->fh = (uintptr_t)h;
	/*
	 * Writes bypass the mount's page cache: one copy fewer per write
	 * (the kernel hands the writer's pages to us), no second cached copy
	 * of data that the image's page cache holds anyway, and no
	 * security.capability lookup (a GETXATTR round trip) before every
	 * write, which the kernel makes for cached writes only.
	 */
	fi->direct_io = fs->direct_io || (wr && fs->direct_io_writable);
	fi->keep_cache = 0;
	fi->noflush = !wr; /* nothing to commit on close of a read-only handle */
	if (fuse_reply_open(req, fi) == -ENOENT)
		free(h); /* the open was interrupted */
}

static void vfuse_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct vfuse *fs = fuse_req_userdata(req);
	struct vfuse_handle *h = (void *)(uintptr_t)fi->fh;
	int r = 0;

	if (h && h->writable)
		r = vfuse_commit(fs);
	free(h);
	fuse_reply_err(req, r < 0 ? -r : 0);
}

static void vfuse_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct vfuse *fs = fuse_req_userdata(req);
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = DIV_ROUND_UP(fs->disk_bytes, 4096);
	sv.f_files = fs->nr_nodes + 1;
	sv.f_namemax = 15;
	fuse_reply_statfs(req, &sv);
}

static void reply_xattr_value(fuse_req_t req, const char *value, size_t size)
{
	size_t len = strlen(value);

	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

static void vfuse_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct vfuse *fs = fuse_req_userdata(req);
	char pid[24]; /* also the sector size */

	if (ino == VFUSE_INO_ROOT && strcmp(name, VFUSE_XATTR_PID) == 0) {
		snprintf(pid, sizeof(pid), "%ld", (long)getpid());
		reply_xattr_value(req, pid, size);
	} else if (ino == VFUSE_INO_ROOT && strcmp(name, VFUSE_XATTR_IMAGE) == 0) {
		reply_xattr_value(req, fs->image, size);
	} else if (ino == VFUSE_INO_ROOT && strcmp(name, VFUSE_XATTR_SECTOR) == 0) {
		snprintf(pid, sizeof(pid), "%u", fs->lsec);
		reply_xattr_value(req, pid, size);
	} else {
		fuse_reply_err(req, ENODATA);
	}
}

static void vfuse_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char names[] = VFUSE_XATTR_PID "\0" VFUSE_XATTR_IMAGE "\0" VFUSE_XATTR_SECTOR;

	if (ino != VFUSE_INO_ROOT)
		fuse_reply_buf(req, NULL, 0);
	else if (size == 0)
		fuse_reply_xattr(req, sizeof(names));
	else if (size < sizeof(names))
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, names, sizeof(names));
}

const struct fuse_lowlevel_ops vfuse_ops = {
	.init = vfuse_init,
	.lookup = vfuse_lookup,
	.getattr = vfuse_getattr,
	.setattr = vfuse_setattr,
	.readdir = vfuse_readdir,
	.open = vfuse_open,
	.read = vfuse_read,
	.write_buf = vfuse_write_buf,
	.flush = vfuse_flush,
	.release = vfuse_release,
	.fsync = vfuse_fsync,
	.statfs = vfuse_statfs,
	.getxattr = vfuse_getxattr,
	.listxattr = vfuse_listxattr,
	.fallocate = vfuse_fallocate,
	.lseek = vfuse_lseek,
};

/* ---- state ---- */

static void free_buf(void *p)
{
	free(p);
}

/* Can this process make a pipe big enough for a whole reply of @bytes (see fuse_reply_data)? */
static bool pipe_can_hold_reply(size_t bytes)
{
	size_t need = bytes + (VFUSE_MAX_EXTENTS + 4) * (size_t)sysconf(_SC_PAGESIZE);
	int p[2], r;

	if (pipe2(p, O_CLOEXEC) < 0)
		return false;
	r = fcntl(p[0], F_SETPIPE_SZ, (int)need);
	close(p[0]);
	close(p[1]);
	return r >= 0 && (size_t)r >= need;
}

/*
 * Zero-copy read replies go through a pipe that must hold a whole reply;
 * without CAP_SYS_RESOURCE a pipe is at most fs.pipe-max-size (1 MiB), too
 * small for a 1 MiB read plus its header. Reads are then made smaller
 * (512 KiB): twice the requests, but one copy of the data fewer, which is
 * the larger cost. Writes stay at 1 MiB.
 */
static void choose_read_size(struct vfuse *fs)
{
	fs->max_read = VFUSE_MAX_IO;
	if (!fs->splice_write)
		return;
	for (size_t n = VFUSE_MAX_IO; n >= VFUSE_MIN_SPLICE_READ; n /= 2) {
		if (pipe_can_hold_reply(n)) {
			fs->max_read = (unsigned)n;
			return;
		}
	}
	fs->splice_write = false;
}

static bool env_flag(const char *name, bool def)
{
	const char *v = getenv(name);

	if (!v || !*v)
		return def;
	return strcmp(v, "0") != 0 && strcmp(v, "no") != 0 && strcmp(v, "off") != 0;
}

int vfuse_state_init(struct vfuse *fs, struct vdisk_disk *d, const char *image, bool rw,
		     struct vdisk_err *err)
{
	int r;

	fs->disk = d;
	fs->image = strdup(image);
	fs->disk_bytes = vdisk_disk_size(d);
	fs->lsec = vdisk_disk_logical_sector(d);
	fs->is_vhdx = vdisk_disk_format(d) == VDISK_FORMAT_VHDX;
	fs->rw = rw;
	fs->uid = getuid();
	fs->gid = getgid();
	clock_gettime(CLOCK_REALTIME, &fs->t0);
	fs->next_ino = VFUSE_INO_DISK + 1;
	/* tuning knobs, for benchmarks and bisecting */
	/* unset: writable opens only; 1: every open; 0: none */
	fs->direct_io = env_flag("VDISK_FUSE_DIRECT_IO", false);
	fs->direct_io_writable = env_flag("VDISK_FUSE_DIRECT_IO", true);
	fs->readahead_kb = VFUSE_READAHEAD_KB;
	if (getenv("VDISK_FUSE_READAHEAD_KB"))
		fs->readahead_kb = (unsigned)strtoul(getenv("VDISK_FUSE_READAHEAD_KB"), NULL, 10);
	fs->splice_write = env_flag("VDISK_FUSE_SPLICE_WRITE", true);
	choose_read_size(fs);
	fs->splice_read = env_flag("VDISK_FUSE_SPLICE_READ", false);
	fs->kflags = env_flag("VDISK_FUSE_KFLAGS", true);
	pthread_rwlock_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->flush_lock, NULL);
	pthread_mutex_init(&fs->rmw_lock, NULL);
	pthread_mutex_init(&fs->fd_size_lock, NULL);
	pthread_mutex_init(&fs->stop_lock, NULL);
	pthread_cond_init(&fs->stop_cond, NULL);
	if (!fs->image)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	r = pthread_key_create(&fs->buf_key, free_buf);
	if (r)
		return vdisk_err_set(err, -r, "pthread_key_create: %s", strerror(r));
	r = rescan_locked(fs);
	if (r < 0)
		return vdisk_err_set(err, r, "out of memory");
	return 0;
}

void vfuse_state_free(struct vfuse *fs)
{
	free(fs->nodes);
	free(fs->image);
	pthread_key_delete(fs->buf_key);
	pthread_rwlock_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->flush_lock);
	pthread_mutex_destroy(&fs->rmw_lock);
	pthread_mutex_destroy(&fs->fd_size_lock);
	pthread_mutex_destroy(&fs->stop_lock);
	pthread_cond_destroy(&fs->stop_cond);
}
