/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The state kept in the snapshot item and the leftover cleaner of
 * lib/vhdx/snapshot.c. Items without the optional flags word (as every
 * create writes them) list as ready; an item whose flags mark a delete lists
 * as deleting, through a reopen (it is committed through the log), makes
 * revert to it fail with -EBUSY and a message, and leaves the plain list
 * unchanged; unknown flag bits are not "deleting". vhdx_snapshot_clean
 * removes FILE.vdisk-tmp-PID of a gone process only, and reports it.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <vdisk/vhdx.h>

#include "byteorder.h"
#include "helpers.h"
#include "vhdx-int.h"

#define MB (1ULL << 20)

/* vm.vhdx with snapshots s1 and s2 in a fresh folder; returns the image path. */
static const char *make_chain(char *dir, size_t cap)
{
	static char img[1024];
	struct vdisk_err err = { 0 };

	snprintf(dir, cap, "%s", test_tmp_path("snapstate"));
	assert_int_equal(test_system("rm -rf '%s' && mkdir -p '%s'", dir, dir), 0);
	snprintf(img, sizeof(img), "%s/vm.vhdx", dir);
	test_create_image(img, VHDX_TYPE_DYNAMIC, 8 * MB, 1 * MB, NULL);
	assert_int_equal(vhdx_snapshot_create(img, "s1", NULL, 0, &err), 0);
	assert_int_equal(vhdx_snapshot_create(img, "s2", NULL, 0, &err), 0);
	return img;
}

/* Rewrites the item of the layer at @path with @flags (the on-disk form of a delete's mark). */
static void set_flags(const char *path, uint32_t flags)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img;
	struct vdisk_err err = { 0 };
	uint8_t buf[300];
	size_t len = 0;
	uint16_t nl;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_NO_PARENT;
	assert_int_equal(vhdx_open(path, &o, &img, &err), 0);
	assert_int_equal(vhdx_get_user_item(img, &vhdx_guid_vdisk_snapshot, buf, sizeof(buf), &len), 0);
	nl = get_le16(buf + 8);
	assert_int_equal(len, 10U + nl); /* created without flags */
	put_le32(buf + 10 + nl, flags);
	assert_int_equal(vhdx_set_user_item(img, &vhdx_guid_vdisk_snapshot, buf, 14U + nl), 0);
	assert_int_equal(vhdx_close(img, &err), 0);
}

static void list_states(const char *img, const char *want)
{
	struct vhdx_snapshot *v = NULL;
	struct vdisk_err err = { 0 };
	unsigned *f = NULL, n = 0;
	char got[256] = "";

	assert_int_equal(vhdx_snapshot_list_flags(img, &v, &f, &n, &err), 0);
	for (unsigned i = 0; i < n; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s:%s", i ? " " : "",
			 v[i].name, f[i] & VHDX_SNAPSHOT_DELETING ? "deleting" : "ready");
	assert_string_equal(got, want);
	free(v);
	free(f);
}

static void test_flags(void **state)
{
	struct vhdx_snapshot *v = NULL;
	struct vdisk_err err = { 0 };
	char dir[1024], frozen[1100];
	const char *img = make_chain(dir, sizeof(dir));
	unsigned n = 0;

	(void)state;
	list_states(img, "s2:ready s1:ready");
	/* s1 is named by the item of s2's file, which is frozen read-only */
	snprintf(frozen, sizeof(frozen), "%s/vm@s2.avhdx", dir);
	assert_int_equal(test_system("chmod 644 '%s'", frozen), 0);
	set_flags(frozen, VHDX_SNAPSHOT_DELETING);
	list_states(img, "s2:ready s1:deleting");
	assert_int_equal(vhdx_snapshot_list(img, &v, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[1].name, "s1");
	free(v);
	assert_int_equal(vhdx_snapshot_revert(img, "s1", &err), -EBUSY);
	assert_non_null(strstr(err.msg, "snapshot \"s1\" is being deleted"));
	/* other bits are not a delete */
	set_flags(img, 0x6);
	list_states(img, "s2:ready s1:deleting");
	memset(&err, 0, sizeof(err));
	assert_int_equal(vhdx_snapshot_revert(img, "s2", &err), 0);
	list_states(img, "s2:ready s1:deleting");
}

struct seen {
	int calls;
	char file[1100];
	long pid;
	int error;
};

static void on_leftover(void *opaque, const char *file, long pid, int error)
{
	struct seen *s = opaque;

	s->calls++;
	snprintf(s->file, sizeof(s->file), "%s", file);
	s->pid = pid;
	s->error = error;
}

static void test_clean(void **state)
{
	char dir[1024], dead[1100], live[1100], odd[1100], want[1100];
	const char *img = make_chain(dir, sizeof(dir));
	struct vdisk_err err = { 0 };
	struct seen s = { 0 };
	pid_t p = fork();

	(void)state;
	assert_true(p >= 0);
	if (p == 0)
		_exit(0);
	assert_int_equal(waitpid(p, NULL, 0), p);
	snprintf(dead, sizeof(dead), "%s/vm.vhdx.vdisk-tmp-%d", dir, (int)p);
	snprintf(live, sizeof(live), "%s/vm.vhdx.vdisk-tmp-%d", dir, (int)getpid());
	snprintf(odd, sizeof(odd), "%s/vm.vhdx.vdisk-tmp-0%d", dir, (int)p);
	assert_int_equal(test_system("echo x >'%s'; echo x >'%s'; echo x >'%s'", dead, live, odd), 0);
	assert_int_equal(vhdx_snapshot_clean(img, on_leftover, &s, &err), 1);
	assert_int_equal(s.calls, 1);
	snprintf(want, sizeof(want), "%s", dead);
	assert_string_equal(s.file, want);
	assert_int_equal(s.pid, p);
	assert_int_equal(s.error, 0);
	assert_int_equal(access(dead, F_OK), -1);
	assert_int_equal(access(live, F_OK), 0);
	assert_int_equal(access(odd, F_OK), 0);
	/* nothing left to do */
	assert_int_equal(vhdx_snapshot_clean(img, on_leftover, &s, &err), 0);
	assert_int_equal(s.calls, 1);
	/* no image: the error of opening it */
	snprintf(want, sizeof(want), "%s/none.vhdx", dir);
	assert_true(vhdx_snapshot_clean(want, NULL, NULL, &err) < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_clean),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
