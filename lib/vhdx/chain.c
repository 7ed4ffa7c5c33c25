/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Differencing chains (section 7): building a parent locator for a new
 * child, and resolving a child's parent on a Linux host: relative_path
 * first, then the file name of the Windows absolute path in the child's
 * folder, then the absolute path itself, then the caller's search folders.
 * parent_linkage must match the parent's DataWriteGuid (or parent_linkage2).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vhdx-int.h"

#define DEFAULT_MAX_DEPTH 64

static void set_key(struct vhdx_locator *loc, const char *key, const char *value)
{
	struct vhdx_locator_entry *e = &loc->entries[loc->count++];

	size_t kl = strnlen(key, sizeof(e->key) - 1), vl = strnlen(value, sizeof(e->value) - 1);

	memcpy(e->key, key, kl);
	e->key[kl] = '\0';
	memcpy(e->value, value, vl);
	e->value[vl] = '\0';
}

static void to_backslash(char *s)
{
	for (; *s; s++)
		if (*s == '/')
			*s = '\\';
}

/* Relative path from folder @from to file @to (both absolute), with '/' separators. */
static void relative_to(const char *from, const char *to, char *out, size_t cap)
{
	size_t common = 0, i = 0;
	int ups = 0;

	while (from[i] && to[i] && from[i] == to[i]) {
		if (from[i] == '/')
			common = i;
		i++;
	}
	if (!from[i] && to[i] == '/')
		common = i;
	for (const char *p = from + common; *p; p++)
		if (*p == '/' && p[1])
			ups++;
	out[0] = '\0';
	if (ups == 0)
		snprintf(out, cap, "./");
	for (int k = 0; k < ups; k++)
		strncat(out, "../", cap - strlen(out) - 1);
	strncat(out, to + common + 1, cap - strlen(out) - 1);
}

int vhdx_locator_fill(struct vhdx_locator *loc, const char *linkage, const char *abs_parent,
		      const char *child_dir, struct vdisk_err *err)
{
	char dir[PATH_MAX], rel[PATH_MAX], win[PATH_MAX];

	if (!realpath(child_dir, dir))
		return vdisk_err_set(err, -errno, "folder %s: %s", child_dir, strerror(errno));
	memset(loc, 0, sizeof(*loc));
	loc->type = vhdx_guid_locator_type_vhdx;
	relative_to(dir, abs_parent, rel, sizeof(rel));
	to_backslash(rel);
	snprintf(win, sizeof(win), "%s", abs_parent);
	to_backslash(win);
	/* key order as Hyper-V writes it (section 7) */
	set_key(loc, "parent_linkage", linkage);
	set_key(loc, "absolute_win32_path", win);
	set_key(loc, "relative_path", rel);
	set_key(loc, "parent_linkage2", "{00000000-0000-0000-0000-000000000000}");
	return 0;
}

static const char *base_of(const char *winpath)
{
	const char *b = strrchr(winpath, '\\'), *s = strrchr(winpath, '/');

	if (s > b)
		b = s;
	return b ? b + 1 : winpath;
}

static int candidates(const struct vhdx_image *img, const struct vhdx_open_opts *o,
		      char out[][PATH_MAX], int max)
{
	char dirbuf[PATH_MAX], *dir;
	const char *rel = vhdx_locator_get(img->locator, "relative_path");
	const char *abs = vhdx_locator_get(img->locator, "absolute_win32_path");
	int n = 0;

	snprintf(dirbuf, sizeof(dirbuf), "%s", img->path);
	dir = dirname(dirbuf);
	if (rel && n < max) {
		int k = snprintf(out[n], PATH_MAX, "%s/", dir);
		for (const char *p = rel; *p && k < PATH_MAX - 1; p++)
			out[n][k++] = *p == '\\' ? '/' : *p;
		out[n++][k] = '\0';
	}
	if (abs && n < max)
		snprintf(out[n++], PATH_MAX, "%s/%s", dir, base_of(abs));
	if (abs && abs[0] == '\\' && n < max) {
		/* our own children name the Linux path with backslashes */
		snprintf(out[n], PATH_MAX, "%s", abs);
		for (char *p = out[n]; *p; p++)
			if (*p == '\\')
				*p = '/';
		n++;
	}
	for (const char *const *d = o->search_dirs; d && *d && n < max; d++) {
		const char *b = rel ? base_of(rel) : abs ? base_of(abs) : NULL;
		if (b)
			snprintf(out[n++], PATH_MAX, "%s/%s", *d, b);
	}
	return n;
}

static bool linkage_matches(const struct vhdx_image *child, const struct vhdx_image *parent)
{
	const char *l1 = vhdx_locator_get(child->locator, "parent_linkage");
	const char *l2 = vhdx_locator_get(child->locator, "parent_linkage2");
	struct vdisk_guid g;

	if (l1 && vdisk_guid_parse(l1, &g) == 0 && vdisk_guid_equal(&g, &parent->hdr.data_write_guid))
		return true;
	return l2 && vdisk_guid_parse(l2, &g) == 0 && !vdisk_guid_is_zero(&g) &&
	       vdisk_guid_equal(&g, &parent->hdr.data_write_guid);
}

/* Opens the parent of @img (and, recursively, its parents). */
static int open_parent(struct vhdx_image *img, const struct vhdx_open_opts *o, unsigned depth,
		       dev_t *devs, ino_t *inos, struct vdisk_err *err)
{
	int cap = 3, n;
	for (const char *const *d = o->search_dirs; d && *d; d++)
		cap++;
	/* on the heap: one PATH_MAX per candidate, at every level of the recursion */
	VDISK_AUTOFREE char(*cand)[PATH_MAX] = malloc((size_t)cap * PATH_MAX);

	if (!cand)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	n = candidates(img, o, cand, cap);
	unsigned max_depth = o->max_chain_depth ? o->max_chain_depth : DEFAULT_MAX_DEPTH;
	const char *linkage = vhdx_locator_get(img->locator, "parent_linkage");
	struct vdisk_err mismatch = { 0 };

	if (depth >= max_depth)
		return vdisk_err_set(err, -ELOOP,
				     "%s: the chain has more than the limit of %u parents", img->path,
				     max_depth);
	for (int i = 0; i < n; i++) {
		struct vhdx_image *p;
		struct stat st;
		char g[VDISK_GUID_STRLEN];
		int r;

		char real[PATH_MAX];

		if (stat(cand[i], &st) < 0)
			continue;
		if (realpath(cand[i], real))
			snprintf(cand[i], PATH_MAX, "%s", real);
		for (unsigned k = 0; k <= depth; k++)
			if (devs[k] == st.st_dev && inos[k] == st.st_ino)
				return vdisk_err_set(err, -ELOOP,
						     "%s: parent %s (parent_linkage %s) is already in the chain: the chain has a cycle",
						     img->path, cand[i], linkage ? linkage : "?");
		r = vhdx_open_layer(cand[i], VHDX_OPEN_RDONLY | (o->flags & (VHDX_OPEN_NOLOCK | VHDX_OPEN_DIRECT)),
				    &p, err);
		if (r < 0)
			return r;
		if (!linkage_matches(img, p)) {
			vdisk_guid_format(&p->hdr.data_write_guid, g);
			vdisk_err_set(&mismatch, -EINVAL,
				      "%s: parent %s does not match: the child's parent_linkage is %s but the parent's DataWriteGuid is {%s} (the parent was modified after the child was made, or it is another file)",
				      img->path, cand[i], linkage, g);
			vhdx_free(p);
			continue;
		}
		if (p->lsec != img->lsec) {
			uint32_t plsec = p->lsec;
			vhdx_free(p);
			return vdisk_err_set(err, -EINVAL,
					     "%s: parent %s has %u-byte logical sectors, the child %u",
					     img->path, cand[i], plsec, img->lsec);
		}
		p->depth = depth + 1;
		img->parent = p;
		devs[depth + 1] = st.st_dev;
		inos[depth + 1] = st.st_ino;
		return p->has_parent ? open_parent(p, o, depth + 1, devs, inos, err) : 0;
	}
	if (mismatch.code)
		return vdisk_err_set(err, mismatch.code, "%s", mismatch.msg);
	return vdisk_err_set(err, -ENOENT,
			     "%s: parent not found (parent_linkage %s; looked for %s%s%s)", img->path,
			     linkage ? linkage : "?", n ? cand[0] : "nothing",
			     n > 1 ? " and " : "", n > 1 ? cand[1] : "");
}

int vhdx_chain_open(struct vhdx_image *img, const struct vhdx_open_opts *o,
		    struct vdisk_err *err)
{
	unsigned max = (o->max_chain_depth ? o->max_chain_depth : DEFAULT_MAX_DEPTH) + 1;
	VDISK_AUTOFREE dev_t *devs = calloc(max + 1, sizeof(*devs));
	VDISK_AUTOFREE ino_t *inos = calloc(max + 1, sizeof(*inos));
	struct stat st;

	if (!devs || !inos)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	if (fstat(img->fd, &st) < 0)
		return vdisk_err_set(err, -errno, "%s: fstat: %s", img->path, strerror(errno));
	devs[0] = st.st_dev;
	inos[0] = st.st_ino;
	return open_parent(img, o, 0, devs, inos, err);
}
