/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening mapped LUNs for serving: the identity stored in the map is
 * resolved among the devices present now (so a disk renamed by a reboot or
 * re-attached on another loop number still maps right), every safety check
 * runs again, and the device is opened O_EXCL | O_DIRECT: the kernel then
 * refuses mounts, swapon, device-mapper and other exclusive openers for as
 * long as the LUN is served. The opened node is checked against the device
 * that was resolved, so a rename between the two steps cannot slip another
 * disk in.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <vdisk/disk.h>

#include "pt-int.h"
#include "util.h"

struct pt_lun {
	int fd;
	bool has_entry;
	struct pt_lun_entry entry;
	struct pt_geometry geo;
	struct pt_device dev;
};

void pt_open_opts_init(struct pt_open_opts *o, size_t size)
{
	struct pt_open_opts d = { .struct_size = size };

	memcpy(o, &d, MIN(size, sizeof(d)));
}

static void copy_opts(struct pt_open_opts *oc, const struct pt_open_opts *o)
{
	pt_open_opts_init(oc, sizeof(*oc));
	VDISK_OPTS_OVERLAY(oc, o);
}

/*
 * Discovery for serving: no O_EXCL probes (the open below is the real test)
 * and the map's marks. The caller's roots are kept.
 */
static int discover_for_open(const struct pt_open_opts *o, const struct pt_lunmap *map,
			     struct pt_device_list **ret_list, struct vdisk_err *err)
{
	struct pt_discover_opts d;

	pt_discover_opts_init(&d, sizeof(d));
	VDISK_OPTS_OVERLAY(&d, o->discover);
	d.flags |= PT_DISCOVER_NO_EXCL;
	d.map = map;
	return pt_discover(&d, ret_list, err);
}

int pt_lun_close(struct pt_lun *lun)
{
	if (!lun)
		return 0;
	if (lun->fd >= 0)
		close(lun->fd);
	free(lun);
	return 0;
}

void pt_lun_close_all(struct pt_lun **luns, size_t count)
{
	size_t i;

	if (!luns)
		return;
	for (i = 0; i < count; i++)
		pt_lun_close(luns[i]);
	free(luns);
}

/* Opens @dev exclusively after the safety checks; @what names it in messages. */
static int open_checked(const struct pt_device_list *list, const struct pt_device *dev,
			const struct pt_lunmap *map, const struct pt_lun_entry *e, bool readonly,
			const struct pt_open_opts *o, struct pt_lun **ret_lun,
			struct vdisk_err *err)
{
	unsigned flags = PT_CHECK_FORCE | (readonly ? PT_CHECK_READONLY : 0);
	int oflags = O_CLOEXEC | O_EXCL | (readonly ? O_RDONLY : O_RDWR);
	struct pt_lun *lun;
	struct stat st;
	int r;

	/* FORCE only skips the discovery's O_EXCL flag, which was not probed: the open tests it */
	r = pt_safety_check(list, dev, map, e ? e->vm : NULL, e ? &e->slot : NULL, flags, err);
	if (r)
		return r;
	if (!dev->path[0])
		return vdisk_err_set(err, -ENODEV, "%s (%u:%u): no device node in /dev", dev->name,
				     dev->major, dev->minor);
	if (!(o->flags & PT_OPEN_NO_DIRECT))
		oflags |= O_DIRECT;
	lun = calloc(1, sizeof(*lun));
	if (!lun)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	lun->fd = open(dev->path, oflags);
	if (lun->fd < 0) {
		r = -errno;
		if (r == -EBUSY)
			vdisk_err_set(err, r,
				      "refusing %s: open exclusively by another program (served "
				      "already, or in use)",
				      dev->path);
		else
			vdisk_err_set(err, r, "%s: cannot open: %s", dev->path, strerror(-r));
		goto out_free;
	}
	if (fstat(lun->fd, &st) < 0 || !S_ISBLK(st.st_mode) ||
	    st.st_rdev != makedev(dev->major, dev->minor)) {
		r = vdisk_err_set(err, -ESTALE, "%s: the node changed while it was opened",
				  dev->path);
		goto out_free;
	}
	r = pt_geometry_from_fd(lun->fd, &lun->geo, err);
	if (r) {
		vdisk_err_prefix(err, "%s: ", dev->path);
		goto out_free;
	}
	lun->geo.readonly |= readonly;
	lun->dev = *dev;
	if (e) {
		lun->entry = *e;
		lun->has_entry = true;
	}
	*ret_lun = lun;
	return 0;

out_free:
	pt_lun_close(lun);
	return r;
}

static int open_entry(const struct pt_device_list *list, const struct pt_lunmap *map,
		      const struct pt_lun_entry *e, const struct pt_open_opts *o,
		      struct pt_lun **ret_lun, struct vdisk_err *err)
{
	const struct pt_device *dev;
	char s[PT_SLOT_STRLEN];
	int r;

	pt_slot_format(&e->slot, s);
	r = pt_device_resolve(list, &e->id, &dev, err);
	if (r == 0)
		r = open_checked(list, dev, map, e, e->readonly || (o->flags & PT_OPEN_READONLY), o,
				 ret_lun, err);
	if (r)
		vdisk_err_prefix(err, "%s %s: ", e->vm, s);
	return r;
}

int pt_lun_open(const struct pt_lunmap *map, const char *vm, const struct pt_slot *slot,
		const struct pt_open_opts *o, struct pt_lun **ret_lun, struct vdisk_err *err)
{
	struct pt_device_list *list = NULL;
	const struct pt_lun_entry *e;
	struct pt_open_opts oc;
	char s[PT_SLOT_STRLEN];
	int r;

	copy_opts(&oc, o);
	e = pt_lunmap_find(map, vm, slot);
	if (!e) {
		pt_slot_format(slot, s);
		return vdisk_err_set(err, -ENOENT, "%s %s: no LUN mapped there", vm ? vm : "?", s);
	}
	r = discover_for_open(&oc, map, &list, err);
	if (r == 0)
		r = open_entry(list, map, e, &oc, ret_lun, err);
	pt_device_list_free(list);
	return r;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct pt_lun_entry *x = *(const struct pt_lun_entry *const *)a;
	const struct pt_lun_entry *y = *(const struct pt_lun_entry *const *)b;

	if (x->slot.controller != y->slot.controller)
		return x->slot.controller < y->slot.controller ? -1 : 1;
	if (x->slot.target != y->slot.target)
		return x->slot.target < y->slot.target ? -1 : 1;
	return x->slot.lun < y->slot.lun ? -1 : x->slot.lun > y->slot.lun;
}

int pt_lun_open_vm(const struct pt_lunmap *map, const char *vm, const struct pt_open_opts *o,
		   struct pt_lun ***ret_luns, size_t *ret_count, struct vdisk_err *err)
{
	size_t total = pt_lunmap_count(map), n = 0, i;
	const struct pt_lun_entry **ents = NULL;
	struct pt_device_list *list = NULL;
	struct pt_lun **luns = NULL;
	struct pt_open_opts oc;
	int r = 0;

	copy_opts(&oc, o);
	if (total) {
		ents = calloc(total, sizeof(*ents));
		if (!ents)
			return vdisk_err_set(err, -ENOMEM, "out of memory");
	}
	for (i = 0; i < total; i++)
		if (strcmp(pt_lunmap_get(map, i)->vm, vm) == 0)
			ents[n++] = pt_lunmap_get(map, i);
	if (n == 0) {
		r = vdisk_err_set(err, -ENOENT, "%s: the map gives this VM no LUN", vm);
		goto out;
	}
	qsort(ents, n, sizeof(*ents), cmp_entry);
	luns = calloc(n, sizeof(*luns));
	if (!luns) {
		r = vdisk_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	r = discover_for_open(&oc, map, &list, err);
	for (i = 0; r == 0 && i < n; i++)
		r = open_entry(list, map, ents[i], &oc, &luns[i], err);
	if (r) {
		pt_lun_close_all(luns, n);
		goto out;
	}
	*ret_luns = luns;
	*ret_count = n;
out:
	pt_device_list_free(list);
	free(ents);
	return r;
}

int pt_lun_open_device(const char *device, const struct pt_lunmap *map, bool readonly,
		       const struct pt_open_opts *o, struct pt_lun **ret_lun, struct vdisk_err *err)
{
	struct pt_device_list *list = NULL;
	const struct pt_device *dev;
	struct pt_open_opts oc;
	int r;

	copy_opts(&oc, o);
	r = discover_for_open(&oc, map, &list, err);
	if (r == 0)
		r = pt_device_find(list, device, &dev, err);
	if (r == 0)
		r = open_checked(list, dev, map, NULL, readonly || (oc.flags & PT_OPEN_READONLY),
				 &oc, ret_lun, err);
	pt_device_list_free(list);
	return r;
}

int pt_lun_fd(const struct pt_lun *lun)
{
	return lun->fd;
}

const struct pt_geometry *pt_lun_geometry(const struct pt_lun *lun)
{
	return &lun->geo;
}

const char *pt_lun_path(const struct pt_lun *lun)
{
	return lun->dev.path;
}

const struct pt_lun_entry *pt_lun_entry(const struct pt_lun *lun)
{
	return lun->has_entry ? &lun->entry : NULL;
}

const struct pt_device *pt_lun_device(const struct pt_lun *lun)
{
	return &lun->dev;
}

int pt_lun_disk_open(const struct pt_lun *lun, unsigned flags, struct vdisk_disk **ret_disk,
		     struct vdisk_err *err)
{
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", lun->fd);
	if (lun->geo.readonly)
		flags |= VDISK_OPEN_RDONLY;
	r = vdisk_disk_open(path, VDISK_FORMAT_RAW, flags, ret_disk, err);
	if (r)
		vdisk_err_prefix(err, "%s: ", lun->dev.path);
	return r;
}
