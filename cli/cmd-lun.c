/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk lun: passthrough disks. `list` shows the host's block devices with
 * geometry, identities and what keeps them busy (JSON keys follow lsblk's
 * column names where the meaning matches, so tests compare the two with
 * jq); `map` and `unmap` edit the LUN map (docs/lun-map.md) under its lock;
 * `show` prints the map with what each identity resolves to right now.
 * The map file is --map FILE, else $VDISK_LUN_MAP, else
 * /var/lib/vdisk/luns.conf.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/sysmacros.h>

#include <vdisk/passthrough.h>

#include "cli.h"
#include "json.h"

enum {
	OPT_MAP = CLI_OPT_FIRST_PRIVATE,
	OPT_READONLY,
	OPT_FORCE,
	OPT_ALL,
};

static const struct option lun_options[] = {
	CLI_LONGOPT_JSON,
	{ "map", required_argument, NULL, OPT_MAP },
	{ "readonly", no_argument, NULL, OPT_READONLY },
	{ "force", no_argument, NULL, OPT_FORCE },
	{ "all", no_argument, NULL, OPT_ALL },
	CLI_LONGOPT_HELP,
	{ NULL, 0, NULL, 0 },
};

struct lun_args {
	const char *map;
	bool json, readonly, force, all;
	bool json_set; /* for "this option does not apply" checks */
};

/* ---- list ---- */

static void json_str_or_null(struct json_writer *w, const char *key, const char *s)
{
	json_string(w, key, s && s[0] ? s : NULL);
}

/* lsblk's TYPE for the kinds it names after the driver; everything else is a disk. */
static const char *dev_type(const struct pt_device *d)
{
	if (d->partition)
		return "part";
	if (strncmp(d->name, "loop", 4) == 0)
		return "loop";
	if (strncmp(d->name, "md", 2) == 0)
		return "md";
	if (strncmp(d->name, "dm-", 3) == 0)
		return "dm";
	if (strncmp(d->name, "sr", 2) == 0)
		return "rom";
	return "disk";
}

static void list_json_device(struct json_writer *w, const struct pt_device_list *list,
			     const struct pt_device *d)
{
	struct pt_identity id;
	char buf[PT_ID_STRLEN], why[768], mm[24];
	unsigned i;

	json_object_begin(w, NULL);
	json_string(w, "name", d->name);
	json_str_or_null(w, "path", d->path);
	snprintf(mm, sizeof(mm), "%u:%u", d->major, d->minor);
	json_string(w, "maj:min", mm);
	json_str_or_null(w, "pkname", d->parent);
	json_string(w, "type", dev_type(d));
	if (d->partition) {
		json_u64(w, "partn", d->partition);
		json_u64(w, "start", d->start_bytes);
	}
	json_u64(w, "size", d->size_bytes);
	json_u64(w, "log-sec", d->logical_sector_bytes);
	json_u64(w, "phy-sec", d->physical_sector_bytes);
	json_u64(w, "min-io", d->minimum_io_bytes);
	json_u64(w, "opt-io", d->optimal_io_bytes);
	json_i64(w, "alignment", d->alignment_offset_bytes);
	json_u64(w, "disc-gran", d->discard_granularity_bytes);
	json_u64(w, "disc-max", d->discard_max_bytes);
	json_u64(w, "write-zeroes-max", d->write_zeroes_max_bytes);
	json_bool(w, "rota", d->rotational);
	json_bool(w, "ro", d->readonly);
	json_bool(w, "rm", d->removable);
	json_str_or_null(w, "vendor", d->vendor);
	json_str_or_null(w, "model", d->model);
	json_str_or_null(w, "serial", d->serial);
	json_str_or_null(w, "wwn", d->wwn);
	json_str_or_null(w, "back-file", d->backing_file);
	json_array_begin(w, "by-id");
	for (i = 0; i < d->by_id_count && i < PT_MAX_BYID; i++)
		json_string(w, NULL, d->by_id[i]);
	json_array_end(w);
	json_str_or_null(w, "pttype", d->pttype);
	json_str_or_null(w, "ptuuid", d->ptuuid);
	json_str_or_null(w, "partuuid", d->partuuid);
	json_str_or_null(w, "partlabel", d->partlabel);
	json_str_or_null(w, "parttype", d->parttype);
	json_str_or_null(w, "fstype", d->fstype);
	json_str_or_null(w, "uuid", d->uuid);
	json_str_or_null(w, "label", d->label);
	if (pt_device_stable_identity(list, d, &id, NULL) == 0 &&
	    pt_identity_format(&id, buf, sizeof(buf)) == 0)
		json_string(w, "identity", buf);
	else
		json_null(w, "identity");
	json_bool(w, "in-use", d->busy != 0);
	json_object_begin(w, "busy");
	json_bool(w, "mounted", d->busy & PT_BUSY_MOUNTED);
	json_str_or_null(w, "mountpoint", d->mountpoint);
	json_bool(w, "swap", d->busy & PT_BUSY_SWAP);
	json_array_begin(w, "holders");
	if (d->busy & PT_BUSY_HELD) {
		char h[sizeof(d->holders)], *save = NULL, *tok;
		snprintf(h, sizeof(h), "%s", d->holders);
		for (tok = strtok_r(h, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
			json_string(w, NULL, tok);
	}
	json_array_end(w);
	json_bool(w, "host-root", d->busy & PT_BUSY_HOST_ROOT);
	json_bool(w, "exclusive", d->busy & PT_BUSY_EXCL);
	json_str_or_null(w, "mapped", d->mapped_to);
	json_object_end(w);
	json_str_or_null(w, "reason", pt_device_busy_text(d, why, sizeof(why)));
	json_object_end(w);
}

static void list_human(const struct pt_device_list *list)
{
	size_t i, n = pt_device_list_count(list);
	char size[32], idbuf[PT_ID_STRLEN], why[768];

	printf("%-12s %10s %9s %4s %2s %-8s %-46s %s\n", "NAME", "SIZE", "LOG/PHY", "ROTA", "RO",
	       "FSTYPE", "IDENTITY", "IN USE");
	for (i = 0; i < n; i++) {
		const struct pt_device *d = pt_device_list_get(list, i);
		struct pt_identity id;
		char sec[24];
		if (pt_device_stable_identity(list, d, &id, NULL) < 0 ||
		    pt_identity_format(&id, idbuf, sizeof(idbuf)) < 0)
			snprintf(idbuf, sizeof(idbuf), "-");
		snprintf(sec, sizeof(sec), "%u/%u", d->logical_sector_bytes,
			 d->physical_sector_bytes);
		pt_device_busy_text(d, why, sizeof(why));
		printf("%-12s %10s %9s %4d %2d %-8s %-46s %s\n", d->name,
		       cli_human_size(d->size_bytes, size, sizeof(size)), sec, d->rotational,
		       d->readonly, d->fstype[0] ? d->fstype : "-", idbuf, why[0] ? why : "-");
	}
}

static int do_list(const struct vdisk_cmd *cmd, const struct lun_args *a)
{
	struct pt_discover_opts o;
	struct pt_device_list *list = NULL;
	struct pt_lunmap *map = NULL;
	struct vdisk_err err = { 0 };
	struct json_writer w;
	size_t i;
	int r;

	/* a broken map must not hide the devices: say so and list them unmarked */
	r = pt_lunmap_load(a->map, &map, &err);
	if (r) {
		fprintf(stderr, "vdisk: %s: warning: %s; mapped devices are not marked\n",
			cmd->name, err.msg);
		map = NULL;
	}
	pt_discover_opts_init(&o, sizeof(o));
	o.map = map;
	o.flags = a->all ? PT_DISCOVER_EMPTY : 0;
	r = pt_discover(&o, &list, &err);
	if (r) {
		pt_lunmap_free(map);
		return cli_fail_err(cmd, NULL, r, &err);
	}
	if (a->json) {
		json_init(&w, stdout);
		json_object_begin(&w, NULL);
		json_array_begin(&w, "blockdevices");
		for (i = 0; i < pt_device_list_count(list); i++)
			list_json_device(&w, list, pt_device_list_get(list, i));
		json_array_end(&w);
		json_object_end(&w);
		if (json_finish(&w) < 0)
			r = cli_fail(cmd, "writing the output failed");
	} else {
		list_human(list);
	}
	pt_device_list_free(list);
	pt_lunmap_free(map);
	return r;
}

/* ---- map, unmap ---- */

static int parse_slot(const struct vdisk_cmd *cmd, const char *arg, struct pt_slot *slot)
{
	if (pt_slot_parse(arg, slot) < 0)
		return cli_usage(cmd, "'%s' is not a slot CONTROLLER:TARGET:LUN (at most %d:%d:%d)",
				 arg, PT_MAX_CONTROLLER, PT_MAX_TARGET, PT_MAX_LUN);
	return 0;
}

static int parse_vm(const struct vdisk_cmd *cmd, const char *arg)
{
	if (!pt_vm_name_valid(arg))
		return cli_usage(cmd,
				 "'%s' is not a VM name (1 to %d of A-Z a-z 0-9 . _ -, starting "
				 "with a letter or digit)",
				 arg, PT_VM_NAME_MAX);
	return 0;
}

static int do_map(const struct vdisk_cmd *cmd, const struct lun_args *a, char **args)
{
	struct pt_map_opts o;
	struct pt_lun_entry e;
	struct pt_slot slot;
	struct vdisk_err err = { 0 };
	char s[PT_SLOT_STRLEN], id[PT_ID_STRLEN];
	int r;

	r = parse_vm(cmd, args[0]);
	if (r == 0)
		r = parse_slot(cmd, args[1], &slot);
	if (r)
		return r;
	pt_map_opts_init(&o, sizeof(o));
	o.readonly = a->readonly;
	o.force = a->force;
	r = pt_lun_map(a->map, args[0], &slot, args[2], &o, &e, &err);
	if (r)
		return cli_fail_err(cmd, NULL, r, &err);
	pt_slot_format(&e.slot, s);
	pt_identity_format(&e.id, id, sizeof(id));
	printf("%s %s %s %s (%s)\n", e.vm, s, e.readonly ? "ro" : "rw", id, args[2]);
	return CLI_EXIT_OK;
}

static int do_unmap(const struct vdisk_cmd *cmd, const struct lun_args *a, char **args)
{
	struct pt_lun_entry e;
	struct pt_slot slot;
	struct vdisk_err err = { 0 };
	char id[PT_ID_STRLEN];
	int r;

	r = parse_vm(cmd, args[0]);
	if (r == 0)
		r = parse_slot(cmd, args[1], &slot);
	if (r)
		return r;
	r = pt_lun_unmap(a->map, args[0], &slot, &e, &err);
	if (r)
		return cli_fail_err(cmd, NULL, r, &err);
	pt_identity_format(&e.id, id, sizeof(id));
	printf("unmapped %s %s (%s)\n", args[0], args[1], id);
	return CLI_EXIT_OK;
}

/* ---- show ---- */

/* "present" with the device, "missing" or "ambiguous" (several devices carry it). */
static const char *resolve_state(const struct pt_device_list *list, const struct pt_lun_entry *e,
				 const struct pt_device **ret_dev)
{
	int r = list ? pt_device_resolve(list, &e->id, ret_dev, NULL) : -ENODEV;

	if (r == 0)
		return "present";
	*ret_dev = NULL;
	return r == -ENOTUNIQ ? "ambiguous" : "missing";
}

static int do_show(const struct vdisk_cmd *cmd, const struct lun_args *a, const char *vm)
{
	struct pt_discover_opts o;
	struct pt_device_list *list = NULL;
	struct pt_lunmap *map = NULL;
	struct vdisk_err err = { 0 };
	struct json_writer w;
	size_t i, n;
	int r;

	if (vm && (r = parse_vm(cmd, vm)))
		return r;
	r = pt_lunmap_load(a->map, &map, &err);
	if (r)
		return cli_fail_err(cmd, NULL, r, &err);
	pt_discover_opts_init(&o, sizeof(o));
	o.flags = PT_DISCOVER_NO_EXCL;
	/* the map is shown even when discovery fails: every device is then "missing" */
	if (pt_discover(&o, &list, NULL) < 0)
		list = NULL;
	if (a->json) {
		json_init(&w, stdout);
		json_object_begin(&w, NULL);
		json_string(&w, "map", a->map);
		json_array_begin(&w, "luns");
	} else {
		printf("%-20s %-10s %-4s %-44s %s\n", "VM", "SLOT", "MODE", "IDENTITY", "DEVICE");
	}
	n = pt_lunmap_count(map);
	for (i = 0; i < n; i++) {
		const struct pt_lun_entry *e = pt_lunmap_get(map, i);
		const struct pt_device *d = NULL;
		char s[PT_SLOT_STRLEN], id[PT_ID_STRLEN];
		const char *state;
		if (vm && strcmp(vm, e->vm) != 0)
			continue;
		pt_slot_format(&e->slot, s);
		pt_identity_format(&e->id, id, sizeof(id));
		state = resolve_state(list, e, &d);
		if (!a->json) {
			printf("%-20s %-10s %-4s %-44s %s\n", e->vm, s, e->readonly ? "ro" : "rw",
			       id, d ? (d->path[0] ? d->path : d->name) : state);
			continue;
		}
		json_object_begin(&w, NULL);
		json_string(&w, "vm", e->vm);
		json_string(&w, "slot", s);
		json_u64(&w, "controller", e->slot.controller);
		json_u64(&w, "target", e->slot.target);
		json_u64(&w, "lun", e->slot.lun);
		json_bool(&w, "readonly", e->readonly);
		json_string(&w, "identity", id);
		json_string(&w, "state", state);
		json_str_or_null(&w, "device", d ? d->path : NULL);
		if (d)
			json_u64(&w, "size", d->size_bytes);
		json_object_end(&w);
	}
	if (a->json) {
		json_array_end(&w);
		json_object_end(&w);
		if (json_finish(&w) < 0)
			r = cli_fail(cmd, "writing the output failed");
	}
	pt_device_list_free(list);
	pt_lunmap_free(map);
	return r;
}

/* ---- dispatch ---- */

static int parse_options(const struct vdisk_cmd *cmd, int argc, char **argv, struct lun_args *a)
{
	int c, r;

	while ((c = cli_getopt(cmd, argc, argv, "", lun_options)) != -1) {
		switch (c) {
		case CLI_OPT_JSON:
			a->json = a->json_set = true;
			break;
		case CLI_OPT_OUTPUT:
			r = cli_parse_output(cmd, optarg, &a->json);
			if (r)
				return r;
			a->json_set = true;
			break;
		case OPT_MAP:
			if (!optarg[0])
				return cli_usage(cmd, "--map needs a file name");
			a->map = optarg;
			break;
		case OPT_READONLY:
			a->readonly = true;
			break;
		case OPT_FORCE:
			a->force = true;
			break;
		case OPT_ALL:
			a->all = true;
			break;
		case CLI_OPT_HELP:
			return -1;
		default:
			return CLI_EXIT_USAGE;
		}
	}
	return 0;
}

/* Positional counts and the options each verb accepts. */
static int check_verb(const struct vdisk_cmd *cmd, const char *verb, const struct lun_args *a,
		      int nargs, int min, int max, bool json, bool mapopts, bool all)
{
	if (nargs < min)
		return cli_usage(cmd, "%s: missing arguments", verb);
	if (nargs > max)
		return cli_usage(cmd, "%s: too many arguments", verb);
	if (a->json_set && !json)
		return cli_usage(cmd, "%s: --json does not apply", verb);
	if ((a->readonly || a->force) && !mapopts)
		return cli_usage(cmd, "%s: --readonly and --force apply to map only", verb);
	if (a->all && !all)
		return cli_usage(cmd, "%s: --all applies to list only", verb);
	return 0;
}

int cmd_lun(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	struct lun_args a = { .map = NULL };
	const char *verb;
	char **args;
	int r, nargs;

	r = parse_options(cmd, argc, argv, &a);
	if (r)
		return r < 0 ? CLI_EXIT_OK : r;
	if (optind >= argc)
		return cli_usage(cmd, "missing the action: list, map, unmap or show");
	if (!a.map)
		a.map = pt_lunmap_default_path();
	verb = argv[optind];
	args = argv + optind + 1;
	nargs = argc - optind - 1;
	if (strcmp(verb, "list") == 0) {
		r = check_verb(cmd, verb, &a, nargs, 0, 0, true, false, true);
		return r ? r : do_list(cmd, &a);
	}
	if (strcmp(verb, "map") == 0) {
		r = check_verb(cmd, verb, &a, nargs, 3, 3, false, true, false);
		return r ? r : do_map(cmd, &a, args);
	}
	if (strcmp(verb, "unmap") == 0) {
		r = check_verb(cmd, verb, &a, nargs, 2, 2, false, false, false);
		return r ? r : do_unmap(cmd, &a, args);
	}
	if (strcmp(verb, "show") == 0) {
		r = check_verb(cmd, verb, &a, nargs, 0, 1, true, false, false);
		return r ? r : do_show(cmd, &a, nargs ? args[0] : NULL);
	}
	return cli_usage(cmd, "unknown action '%s' (list, map, unmap or show)", verb);
}
