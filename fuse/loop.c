/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * `vdisk mount --fs PART`: the partition file of a running mount is bound to
 * a free loop device (LOOP_CONFIGURE, sector size of the image, direct I/O,
 * autoclear, read-only unless --rw) and mount(8) mounts the file system
 * found there.
 * Teardown finds every loop device backed by a file of the mount (whoever
 * set it up), unmounts the file systems mounted from it and detaches it,
 * before the FUSE mount itself can go.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "vfuse-int.h"

extern char **environ;

int vfuse_run(char *const argv[])
{
	pid_t pid;
	int r, status;

	r = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
	if (r)
		return -r;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* "1", "p1" or "disk" -> the file name in the mount. */
static int part_file(const char *part, char *name, size_t cap)
{
	char *end;
	unsigned long n;

	if (strcmp(part, "disk") == 0) {
		snprintf(name, cap, "disk");
		return 0;
	}
	if (part[0] == 'p')
		part++;
	errno = 0;
	n = strtoul(part, &end, 10);
	if (errno || end == part || *end || n == 0 || n > 9999)
		return -EINVAL;
	snprintf(name, cap, "p%lu", n);
	return 0;
}

/* The names in the mount, for a message: "disk p1 p2". */
static void list_files(const char *mnt, char *out, size_t cap)
{
	DIR *d = opendir(mnt);
	struct dirent *de;
	size_t k = 0;

	out[0] = '\0';
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		k += (size_t)snprintf(out + k, cap - MIN(k, cap), "%s%s", k ? " " : "", de->d_name);
		if (k >= cap)
			break;
	}
	if (d)
		closedir(d);
}

static uint32_t mount_sector_size(const char *mnt)
{
	char v[16] = "";
	ssize_t n = getxattr(mnt, VFUSE_XATTR_SECTOR, v, sizeof(v) - 1);

	if (n > 0 && strtoul(v, NULL, 10) == 4096)
		return 4096;
	return 512;
}

/* Binds @file to a free loop device. Returns its open fd (path in @dev) or -errno. */
static int loop_attach(const char *file, bool ro, uint32_t sector, char *dev, size_t cap,
		       struct vdisk_err *err)
{
	struct loop_config cfg;
	int ctl, ffd, lfd = -1, r = 0;

	ffd = open(file, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (ffd < 0)
		return vdisk_err_set(err, -errno, "%s: %s", file, strerror(errno));
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		r = vdisk_err_set(err, -errno, "/dev/loop-control: %s", strerror(errno));
		goto out;
	}
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)ffd;
	cfg.block_size = sector;
	/* direct I/O: the file system's cache is the only one above the mount's */
	cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO | (ro ? LO_FLAGS_READ_ONLY : 0);
	memcpy(cfg.info.lo_file_name, file, strnlen(file, sizeof(cfg.info.lo_file_name) - 1));
	for (int tries = 0; tries < 32; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0) {
			r = vdisk_err_set(err, -errno, "no free loop device: %s", strerror(errno));
			goto out;
		}
		snprintf(dev, cap, "/dev/loop%d", n);
		lfd = open(dev, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (lfd < 0) {
			r = vdisk_err_set(err, -errno, "%s: %s", dev, strerror(errno));
			goto out;
		}
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
			goto out;
		r = -errno;
		if (r == -EINVAL && (cfg.info.lo_flags & LO_FLAGS_DIRECT_IO)) {
			/* no direct I/O on this file: the loop device caches, then */
			cfg.info.lo_flags &= ~(uint32_t)LO_FLAGS_DIRECT_IO;
			if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
				goto out;
			r = -errno;
		}
		close(lfd);
		lfd = -1;
		if (r != -EBUSY) /* -EBUSY: another process took it first */
			break;
	}
	r = vdisk_err_set(err, r, "%s: cannot set up a loop device: %s", file, strerror(-r));
out:
	if (ctl >= 0)
		close(ctl);
	close(ffd); /* the loop device holds its own reference */
	return r < 0 ? r : lfd;
}

int vfuse_fs_attach(const struct vfuse_opts *o, struct vdisk_err *err)
{
	char mnt[PATH_MAX], name[16], file[PATH_MAX + 16], dev[32], have[256];
	char *argv[8];
	int lfd, r, i = 0;
	struct stat st;

	if (!realpath(o->mountpoint, mnt))
		return vdisk_err_set(err, -errno, "%s: %s", o->mountpoint, strerror(errno));
	if (part_file(o->fs_part, name, sizeof(name)) < 0)
		return vdisk_err_set(err, -EINVAL, "--fs %s: not a partition (1, p1 or disk)",
				     o->fs_part);
	snprintf(file, sizeof(file), "%s/%s", mnt, name);
	if (stat(file, &st) < 0) {
		r = -errno;
		list_files(mnt, have, sizeof(have));
		return vdisk_err_set(err, r, "--fs %s: %s: %s (the mount has: %s)", o->fs_part, file,
				     strerror(-r), have);
	}
	lfd = loop_attach(file, !o->rw, mount_sector_size(mnt), dev, sizeof(dev), err);
	if (lfd < 0)
		return lfd;
	argv[i++] = "mount";
	if (!o->rw) {
		argv[i++] = "-o";
		argv[i++] = "ro";
	}
	argv[i++] = dev;
	argv[i++] = (char *)o->fs_dir;
	argv[i] = NULL;
	r = vfuse_run(argv);
	close(lfd); /* autoclear: the loop device goes away with the last user */
	if (r < 0)
		return vdisk_err_set(err, r, "cannot run mount: %s", strerror(-r));
	if (r > 0)
		return vdisk_err_set(err, -EIO, "mount %s %s failed (exit status %d)", dev,
				     o->fs_dir, r);
	return 0;
}

/* ---- teardown ---- */

static int read_line(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Undoes the octal escapes (\040 for a space) of /proc/self/mountinfo in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* Unmounts every mount of block device @devno (latest first). 0 or -errno. */
static int umount_dev(unsigned devmaj, unsigned devmin, struct vdisk_err *err)
{
	for (;;) {
		FILE *f = fopen("/proc/self/mountinfo", "re");
		char line[4096], target[PATH_MAX] = "";
		unsigned maj, min;

		if (!f)
			return vdisk_err_set(err, -errno, "/proc/self/mountinfo: %s", strerror(errno));
		while (fgets(line, sizeof(line), f)) {
			char mp[PATH_MAX];
			if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mp) == 3 &&
			    maj == devmaj && min == devmin)
				snprintf(target, sizeof(target), "%s", mp); /* keep the last */
		}
		fclose(f);
		if (!target[0])
			return 0;
		unescape(target);
		if (umount2(target, 0) < 0)
			return vdisk_err_set(err, -errno, "cannot unmount %s: %s", target,
					     strerror(errno));
	}
}

/* Detaches /dev/@name and waits (a few seconds at most) for it to let go of its file. */
static int loop_detach(const char *name, struct vdisk_err *err)
{
	char dev[320], sys[320], back[PATH_MAX];
	int fd, r = 0;

	snprintf(dev, sizeof(dev), "/dev/%s", name);
	snprintf(sys, sizeof(sys), "/sys/block/%s/loop/backing_file", name);
	fd = open(dev, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (ioctl(fd, LOOP_CLR_FD, 0) < 0 && errno != ENXIO)
			r = -errno;
		close(fd);
	}
	for (int i = 0; i < 100; i++) {
		if (read_line(sys, back, sizeof(back)) < 0)
			return 0;
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return vdisk_err_set(err, r ? r : -EBUSY, "%s: still bound to %s (in use?)", dev, back);
}

int vfuse_fs_detach(const char *mountpoint, struct vdisk_err *err)
{
	size_t plen = strlen(mountpoint);
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	int r = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) && r == 0) {
		char path[PATH_MAX], back[PATH_MAX], devno[32];
		unsigned maj, min;

		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/loop/backing_file", de->d_name);
		if (read_line(path, back, sizeof(back)) < 0)
			continue;
		if (strncmp(back, mountpoint, plen) != 0 || back[plen] != '/')
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/dev", de->d_name);
		if (read_line(path, devno, sizeof(devno)) < 0 ||
		    sscanf(devno, "%u:%u", &maj, &min) != 2)
			continue;
		r = umount_dev(maj, min, err);
		if (r == 0)
			r = loop_detach(de->d_name, err);
	}
	closedir(d);
	return r;
}
