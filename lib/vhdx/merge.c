/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Merge and rebase of differencing chains.
 *
 * Merge follows the footnote of section 7: before the target's
 * DataWriteGuid changes, the new GUID is recorded as parent_linkage2 in the
 * target's direct child, so a crash at any point leaves a chain whose links
 * hold and whose content reads right (the merged layers still cover every
 * sector they hold); re-running the merge finds the recorded GUID and
 * finishes. Dependents of the merged child are re-linked, then the merged
 * layers are removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx-int.h"

#define COPY_CHUNK (4 * MiB)
#define MAX_LAYERS 65

struct chain {
	struct vhdx_image *top;
	struct vhdx_image *layer[MAX_LAYERS];
	char path[MAX_LAYERS][PATH_MAX];
	unsigned n;
};

static int open_chain(const char *path, const char *const *search_dirs, struct chain *c,
		      struct vdisk_err *err)
{
	struct vhdx_open_opts o;
	int r;

	memset(c, 0, sizeof(*c));
	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK;
	o.search_dirs = search_dirs;
	o.max_chain_depth = MAX_LAYERS - 1;
	r = vhdx_open(path, &o, &c->top, err);
	if (r < 0)
		return r;
	for (struct vhdx_image *l = c->top; l; l = l->parent) {
		c->layer[c->n] = l;
		if (!realpath(l->path, c->path[c->n]))
			snprintf(c->path[c->n], PATH_MAX, "%s", l->path);
		c->n++;
	}
	return 0;
}

/* Opens @path writable without its parent and without taking a lock (the caller holds one). */
static int open_rw(const char *path, struct vhdx_image **ret, struct vdisk_err *err)
{
	struct vhdx_open_opts o;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_NOLOCK | VHDX_OPEN_NO_PARENT;
	return vhdx_open(path, &o, ret, err);
}

static int relink(const char *child, const char *parent, const struct vdisk_guid *linkage,
			const struct vdisk_guid *linkage2, struct vdisk_err *err)
{
	char dirbuf[PATH_MAX], abs_parent[PATH_MAX], l1[VDISK_GUID_STRLEN + 2], g[VDISK_GUID_STRLEN];
	struct vhdx_locator loc;
	struct vhdx_image *img;
	int r;

	if (!realpath(parent, abs_parent))
		return vdisk_err_set(err, -errno, "%s: %s", parent, strerror(errno));
	r = open_rw(child, &img, err);
	if (r < 0)
		return r;
	snprintf(dirbuf, sizeof(dirbuf), "%s", child);
	vdisk_guid_format(linkage, g);
	snprintf(l1, sizeof(l1), "{%s}", g);
	r = vhdx_locator_fill(&loc, l1, abs_parent, dirname(dirbuf), err);
	if (r == 0 && linkage2) {
		vdisk_guid_format(linkage2, g);
		snprintf(loc.entries[3].value, sizeof(loc.entries[3].value), "{%s}", g);
	}
	if (r == 0 && (r = vhdx_set_locator(img, &loc)) < 0)
		vdisk_err_set(err, r, "%s: rewriting the parent locator: %s", child, strerror(-r));
	if (r < 0) {
		vhdx_free(img);
		return r;
	}
	return vhdx_close(img, err);
}

/* Records @g as parent_linkage2 in @child, keeping its parent_linkage and paths. */
static int announce_guid(const char *child, const struct vdisk_guid *g, struct vdisk_err *err)
{
	struct vhdx_image *img;
	struct vhdx_locator loc;
	char txt[VDISK_GUID_STRLEN];
	int r = open_rw(child, &img, err);
	bool found = false;

	if (r < 0)
		return r;
	loc = *img->locator;
	vdisk_guid_format(g, txt);
	for (unsigned i = 0; i < loc.count; i++)
		if (strcmp(loc.entries[i].key, "parent_linkage2") == 0) {
			snprintf(loc.entries[i].value, sizeof(loc.entries[i].value), "{%s}", txt);
			found = true;
		}
	if (!found && loc.count < VHDX_MAX_LOCATOR_ENTRIES) {
		snprintf(loc.entries[loc.count].key, sizeof(loc.entries[0].key), "parent_linkage2");
		snprintf(loc.entries[loc.count++].value, sizeof(loc.entries[0].value), "{%s}", txt);
	}
	r = vhdx_set_locator(img, &loc);
	if (r < 0) {
		vhdx_free(img);
		return vdisk_err_set(err, r, "%s: recording the parent's new identity: %s", child,
				     strerror(-r));
	}
	return vhdx_close(img, err);
}

/* True when @cand's parent locator resolves to @parent_abs with a matching linkage. */
static bool is_child_of(const char *cand, const char *parent_abs)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vhdx_open_opts po;
	bool yes = false;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK | VHDX_OPEN_NO_PARENT;
	if (vhdx_open(cand, &o, &img, NULL) < 0)
		return false;
	if (img->has_parent) {
		/* resolve exactly as an open would, one level deep */
		struct vhdx_image *p = NULL;
		vhdx_open_opts_init(&po, sizeof(po));
		po.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK;
		po.max_chain_depth = 1;
		if (vhdx_chain_open(img, &po, NULL) == 0 || img->parent) {
			char rp[PATH_MAX];
			p = img->parent;
			yes = p && realpath(p->path, rp) && strcmp(rp, parent_abs) == 0;
		}
	}
	vhdx_free(img);
	return yes;
}

/* Files in @dir (and @search_dirs) whose parent is @parent_abs, except those in @skip. */
static int find_children(const char *parent_abs, const char *const *search_dirs,
			 const struct chain *skip, char (*out)[PATH_MAX], int max)
{
	char dirbuf[PATH_MAX];
	const char *dirs[16];
	int nd = 0, n = 0;

	snprintf(dirbuf, sizeof(dirbuf), "%s", parent_abs);
	dirs[nd++] = dirname(dirbuf);
	for (const char *const *d = search_dirs; d && *d && nd < 16; d++)
		dirs[nd++] = *d;
	for (int k = 0; k < nd; k++) {
		DIR *dh = opendir(dirs[k]);
		struct dirent *de;
		while (dh && (de = readdir(dh)) && n < max) {
			char p[PATH_MAX], rp[PATH_MAX];
			bool skipped = false;
			size_t l = strlen(de->d_name);
			if (l < 5 || (strcmp(de->d_name + l - 5, ".vhdx") && (l < 6 || strcmp(de->d_name + l - 6, ".avhdx"))))
				continue;
			snprintf(p, sizeof(p), "%s/%s", dirs[k], de->d_name);
			if (!realpath(p, rp))
				continue;
			for (unsigned i = 0; skip && i < skip->n; i++)
				skipped |= strcmp(skip->path[i], rp) == 0;
			for (int i = 0; i < n; i++)
				skipped |= strcmp(out[i], rp) == 0;
			if (!skipped && strcmp(rp, parent_abs) && is_child_of(rp, parent_abs))
				snprintf(out[n++], PATH_MAX, "%s", rp);
		}
		if (dh)
			closedir(dh);
	}
	return n;
}

/* Copies every sector the top @t layers of @c hold (data, or explicit zeros) into @dst. */
static int copy_layers(struct chain *c, unsigned t, struct vhdx_image *dst,
		       vhdx_progress_fn progress, void *opaque, struct vdisk_err *err)
{
	uint64_t size = MIN(c->top->disk_size, dst->disk_size);
	VDISK_AUTOFREE uint8_t *buf = vdisk_aligned_alloc(COPY_CHUNK);
	struct vdisk_extent ext[64];
	int r = 0;

	if (!buf)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	for (uint64_t off = 0; off < size && r == 0;) {
		int n = vhdx_translate(c->top, off, MIN(size - off, 256 * MiB), ext, 64);
		if (n < 0)
			return vdisk_err_set(err, n, "%s: reading the chain at %llu: %s", c->path[0],
					     (unsigned long long)off, strerror(-n));
		/* scattered extents: let the kernel fetch the whole batch at once */
		for (int i = 0; i < n; i++)
			if (ext[i].layer < t && ext[i].type == VDISK_EXTENT_DATA)
				posix_fadvise(ext[i].fd, (off_t)ext[i].file_offset,
					      (off_t)ext[i].length, POSIX_FADV_WILLNEED);
		for (int i = 0; i < n && r == 0; i++) {
			const struct vdisk_extent *e = &ext[i];
			if (e->layer >= t || e->type == VDISK_EXTENT_UNALLOCATED)
				continue;
			if (e->type == VDISK_EXTENT_ZERO) {
				r = vhdx_write_zeroes(dst, e->offset, e->length);
				continue;
			}
			for (uint64_t d = 0; d < e->length && r == 0; d += COPY_CHUNK) {
				size_t len = MIN(COPY_CHUNK, e->length - d);
				r = vdisk_pread_zfill(e->fd, buf, len, e->file_offset + d);
				if (r == 0)
					r = vhdx_pwrite(dst, buf, len, e->offset + d);
			}
		}
		off = ext[n - 1].offset + ext[n - 1].length;
		if (progress)
			progress(opaque, off, size);
	}
	if (r == 0)
		r = vhdx_flush(dst);
	return r < 0 ? vdisk_err_set(err, r, "%s: writing merged data: %s", dst->path, strerror(-r))
		     : 0;
}

static int lock_path(const char *path, struct vdisk_err *err)
{
	int fd = open(path, O_RDWR | O_CLOEXEC); /* an OFD write lock needs a writable fd */
	int r;

	if (fd < 0)
		return vdisk_err_set(err, -errno, "%s: %s", path, strerror(errno));
	r = vdisk_lock_fd(fd, true);
	if (r < 0) {
		close(fd);
		return vdisk_err_set(err, r == -EAGAIN ? -EBUSY : r,
				     "%s: image is in use by another process", path);
	}
	return fd;
}

static int merge_locked(struct chain *c, unsigned t, unsigned flags,
			const char *const *search_dirs, vhdx_progress_fn progress, void *opaque,
			struct vdisk_err *err)
{
	char (*deps)[PATH_MAX] = calloc(64, PATH_MAX);
	char (*others)[PATH_MAX] = calloc(8, PATH_MAX);
	const char *l1 = c->path[t - 1], *target = c->path[t];
	const char *link2 = vhdx_locator_get(c->layer[t - 1]->locator, "parent_linkage2");
	struct vdisk_guid g, cur = c->layer[t]->hdr.data_write_guid;
	struct vhdx_image *dst = NULL;
	bool resume;
	int nd, no, r;

	if (!deps || !others) {
		r = vdisk_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* resume: the target already carries the GUID its child was told about */
	resume = link2 && vdisk_guid_parse(link2, &g) == 0 && !vdisk_guid_is_zero(&g) &&
		 vdisk_guid_equal(&g, &cur);
	/*
	 * On a resume the target's content has already changed: its children that match
	 * it are this merge's own re-linked dependents (any other child still names the
	 * old GUID and no longer opens), so there is nothing left to protect.
	 */
	no = resume ? 0 : find_children(target, search_dirs, c, others, 8);
	if (no > 0 && !(flags & VHDX_MERGE_FORCE)) {
		r = vdisk_err_set(err, -EBUSY,
				  "%s has another child, %s: merging would change what it reads; use --force if it can be discarded",
				  target, others[0]);
		goto out;
	}
	nd = find_children(c->path[0], search_dirs, c, deps, 64);
	if (!resume) {
		r = vdisk_guid_generate(&g);
		if (r == 0)
			r = announce_guid(l1, &g, err);
		if (r < 0)
			goto out;
	}
	r = open_rw(target, &dst, err);
	if (r < 0)
		goto out;
	dst->next_dwg = g;
	r = copy_layers(c, t, dst, progress, opaque, err);
	if (r == 0) {
		/* the target takes the announced identity even when nothing was copied */
		pthread_mutex_lock(&dst->lock);
		r = vhdx_session_begin_locked(dst, true);
		pthread_mutex_unlock(&dst->lock);
	}
	if (r == 0)
		r = vhdx_close(dst, err);
	else
		vhdx_free(dst);
	for (int i = 0; i < nd && r == 0; i++)
		r = relink(deps[i], target, &g, NULL, err);
	if (r == 0 && (flags & VHDX_MERGE_KEEP_CHILD))
		/* the kept child moves the new GUID to parent_linkage, the field every reader checks */
		r = relink(l1, target, &g, NULL, err);
	for (unsigned i = 0; i < t && r == 0 && !(flags & VHDX_MERGE_KEEP_CHILD); i++)
		if (unlink(c->path[i]) < 0)
			r = vdisk_err_set(err, -errno, "%s: removing the merged layer: %s", c->path[i],
					  strerror(errno));
out:
	free(deps);
	free(others);
	return r;
}

int vhdx_merge(const char *child, const char *into, unsigned flags,
	       const char *const *search_dirs, vhdx_progress_fn progress, void *opaque,
	       struct vdisk_err *err)
{
	struct chain c;
	int locks[MAX_LAYERS], nl = 0, r;
	unsigned t = 1;

	r = open_chain(child, search_dirs, &c, err);
	if (r < 0)
		return r;
	if (c.n < 2) {
		r = vdisk_err_set(err, -EINVAL, "%s has no parent: nothing to merge into", child);
		goto out;
	}
	if (into) {
		char rp[PATH_MAX];
		if (!realpath(into, rp)) {
			r = vdisk_err_set(err, -errno, "%s: %s", into, strerror(errno));
			goto out;
		}
		for (t = 1; t < c.n && strcmp(c.path[t], rp); t++)
			;
		if (t == c.n) {
			r = vdisk_err_set(err, -EINVAL, "%s is not an ancestor of %s", into, child);
			goto out;
		}
	}
	for (unsigned i = 0; i <= t && r == 0; i++) {
		r = lock_path(c.path[i], err);
		if (r >= 0)
			locks[nl++] = r, r = 0;
	}
	if (r == 0)
		r = merge_locked(&c, t, flags, search_dirs, progress, opaque, err);
	while (nl > 0)
		close(locks[--nl]);
out:
	vhdx_free(c.top);
	return r;
}

/* Writes into @dst every sector of [off, off+len) where @old and @new differ. */
static int copy_differences(struct vhdx_image *old, struct vhdx_image *new_parent,
			    struct vhdx_image *dst, uint64_t off, uint64_t len, uint8_t *a,
			    uint8_t *b)
{
	uint32_t s = dst->lsec;
	int r;

	for (uint64_t d = 0; d < len; d += COPY_CHUNK) {
		size_t n = MIN(COPY_CHUNK, len - d);
		r = vhdx_pread(old, a, n, off + d);
		if (r < 0)
			return r;
		/* beyond the new parent's end it reads zeros, up to there its data */
		if (off + d < new_parent->disk_size) {
			size_t in = (size_t)MIN(n, new_parent->disk_size - (off + d));
			r = vhdx_pread(new_parent, b, in, off + d);
			if (r < 0)
				return r;
			memset(b + in, 0, n - in);
		} else {
			memset(b, 0, n);
		}
		for (size_t i = 0; i < n; i += s) {
			size_t j = i;
			while (j < n && memcmp(a + j, b + j, s) != 0)
				j += s;
			if (j > i && (r = vhdx_pwrite(dst, a + i, j - i, off + d + i)) < 0)
				return r;
			i = j;
		}
	}
	return 0;
}

/* Refuses a new parent whose chain holds @child itself: the chain would be a cycle. */
static int check_no_cycle(const char *child, int child_fd, struct vhdx_image *np,
			  struct vdisk_err *err)
{
	struct stat c, l;

	if (fstat(child_fd, &c) < 0)
		return vdisk_err_set(err, -errno, "%s: fstat: %s", child, strerror(errno));
	for (struct vhdx_image *p = np; p; p = p->parent)
		if (fstat(p->fd, &l) == 0 && l.st_dev == c.st_dev && l.st_ino == c.st_ino)
			return p == np ? vdisk_err_set(err, -ELOOP,
						       "%s: the new parent %s is the image itself",
						       child, np->path)
				       : vdisk_err_set(err, -ELOOP,
						       "%s: the new parent %s has the image in its own chain (as %s): the chain would have a cycle",
						       child, np->path, p->path);
	return 0;
}

int vhdx_rebase(const char *child, const char *new_parent, unsigned flags,
		vhdx_progress_fn progress, void *opaque, struct vdisk_err *err)
{
	VDISK_AUTOFREE uint8_t *a = vdisk_aligned_alloc(COPY_CHUNK);
	VDISK_AUTOFREE uint8_t *b = vdisk_aligned_alloc(COPY_CHUNK);
	struct vhdx_image *np = NULL, *dst = NULL;
	struct vdisk_extent ext[64];
	struct chain c = { 0 };
	int lock = -1, r;

	if (!a || !b)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	lock = lock_path(child, err);
	if (lock < 0)
		return lock;
	r = vhdx_open(new_parent, &(struct vhdx_open_opts){ .struct_size = sizeof(struct vhdx_open_opts), .flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK }, &np, err);
	if (r == 0)
		r = check_no_cycle(child, lock, np, err);
	if (r == 0 && !(flags & VHDX_REBASE_UNSAFE))
		r = open_chain(child, NULL, &c, err);
	if (r == 0)
		r = open_rw(child, &dst, err);
	if (r == 0 && !dst->has_parent)
		r = vdisk_err_set(err, -EINVAL,
				  "%s: not a differencing image: it has no parent to replace", child);
	if (r == 0 && np->lsec != dst->lsec)
		r = vdisk_err_set(err, -EINVAL, "%s has %u-byte sectors, %s %u", new_parent, np->lsec,
				  child, dst->lsec);
	for (uint64_t off = 0; r == 0 && c.top && off < dst->disk_size;) {
		int n = vhdx_translate(c.top, off, MIN(dst->disk_size - off, 256 * MiB), ext, 64);
		if (n < 0) {
			r = vdisk_err_set(err, n, "%s: reading the old chain: %s", child, strerror(-n));
			break;
		}
		for (int i = 0; i < n && r == 0; i++)
			if (ext[i].layer > 0 || ext[i].type != VDISK_EXTENT_DATA)
				r = copy_differences(c.top, np, dst, ext[i].offset, ext[i].length, a, b);
		off = ext[n - 1].offset + ext[n - 1].length;
		if (progress)
			progress(opaque, off, dst->disk_size);
	}
	if (r == 0) {
		char abs_parent[PATH_MAX], dirbuf[PATH_MAX], l1[VDISK_GUID_STRLEN + 2], g[VDISK_GUID_STRLEN];
		struct vhdx_locator loc;
		snprintf(dirbuf, sizeof(dirbuf), "%s", child);
		vdisk_guid_format(&np->hdr.data_write_guid, g);
		snprintf(l1, sizeof(l1), "{%s}", g);
		r = realpath(new_parent, abs_parent) ? 0 : -errno;
		if (r == 0)
			r = vhdx_locator_fill(&loc, l1, abs_parent, dirname(dirbuf), err);
		if (r == 0)
			r = vhdx_set_locator(dst, &loc);
		if (r < 0)
			vdisk_err_set(err, r, "%s: rewriting the parent locator: %s", child,
				      strerror(-r));
	}
	if (r == 0) {
		r = vhdx_close(dst, err);
		dst = NULL;
	}
	vhdx_free(dst);
	vhdx_free(c.top);
	vhdx_free(np);
	close(lock);
	return r;
}
