/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stable identities ("WWN=...", "PARTUUID=..."), SCSI slots ("C:T:L") and VM
 * names: parsing and formatting, matching an identity against discovered
 * devices, finding the device a user named, and choosing the most stable
 * identity to store for a device: one that names it and nothing else.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "pt-int.h"
#include "util.h"

static const char *const kind_names[] = {
	[PT_ID_WWN] = "WWN",       [PT_ID_SERIAL] = "SERIAL",     [PT_ID_BYID] = "BYID",
	[PT_ID_PTUUID] = "PTUUID", [PT_ID_PARTUUID] = "PARTUUID", [PT_ID_UUID] = "UUID",
};

const char *pt_id_kind_name(enum pt_id_kind kind)
{
	if ((unsigned)kind >= ARRAY_SIZE(kind_names))
		return NULL;
	return kind_names[kind];
}

bool pt_id_value_valid(const char *v)
{
	size_t n = strlen(v), i;

	if (n == 0 || n >= PT_ID_VALUE_MAX || v[0] == ' ' || v[n - 1] == ' ')
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
			return false;
	return true;
}

int pt_identity_parse(const char *s, struct pt_identity *ret_id, struct vdisk_err *err)
{
	const char *eq = strchr(s, '=');
	size_t klen;
	unsigned k;

	if (!eq)
		return vdisk_err_set(err, -EINVAL, "identity '%s': expected KIND=value", s);
	klen = (size_t)(eq - s);
	for (k = 1; k < ARRAY_SIZE(kind_names); k++) {
		if (strlen(kind_names[k]) == klen && strncasecmp(s, kind_names[k], klen) == 0)
			break;
	}
	if (k == ARRAY_SIZE(kind_names))
		return vdisk_err_set(err, -EINVAL,
				     "identity '%s': unknown kind '%.*s' (expected WWN, SERIAL, "
				     "BYID, PTUUID, PARTUUID or UUID)",
				     s, (int)MIN(klen, 32), s);
	if (!pt_id_value_valid(eq + 1))
		return vdisk_err_set(err, -EINVAL,
				     "identity '%.300s': the value must be 1 to %d printable ASCII "
				     "characters without leading or trailing spaces",
				     s, PT_ID_VALUE_MAX - 1);
	ret_id->kind = k;
	pt_strlcpy(ret_id->value, eq + 1, sizeof(ret_id->value));
	return 0;
}

int pt_identity_format(const struct pt_identity *id, char *buf, size_t len)
{
	const char *k = pt_id_kind_name(id->kind);
	int n;

	if (!k || id->kind == PT_ID_NONE)
		return -EINVAL;
	n = snprintf(buf, len, "%s=%s", k, id->value);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

/* ---- slots and VM names ---- */

static int parse_num(const char **p, uint32_t max, uint32_t *ret)
{
	uint32_t v = 0;
	int digits = 0;

	while (isdigit((unsigned char)**p)) {
		v = v * 10 + (uint32_t)(**p - '0');
		(*p)++;
		if (++digits > 5 || v > max)
			return -EINVAL;
	}
	if (digits == 0)
		return -EINVAL;
	*ret = v;
	return 0;
}

int pt_slot_parse(const char *s, struct pt_slot *ret_slot)
{
	struct pt_slot sl;
	const char *p = s;

	if (parse_num(&p, PT_MAX_CONTROLLER, &sl.controller) || *p++ != ':' ||
	    parse_num(&p, PT_MAX_TARGET, &sl.target) || *p++ != ':' ||
	    parse_num(&p, PT_MAX_LUN, &sl.lun) || *p)
		return -EINVAL;
	*ret_slot = sl;
	return 0;
}

void pt_slot_format(const struct pt_slot *slot, char *buf)
{
	snprintf(buf, PT_SLOT_STRLEN, "%u:%u:%u", slot->controller, slot->target, slot->lun);
}

bool pt_vm_name_valid(const char *vm)
{
	size_t i;

	if (!vm || !isalnum((unsigned char)vm[0]))
		return false;
	for (i = 0; vm[i]; i++) {
		unsigned char c = (unsigned char)vm[i];
		if (i >= PT_VM_NAME_MAX || !(isalnum(c) || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* ---- matching ---- */

static const char *wwn_body(const char *s)
{
	if (strncasecmp(s, "naa.", 4) == 0)
		return s + 4;
	if (strncasecmp(s, "0x", 2) == 0)
		return s + 2;
	return s;
}

bool pt_wwn_equal(const char *a, const char *b)
{
	if (!a[0] || !b[0])
		return false;
	return strcasecmp(wwn_body(a), wwn_body(b)) == 0;
}

const char *pt_device_id_value(const struct pt_device *dev, enum pt_id_kind kind)
{
	switch (kind) {
	case PT_ID_WWN:
		return dev->wwn;
	case PT_ID_SERIAL:
		return dev->serial;
	case PT_ID_BYID:
		return dev->by_id_count ? dev->by_id[0] : "";
	case PT_ID_PTUUID:
		return dev->ptuuid;
	case PT_ID_PARTUUID:
		return dev->partuuid;
	case PT_ID_UUID:
		return dev->uuid;
	default:
		return "";
	}
}

bool pt_device_has_identity(const struct pt_device *dev, const struct pt_identity *id)
{
	unsigned i;

	if (!id->value[0])
		return false;
	switch (id->kind) {
	case PT_ID_WWN:
		return pt_wwn_equal(dev->wwn, id->value);
	case PT_ID_SERIAL:
		return dev->serial[0] && strcmp(dev->serial, id->value) == 0;
	case PT_ID_BYID:
		for (i = 0; i < dev->by_id_count && i < PT_MAX_BYID; i++)
			if (strcmp(dev->by_id[i], id->value) == 0)
				return true;
		return false;
	case PT_ID_PTUUID:
	case PT_ID_PARTUUID:
	case PT_ID_UUID: {
		const char *v = pt_device_id_value(dev, id->kind);
		return v[0] && strcasecmp(v, id->value) == 0;
	}
	default:
		return false;
	}
}

/* Names of the matching devices, "loop0, loop3", for messages. Returns the count. */
static size_t matches(const struct pt_device_list *list, const struct pt_identity *id,
		      const struct pt_device **ret_first, char *names, size_t len)
{
	size_t i, n = 0, o = 0;

	if (len)
		names[0] = '\0';
	for (i = 0; i < list->count; i++) {
		if (!pt_device_has_identity(&list->devs[i], id))
			continue;
		if (n++ == 0 && ret_first)
			*ret_first = &list->devs[i];
		if (o < len)
			o += (size_t)snprintf(names + o, len - o, "%s%s", o ? ", " : "",
					      list->devs[i].name);
	}
	return n;
}

int pt_device_resolve(const struct pt_device_list *list, const struct pt_identity *id,
		      const struct pt_device **ret_dev, struct vdisk_err *err)
{
	char idtext[PT_ID_STRLEN], names[200];
	const struct pt_device *first = NULL;
	size_t n;

	if (pt_identity_format(id, idtext, sizeof(idtext)) < 0)
		return vdisk_err_set(err, -EINVAL, "invalid identity");
	n = matches(list, id, &first, names, sizeof(names));
	if (n == 0)
		return vdisk_err_set(err, -ENODEV,
				     "%s: no block device has this identity (disk detached, or "
				     "its content rewritten?)",
				     idtext);
	if (n > 1)
		return vdisk_err_set(err, -ENOTUNIQ,
				     "%s names %zu devices (%s): refusing to guess (a cloned "
				     "disk?)",
				     idtext, n, names);
	*ret_dev = first;
	return 0;
}

static int find_by_path(const struct pt_device_list *list, const char *arg,
			const struct pt_device **ret_dev, struct vdisk_err *err)
{
	const struct pt_device *dev;
	struct stat st;

	if (stat(arg, &st) < 0)
		return vdisk_err_set(err, errno == ENOENT ? -ENODEV : -errno, "%s: %s", arg,
				     strerror(errno));
	if (!S_ISBLK(st.st_mode))
		return vdisk_err_set(err, -ENOTBLK, "%s: not a block device", arg);
	dev = pt_list_by_devno(list, st.st_rdev);
	if (!dev)
		return vdisk_err_set(
		    err, -ENODEV,
		    "%s: block device %u:%u is not among the host's devices (empty "
		    "or hidden?)",
		    arg, major(st.st_rdev), minor(st.st_rdev));
	*ret_dev = dev;
	return 0;
}

int pt_device_find(const struct pt_device_list *list, const char *arg,
		   const struct pt_device **ret_dev, struct vdisk_err *err)
{
	static const enum pt_id_kind bare[] = { PT_ID_BYID, PT_ID_WWN, PT_ID_SERIAL };
	const struct pt_device *found = NULL;
	struct pt_identity id;
	const char *eq = strchr(arg, '=');
	size_t i, n = 0;

	if (arg[0] == '/')
		return find_by_path(list, arg, ret_dev, err);
	if (eq && eq != arg) {
		int r = pt_identity_parse(arg, &id, err);
		return r ? r : pt_device_resolve(list, &id, ret_dev, err);
	}
	if (!pt_id_value_valid(arg))
		return vdisk_err_set(err, -EINVAL, "'%.300s': not a device name", arg);
	/* a bare name: a by-id name, a WWN or a serial; it must name exactly one device */
	for (i = 0; i < list->count; i++) {
		const struct pt_device *d = &list->devs[i];
		size_t k;
		for (k = 0; k < ARRAY_SIZE(bare); k++) {
			id.kind = bare[k];
			pt_strlcpy(id.value, arg, sizeof(id.value));
			if (pt_device_has_identity(d, &id))
				break;
		}
		if (k == ARRAY_SIZE(bare))
			continue;
		if (n++ == 0)
			found = d;
	}
	if (n == 0)
		return vdisk_err_set(err, -ENODEV,
				     "'%s': no block device has this by-id name, WWN or serial "
				     "(a /dev path, UUID=, PARTUUID= or PTUUID= also work)",
				     arg);
	if (n > 1)
		return vdisk_err_set(err, -ENOTUNIQ, "'%s' names %zu devices: be more specific",
				     arg, n);
	*ret_dev = found;
	return 0;
}

/* True when @kind=@value names @dev and no other device of @list. */
static bool unique_to(const struct pt_device_list *list, const struct pt_device *dev,
		      enum pt_id_kind kind, const char *value, struct pt_identity *out)
{
	const struct pt_device *first = NULL;

	if (!value[0] || strlen(value) >= sizeof(out->value) || !pt_id_value_valid(value))
		return false;
	out->kind = kind;
	pt_strlcpy(out->value, value, sizeof(out->value));
	return matches(list, out, &first, NULL, 0) == 1 && first == dev;
}

int pt_device_stable_identity(const struct pt_device_list *list, const struct pt_device *dev,
			      struct pt_identity *ret_id, struct vdisk_err *err)
{
	static const enum pt_id_kind disk_order[] = { PT_ID_WWN, PT_ID_SERIAL, PT_ID_BYID,
						      PT_ID_PTUUID, PT_ID_UUID };
	static const enum pt_id_kind part_order[] = { PT_ID_PARTUUID, PT_ID_BYID, PT_ID_UUID };
	const enum pt_id_kind *order = dev->partition ? part_order : disk_order;
	size_t n = dev->partition ? ARRAY_SIZE(part_order) : ARRAY_SIZE(disk_order), i;
	struct pt_identity id;
	unsigned b;

	for (i = 0; i < n; i++) {
		if (order[i] == PT_ID_BYID) {
			for (b = 0; b < dev->by_id_count && b < PT_MAX_BYID; b++)
				if (unique_to(list, dev, PT_ID_BYID, dev->by_id[b], &id))
					goto found;
			continue;
		}
		if (unique_to(list, dev, order[i], pt_device_id_value(dev, order[i]), &id))
			goto found;
	}
	if (dev->partition)
		return vdisk_err_set(err, -ENOENT,
				     "%s has no stable identity: no PARTUUID, by-id name or "
				     "filesystem UUID that names only it",
				     dev->path[0] ? dev->path : dev->name);
	return vdisk_err_set(err, -ENOENT,
			     "%s has no stable identity: no WWN, serial, by-id name, partition "
			     "table id or filesystem UUID that names only it (for a loop device "
			     "write a GPT, e.g. with sfdisk, so it gets a PTUUID)",
			     dev->path[0] ? dev->path : dev->name);
found:
	*ret_id = id;
	return 0;
}
