/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Passthrough LUNs in the daemon: `--map FILE --vm VM` serves every LUN the
 * map gives VM, one export each; a block device given as IMAGE goes through
 * the same safety checks. The O_EXCL claims (lib/passthrough) are held for
 * the daemon's lifetime, so nothing can mount or claim a served device; the
 * exports open the claimed descriptor again (/proc/self/fd/N: the very
 * device that was checked, whatever its /dev name becomes) and serve it as a
 * raw disk (O_DIRECT, BLKDISCARD/BLKZEROOUT, the device's own sector sizes).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <vdisk/passthrough.h>

#include "vsp-int.h"

static struct pt_lun **held;
static size_t nr_held;

static int hold(struct pt_lun *lun)
{
	struct pt_lun **n = realloc(held, (nr_held + 1) * sizeof(*n));

	if (!n) {
		pt_lun_close(lun);
		return -ENOMEM;
	}
	held = n;
	held[nr_held++] = lun;
	return 0;
}

/* Per-LUN endpoint: SOCKET.C-T-L for UNIX sockets, PORT + @i for TCP. */
static int endpoint(char *dst, size_t cap, const char *tmpl, const struct pt_slot *s, unsigned i)
{
	const char *colon;
	int n;

	if (!tmpl[0])
		return 0;
	if (strncmp(tmpl, "tcp:", 4) == 0 && (colon = strrchr(tmpl, ':')) > tmpl + 3) {
		unsigned long port = strtoul(colon + 1, NULL, 10) + i;
		if (port > 65535)
			return -ERANGE;
		n = snprintf(dst, cap, "%.*s:%lu", (int)(colon - tmpl), tmpl, port);
	} else {
		n = snprintf(dst, cap, "%s.%u-%u-%u", tmpl, s->controller, s->target, s->lun);
	}
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int vsp_pt_add_vm(struct vsp_config *cfg, const struct vsp_export_conf *tmpl,
		  const char *map_path, const char *vm)
{
	struct vdisk_err err = { 0 };
	struct pt_lunmap *map = NULL;
	struct pt_lun **luns = NULL;
	size_t n = 0;
	int r;

	r = pt_lunmap_load(map_path ? map_path : pt_lunmap_default_path(), &map, &err);
	if (r == 0)
		r = pt_lun_open_vm(map, vm, NULL, &luns, &n, &err);
	pt_lunmap_free(map);
	if (r == 0 && n == 0)
		r = vdisk_err_set(&err, -ENOENT, "the LUN map gives VM %s no LUN", vm);
	if (r < 0) {
		vsp_log(VSP_LOG_ERR, vm, "%s", err.msg);
		return r;
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		const struct pt_lun_entry *e = pt_lun_entry(luns[i]);
		struct vsp_export_conf c = *tmpl;

		snprintf(c.name, sizeof(c.name), "%s-%u.%u.%u", vm, e->slot.controller,
			 e->slot.target, e->slot.lun);
		snprintf(c.image, sizeof(c.image), "%s", pt_lun_path(luns[i]));
		c.format = VDISK_FORMAT_RAW;
		c.claim_fd = pt_lun_fd(luns[i]);
		c.readonly = tmpl->readonly || e->readonly;
		r = endpoint(c.vhost, sizeof(c.vhost), tmpl->vhost, &e->slot, (unsigned)i);
		if (r == 0)
			r = endpoint(c.nbd, sizeof(c.nbd), tmpl->nbd, &e->slot, (unsigned)i);
		if (r == 0)
			r = vsp_config_add(cfg, &c);
		if (r < 0)
			vsp_log(VSP_LOG_ERR, c.name, "cannot set up the export: %s", strerror(-r));
	}
	for (size_t i = 0; i < n; i++) {
		if (r == 0) {
			r = hold(luns[i]);
		} else {
			pt_lun_close(luns[i]);
		}
	}
	free(luns);
	return r;
}

int vsp_pt_claim_device(const char *path, bool readonly, int *ret_fd)
{
	struct vdisk_err err = { 0 };
	struct pt_lun *lun;
	struct stat st;
	int r;

	*ret_fd = -1;
	if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode))
		return 0; /* not a block device: nothing to claim */
	r = pt_lun_open_device(path, NULL, readonly, NULL, &lun, &err);
	if (r < 0) {
		vsp_log(VSP_LOG_ERR, path, "%s", err.msg);
		return r;
	}
	r = hold(lun);
	if (r == 0)
		*ret_fd = pt_lun_fd(lun);
	return r;
}

void vsp_pt_release(void)
{
	pt_lun_close_all(held, nr_held);
	held = NULL;
	nr_held = 0;
}
