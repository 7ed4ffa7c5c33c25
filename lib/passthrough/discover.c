/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Block device discovery: every device under /sys/class/block (whole disks,
 * partitions, loop, dm, md...) with its size and queue limits from sysfs,
 * hardware identities (vendor, model, serial, WWN) from the device folder,
 * /dev/disk/by-id names when udev made them, and content identities
 * (partition table, PARTUUID, filesystem type, UUID, LABEL) from libblkid.
 * The busy state is filled by safety.c. The roots of the three trees come
 * from the options so the unit tests can run on a fake sysfs.
 */
#include <blkid/blkid.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pt-int.h"
#include "util.h"

size_t pt_strlcpy(char *dst, const char *src, size_t len)
{
	size_t n = strlen(src);

	if (len) {
		size_t c = n < len - 1 ? n : len - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

void pt_discover_opts_init(struct pt_discover_opts *o, size_t size)
{
	struct pt_discover_opts d = { .struct_size = size };

	memcpy(o, &d, MIN(size, sizeof(d)));
}

/* Copies the fields the caller's (possibly older, smaller) struct has. */
void pt_env_init(struct pt_env *env, const struct pt_discover_opts *o)
{
	struct pt_discover_opts c = { .struct_size = sizeof(c) };

	VDISK_OPTS_OVERLAY(&c, o);
	memset(env, 0, sizeof(*env));
	pt_strlcpy(env->sysfs, c.sysfs_root ? c.sysfs_root : "/sys", sizeof(env->sysfs));
	pt_strlcpy(env->proc, c.proc_root ? c.proc_root : "/proc", sizeof(env->proc));
	pt_strlcpy(env->dev, c.dev_root ? c.dev_root : "/dev", sizeof(env->dev));
	env->flags = c.flags;
	env->map = c.map;
}

/* ---- sysfs attributes ---- */

static void trim(char *s)
{
	size_t n = strlen(s), i = 0;

	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	while (s[i] && isspace((unsigned char)s[i]))
		i++;
	if (i)
		memmove(s, s + i, n - i + 1);
}

int pt_read_attr(const char *dir, const char *attr, char *buf, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd, r = 0;

	if (len == 0)
		return -EINVAL;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, attr) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		r = -errno;
	close(fd);
	if (r)
		return r;
	buf[n] = '\0';
	/* attributes are text; stop at the first NUL of a binary one */
	trim(buf);
	return 0;
}

int pt_read_i64(const char *dir, const char *attr, int64_t *ret_val)
{
	char buf[64], *end;
	long long v;
	int r;

	r = pt_read_attr(dir, attr, buf, sizeof(buf));
	if (r)
		return r;
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno || end == buf || *end)
		return -EINVAL;
	*ret_val = v;
	return 0;
}

int pt_read_u64(const char *dir, const char *attr, uint64_t *ret_val)
{
	char buf[64], *end;
	unsigned long long v;
	int r;

	r = pt_read_attr(dir, attr, buf, sizeof(buf));
	if (r)
		return r;
	if (buf[0] == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno || end == buf || *end)
		return -EINVAL;
	*ret_val = v;
	return 0;
}

static uint32_t read_u32_or(const char *dir, const char *attr, uint32_t dflt)
{
	uint64_t v;

	if (pt_read_u64(dir, attr, &v) < 0 || v > UINT32_MAX)
		return dflt;
	return (uint32_t)v;
}

static uint64_t read_u64_or(const char *dir, const char *attr, uint64_t dflt)
{
	uint64_t v;

	return pt_read_u64(dir, attr, &v) < 0 ? dflt : v;
}

/*
 * SCSI unit serial number page (VPD 0x80): 4-byte header, then the serial,
 * ASCII, length in byte 3 (SPC-4 7.8.16).
 */
static int read_vpd80_serial(const char *dir, char *buf, size_t len)
{
	char path[PATH_MAX];
	uint8_t page[260];
	ssize_t n;
	size_t plen, i, o = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/device/vpd_pg80", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, page, sizeof(page));
	close(fd);
	if (n < 4 || page[1] != 0x80)
		return -ENODATA;
	plen = MIN((size_t)page[3], (size_t)n - 4);
	for (i = 0; i < plen && o + 1 < len; i++)
		if (isprint(page[4 + i]))
			buf[o++] = (char)page[4 + i];
	buf[o] = '\0';
	trim(buf);
	return buf[0] ? 0 : -ENODATA;
}

/* Hardware identities live with the whole disk: /sys/block/X/{wwid,serial}, device/... */
static void read_hw_ids(const char *dir, struct pt_device *dev)
{
	if (pt_read_attr(dir, "wwid", dev->wwn, sizeof(dev->wwn)) < 0 &&
	    pt_read_attr(dir, "device/wwid", dev->wwn, sizeof(dev->wwn)) < 0)
		dev->wwn[0] = '\0';
	/* a t10 id made of vendor/model/serial is no world wide name: keep it out of WWN */
	if (strncmp(dev->wwn, "t10.", 4) == 0)
		dev->wwn[0] = '\0';
	if (pt_read_attr(dir, "serial", dev->serial, sizeof(dev->serial)) < 0 &&
	    pt_read_attr(dir, "device/serial", dev->serial, sizeof(dev->serial)) < 0 &&
	    read_vpd80_serial(dir, dev->serial, sizeof(dev->serial)) < 0)
		dev->serial[0] = '\0';
	if (pt_read_attr(dir, "device/vendor", dev->vendor, sizeof(dev->vendor)) < 0)
		dev->vendor[0] = '\0';
	if (pt_read_attr(dir, "device/model", dev->model, sizeof(dev->model)) < 0)
		dev->model[0] = '\0';
}

static void read_queue(const char *qdir_parent, struct pt_device *dev)
{
	char q[PATH_MAX];

	snprintf(q, sizeof(q), "%s/queue", qdir_parent);
	dev->logical_sector_bytes = read_u32_or(q, "logical_block_size", 512);
	dev->physical_sector_bytes =
	    read_u32_or(q, "physical_block_size", dev->logical_sector_bytes);
	dev->minimum_io_bytes = read_u32_or(q, "minimum_io_size", dev->physical_sector_bytes);
	dev->optimal_io_bytes = read_u32_or(q, "optimal_io_size", 0);
	dev->rotational = read_u32_or(q, "rotational", 0) != 0;
	dev->discard_granularity_bytes = read_u64_or(q, "discard_granularity", 0);
	dev->discard_max_bytes = read_u64_or(q, "discard_max_bytes", 0);
	dev->write_zeroes_max_bytes = read_u64_or(q, "write_zeroes_max_bytes", 0);
}

/* The device node: @dev_root/NAME when it is a block node with the right number. */
static void find_node(const struct pt_env *env, struct pt_device *dev)
{
	char path[sizeof(dev->path)];
	struct stat st;

	dev->path[0] = '\0';
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", env->dev, dev->name) >= sizeof(path))
		return;
	if (stat(path, &st) == 0 && S_ISBLK(st.st_mode) &&
	    st.st_rdev == makedev(dev->major, dev->minor))
		pt_strlcpy(dev->path, path, sizeof(dev->path));
}

int pt_sysfs_read_device(const struct pt_env *env, const char *name, struct pt_device *dev)
{
	char link[PATH_MAX], dir[PATH_MAX], parent_dir[PATH_MAX], tmp[PATH_MAX], buf[64];
	unsigned maj, min;
	uint64_t v;
	int64_t a;
	int r;

	memset(dev, 0, sizeof(*dev));
	if (pt_strlcpy(dev->name, name, sizeof(dev->name)) >= sizeof(dev->name))
		return -ENAMETOOLONG;
	snprintf(link, sizeof(link), "%s/class/block/%s", env->sysfs, name);
	if (!realpath(link, dir))
		return -errno;
	r = pt_read_attr(dir, "dev", buf, sizeof(buf));
	if (r)
		return r;
	if (sscanf(buf, "%u:%u", &maj, &min) != 2)
		return -EINVAL;
	dev->major = maj;
	dev->minor = min;
	r = pt_read_u64(dir, "size", &v);
	if (r)
		return r;
	if (mul_overflows_u64(v, 512, &dev->size_bytes))
		return -EOVERFLOW;

	pt_strlcpy(tmp, dir, sizeof(tmp));
	pt_strlcpy(parent_dir, dirname(tmp), sizeof(parent_dir));
	if (pt_read_u64(dir, "partition", &v) == 0) {
		dev->partition = (uint32_t)v;
		pt_strlcpy(tmp, parent_dir, sizeof(tmp));
		pt_strlcpy(dev->parent, basename(tmp), sizeof(dev->parent));
		dev->start_bytes = read_u64_or(dir, "start", 0) * 512;
		read_queue(parent_dir, dev);
		dev->removable = read_u32_or(parent_dir, "removable", 0) != 0;
	} else {
		read_queue(dir, dev);
		dev->removable = read_u32_or(dir, "removable", 0) != 0;
		read_hw_ids(dir, dev);
		if (pt_read_attr(dir, "loop/backing_file", dev->backing_file,
				 sizeof(dev->backing_file)) < 0)
			dev->backing_file[0] = '\0';
	}
	dev->readonly = read_u32_or(dir, "ro", 0) != 0;
	if (pt_read_i64(dir, "alignment_offset", &a) == 0)
		dev->alignment_offset_bytes = a < 0 || a > INT32_MAX ? -1 : (int32_t)a;
	find_node(env, dev);
	return 0;
}

int pt_sysfs_list(const struct pt_env *env, const char *name, const char *sub, char *buf,
		  size_t len)
{
	char path[PATH_MAX];
	struct dirent *e;
	size_t o = 0;
	int n = 0;
	DIR *d;

	if (len)
		buf[0] = '\0';
	snprintf(path, sizeof(path), "%s/class/block/%s/%s", env->sysfs, name, sub);
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		n++;
		if (o < len)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? " " : "", e->d_name);
	}
	closedir(d);
	return n;
}

/* ---- the list ---- */

int pt_list_append(struct pt_device_list *list, const struct pt_device *dev)
{
	if (list->count == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 16;
		struct pt_device *n = realloc(list->devs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		list->devs = n;
		list->cap = cap;
	}
	list->devs[list->count++] = *dev;
	return 0;
}

static int cmp_dev(const void *a, const void *b)
{
	return strverscmp(((const struct pt_device *)a)->name, ((const struct pt_device *)b)->name);
}

void pt_list_sort(struct pt_device_list *list)
{
	if (list->count > 1)
		qsort(list->devs, list->count, sizeof(list->devs[0]), cmp_dev);
}

struct pt_device *pt_list_by_name(const struct pt_device_list *list, const char *name)
{
	size_t i;

	for (i = 0; i < list->count; i++)
		if (strcmp(list->devs[i].name, name) == 0)
			return &list->devs[i];
	return NULL;
}

struct pt_device *pt_list_by_devno(const struct pt_device_list *list, dev_t devno)
{
	size_t i;

	for (i = 0; i < list->count; i++)
		if (makedev(list->devs[i].major, list->devs[i].minor) == devno)
			return &list->devs[i];
	return NULL;
}

void pt_device_list_free(struct pt_device_list *list)
{
	if (!list)
		return;
	free(list->devs);
	free(list);
}

size_t pt_device_list_count(const struct pt_device_list *list)
{
	return list ? list->count : 0;
}

const struct pt_device *pt_device_list_get(const struct pt_device_list *list, size_t i)
{
	return list && i < list->count ? &list->devs[i] : NULL;
}

/* ---- /dev/disk/by-id ---- */

static void scan_by_id(const struct pt_env *env, struct pt_device_list *list)
{
	char dir[PT_ROOT_MAX + 16], path[PATH_MAX];
	struct dirent *e;
	struct stat st;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/disk/by-id", env->dev);
	d = opendir(dir);
	if (!d)
		return; /* no udev: no by-id names */
	while ((e = readdir(d))) {
		struct pt_device *dev;
		if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(dev->by_id[0]))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode))
			continue;
		dev = pt_list_by_devno(list, st.st_rdev);
		if (!dev || dev->by_id_count >= PT_MAX_BYID)
			continue;
		pt_strlcpy(dev->by_id[dev->by_id_count++], e->d_name, sizeof(dev->by_id[0]));
	}
	closedir(d);
}

/* ---- libblkid ---- */

static void lookup(blkid_probe pr, const char *key, char *buf, size_t len)
{
	const char *v = NULL;

	if (blkid_probe_lookup_value(pr, key, &v, NULL) == 0 && v)
		pt_strlcpy(buf, v, len);
	else
		buf[0] = '\0';
}

/* Content identities, as `blkid -p` finds them (superblocks and partition tables). */
static void probe_content(struct pt_device *dev)
{
	blkid_probe pr;
	int r;

	errno = 0;
	pr = blkid_new_probe_from_filename(dev->path);
	if (!pr) {
		dev->probe_error = errno ? -errno : -EIO;
		return;
	}
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_LABEL | BLKID_SUBLKS_UUID |
						  BLKID_SUBLKS_TYPE);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
	r = blkid_do_safeprobe(pr);
	if (r == 0) {
		lookup(pr, "TYPE", dev->fstype, sizeof(dev->fstype));
		lookup(pr, "UUID", dev->uuid, sizeof(dev->uuid));
		lookup(pr, "LABEL", dev->label, sizeof(dev->label));
		lookup(pr, "PTTYPE", dev->pttype, sizeof(dev->pttype));
		lookup(pr, "PTUUID", dev->ptuuid, sizeof(dev->ptuuid));
	}
	if (r >= 0 && dev->partition) {
		/* entry details come from the parent's table even when the content is unknown */
		lookup(pr, "PART_ENTRY_UUID", dev->partuuid, sizeof(dev->partuuid));
		lookup(pr, "PART_ENTRY_NAME", dev->partlabel, sizeof(dev->partlabel));
		lookup(pr, "PART_ENTRY_TYPE", dev->parttype, sizeof(dev->parttype));
	}
	if (r == -2)
		dev->probe_error = -ENOTUNIQ; /* several signatures: no content identity */
	blkid_free_probe(pr);
}

/* Partition entry details when the content probe found nothing (blkid reports them anyway). */
static void probe_partition_entry(struct pt_device *dev)
{
	blkid_probe pr;

	if (!dev->partition || dev->partuuid[0])
		return;
	pr = blkid_new_probe_from_filename(dev->path);
	if (!pr)
		return;
	blkid_probe_enable_superblocks(pr, 0);
	blkid_probe_enable_partitions(pr, 1);
	blkid_probe_set_partitions_flags(pr, BLKID_PARTS_ENTRY_DETAILS);
	if (blkid_do_probe(pr) >= 0) {
		lookup(pr, "PART_ENTRY_UUID", dev->partuuid, sizeof(dev->partuuid));
		lookup(pr, "PART_ENTRY_NAME", dev->partlabel, sizeof(dev->partlabel));
		lookup(pr, "PART_ENTRY_TYPE", dev->parttype, sizeof(dev->parttype));
	}
	blkid_free_probe(pr);
}

static bool wanted(const struct pt_env *env, const char *name)
{
	char dir[PATH_MAX];
	uint64_t v;

	snprintf(dir, sizeof(dir), "%s/class/block/%s", env->sysfs, name);
	if (pt_read_u64(dir, "hidden", &v) == 0 && v)
		return false;
	if (!(env->flags & PT_DISCOVER_EMPTY) && pt_read_u64(dir, "size", &v) == 0 && v == 0)
		return false;
	return true;
}

static int scan_sysfs(const struct pt_env *env, struct pt_device_list *list, struct vdisk_err *err)
{
	char dir[PATH_MAX];
	struct pt_device dev;
	struct dirent *e;
	DIR *d;
	int r = 0;

	snprintf(dir, sizeof(dir), "%s/class/block", env->sysfs);
	d = opendir(dir);
	if (!d)
		return vdisk_err_set(err, -errno, "%s: cannot list block devices: %s", dir,
				     strerror(errno));
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !wanted(env, e->d_name))
			continue;
		/* a device that vanished or cannot be read is left out */
		if (pt_sysfs_read_device(env, e->d_name, &dev) < 0)
			continue;
		r = pt_list_append(list, &dev);
		if (r) {
			vdisk_err_set(err, r, "out of memory");
			break;
		}
	}
	closedir(d);
	return r;
}

int pt_discover_env(const struct pt_env *env, struct pt_device_list **ret_list,
		    struct vdisk_err *err)
{
	struct pt_device_list *list = calloc(1, sizeof(*list));
	size_t i;
	int r;

	if (!list)
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	r = scan_sysfs(env, list, err);
	if (r)
		goto out_free;
	pt_list_sort(list);
	scan_by_id(env, list);
	if (!(env->flags & PT_DISCOVER_NO_PROBE)) {
		for (i = 0; i < list->count; i++) {
			if (!list->devs[i].path[0])
				continue;
			probe_content(&list->devs[i]);
			probe_partition_entry(&list->devs[i]);
		}
	}
	r = pt_compute_busy(env, list, err);
	if (r)
		goto out_free;
	*ret_list = list;
	return 0;

out_free:
	pt_device_list_free(list);
	return r;
}

int pt_discover(const struct pt_discover_opts *o, struct pt_device_list **ret_list,
		struct vdisk_err *err)
{
	struct pt_env env;

	pt_env_init(&env, o);
	return pt_discover_env(&env, ret_list, err);
}
