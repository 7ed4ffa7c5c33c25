/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internals of lib/passthrough shared by its files and reached by the unit
 * tests: the device list, the roots of the sysfs/proc/dev trees (real or a
 * test's fake), sysfs attribute readers, the mount and swap table parsers
 * and the busy-state computation.
 */
#ifndef VDISK_PT_INT_H
#define VDISK_PT_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vdisk/passthrough.h>

struct pt_device_list {
	struct pt_device *devs; /* sorted by name (strverscmp) */
	size_t count;
	size_t cap;
};

/* Where the kernel's trees are: "/sys", "/proc", "/dev" unless a test says otherwise. */
#define PT_ROOT_MAX 1024

struct pt_env {
	char sysfs[PT_ROOT_MAX];
	char proc[PT_ROOT_MAX];
	char dev[PT_ROOT_MAX];
	unsigned flags; /* PT_DISCOVER_* */
	const struct pt_lunmap *map;
};

void pt_env_init(struct pt_env *env, const struct pt_discover_opts *o);

/* ---- small helpers (discover.c) ---- */

/* strlcpy: copies at most @len - 1 bytes, always terminates. Returns strlen(@src). */
size_t pt_strlcpy(char *dst, const char *src, size_t len);

/*
 * Reads the sysfs attribute @dir/@attr into @buf with trailing white space
 * (and leading, for serials) removed. Returns 0 or -errno.
 */
int pt_read_attr(const char *dir, const char *attr, char *buf, size_t len);
/* Reads a decimal attribute. Returns 0 or -errno (-EINVAL when not a number). */
int pt_read_u64(const char *dir, const char *attr, uint64_t *ret_val);
int pt_read_i64(const char *dir, const char *attr, int64_t *ret_val);

/* Fills @dev from sysfs (@name under class/block). Returns 0, or -errno when it is not readable. */
int pt_sysfs_read_device(const struct pt_env *env, const char *name, struct pt_device *dev);

/* Lists a device folder's holders/ or slaves/ as space-separated names into @buf. Returns the count. */
int pt_sysfs_list(const struct pt_env *env, const char *name, const char *sub, char *buf,
		  size_t len);

/* Appends a copy of @dev (sorting happens later). Returns 0 or -ENOMEM. */
int pt_list_append(struct pt_device_list *list, const struct pt_device *dev);
/* Sorts by name, natural order. */
void pt_list_sort(struct pt_device_list *list);
/* The device with this kernel name / device number, or NULL. */
struct pt_device *pt_list_by_name(const struct pt_device_list *list, const char *name);
struct pt_device *pt_list_by_devno(const struct pt_device_list *list, dev_t devno);

/* Discovery over an explicit environment (pt_discover() is this with the opts' roots). */
int pt_discover_env(const struct pt_env *env, struct pt_device_list **ret_list,
		    struct vdisk_err *err);

/* ---- identities (identity.c) ---- */

/* WWNs compared without a "naa."/"0x" prefix and case-insensitively. */
bool pt_wwn_equal(const char *a, const char *b);
/* Value of @kind on @dev ("" when it has none). */
const char *pt_device_id_value(const struct pt_device *dev, enum pt_id_kind kind);
/* True when a value byte is acceptable (printable ASCII, no control characters). */
bool pt_id_value_valid(const char *v);

/* ---- mount and swap tables (safety.c) ---- */

struct pt_mount {
	uint32_t major, minor; /* from mountinfo; 0:N for btrfs and the like */
	dev_t source_rdev; /* the source's device number when it is a block device node, else 0 */
	char source[256];
	char mountpoint[256];
};

struct pt_mount_table {
	struct pt_mount *m;
	size_t count;
};

/*
 * Parses /proc/self/mountinfo text: octal escapes (\040) in paths undone,
 * optional fields skipped. Sources that are block device nodes are stat()ed
 * for their device number. Malformed lines are skipped. Returns 0 or -ENOMEM.
 */
int pt_mountinfo_parse(const char *text, struct pt_mount_table *ret_table);
/* Parses /proc/swaps text into a table of sources (mountpoint "[swap]"). */
int pt_swaps_parse(const char *text, struct pt_mount_table *ret_table);
void pt_mount_table_free(struct pt_mount_table *t);
/* The first entry whose device is @dev (by number, or by source path), or NULL. */
const struct pt_mount *pt_mount_find(const struct pt_mount_table *t, const struct pt_device *dev);

/* Reads a whole small file (proc, sysfs) into a malloc'd NUL-terminated buffer. 0 or -errno. */
int pt_read_text(const char *path, char **ret_text, size_t *ret_len);

/*
 * Fills busy, mountpoint, holders and mapped_to of every device in @list:
 * mounts and swaps from @env's proc tree, holders and slaves from sysfs, the
 * root/boot set (expanded to whole disks and the slaves of stacked devices),
 * partitions' states folded into their disk, O_EXCL probes and @env->map.
 */
int pt_compute_busy(const struct pt_env *env, struct pt_device_list *list, struct vdisk_err *err);

/* ---- the map (lunmap.c) ---- */

/* True when the devices overlap: the same one, or a disk and one of its partitions. */
bool pt_device_overlaps(const struct pt_device *a, const struct pt_device *b);

/* The first entry of @map other than (@vm, @slot) whose identity names @dev or a device
 * overlapping it in @list, or NULL. */
const struct pt_lun_entry *pt_lunmap_conflict(const struct pt_lunmap *map,
					      const struct pt_device_list *list,
					      const struct pt_device *dev, const char *vm,
					      const struct pt_slot *slot);

#endif /* VDISK_PT_INT_H */
