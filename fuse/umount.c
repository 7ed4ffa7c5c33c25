/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `vdisk umount MOUNTPOINT`: checks that MOUNTPOINT is a vdisk mount
 * (fuse.vdisk in /proc/self/mountinfo), learns the serving process from the
 * user.vdisk.pid attribute of its root and holds a pidfd on it, takes down
 * what sits on top (file systems on loop devices backed by its files, the
 * loop devices), runs `fusermount3 -u`, then waits for the process to exit:
 * it closes the image on its way out, so once this returns every write is
 * durable and the VHDX log is clean. A mount whose process died (ENOTCONN)
 * is simply unmounted.
 */
#include <errno.h>
#include <limits.h>
#include <libgen.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "util.h"
#include "vfuse-int.h"

#define EXIT_WAIT_MS (10 * 60 * 1000)

/* realpath() that also works on a dead FUSE mount point (whose stat fails with ENOTCONN). */
static int mount_path(const char *path, char *out, struct vdisk_err *err)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	char *base;

	if (realpath(path, out))
		return 0;
	if (errno != ENOTCONN)
		return vdisk_err_set(err, -errno, "%s: %s", path, strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s", path);
	base = basename(tmp);
	snprintf(dir, sizeof(dir), "%s", path);
	if (!realpath(dirname(dir), out))
		return vdisk_err_set(err, -errno, "%s: %s", path, strerror(errno));
	if (strlen(out) + strlen(base) + 2 > PATH_MAX)
		return vdisk_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	if (strcmp(out, "/") != 0)
		strcat(out, "/");
	strcat(out, base);
	return 0;
}

int vfuse_mount_devno(const char *mnt, unsigned *ret_major, unsigned *ret_minor)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], esc[PATH_MAX * 4];
	size_t k = 0;
	int r = -ENOENT;

	if (!f)
		return -errno;
	/* mountinfo escapes blanks and backslashes as \ooo: compare escaped forms */
	for (const char *p = mnt; *p && k + 5 < sizeof(esc); p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\\')
			k += (size_t)snprintf(esc + k, sizeof(esc) - k, "\\%03o", (unsigned char)*p);
		else
			esc[k++] = *p;
	}
	esc[k] = '\0';
	while (r < 0 && fgets(line, sizeof(line), f)) {
		char mp[PATH_MAX * 4], *sep = strstr(line, " - ");
		unsigned maj, min;
		if (!sep || sscanf(line, "%*u %*u %u:%u %*s %16383s", &maj, &min, mp) != 3)
			continue;
		if (strcmp(mp, esc) == 0 && strncmp(sep + 3, "fuse.vdisk ", 11) == 0) {
			*ret_major = maj;
			*ret_minor = min;
			r = 0;
		}
	}
	fclose(f);
	return r;
}

static int wait_exit(int pidfd, long pid, struct vdisk_err *err)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };
	int r;

	do
		r = poll(&p, 1, EXIT_WAIT_MS);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return vdisk_err_set(err, -errno, "waiting for process %ld: %s", pid, strerror(errno));
	if (r == 0)
		return vdisk_err_set(err, -ETIMEDOUT,
				     "unmounted, but the mount process %ld has not exited after %d s",
				     pid, EXIT_WAIT_MS / 1000);
	return 0;
}

int vfuse_umount(const char *mountpoint, struct vdisk_err *err)
{
	char mnt[PATH_MAX], v[24] = "";
	char *argv[] = { "fusermount3", "-u", mnt, NULL };
	long pid = 0;
	unsigned maj, min;
	int pidfd = -1, r;
	ssize_t n;

	r = mount_path(mountpoint, mnt, err);
	if (r < 0)
		return r;
	if (vfuse_mount_devno(mnt, &maj, &min) < 0)
		return vdisk_err_set(err, -EINVAL, "%s: not a vdisk mount", mountpoint);
	n = getxattr(mnt, VFUSE_XATTR_PID, v, sizeof(v) - 1);
	if (n > 0) {
		v[n] = '\0';
		pid = strtol(v, NULL, 10);
		if (pid > 0)
			pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	}
	r = vfuse_fs_detach(mnt, err);
	if (r < 0)
		goto out;
	r = vfuse_run(argv);
	if (r != 0) {
		r = vdisk_err_set(err, r < 0 ? r : -EBUSY, "%s: fusermount3 -u failed%s", mnt,
				  r < 0 ? "" : " (see its message above)");
		goto out;
	}
	if (pidfd >= 0)
		r = wait_exit(pidfd, pid, err);
out:
	if (pidfd >= 0)
		close(pidfd);
	return r;
}
