/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Snapshots that keep the VM's path. Creating one hard-links the image to
 * a frozen name, builds a differencing child of that name in a temporary
 * file and renames it over the image: the rename is the atomic switch, so
 * the path is always either the old image or the new child. Each child
 * records, in a vdisk user metadata item other readers ignore, the name and
 * time of the snapshot that is its parent, and whether a delete of that
 * snapshot has begun (set through the log before the merge starts, so an
 * interrupted delete is listed as such). A create or revert killed before
 * its rename leaves FILE.vdisk-tmp-PID behind; vhdx_snapshot_clean removes
 * those of processes that are gone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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

/*
 * The snapshot item: le64 creation time, le16 name length, the name, then
 * optionally le32 state flags (absent in items written before the flags
 * existed, and read as 0).
 */
#define SNAP_ITEM_MAX (10 + 255 + 4)

bool vhdx_snap_item_decode(const uint8_t *buf, size_t len, char *name, size_t cap,
			   int64_t *ret_time, uint32_t *ret_flags)
{
	uint16_t nl;

	if (len < 10)
		return false;
	nl = get_le16(buf + 8);
	if (10U + nl > len || nl >= cap)
		return false;
	memcpy(name, buf + 10, nl);
	name[nl] = '\0';
	*ret_time = (int64_t)get_le64(buf);
	if (ret_flags)
		*ret_flags = len >= 14U + nl ? get_le32(buf + 10 + nl) : 0;
	return true;
}

/* The snapshot named by @img's item (the snapshot that is @img's parent). */
static bool read_snap_item(struct vhdx_image *img, char *name, size_t cap, int64_t *ret_time,
			   uint32_t *ret_flags)
{
	uint8_t buf[300];
	size_t len = 0;

	return vhdx_get_user_item(img, &vhdx_guid_vdisk_snapshot, buf, sizeof(buf), &len) >= 0 &&
	       vhdx_snap_item_decode(buf, len, name, cap, ret_time, ret_flags);
}

/*
 * Sets @flags in the item of @layer (the child whose parent is the snapshot).
 * The item changes through the log like any metadata change, and only the
 * FileWriteGuid changes, so the layer's children stay linked.
 */
static int set_snap_flags(const char *layer, uint32_t flags, struct vdisk_err *err)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	uint8_t buf[SNAP_ITEM_MAX];
	char name[256];
	int64_t t;
	uint32_t old;
	size_t nl;
	int r;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_NO_PARENT;
	r = vhdx_open(layer, &o, &img, err);
	if (r < 0)
		return r;
	if (!read_snap_item(img, name, sizeof(name), &t, &old)) {
		vhdx_free(img);
		return vdisk_err_set(err, -EINVAL, "%s: the snapshot item cannot be read", layer);
	}
	if (old == flags)
		return vhdx_close(img, err);
	nl = strlen(name);
	put_le64(buf, (uint64_t)t);
	put_le16(buf + 8, (uint16_t)nl);
	memcpy(buf + 10, name, nl);
	put_le32(buf + 10 + nl, flags);
	r = vhdx_set_user_item(img, &vhdx_guid_vdisk_snapshot, buf, (uint32_t)(14 + nl));
	if (r < 0) {
		vhdx_free(img);
		return vdisk_err_set(err, r, "%s: recording the snapshot's state: %s", layer,
				     strerror(-r));
	}
	return vhdx_close(img, err);
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

/*
 * Collects the snapshots of @path's chain (layer i names its parent, layer
 * i+1) and, when @ret_flags is not NULL, their state flags. @ret may be NULL
 * when only the opened chain (*ret_top) is wanted.
 */
static int walk(const char *path, struct vhdx_image **ret_top, struct vhdx_snapshot **ret,
		unsigned **ret_flags, unsigned *ret_n, struct vdisk_err *err)
{
	struct vhdx_open_opts o;
	struct vhdx_image *top;
	struct vhdx_snapshot *v = NULL;
	unsigned *f = NULL;
	unsigned n = 0;
	int r;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK;
	r = vhdx_open(path, &o, &top, err);
	if (r < 0)
		return r;
	for (struct vhdx_image *l = top; ret && l && l->parent; l = l->parent) {
		struct vhdx_snapshot s = { 0 };
		struct vhdx_snapshot *nv;
		unsigned *nf;
		uint32_t fl;
		if (!read_snap_item(l, s.name, sizeof(s.name), &s.created, &fl))
			continue;
		snprintf(s.file, sizeof(s.file), "%s", l->parent->path);
		snprintf(s.parent, sizeof(s.parent), "%s",
			 l->parent->parent ? l->parent->parent->path : "");
		s.size_bytes = l->parent->disk_size;
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (nv)
			v = nv;
		nf = nv && ret_flags ? realloc(f, (n + 1) * sizeof(*f)) : NULL;
		if (nf)
			f = nf;
		if (!nv || (ret_flags && !nf)) {
			free(v);
			free(f);
			vhdx_free(top);
			return vdisk_err_set(err, -ENOMEM, "out of memory");
		}
		if (ret_flags)
			f[n] = fl;
		v[n++] = s;
	}
	if (ret) {
		*ret = v;
		*ret_n = n;
	}
	if (ret_flags)
		*ret_flags = f;
	if (ret_top)
		*ret_top = top;
	else
		vhdx_free(top);
	return 0;
}

int vhdx_snapshot_list(const char *path, struct vhdx_snapshot **ret, unsigned *ret_n,
		       struct vdisk_err *err)
{
	return walk(path, NULL, ret, NULL, ret_n, err);
}

int vhdx_snapshot_list_flags(const char *path, struct vhdx_snapshot **ret, unsigned **ret_flags,
			     unsigned *ret_n, struct vdisk_err *err)
{
	return walk(path, NULL, ret, ret_flags, ret_n, err);
}

/* Finds @name: the layer index whose item names it (its parent is the snapshot file). */
static int find(struct vhdx_image *top, const char *name, struct vhdx_image **ret_layer,
		unsigned *ret_idx, uint32_t *ret_flags)
{
	unsigned i = 0;

	for (struct vhdx_image *l = top; l && l->parent; l = l->parent, i++) {
		char nm[128];
		int64_t t;
		uint32_t fl;
		if (read_snap_item(l, nm, sizeof(nm), &t, &fl) && strcmp(nm, name) == 0) {
			*ret_layer = l;
			*ret_idx = i;
			*ret_flags = fl;
			return 0;
		}
	}
	return -ENOENT;
}

int vhdx_snapshot_revert(const char *path, const char *name, struct vdisk_err *err)
{
	struct vhdx_image *top = NULL, *l;
	char *doomed[64];
	char nm[128], snapfile[PATH_MAX];
	unsigned idx, nd = 0;
	uint32_t flags;
	int64_t created;
	int r = walk(path, &top, NULL, NULL, NULL, err);

	if (r < 0)
		return r;
	if (find(top, name, &l, &idx, &flags) < 0) {
		vhdx_free(top);
		return vdisk_err_set(err, -ENOENT, "%s: no snapshot named \"%s\"", path, name);
	}
	if (flags & VHDX_SNAPSHOT_DELETING) {
		/* its file is the target of an unfinished merge: it holds newer data too */
		vhdx_free(top);
		return vdisk_err_set(err, -EBUSY,
				     "%s: snapshot \"%s\" is being deleted (an interrupted 'snapshot delete'); run the delete again to finish it",
				     path, name);
	}
	read_snap_item(l, nm, sizeof(nm), &created, NULL);
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

/* True when @img's locator entry @key holds a GUID equal to @g. */
static bool locator_is(const struct vhdx_image *img, const char *key, const struct vdisk_guid *g)
{
	const char *v = img->locator ? vhdx_locator_get(img->locator, key) : NULL;
	struct vdisk_guid x;

	return v && vdisk_guid_parse(v, &x) == 0 && vdisk_guid_equal(&x, g);
}

/*
 * @cand (not a layer of @top's chain) is a merged-away layer of a delete of
 * @name killed just before removing it: its item marks @name deleting, and
 * its parent P in the chain took the GUID announced in @cand while a layer of
 * the chain was re-linked to P with that GUID, which the merge does only
 * after all of @cand's content is in P.
 */
static bool merged_away(const char *cand, struct vhdx_image *top, const char *name,
			struct vhdx_image **ret_into)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	char nm[128];
	int64_t t;
	uint32_t fl;
	bool yes = false;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK | VHDX_OPEN_NO_PARENT;
	if (vhdx_open(cand, &o, &img, NULL) < 0)
		return false;
	if (read_snap_item(img, nm, sizeof(nm), &t, &fl) && strcmp(nm, name) == 0 &&
	    (fl & VHDX_SNAPSHOT_DELETING)) {
		for (struct vhdx_image *x = top; x && x->parent && !yes; x = x->parent) {
			const struct vdisk_guid *g = &x->parent->hdr.data_write_guid;
			yes = locator_is(img, "parent_linkage2", g) &&
			      locator_is(x, "parent_linkage", g);
			if (yes)
				*ret_into = x->parent;
		}
	}
	vhdx_free(img);
	return yes;
}

/* Removes the merged-away layer (see merged_away) of a delete of @name beside @path. */
static int finish_merged_away(const char *path, struct vhdx_image *top, const char *name)
{
	char dbuf[PATH_MAX], file[PATH_MAX];
	struct vhdx_image *into = NULL;
	const char *dir;
	struct dirent *de;
	DIR *dh;
	int r = -ENOENT;

	snprintf(dbuf, sizeof(dbuf), "%s", path);
	dir = dirname(dbuf);
	dh = opendir(dir);
	if (!dh)
		return -errno;
	while (r == -ENOENT && (de = readdir(dh))) {
		size_t l = strlen(de->d_name);
		bool in_chain = false;
		if (l < 7 || strcmp(de->d_name + l - 6, ".avhdx") != 0 || !strchr(de->d_name, '@'))
			continue;
		snprintf(file, sizeof(file), "%s/%s", dir, de->d_name);
		for (struct vhdx_image *x = top; x; x = x->parent)
			in_chain |= same_file(file, x->path);
		if (in_chain || !merged_away(file, top, name, &into))
			continue;
		r = unlink(file) < 0 ? -errno : 0;
		if (r == 0 && into != top)
			chmod(into->path, 0444); /* the merge target is a frozen file again */
	}
	closedir(dh);
	return r == 0 ? sync_dir_of(path) : r;
}

/*
 * Deleting snapshot S merges the layer whose item names S (its child) into S's
 * file. The item is first marked deleting, so that from the first change of
 * S's file on, a list shows S as being deleted rather than as a snapshot that
 * still reads as taken; the mark goes away with the merged layer (removed, or
 * for the newest snapshot replaced by the rename). Running the delete again
 * resumes the merge (see merge.c).
 */
int vhdx_snapshot_delete(const char *path, const char *name, struct vdisk_err *err)
{
	struct vhdx_image *top = NULL, *l, *a;
	char child[PATH_MAX], snapfile[PATH_MAX], above[PATH_MAX] = "";
	unsigned idx;
	uint32_t flags;
	int r = walk(path, &top, NULL, NULL, NULL, err);

	if (r < 0)
		return r;
	if (find(top, name, &l, &idx, &flags) < 0) {
		/* (killed after the merge re-linked the layer above: only the removal is left) */
		r = finish_merged_away(path, top, name);
		vhdx_free(top);
		if (r == 0)
			return 0;
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
		r = set_snap_flags(child, flags | VHDX_SNAPSHOT_DELETING, err);
		if (r == 0)
			r = vhdx_merge(child, snapfile, VHDX_MERGE_FORCE, NULL, NULL, NULL, err);
		if (above[0])
			chmod(above, 0444);
		if (r < 0)
			chmod(child, 0444);
		chmod(snapfile, 0444);
		return r;
	}
	/* the newest snapshot: the live image is merged into it, which then takes the path */
	r = set_snap_flags(path, flags | VHDX_SNAPSHOT_DELETING, err);
	if (r == 0)
		r = vhdx_merge(path, snapfile, VHDX_MERGE_FORCE | VHDX_MERGE_KEEP_CHILD, NULL, NULL,
			       NULL, err);
	if (r == 0 && rename(snapfile, path) < 0)
		r = vdisk_err_set(err, -errno, "%s: taking over the path: %s", snapfile,
				  strerror(errno));
	if (r < 0)
		chmod(snapfile, 0444);
	return r == 0 ? sync_dir_of(path) : r;
}

/* ---- leftovers of interrupted creates and reverts ---- */

#define TMP_INFIX ".vdisk-tmp-"

/* A process id as replace_with_child writes it: decimal, no sign, no leading zero. */
static bool parse_pid(const char *s, long *ret_pid)
{
	long v = 0;

	if (*s < '1' || *s > '9')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (*s - '0');
		if (v > INT_MAX)
			return false;
	}
	*ret_pid = v;
	return true;
}

/* True when no process @pid exists (EPERM: it exists, owned by someone else). */
static bool process_gone(long pid)
{
	return pid != (long)getpid() && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

struct file_id {
	dev_t dev;
	ino_t ino;
};

/* The device and inode of every layer of @path's chain, which are never removed. */
static int chain_ids(const char *path, struct file_id **ret, unsigned *ret_n,
		     struct vdisk_err *err)
{
	struct vhdx_image *top;
	struct file_id *ids;
	unsigned n = 0;
	int r = walk(path, &top, NULL, NULL, NULL, err);

	if (r < 0)
		return r;
	for (struct vhdx_image *l = top; l; l = l->parent)
		n++;
	ids = calloc(n, sizeof(*ids));
	if (!ids) {
		vhdx_free(top);
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	}
	n = 0;
	for (struct vhdx_image *l = top; l; l = l->parent) {
		struct stat st;
		if (fstat(l->fd, &st) < 0) {
			r = vdisk_err_set(err, -errno, "%s: fstat: %s", l->path, strerror(errno));
			free(ids);
			vhdx_free(top);
			return r;
		}
		ids[n].dev = st.st_dev;
		ids[n++].ino = st.st_ino;
	}
	vhdx_free(top);
	*ret = ids;
	*ret_n = n;
	return 0;
}

/* Removes @name (in @dfd) if it is a leftover: a regular file, not in the chain, its process gone. */
static int clean_one(int dfd, const char *name, const char *stem, const struct file_id *ids,
		     unsigned n, long *ret_pid)
{
	size_t sl = strlen(stem);
	struct stat st;
	long pid;

	if (strncmp(name, stem, sl) != 0 || strncmp(name + sl, TMP_INFIX, strlen(TMP_INFIX)) != 0 ||
	    !parse_pid(name + sl + strlen(TMP_INFIX), &pid))
		return 0;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
		return 0;
	for (unsigned i = 0; i < n; i++)
		if (ids[i].dev == st.st_dev && ids[i].ino == st.st_ino)
			return 0;
	if (!process_gone(pid))
		return 0;
	*ret_pid = pid;
	if (unlinkat(dfd, name, 0) < 0)
		return errno == ENOENT ? 0 : -errno; /* (ENOENT: another cleaner was first) */
	return 1;
}

int vhdx_snapshot_clean(const char *path, vhdx_leftover_fn fn, void *opaque,
			struct vdisk_err *err)
{
	char dbuf[PATH_MAX], bbuf[PATH_MAX], file[PATH_MAX];
	const char *dir, *stem;
	struct file_id *ids = NULL;
	struct dirent *de;
	unsigned n = 0;
	int removed = 0, r;
	DIR *dh;

	if (strlen(path) >= sizeof(dbuf))
		return vdisk_err_set(err, -ENAMETOOLONG, "%s: path too long", path);
	snprintf(dbuf, sizeof(dbuf), "%s", path);
	snprintf(bbuf, sizeof(bbuf), "%s", path);
	dir = dirname(dbuf);
	stem = basename(bbuf);
	r = chain_ids(path, &ids, &n, err);
	if (r < 0)
		return r;
	dh = opendir(dir);
	if (!dh) {
		r = vdisk_err_set(err, -errno, "%s: %s", dir, strerror(errno));
		free(ids);
		return r;
	}
	while ((de = readdir(dh))) {
		long pid = 0;
		r = clean_one(dirfd(dh), de->d_name, stem, ids, n, &pid);
		if (r == 0)
			continue;
		if (strchr(path, '/'))
			snprintf(file, sizeof(file), "%s%s%s", dir,
				 dir[strlen(dir) - 1] == '/' ? "" : "/", de->d_name);
		else
			snprintf(file, sizeof(file), "%s", de->d_name);
		if (r > 0)
			removed++;
		if (fn)
			fn(opaque, file, pid, r > 0 ? 0 : r);
	}
	closedir(dh);
	free(ids);
	if (removed > 0)
		sync_dir_of(path);
	return removed;
}
