/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Setting up and running a vdisk mount. In the background (the default) the
 * command forks; the child opens the image, mounts, and reports success or
 * the error (a struct vdisk_err) through a pipe, then detaches from the
 * terminal and serves; the parent exits only once the mount is ready (or
 * failed), then attaches --fs when asked. The serving loop is libfuse's
 * multithreaded one, one /dev/fuse clone per thread. A timer thread commits
 * the metadata of allocating writes every few seconds; SIGINT, SIGTERM or
 * an unmount end the loop, after which the image is closed (its VHDX log
 * committed and marked clean). A killed process leaves the journal to be
 * replayed at the next open, and `fusermount3 -u` (or `vdisk umount`)
 * recovers the mount point.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "util.h"
#include "vfuse-int.h"

#define IDLE_THREADS 16
#define MAX_THREADS 64

static bool log_to_syslog;

void vfuse_log(struct vfuse *fs, int priority, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (log_to_syslog) {
		vsyslog(priority, fmt, ap);
	} else {
		fputs("vdisk: mount: ", stderr);
		vfprintf(stderr, fmt, ap);
		fputc('\n', stderr);
	}
	va_end(ap);
}

static void fuse_log_to_syslog(enum fuse_log_level level, const char *fmt, va_list ap)
{
	vsyslog((int)level, fmt, ap);
}

/* ---- opening the image ---- */

/*
 * Read-only mounts take a shared lock. When a writer (a running VM) holds
 * the image, the mount still goes ahead without a lock, read-only, and says
 * that what it shows is the image as it was when mounted. A layer that other
 * programs hold shared (the parent of a running VM's disk) mounts read-only
 * with a note too.
 */
/* Does another open file hold a lock on @path (a VM, a chain over it, a mount)? */
static bool locked_elsewhere(const char *path)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool locked = false;

	if (fd < 0)
		return false;
	if (fcntl(fd, F_OFD_GETLK, &fl) == 0)
		locked = fl.l_type != F_UNLCK;
	close(fd);
	return locked;
}

/* vdisk_disk_open() with the search folders. */
static int open_disk(const struct vfuse_opts *o, const char *image, unsigned flags,
		     struct vdisk_disk **ret, struct vdisk_err *err)
{
	struct vdisk_disk_opts dopts;

	vdisk_disk_opts_init(&dopts, sizeof(dopts));
	dopts.flags = flags;
	dopts.search_dirs = o->search_dirs;
	return vdisk_disk_open_opts(image, VDISK_FORMAT_AUTO, &dopts, ret, err);
}

static int open_image(const struct vfuse_opts *o, const char *image, struct vdisk_disk **ret,
		      struct vdisk_err *err)
{
	unsigned flags = o->rw ? 0 : VDISK_OPEN_RDONLY;
	bool shared = !o->rw && locked_elsewhere(image);
	struct vdisk_err e2 = { 0 };
	int r;

	r = open_disk(o, image, flags, ret, err);
	if (r == 0 && shared)
		fprintf(stderr,
			"vdisk: mount: note: %s is in use by other programs (a VM on a chain over it, "
			"another mount): mounted read-only, as a point-in-time view should one of "
			"them change it.\n",
			image);
	if (r != -EBUSY)
		return r;
	if (o->rw) {
		char msg[sizeof(err->msg)];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		vdisk_err_clear(err);
		return vdisk_err_set(err, r, "%s; without --rw it can be mounted read-only", msg);
	}
	r = open_disk(o, image, flags | VDISK_OPEN_NOLOCK, ret, &e2);
	if (r < 0)
		return r;
	vdisk_err_clear(err);
	fprintf(stderr,
		"vdisk: mount: note: %s is in use by a writer (a running VM?): mounted read-only "
		"as a point-in-time view. Its block map is the one of this moment: data the "
		"writer adds later may not show, or show partly, until you mount again.\n",
		image);
	return 0;
}

/* ---- background commit ---- */

static void *committer_main(void *arg)
{
	struct vfuse *fs = arg;
	struct timespec ts;

	pthread_mutex_lock(&fs->stop_lock);
	while (!fs->stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += VFUSE_COMMIT_INTERVAL_S;
		pthread_cond_timedwait(&fs->stop_cond, &fs->stop_lock, &ts);
		if (fs->stop)
			break;
		pthread_mutex_unlock(&fs->stop_lock);
		vfuse_commit(fs);
		pthread_mutex_lock(&fs->stop_lock);
	}
	pthread_mutex_unlock(&fs->stop_lock);
	return NULL;
}

static void committer_stop(struct vfuse *fs)
{
	if (!fs->committer_started)
		return;
	pthread_mutex_lock(&fs->stop_lock);
	fs->stop = true;
	pthread_cond_signal(&fs->stop_cond);
	pthread_mutex_unlock(&fs->stop_lock);
	pthread_join(fs->committer, NULL);
	fs->committer_started = false;
}

/* ---- the session ---- */

/* "-o" value: commas and backslashes in the image path are escaped for fuse_opt. */
static char *mount_options(const struct vfuse_opts *o, const char *image, unsigned max_read)
{
	size_t n = strlen(image), k = 0;
	char *esc = malloc(2 * n + 1), *opts = NULL;

	if (!esc)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (image[i] == ',' || image[i] == '\\')
			esc[k++] = '\\';
		esc[k++] = image[i];
	}
	esc[k] = '\0';
	if (asprintf(&opts, "fsname=%s,subtype=vdisk,max_read=%u,default_permissions%s%s", esc,
		     max_read, o->allow_other ? ",allow_other" : "", o->rw ? "" : ",ro") < 0)
		opts = NULL;
	free(esc);
	return opts;
}

/*
 * The kernel caps a FUSE mount's readahead at 128 KiB whatever INIT says; a
 * larger window keeps several 1 MiB reads in flight for a sequential reader
 * (the threads then overlap with the disk). Only root may raise it; without
 * the page cache (VDISK_FUSE_DIRECT_IO=1) it does not matter.
 */
static void set_readahead(struct vfuse *fs, const char *mnt)
{
	unsigned maj, min;
	char path[64], val[16];
	int fd, n;

	if (fs->direct_io || !fs->readahead_kb || vfuse_mount_devno(mnt, &maj, &min) < 0)
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = snprintf(val, sizeof(val), "%u", fs->readahead_kb);
	if (write(fd, val, (size_t)n) != n)
		vfuse_log(fs, LOG_NOTICE, "%s: cannot set the readahead to %u KiB, ignoring", mnt,
			  fs->readahead_kb);
	close(fd);
}

struct ready {
	int fd;          /* status pipe to the parent, -1 in the foreground */
	const struct vfuse_opts *o;
	pthread_t fs_thread;
	bool fs_started;
};

static void report(struct ready *rd, const struct vdisk_err *err)
{
	ssize_t n;

	if (rd->fd < 0)
		return;
	do
		n = write(rd->fd, err, sizeof(*err));
	while (n < 0 && errno == EINTR);
	close(rd->fd);
	rd->fd = -1;
}

/* Foreground --fs: attach once the loop runs; on failure take the mount down again. */
static void *fs_thread_main(void *arg)
{
	struct ready *rd = arg;
	struct vdisk_err err = { 0 };

	if (vfuse_fs_attach(rd->o, &err) < 0) {
		fprintf(stderr, "vdisk: mount: %s\n", err.msg);
		kill(getpid(), SIGTERM);
	}
	return NULL;
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	openlog("vdisk-mount", LOG_PID, LOG_DAEMON);
	fuse_set_log_func(fuse_log_to_syslog);
	log_to_syslog = true;
}

static int run_loop(struct vfuse *fs, struct ready *rd)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int r;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_idle_threads(cfg, IDLE_THREADS);
	fuse_loop_cfg_set_max_threads(cfg, MAX_THREADS);
	if (pthread_create(&fs->committer, NULL, committer_main, fs) == 0)
		fs->committer_started = true;
	/* in the background, the parent attaches --fs once the mount is ready */
	if (fs->foreground && rd->o->fs_part &&
	    pthread_create(&rd->fs_thread, NULL, fs_thread_main, rd) == 0)
		rd->fs_started = true;
	r = fuse_session_loop_mt(fs->se, cfg);
	fuse_loop_cfg_destroy(cfg);
	if (rd->fs_started)
		pthread_join(rd->fs_thread, NULL);
	committer_stop(fs);
	return r < 0 ? r : 0;
}

/*
 * Opens, mounts and serves. @rd->fd (when >= 0) receives the outcome of the
 * set-up. Returns 0 after a clean unmount and close, or -errno with @err set.
 */
static int serve(const struct vfuse_opts *o, const char *image, const char *mnt,
		 struct ready *rd, struct vdisk_err *err)
{
	struct vfuse fs = { 0 };
	struct vdisk_disk *d = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	char *opts = NULL;
	int r;

	r = open_image(o, image, &d, err);
	if (r < 0)
		goto out_report;
	r = vfuse_state_init(&fs, d, image, o->rw, err);
	if (r < 0)
		goto out_free;
	fs.foreground = rd->fd < 0;
	opts = mount_options(o, image, fs.max_read);
	if (!opts || fuse_opt_add_arg(&args, "vdisk") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, opts) || (o->debug && fuse_opt_add_arg(&args, "-d"))) {
		r = vdisk_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	fs.se = fuse_session_new(&args, &vfuse_ops, sizeof(vfuse_ops), &fs);
	if (!fs.se) {
		r = vdisk_err_set(err, -EINVAL, "cannot start a FUSE session (see the message above)");
		goto out_free;
	}
	if (fuse_set_signal_handlers(fs.se) != 0) {
		r = vdisk_err_set(err, -EIO, "cannot install signal handlers");
		goto out_session;
	}
	if (fuse_session_mount(fs.se, mnt) != 0) {
		r = vdisk_err_set(err, -EIO, "%s: cannot mount (see the message above)", mnt);
		goto out_signals;
	}
	vfuse_kflags_setup(&fs);
	set_readahead(&fs, mnt);
	report(rd, err); /* ready: err is clear */
	if (!fs.foreground)
		detach_stdio();
	r = run_loop(&fs, rd);
	if (r < 0)
		vfuse_log(&fs, LOG_ERR, "%s: serving loop failed: %s", mnt, strerror(-r));
	fuse_session_unmount(fs.se);
out_signals:
	fuse_remove_signal_handlers(fs.se);
out_session:
	fuse_session_destroy(fs.se);
out_free:
	fuse_opt_free_args(&args);
	free(opts);
	/* commits the VHDX metadata and marks the log clean */
	if (d) {
		struct vdisk_err cerr = { 0 };
		int c = vdisk_disk_close(d, &cerr);
		if (c < 0) {
			if (rd->fd < 0 && r == 0)
				vfuse_log(&fs, LOG_ERR, "%s: closing: %s", image, cerr.msg);
			if (r == 0)
				r = vdisk_err_set(err, c, "%s", cerr.msg);
		}
	}
	vfuse_state_free(&fs);
out_report:
	if (r < 0)
		report(rd, err);
	return r;
}

/* ---- the command ---- */

static int check_dir(const char *what, const char *path, struct vdisk_err *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return vdisk_err_set(err, -errno, "%s %s: %s", what, path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return vdisk_err_set(err, -ENOTDIR, "%s %s: not a folder", what, path);
	return 0;
}

/* Parent of a background mount: waits for the child's verdict. */
static int wait_ready(pid_t pid, int fd, struct vdisk_err *err)
{
	struct vdisk_err got;
	size_t have = 0;
	int status;

	while (have < sizeof(got)) {
		ssize_t n = read(fd, (char *)&got + have, sizeof(got) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
	}
	close(fd);
	if (have == sizeof(got) && got.code == 0)
		return 0;
	waitpid(pid, &status, 0);
	if (have == sizeof(got)) {
		got.msg[sizeof(got.msg) - 1] = '\0';
		return vdisk_err_set(err, got.code, "%s", got.msg);
	}
	return vdisk_err_set(err, -EIO, "the mount process died before the mount was ready");
}

int vfuse_mount(const struct vfuse_opts *o, struct vdisk_err *err)
{
	char image[PATH_MAX], mnt[PATH_MAX];
	struct ready rd = { .fd = -1, .o = o };
	unsigned maj, min;
	int p[2], r;
	pid_t pid;

	if (!realpath(o->image, image))
		return vdisk_err_set(err, -errno, "%s: %s", o->image, strerror(errno));
	r = check_dir("mount point", o->mountpoint, err);
	if (r < 0)
		return r;
	if (!realpath(o->mountpoint, mnt))
		return vdisk_err_set(err, -errno, "%s: %s", o->mountpoint, strerror(errno));
	if (vfuse_mount_devno(mnt, &maj, &min) == 0)
		return vdisk_err_set(err, -EBUSY, "%s is a vdisk mount already (vdisk umount it first)",
				     mnt);
	if (o->fs_part) {
		if (geteuid() != 0)
			return vdisk_err_set(err, -EPERM,
					     "--fs needs root (loop devices and mount(8))");
		r = check_dir("file system folder", o->fs_dir, err);
		if (r < 0)
			return r;
	}
	if (o->foreground || o->debug)
		return serve(o, image, mnt, &rd, err);

	if (pipe2(p, O_CLOEXEC) < 0)
		return vdisk_err_set(err, -errno, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(p[0]);
		close(p[1]);
		return vdisk_err_set(err, r, "fork: %s", strerror(-r));
	}
	if (pid == 0) {
		struct vdisk_err cerr = { 0 };
		close(p[0]);
		setsid();
		if (chdir("/") < 0)
			_exit(1);
		rd.fd = p[1];
		_exit(serve(o, image, mnt, &rd, &cerr) < 0 ? 1 : 0);
	}
	close(p[1]);
	r = wait_ready(pid, p[0], err);
	if (r < 0 || !o->fs_part)
		return r;
	r = vfuse_fs_attach(o, err);
	if (r < 0) {
		struct vdisk_err uerr = { 0 };
		vfuse_umount(mnt, &uerr);
	}
	return r;
}
