/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Safety: what makes a block device unfit to hand to a VM, and the refusal.
 * A device is busy when it (or one of its partitions) is mounted, is active
 * swap, is held by another block layer (sysfs holders: device-mapper, MD,
 * bcache), holds the host's root or boot filesystem (directly, through a
 * partition, or under a dm/md stack: the root set is expanded through
 * sysfs slaves), is claimed exclusively (an O_EXCL open fails) or is mapped
 * to a VM slot already. Mount and swap tables come from /proc (mountinfo
 * and swaps); a mount in another mount namespace is caught by the O_EXCL
 * probe, which fails for any mounted device.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "pt-int.h"
#include "util.h"

int pt_read_text(const char *path, char **ret_text, size_t *ret_len)
{
	size_t cap = 8192, len = 0;
	char *buf = malloc(cap);
	ssize_t n;
	int fd, r = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		free(buf);
		return r;
	}
	for (;;) {
		if (len + 1 >= cap) {
			char *nb = cap > (64u << 20) ? NULL : realloc(buf, cap * 2);
			if (!nb) {
				r = -ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (r) {
		free(buf);
		return r;
	}
	buf[len] = '\0';
	*ret_text = buf;
	if (ret_len)
		*ret_len = len;
	return 0;
}

/* ---- mount and swap tables ---- */

/* Undoes the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash). */
static void unescape(const char *s, size_t n, char *out, size_t len)
{
	size_t i = 0, o = 0;

	while (i < n && o + 1 < len) {
		if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
		    s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
			out[o++] =
			    (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
			i += 4;
		} else {
			out[o++] = s[i++];
		}
	}
	out[o] = '\0';
}

#define MAX_FIELDS 64

/* Splits one line at spaces: up to MAX_FIELDS (start, length) pairs. Returns the count. */
static size_t split(const char *line, size_t n, const char **f, size_t *flen)
{
	size_t i = 0, k = 0;

	while (i < n && k < MAX_FIELDS) {
		while (i < n && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i == n)
			break;
		f[k] = line + i;
		while (i < n && line[i] != ' ' && line[i] != '\t')
			i++;
		flen[k] = (size_t)(line + i - f[k]);
		k++;
	}
	return k;
}

static int table_add(struct pt_mount_table *t, size_t *cap, const struct pt_mount *m)
{
	if (t->count == *cap) {
		size_t nc = *cap ? *cap * 2 : 32;
		struct pt_mount *n = realloc(t->m, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		t->m = n;
		*cap = nc;
	}
	t->m[t->count++] = *m;
	return 0;
}

static void stat_source(struct pt_mount *m)
{
	struct stat st;

	m->source_rdev = 0;
	if (m->source[0] == '/' && stat(m->source, &st) == 0 && S_ISBLK(st.st_mode))
		m->source_rdev = st.st_rdev;
}

/* "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw" (proc(5)) */
static bool parse_mountinfo_line(const char *line, size_t n, struct pt_mount *m)
{
	const char *f[MAX_FIELDS];
	size_t fl[MAX_FIELDS], k, sep;
	unsigned maj, min;
	char num[32];

	k = split(line, n, f, fl);
	if (k < 10 || fl[2] >= sizeof(num))
		return false;
	memcpy(num, f[2], fl[2]);
	num[fl[2]] = '\0';
	if (sscanf(num, "%u:%u", &maj, &min) != 2)
		return false;
	for (sep = 6; sep < k; sep++)
		if (fl[sep] == 1 && f[sep][0] == '-')
			break;
	if (sep + 2 >= k)
		return false;
	memset(m, 0, sizeof(*m));
	m->major = maj;
	m->minor = min;
	unescape(f[4], fl[4], m->mountpoint, sizeof(m->mountpoint));
	unescape(f[sep + 2], fl[sep + 2], m->source, sizeof(m->source));
	return true;
}

/* Calls @fn on each line of @text; lines may lack the final newline. */
static int parse_lines(const char *text, bool skip_first, struct pt_mount_table *ret_table,
		       bool (*fn)(const char *, size_t, struct pt_mount *))
{
	struct pt_mount_table t = { NULL, 0 };
	size_t cap = 0;
	const char *p = text;
	struct pt_mount m;

	while (*p) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (skip_first) {
			skip_first = false;
		} else if (fn(p, n, &m)) {
			stat_source(&m);
			if (table_add(&t, &cap, &m) < 0) {
				pt_mount_table_free(&t);
				return -ENOMEM;
			}
		}
		p += n + (nl ? 1 : 0);
	}
	*ret_table = t;
	return 0;
}

int pt_mountinfo_parse(const char *text, struct pt_mount_table *ret_table)
{
	return parse_lines(text, false, ret_table, parse_mountinfo_line);
}

/* "Filename Type Size Used Priority", then "/dev/loop0 partition 65532 0 -2" */
static bool parse_swaps_line(const char *line, size_t n, struct pt_mount *m)
{
	const char *f[MAX_FIELDS];
	size_t fl[MAX_FIELDS], k;

	k = split(line, n, f, fl);
	if (k < 2)
		return false;
	memset(m, 0, sizeof(*m));
	unescape(f[0], fl[0], m->source, sizeof(m->source));
	pt_strlcpy(m->mountpoint, "[SWAP]", sizeof(m->mountpoint));
	return true;
}

int pt_swaps_parse(const char *text, struct pt_mount_table *ret_table)
{
	int r = parse_lines(text, true, ret_table, parse_swaps_line);
	size_t i;

	if (r)
		return r;
	for (i = 0; i < ret_table->count; i++) {
		struct pt_mount *m = &ret_table->m[i];
		m->major = major(m->source_rdev);
		m->minor = minor(m->source_rdev);
	}
	return 0;
}

void pt_mount_table_free(struct pt_mount_table *t)
{
	if (!t)
		return;
	free(t->m);
	t->m = NULL;
	t->count = 0;
}

const struct pt_mount *pt_mount_find(const struct pt_mount_table *t, const struct pt_device *dev)
{
	dev_t devno = makedev(dev->major, dev->minor);
	size_t i;

	for (i = 0; i < t->count; i++) {
		const struct pt_mount *m = &t->m[i];
		/* 0:N is an anonymous device (btrfs, overlay, tmpfs): trust the source instead */
		if (m->major != 0 && m->major == dev->major && m->minor == dev->minor)
			return m;
		if (m->source_rdev && m->source_rdev == devno)
			return m;
		/* the kernel names swap devices and mount sources by their /dev node */
		if (!m->source_rdev && strncmp(m->source, "/dev/", 5) == 0 &&
		    strcmp(m->source + 5, dev->name) == 0)
			return m;
	}
	return NULL;
}

/* ---- busy state ---- */

/* Appends @sep (unless @buf is empty) and then @a, @b and @c, truncating at @len. */
static void append(char *buf, size_t len, const char *sep, const char *a, const char *b,
		   const char *c)
{
	const char *parts[4] = { buf[0] ? sep : "", a, b, c };
	size_t o = strlen(buf), i;

	for (i = 0; i < 4 && o + 1 < len; i++)
		o = MIN(o + pt_strlcpy(buf + o, parts[i], len - o), len - 1);
}

static const char *const root_mounts[] = { "/", "/boot", "/boot/efi", "/efi", "/usr" };

static void mark_root(const struct pt_env *env, struct pt_device_list *list, struct pt_device *dev,
		      unsigned depth)
{
	char slaves[1024], *save = NULL, *tok;
	struct pt_device *p;

	if (!dev || depth > 16 || (dev->busy & PT_BUSY_HOST_ROOT))
		return;
	dev->busy |= PT_BUSY_HOST_ROOT;
	if (dev->partition && (p = pt_list_by_name(list, dev->parent)))
		mark_root(env, list, p, depth + 1);
	/* a root on dm/md: the devices underneath hold it too */
	if (pt_sysfs_list(env, dev->name, "slaves", slaves, sizeof(slaves)) > 0)
		for (tok = strtok_r(slaves, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
			mark_root(env, list, pt_list_by_name(list, tok), depth + 1);
}

static void find_roots(const struct pt_env *env, struct pt_device_list *list,
		       const struct pt_mount_table *mounts)
{
	size_t i, k;

	for (i = 0; i < mounts->count; i++) {
		const struct pt_mount *m = &mounts->m[i];
		struct pt_device *dev = NULL;
		for (k = 0; k < ARRAY_SIZE(root_mounts); k++)
			if (strcmp(m->mountpoint, root_mounts[k]) == 0)
				break;
		if (k == ARRAY_SIZE(root_mounts))
			continue;
		if (m->major != 0)
			dev = pt_list_by_devno(list, makedev(m->major, m->minor));
		if (!dev && m->source_rdev)
			dev = pt_list_by_devno(list, m->source_rdev);
		if (!dev && strncmp(m->source, "/dev/", 5) == 0)
			dev = pt_list_by_name(list, m->source + 5);
		mark_root(env, list, dev, 0);
	}
}

static int load_table(const struct pt_env *env, const char *rel, bool swaps,
		      struct pt_mount_table *t, struct vdisk_err *err)
{
	char path[PATH_MAX], *text = NULL;
	int r;

	snprintf(path, sizeof(path), "%s/%s", env->proc, rel);
	r = pt_read_text(path, &text, NULL);
	if (r == -ENOENT && swaps) {
		t->m = NULL;
		t->count = 0;
		return 0; /* a kernel without swap support */
	}
	if (r)
		return vdisk_err_set(err, r, "%s: %s", path, strerror(-r));
	r = swaps ? pt_swaps_parse(text, t) : pt_mountinfo_parse(text, t);
	free(text);
	if (r)
		return vdisk_err_set(err, r, "%s: out of memory", path);
	return 0;
}

/* A partition's state makes its whole disk busy too. */
static void fold_partitions(struct pt_device_list *list)
{
	const uint32_t inherit = PT_BUSY_MOUNTED | PT_BUSY_SWAP | PT_BUSY_HELD;
	size_t i;

	for (i = 0; i < list->count; i++) {
		struct pt_device *p = &list->devs[i], *d;
		if (!p->partition || !(p->busy & inherit) ||
		    !(d = pt_list_by_name(list, p->parent)))
			continue;
		d->busy |= p->busy & inherit;
		if (p->mountpoint[0] && !d->mountpoint[0])
			append(d->mountpoint, sizeof(d->mountpoint), "", p->name, ":",
			       p->mountpoint);
		if (p->holders[0]) {
			char h[sizeof(p->holders)], *save = NULL, *tok;
			pt_strlcpy(h, p->holders, sizeof(h));
			for (tok = strtok_r(h, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
				append(d->holders, sizeof(d->holders), " ", p->name, ":", tok);
		}
	}
}

static void probe_excl(struct pt_device *dev)
{
	int fd;

	if (!dev->path[0] || (dev->busy & (PT_BUSY_MOUNTED | PT_BUSY_SWAP | PT_BUSY_HELD)))
		return;
	fd = open(dev->path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		close(fd);
	else if (errno == EBUSY)
		dev->busy |= PT_BUSY_EXCL;
}

static void mark_mapped(const struct pt_env *env, struct pt_device_list *list)
{
	size_t i, k, n = pt_lunmap_count(env->map);

	for (k = 0; k < n; k++) {
		const struct pt_lun_entry *e = pt_lunmap_get(env->map, k);
		char slot[PT_SLOT_STRLEN];
		pt_slot_format(&e->slot, slot);
		for (i = 0; i < list->count; i++) {
			struct pt_device *d = &list->devs[i];
			if (!pt_device_has_identity(d, &e->id))
				continue;
			d->busy |= PT_BUSY_MAPPED;
			if (!d->mapped_to[0])
				snprintf(d->mapped_to, sizeof(d->mapped_to), "%s %s", e->vm, slot);
		}
	}
}

int pt_compute_busy(const struct pt_env *env, struct pt_device_list *list, struct vdisk_err *err)
{
	struct pt_mount_table mounts = { NULL, 0 }, swaps = { NULL, 0 };
	const struct pt_mount *m;
	size_t i;
	int r;

	r = load_table(env, "self/mountinfo", false, &mounts, err);
	if (r)
		return r;
	r = load_table(env, "swaps", true, &swaps, err);
	if (r)
		goto out;
	for (i = 0; i < list->count; i++) {
		struct pt_device *d = &list->devs[i];
		if ((m = pt_mount_find(&mounts, d))) {
			d->busy |= PT_BUSY_MOUNTED;
			pt_strlcpy(d->mountpoint, m->mountpoint, sizeof(d->mountpoint));
		}
		if (pt_mount_find(&swaps, d)) {
			d->busy |= PT_BUSY_SWAP;
			if (!d->mountpoint[0])
				pt_strlcpy(d->mountpoint, "[SWAP]", sizeof(d->mountpoint));
		}
		if (pt_sysfs_list(env, d->name, "holders", d->holders, sizeof(d->holders)) > 0)
			d->busy |= PT_BUSY_HELD;
	}
	fold_partitions(list);
	find_roots(env, list, &mounts);
	if (!(env->flags & PT_DISCOVER_NO_EXCL))
		for (i = 0; i < list->count; i++)
			probe_excl(&list->devs[i]);
	if (env->map)
		mark_mapped(env, list);
out:
	pt_mount_table_free(&mounts);
	pt_mount_table_free(&swaps);
	return r;
}

/* ---- refusals ---- */

const char *pt_device_busy_text(const struct pt_device *dev, char *buf, size_t len)
{
	if (!len)
		return buf;
	buf[0] = '\0';
	if (dev->busy & PT_BUSY_HOST_ROOT)
		append(buf, len, "; ", "holds the host's root or boot filesystem", "", "");
	if ((dev->busy & PT_BUSY_MOUNTED) && dev->mountpoint[0] && !(dev->busy & PT_BUSY_SWAP))
		append(buf, len, "; ", "mounted on ", dev->mountpoint, "");
	else if (dev->busy & PT_BUSY_MOUNTED)
		append(buf, len, "; ", "mounted", "", "");
	if (dev->busy & PT_BUSY_SWAP)
		append(buf, len, "; ", "active swap", "", "");
	if (dev->busy & PT_BUSY_HELD)
		append(buf, len, "; ", "held by ", dev->holders[0] ? dev->holders : "?", "");
	if (dev->busy & PT_BUSY_EXCL)
		append(buf, len, "; ", "open exclusively by another program", "", "");
	if (dev->busy & PT_BUSY_MAPPED)
		append(buf, len, "; ", "mapped to ", dev->mapped_to, "");
	return buf;
}

static const char *dev_label(const struct pt_device *dev)
{
	return dev->path[0] ? dev->path : dev->name;
}

int pt_safety_check(const struct pt_device_list *list, const struct pt_device *dev,
		    const struct pt_lunmap *map, const char *vm, const struct pt_slot *slot,
		    unsigned flags, struct vdisk_err *err)
{
	const uint32_t hard = PT_BUSY_HOST_ROOT | PT_BUSY_MOUNTED | PT_BUSY_SWAP | PT_BUSY_HELD;
	const struct pt_lun_entry *e;
	char why[768];

	if (dev->busy & hard) {
		struct pt_device only = *dev;
		only.busy &= hard;
		pt_device_busy_text(&only, why, sizeof(why));
		return vdisk_err_set(err, -EBUSY, "refusing %s: %s (%s)", dev_label(dev), why,
				     dev->busy & PT_BUSY_HOST_ROOT
					 ? "never handed to a VM"
					 : "unmount, swapoff or dismantle what uses it first");
	}
	if (map && (e = pt_lunmap_conflict(map, list, dev, vm, slot))) {
		char s[PT_SLOT_STRLEN], id[PT_ID_STRLEN];
		pt_slot_format(&e->slot, s);
		pt_identity_format(&e->id, id, sizeof(id));
		return vdisk_err_set(err, -EBUSY,
				     "refusing %s: already mapped to %s %s as %s (a device, its "
				     "disk or its partitions go to one slot only: unmap it there "
				     "first)",
				     dev_label(dev), e->vm, s, id);
	}
	if (dev->readonly && !(flags & PT_CHECK_READONLY))
		return vdisk_err_set(err, -EROFS,
				     "refusing %s: the device is read-only; map it with --readonly",
				     dev_label(dev));
	if ((dev->busy & PT_BUSY_EXCL) && !(flags & PT_CHECK_FORCE))
		return vdisk_err_set(err, -EBUSY,
				     "refusing %s: open exclusively by another program (--force "
				     "maps it anyway; serving needs it free)",
				     dev_label(dev));
	return 0;
}

int pt_refuse_snapshot(const char *op, const char *path, struct vdisk_err *err)
{
	struct stat st;

	if (!path || stat(path, &st) < 0 || !S_ISBLK(st.st_mode))
		return 0;
	return vdisk_err_set(err, -EOPNOTSUPP,
			     "%s: a block device (passthrough disk): passthrough disks have no "
			     "snapshots, so %s is not possible; snapshot or merge the VM's VHDX "
			     "disks only",
			     path, op ? op : "this");
}
