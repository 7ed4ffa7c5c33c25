/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Snapshots that keep the VM's path. Creating one hard-links the image to
 * a frozen name, builds a differencing child of that name in a temporary
 * file and renames it over the image: the rename is the atomic switch, so
 * the path is always either the old image or the new child. Each child
 * records, in a vdisk user metadata item other readers ignore, the name and
 * time of the snapshot that is its parent.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "byteorder.h"
#include "vhdx-int.h"

static bool valid_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 64 || name[0] == '.')
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

/* The snapshot named by @img's item (the snapshot that is @img's parent). */
static bool read_snap_item(struct vhdx_image *img, char *name, size_t cap, int64_t *ret_time)
{
	uint8_t buf[300];
	size_t len = 0;
	uint16_t nl;

	if (vhdx_get_user_item(img, &vhdx_guid_vdisk_snapshot, buf, sizeof(buf), &len) < 0 ||
	    len < 10)
		return false;
	nl = get_le16(buf + 8);
	if (10U + nl > len || nl >= cap)
		return false;
	memcpy(name, buf + 10, nl);
	name[nl] = '\0';
	*ret_time = (int64_t)get_le64(buf);
	return true;
}

static int sync_dir_of(const char *path)
{
	char d[PATH_MAX];
	int fd, r = 0;

	snprintf(d, sizeof(d), "%s", path);
	fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Builds a child of @parent at a temporary name beside @path and renames it over @path. */
static int replace_with_child(const char *path, const char *parent, const char *name,
			      int64_t created, struct vdisk_err *err)
{
	char tmp[PATH_MAX];
	struct vhdx_create_opts o;
	int r;

	snprintf(tmp, sizeof(tmp), "%s.vdisk-tmp-%d", path, (int)getpid());
	vhdx_create_opts_init(&o, sizeof(o));
	o.type = VHDX_TYPE_DIFFERENCING;
	o.parent_path = parent;
	o.snapshot_name = name;
	o.snapshot_time = created;
	o.overwrite = true;
	r = vhdx_create(tmp, &o, err);
	if (r < 0)
		return r;
	if (rename(tmp, path) < 0) {
		r = vdisk_err_set(err, -errno, "%s: switching to the new child: %s", path,
				  strerror(errno));
		unlink(tmp);
		return r;
	}
	return sync_dir_of(path);
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* Opens @path writable and closes it, so its log is applied and it is clean. */
static int settle(const char *path, struct vdisk_err *err)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	int r;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_NO_PARENT;
	r = vhdx_open(path, &o, &img, err);
	return r < 0 ? r : vhdx_close(img, err);
}

int vhdx_snapshot_create(const char *path, const char *name, char *ret_file, size_t ret_cap,
			 struct vdisk_err *err)
{
	char frozen[PATH_MAX], base[PATH_MAX];
	char *dot;
	int r;

	if (!valid_name(name))
		return vdisk_err_set(err, -EINVAL,
				     "snapshot name \"%s\": use 1 to 64 letters, digits, '-', '_' or '.'",
				     name);
	r = settle(path, err);
	if (r < 0)
		return r;
	snprintf(base, sizeof(base), "%s", path);
	dot = strrchr(base, '.');
	if (dot && strchr(dot, '/') == NULL)
		*dot = '\0';
	r = snprintf(frozen, sizeof(frozen), "%s@%s.avhdx", base, name);
	if (r < 0 || (size_t)r >= sizeof(frozen))
		return vdisk_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	if (link(path, frozen) < 0 && !(errno == EEXIST && same_file(path, frozen)))
		/* (the same file: a create that crashed before switching; carry on from there) */
		return vdisk_err_set(err, -errno, "%s: cannot create the snapshot file %s: %s", path,
				     frozen, errno == EEXIST ? "a snapshot of that name exists" : strerror(errno));
	r = replace_with_child(path, frozen, name, (int64_t)time(NULL), err);
	if (r < 0) {
		unlink(frozen);
		return r;
	}
	chmod(frozen, 0444);
	if (ret_file && ret_cap)
		snprintf(ret_file, ret_cap, "%s", frozen);
	return 0;
}

/* Collects the snapshots of @path's chain: layer i names its parent (layer i+1). */
static int walk(const char *path, struct vhdx_image **ret_top, struct vhdx_snapshot **ret,
		unsigned *ret_n, struct vdisk_err *err)
{
	struct vhdx_open_opts o;
	struct vhdx_image *top;
	struct vhdx_snapshot *v = NULL;
	unsigned n = 0;
	int r;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK;
	r = vhdx_open(path, &o, &top, err);
	if (r < 0)
		return r;
	for (struct vhdx_image *l = top; l && l->parent; l = l->parent) {
		struct vhdx_snapshot s = { 0 };
		struct vhdx_snapshot *nv;
		if (!read_snap_item(l, s.name, sizeof(s.name), &s.created))
			continue;
		snprintf(s.file, sizeof(s.file), "%s", l->parent->path);
		snprintf(s.parent, sizeof(s.parent), "%s",
			 l->parent->parent ? l->parent->parent->path : "");
		s.size_bytes = l->parent->disk_size;
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			free(v);
			vhdx_free(top);
			return vdisk_err_set(err, -ENOMEM, "out of memory");
		}
		v = nv;
		v[n++] = s;
	}
	*ret = v;
	*ret_n = n;
	if (ret_top)
		*ret_top = top;
	else
		vhdx_free(top);
	return 0;
}

int vhdx_snapshot_list(const char *path, struct vhdx_snapshot **ret, unsigned *ret_n,
		       struct vdisk_err *err)
{
	return walk(path, NULL, ret, ret_n, err);
}

/* Finds @name: the layer index whose item names it (its parent is the snapshot file). */
static int find(struct vhdx_image *top, const char *name, struct vhdx_image **ret_layer,
		unsigned *ret_idx)
{
	unsigned i = 0;

	for (struct vhdx_image *l = top; l && l->parent; l = l->parent, i++) {
		char nm[128];
		int64_t t;
		if (read_snap_item(l, nm, sizeof(nm), &t) && strcmp(nm, name) == 0) {
			*ret_layer = l;
			*ret_idx = i;
			return 0;
		}
	}
	return -ENOENT;
}

int vhdx_snapshot_revert(const char *path, const char *name, struct vdisk_err *err)
{
	struct vhdx_snapshot *v = NULL;
	struct vhdx_image *top = NULL, *l;
	char *doomed[64];
	char nm[128], snapfile[PATH_MAX];
	unsigned idx, nd = 0, n;
	int64_t created;
	int r = walk(path, &top, &v, &n, err);

	free(v);
	if (r < 0)
		return r;
	if (find(top, name, &l, &idx) < 0) {
		vhdx_free(top);
		return vdisk_err_set(err, -ENOENT, "%s: no snapshot named \"%s\"", path, name);
	}
	read_snap_item(l, nm, sizeof(nm), &created);
	snprintf(snapfile, sizeof(snapfile), "%s", l->parent->path);
	/* the frozen files of newer snapshots: layers 1..idx */
	l = top->parent;
	for (unsigned i = 1; i <= idx && l && nd < 64; i++, l = l->parent)
		doomed[nd++] = strdup(l->path);
	vhdx_free(top);
	r = replace_with_child(path, snapfile, nm, created, err);
	for (unsigned i = 0; i < nd; i++) {
		if (r == 0 && doomed[i])
			unlink(doomed[i]);
		free(doomed[i]);
	}
	return r;
}

int vhdx_snapshot_delete(const char *path, const char *name, struct vdisk_err *err)
{
	struct vhdx_snapshot *v = NULL;
	struct vhdx_image *top = NULL, *l, *a;
	char child[PATH_MAX], snapfile[PATH_MAX], above[PATH_MAX] = "";
	unsigned idx, n;
	int r = walk(path, &top, &v, &n, err);

	free(v);
	if (r < 0)
		return r;
	if (find(top, name, &l, &idx) < 0) {
		vhdx_free(top);
		return vdisk_err_set(err, -ENOENT, "%s: no snapshot named \"%s\"", path, name);
	}
	snprintf(child, sizeof(child), "%s", l->path);
	snprintf(snapfile, sizeof(snapfile), "%s", l->parent->path);
	/* the layer above the merged one, re-linked by the merge: frozen (read-only) unless live */
	a = top;
	for (unsigned i = 0; i + 1 < idx; i++)
		a = a->parent;
	if (idx > 1)
		snprintf(above, sizeof(above), "%s", a->path);
	vhdx_free(top);
	chmod(snapfile, 0644);
	if (idx > 0) {
		/*
		 * An older snapshot: its child layer (a newer snapshot) is merged down into
		 * it. The merge locks and writes frozen files: make them writable meanwhile.
		 */
		chmod(child, 0644);
		if (above[0])
			chmod(above, 0644);
		r = vhdx_merge(child, snapfile, VHDX_MERGE_FORCE, NULL, NULL, NULL, err);
		if (above[0])
			chmod(above, 0444);
		if (r < 0)
			chmod(child, 0444);
		chmod(snapfile, 0444);
		return r;
	}
	/* the newest snapshot: the live image is merged into it, which then takes the path */
	r = vhdx_merge(path, snapfile, VHDX_MERGE_FORCE | VHDX_MERGE_KEEP_CHILD, NULL, NULL, NULL,
		       err);
	if (r == 0 && rename(snapfile, path) < 0)
		r = vdisk_err_set(err, -errno, "%s: taking over the path: %s", snapfile,
				  strerror(errno));
	return r == 0 ? sync_dir_of(path) : r;
}
