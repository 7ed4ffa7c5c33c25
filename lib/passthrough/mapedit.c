/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Editing the map file: `vdisk lun map` and `vdisk lun unmap`. Every edit
 * takes an exclusive flock() on "MAP.lock" (a file that is never removed,
 * so two editors always lock the same inode), re-reads the map under the
 * lock, applies one change and replaces the file atomically: a temporary
 * file in the same folder, written and fsync()ed, renamed over the map, then
 * the folder fsync()ed. Readers need no lock: they see the old map or the
 * new one, never a mix.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pt-int.h"
#include "util.h"

void pt_map_opts_init(struct pt_map_opts *o, size_t size)
{
	struct pt_map_opts d = { .struct_size = size };

	memcpy(o, &d, MIN(size, sizeof(d)));
}

/* mkdir -p of the folder holding @path. */
static int make_parent(const char *path, struct vdisk_err *err)
{
	char buf[PATH_MAX], dir[PATH_MAX], *p;

	if (pt_strlcpy(buf, path, sizeof(buf)) >= sizeof(buf))
		return vdisk_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	/* dirname() may return a static "." rather than cut @buf: use what it returns */
	pt_strlcpy(dir, dirname(buf), sizeof(dir));
	for (p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return vdisk_err_set(err, -errno, "%s: cannot create: %s", dir,
					     strerror(errno));
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return vdisk_err_set(err, -errno, "%s: cannot create: %s", dir, strerror(errno));
	return 0;
}

/* Opens and locks "@path.lock" exclusively (waits for other editors). Returns the fd. */
static int lock_map(const char *path, struct vdisk_err *err)
{
	char lock[PATH_MAX];
	int fd, r;

	r = make_parent(path, err);
	if (r)
		return r;
	if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", path) >= sizeof(lock))
		return vdisk_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return vdisk_err_set(err, -errno, "%s: cannot open the lock file: %s", lock,
				     strerror(errno));
	while (flock(fd, LOCK_EX) < 0) {
		if (errno == EINTR)
			continue;
		r = -errno;
		close(fd);
		return vdisk_err_set(err, r, "%s: flock: %s", lock, strerror(-r));
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Replaces @path by @map's text: temp file, fsync, rename, fsync of the folder. */
static int save_map(const char *path, const struct pt_lunmap *map, struct vdisk_err *err)
{
	char tmp[PATH_MAX], dir[PATH_MAX], *text = NULL, *folder;
	struct stat st;
	size_t len;
	int fd, dfd, r;

	r = pt_lunmap_format(map, &text, &len, err);
	if (r)
		return r;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp)) {
		free(text);
		return vdisk_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		r = vdisk_err_set(err, -errno, "%s: cannot create: %s", tmp, strerror(errno));
		free(text);
		return r;
	}
	/* keep the mode of the map being replaced; a new one is 0644 */
	r = write_all(fd, text, len);
	if (r == 0 && fchmod(fd, stat(path, &st) == 0 ? (st.st_mode & 07777) : 0644) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	free(text);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r) {
		unlink(tmp);
		return vdisk_err_set(err, r, "%s: cannot write the LUN map: %s", path,
				     strerror(-r));
	}
	pt_strlcpy(dir, path, sizeof(dir));
	folder = dirname(dir);
	dfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd) < 0)
			r = vdisk_err_set(err, -errno, "%s: fsync: %s", folder, strerror(errno));
		close(dfd);
	}
	return r;
}

static int map_locked(const char *map_path, struct pt_lunmap *map, const char *vm,
		      const struct pt_slot *slot, const char *device, const struct pt_map_opts *o,
		      struct pt_lun_entry *ret_entry, struct vdisk_err *err)
{
	struct pt_discover_opts dopts;
	struct pt_device_list *list = NULL;
	const struct pt_device *dev;
	const struct pt_lun_entry *old;
	struct pt_lun_entry e = { .slot = *slot, .readonly = o->readonly };
	char s[PT_SLOT_STRLEN], id[PT_ID_STRLEN];
	unsigned flags = (o->force ? PT_CHECK_FORCE : 0) | (o->readonly ? PT_CHECK_READONLY : 0);
	int r;

	pt_discover_opts_init(&dopts, sizeof(dopts));
	VDISK_OPTS_OVERLAY(&dopts, o->discover);
	dopts.map = map;
	r = pt_discover(&dopts, &list, err);
	if (r)
		return r;
	r = pt_device_find(list, device, &dev, err);
	if (r)
		goto out;
	r = pt_device_stable_identity(list, dev, &e.id, err);
	if (r)
		goto out;
	pt_slot_format(slot, s);
	pt_identity_format(&e.id, id, sizeof(id));
	old = pt_lunmap_find(map, vm, slot);
	if (old && !(pt_device_has_identity(dev, &old->id))) {
		char oid[PT_ID_STRLEN];
		pt_identity_format(&old->id, oid, sizeof(oid));
		r = vdisk_err_set(err, -EEXIST, "%s %s holds %s already: unmap it first", vm, s,
				  oid);
		goto out;
	}
	if (old)
		e.id = old->id; /* same device, maybe stored by another identity: keep it */
	r = pt_safety_check(list, dev, map, vm, slot, flags, err);
	if (r)
		goto out;
	pt_strlcpy(e.vm, vm, sizeof(e.vm));
	r = pt_lunmap_set(map, &e, err);
	if (r)
		goto out;
	r = save_map(map_path, map, err);
	if (r == 0 && ret_entry)
		*ret_entry = e;
out:
	pt_device_list_free(list);
	return r;
}

int pt_lun_map(const char *map_path, const char *vm, const struct pt_slot *slot, const char *device,
	       const struct pt_map_opts *o, struct pt_lun_entry *ret_entry, struct vdisk_err *err)
{
	struct pt_map_opts oc;
	struct pt_lunmap *map = NULL;
	int lock, r;

	pt_map_opts_init(&oc, sizeof(oc));
	VDISK_OPTS_OVERLAY(&oc, o);
	if (!pt_vm_name_valid(vm))
		return vdisk_err_set(err, -EINVAL,
				     "invalid VM name '%.80s' (1 to %d of A-Z a-z 0-9 . _ -, "
				     "starting with a letter or digit)",
				     vm ? vm : "", PT_VM_NAME_MAX);
	lock = lock_map(map_path, err);
	if (lock < 0)
		return lock;
	r = pt_lunmap_load(map_path, &map, err);
	if (r == 0)
		r = map_locked(map_path, map, vm, slot, device, &oc, ret_entry, err);
	pt_lunmap_free(map);
	close(lock);
	return r;
}

int pt_lun_unmap(const char *map_path, const char *vm, const struct pt_slot *slot,
		 struct pt_lun_entry *ret_removed, struct vdisk_err *err)
{
	struct pt_lunmap *map = NULL;
	int lock, r;

	if (!pt_vm_name_valid(vm))
		return vdisk_err_set(err, -EINVAL, "invalid VM name '%.80s'", vm ? vm : "");
	lock = lock_map(map_path, err);
	if (lock < 0)
		return lock;
	r = pt_lunmap_load(map_path, &map, err);
	if (r == 0)
		r = pt_lunmap_remove(map, vm, slot, ret_removed, err);
	if (r == 0)
		r = save_map(map_path, map, err);
	pt_lunmap_free(map);
	close(lock);
	return r;
}
