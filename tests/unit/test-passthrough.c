/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of lib/passthrough without root or real disks: identity, slot
 * and VM name parsing (table-driven), the LUN map parser and formatter
 * (round trip, comments kept, quoting, every error with its line:column),
 * in-memory edits, the mountinfo and swaps parsers, and discovery plus the
 * safety checks over a fake sysfs/proc tree built in the scratch folder:
 * a root disk with a /boot partition, a disk held by device-mapper under the
 * root filesystem, a swap disk, a read-only disk, a disk claimed by nobody.
 * Map edits go through the real locked, atomic file path, including
 * concurrent editors in forked children.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <vdisk/disk.h>
#include <vdisk/passthrough.h>

#include "helpers.h"
#include "pt-int.h"
#include "util.h"

/* ---- identities, slots, VM names ---- */

static void test_identity_parse(void **state)
{
	static const struct {
		const char *in;
		int ret;
		enum pt_id_kind kind;
		const char *value;
	} cases[] = {
		{ "WWN=naa.5000c500a1b2c3d4", 0, PT_ID_WWN, "naa.5000c500a1b2c3d4" },
		{ "wwn=0x5000c500a1b2c3d4", 0, PT_ID_WWN, "0x5000c500a1b2c3d4" },
		{ "SERIAL=WD-WX1 2345", 0, PT_ID_SERIAL, "WD-WX1 2345" },
		{ "ByID=ata-Foo_123", 0, PT_ID_BYID, "ata-Foo_123" },
		{ "PTUUID=4da73b20-babd-3b4a-80ad-77c51eec682d", 0, PT_ID_PTUUID,
		  "4da73b20-babd-3b4a-80ad-77c51eec682d" },
		{ "PARTUUID=1234abcd-01", 0, PT_ID_PARTUUID, "1234abcd-01" },
		{ "UUID=a=b", 0, PT_ID_UUID, "a=b" },
		{ "UUID=", -EINVAL, 0, NULL },
		{ "UUID= x", -EINVAL, 0, NULL },
		{ "UUID=x ", -EINVAL, 0, NULL },
		{ "UUID=a\tb", -EINVAL, 0, NULL },
		{ "UUID=caf\xc3\xa9", -EINVAL, 0, NULL },
		{ "LABEL=root", -EINVAL, 0, NULL },
		{ "=x", -EINVAL, 0, NULL },
		{ "naa.5000", -EINVAL, 0, NULL },
	};
	struct pt_identity id;
	char buf[PT_ID_STRLEN];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vdisk_err err = { 0 };
		int r = pt_identity_parse(cases[i].in, &id, &err);
		if (r != cases[i].ret)
			fail_msg("'%s': got %d, expected %d", cases[i].in, r, cases[i].ret);
		if (r) {
			assert_int_equal(err.code, r);
			assert_non_null(strstr(err.msg, "identity"));
			continue;
		}
		assert_int_equal(id.kind, cases[i].kind);
		assert_string_equal(id.value, cases[i].value);
		assert_int_equal(pt_identity_format(&id, buf, sizeof(buf)), 0);
		assert_string_equal(strchr(buf, '=') + 1, cases[i].value);
		/* the kind is written upper case whatever case it was typed in */
		assert_int_equal(strncmp(buf, pt_id_kind_name(cases[i].kind),
					 strlen(pt_id_kind_name(cases[i].kind))),
				 0);
	}
	id.kind = PT_ID_UUID;
	strcpy(id.value, "0123456789");
	assert_int_equal(pt_identity_format(&id, buf, 8), -ENOSPC);
	assert_null(pt_id_kind_name(99));
}

static void test_slot_and_vm(void **state)
{
	static const struct {
		const char *in;
		int ret;
		uint32_t c, t, l;
	} slots[] = {
		{ "0:0:0", 0, 0, 0, 0 },
		{ "3:0:63", 0, 3, 0, 63 },
		{ "255:255:16383", 0, 255, 255, 16383 },
		{ "256:0:0", -EINVAL, 0, 0, 0 },
		{ "0:0:16384", -EINVAL, 0, 0, 0 },
		{ "0:0", -EINVAL, 0, 0, 0 },
		{ "0:0:0:0", -EINVAL, 0, 0, 0 },
		{ "-1:0:0", -EINVAL, 0, 0, 0 },
		{ " 0:0:0", -EINVAL, 0, 0, 0 },
		{ "0:0:0 ", -EINVAL, 0, 0, 0 },
		{ "00000001:0:0", -EINVAL, 0, 0, 0 },
		{ "", -EINVAL, 0, 0, 0 },
		{ "a:b:c", -EINVAL, 0, 0, 0 },
	};
	static const struct {
		const char *vm;
		bool ok;
	} vms[] = {
		{ "vm1", true },
		{ "web.example-01_a", true },
		{ "9", true },
		{ "", false },
		{ "-vm", false },
		{ ".vm", false },
		{ "vm 1", false },
		{ "vm:1", false },
		{ "vm/1", false },
		{ "a123456789012345678901234567890123456789012345678901234567890123", true },
		{ "a1234567890123456789012345678901234567890123456789012345678901234", false },
	};
	struct pt_slot s;
	char buf[PT_SLOT_STRLEN];
	size_t i;

	for (i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
		int r = pt_slot_parse(slots[i].in, &s);
		if (r != slots[i].ret)
			fail_msg("slot '%s': got %d", slots[i].in, r);
		if (r)
			continue;
		assert_int_equal(s.controller, slots[i].c);
		assert_int_equal(s.target, slots[i].t);
		assert_int_equal(s.lun, slots[i].l);
		pt_slot_format(&s, buf);
		assert_string_equal(buf, slots[i].in);
	}
	for (i = 0; i < sizeof(vms) / sizeof(vms[0]); i++)
		if (pt_vm_name_valid(vms[i].vm) != vms[i].ok)
			fail_msg("VM name '%s': expected %s", vms[i].vm,
				 vms[i].ok ? "valid" : "invalid");
	assert_false(pt_vm_name_valid(NULL));
}

static void test_wwn_equal(void **state)
{
	assert_true(pt_wwn_equal("naa.5000C500A1B2C3D4", "0x5000c500a1b2c3d4"));
	assert_true(pt_wwn_equal("eui.0025388b", "EUI.0025388B"));
	assert_false(pt_wwn_equal("naa.5000", "naa.5001"));
	assert_false(pt_wwn_equal("", ""));
}

/* ---- the map text format ---- */

static struct pt_lunmap *parse_ok(const char *text)
{
	struct vdisk_err err = { 0 };
	struct pt_lunmap *map = NULL;

	if (pt_lunmap_parse(text, strlen(text), "t.conf", &map, &err) != 0)
		fail_msg("parse failed: %s", err.msg);
	return map;
}

static void test_map_parse(void **state)
{
	const char *text = "# header\n"
			   "\n"
			   "vm1 0:0:0 rw WWN=naa.5000c500a1b2c3d4\n"
			   "  vm1\t0:0:1   ro  PARTUUID=1234abcd-01  \r\n"
			   "vm2 1:2:3 rw SERIAL=\"WD \\\"X\\\" 1\\\\2\"\n"
			   "   # indented comment\n"
			   "vm2 0:0:0 rw UUID=a=b";
	struct pt_lunmap *map = parse_ok(text);
	const struct pt_lun_entry *e;
	struct pt_slot s = { 1, 2, 3 };

	assert_int_equal(pt_lunmap_count(map), 4);
	e = pt_lunmap_get(map, 0);
	assert_string_equal(e->vm, "vm1");
	assert_false(e->readonly);
	assert_int_equal(e->id.kind, PT_ID_WWN);
	assert_int_equal(e->line, 3);
	e = pt_lunmap_get(map, 1);
	assert_true(e->readonly);
	assert_int_equal(e->slot.lun, 1);
	assert_string_equal(e->id.value, "1234abcd-01");
	e = pt_lunmap_find(map, "vm2", &s);
	assert_non_null(e);
	assert_string_equal(e->id.value, "WD \"X\" 1\\2");
	assert_int_equal(e->line, 5);
	assert_string_equal(pt_lunmap_get(map, 3)->id.value, "a=b");
	assert_null(pt_lunmap_get(map, 4));
	s.lun = 4;
	assert_null(pt_lunmap_find(map, "vm2", &s));
	pt_lunmap_free(map);
	pt_lunmap_free(NULL);
}

static void test_map_parse_errors(void **state)
{
	static const struct {
		const char *text;
		const char *msg;
	} cases[] = {
		{ "vm1 0:0:0 rw\n", "t.conf:1:13: expected KIND=value" },
		{ "vm1 0:0 rw UUID=x\n", "t.conf:1:8: expected a slot" },
		{ "vm1 0:0:0 rx UUID=x\n", "t.conf:1:13: expected the mode" },
		{ "-vm 0:0:0 rw UUID=x\n", "t.conf:1:4: invalid VM name" },
		{ "vm1 0:0:0 rw FOO=x\n", "unknown identity kind 'FOO'" },
		{ "vm1 0:0:0 rw uuid=x\n", "unknown identity kind 'uuid'" },
		{ "vm1 0:0:0 rw UUID=\n", "missing identity value" },
		{ "vm1 0:0:0 rw UUID=x y\n", "t.conf:1:21: unexpected text" },
		{ "vm1 0:0:0 rw UUID=\"x\n", "unterminated quoted value" },
		{ "vm1 0:0:0 rw UUID=\"x\"y\n", "garbage after the quoted value" },
		{ "vm1 0:0:0 rw UUID=\"\\n\"\n", "may be escaped" },
		{ "vm1 0:0:0 rw UUID=a\"b\n", "must be quoted" },
		{ "vm1 0:0:0 rw UUID=\" x\"\n", "no leading or trailing space" },
		{ "# ok\nvm1 0:0:0 rw UUID=x\nvm1 0:0:0 ro UUID=y\n",
		  "t.conf:3:1: vm1 0:0:0 is mapped twice" },
		{ "vm1 0:0:0 rw UUID=x\x01\n", "printable ASCII" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vdisk_err err = { 0 };
		struct pt_lunmap *map = NULL;
		int r = pt_lunmap_parse(cases[i].text, strlen(cases[i].text), "t.conf", &map, &err);
		if (r != -EINVAL || !strstr(err.msg, cases[i].msg))
			fail_msg("case %zu: got %d '%s', expected '%s'", i, r, err.msg,
				 cases[i].msg);
		assert_null(map);
	}
	/* a NUL byte inside a line */
	{
		struct vdisk_err err = { 0 };
		struct pt_lunmap *map = NULL;
		assert_int_equal(pt_lunmap_parse("vm 0:0:0 rw UUID=a\0b\n", 21, "t", &map, &err),
				 -EINVAL);
		assert_non_null(strstr(err.msg, "NUL byte"));
	}
}

static void test_map_format_roundtrip(void **state)
{
	const char *text = "# keep me\n"
			   "vm1 0:0:0 rw WWN=naa.5000c500a1b2c3d4\n"
			   "\n"
			   "vm2 1:2:3 ro SERIAL=\"WD \\\"X\\\" 1\\\\2\"\n";
	struct pt_lunmap *map = parse_ok(text), *again;
	char *out = NULL, *out2 = NULL;
	size_t len, i;

	assert_int_equal(pt_lunmap_format(map, &out, &len, NULL), 0);
	assert_string_equal(out, text);
	assert_int_equal(len, strlen(text));
	again = parse_ok(out);
	assert_int_equal(pt_lunmap_count(again), pt_lunmap_count(map));
	for (i = 0; i < pt_lunmap_count(map); i++) {
		const struct pt_lun_entry *a = pt_lunmap_get(map, i), *b = pt_lunmap_get(again, i);
		assert_string_equal(a->vm, b->vm);
		assert_memory_equal(&a->id, &b->id, sizeof(a->id));
		assert_int_equal(a->readonly, b->readonly);
	}
	assert_int_equal(pt_lunmap_format(again, &out2, NULL, NULL), 0);
	assert_string_equal(out, out2);
	free(out);
	free(out2);
	pt_lunmap_free(map);
	pt_lunmap_free(again);
}

static void test_map_edit(void **state)
{
	struct pt_lunmap *map = NULL;
	struct pt_lun_entry e = { .vm = "vm1", .slot = { 0, 0, 1 }, .readonly = false };
	struct pt_lun_entry removed;
	struct vdisk_err err = { 0 };
	char *text = NULL;

	assert_int_equal(pt_lunmap_new(&map), 0);
	e.id.kind = PT_ID_UUID;
	strcpy(e.id.value, "ABCD-1234");
	assert_int_equal(pt_lunmap_set(map, &e, &err), 0);
	/* the same identity (UUIDs compare case-insensitively) changes the mode in place */
	strcpy(e.id.value, "abcd-1234");
	e.readonly = true;
	assert_int_equal(pt_lunmap_set(map, &e, &err), 0);
	assert_int_equal(pt_lunmap_count(map), 1);
	assert_true(pt_lunmap_get(map, 0)->readonly);
	/* another identity at a taken slot */
	strcpy(e.id.value, "other");
	assert_int_equal(pt_lunmap_set(map, &e, &err), -EEXIST);
	assert_non_null(strstr(err.msg, "vm1 0:0:1 holds UUID=ABCD-1234 already"));
	vdisk_err_clear(&err);
	/* invalid entries */
	strcpy(e.vm, "bad vm");
	assert_int_equal(pt_lunmap_set(map, &e, &err), -EINVAL);
	vdisk_err_clear(&err);
	strcpy(e.vm, "vm2");
	e.id.kind = 42;
	assert_int_equal(pt_lunmap_set(map, &e, &err), -EINVAL);
	vdisk_err_clear(&err);
	e.id.kind = PT_ID_SERIAL;
	e.readonly = false;
	strcpy(e.id.value, "has space");
	assert_int_equal(pt_lunmap_set(map, &e, &err), 0);
	/* a fresh map gets the header; the value with a space is quoted */
	assert_int_equal(pt_lunmap_format(map, &text, NULL, NULL), 0);
	assert_non_null(strstr(text, "# vdisk LUN map"));
	assert_non_null(strstr(text, "vm1 0:0:1 ro UUID=ABCD-1234\n"));
	assert_non_null(strstr(text, "vm2 0:0:1 rw SERIAL=\"has space\"\n"));
	free(text);
	assert_int_equal(pt_lunmap_remove(map, "vm1", &e.slot, &removed, &err), 0);
	assert_string_equal(removed.id.value, "ABCD-1234");
	assert_int_equal(pt_lunmap_count(map), 1);
	assert_string_equal(pt_lunmap_get(map, 0)->vm, "vm2");
	assert_int_equal(pt_lunmap_remove(map, "vm1", &e.slot, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "vm1 0:0:1: no LUN mapped there"));
	pt_lunmap_free(map);
}

static void test_default_path(void **state)
{
	setenv("VDISK_LUN_MAP", "/x/y.conf", 1);
	assert_string_equal(pt_lunmap_default_path(), "/x/y.conf");
	setenv("VDISK_LUN_MAP", "", 1);
	assert_string_equal(pt_lunmap_default_path(), "/var/lib/vdisk/luns.conf");
	unsetenv("VDISK_LUN_MAP");
	assert_string_equal(pt_lunmap_default_path(), "/var/lib/vdisk/luns.conf");
}

/* ---- mount tables ---- */

static void test_mountinfo(void **state)
{
	const char *text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
			   "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:2 - "
			   "ext3 /dev/root rw\n"
			   "40 27 0:45 / /srv rw - btrfs /dev/nonexistent-sdz rw\n"
			   "garbage line\n"
			   "41 27 8:17 / /boot rw - vfat /dev/sdb1 rw";
	struct pt_mount_table t;
	struct pt_device d = { .name = "nonexistent-sdz", .major = 8, .minor = 48 };

	assert_int_equal(pt_mountinfo_parse(text, &t), 0);
	assert_int_equal(t.count, 4);
	assert_int_equal(t.m[0].major, 254);
	assert_string_equal(t.m[0].mountpoint, "/");
	assert_string_equal(t.m[1].mountpoint, "/mnt/with space");
	assert_int_equal(t.m[1].major, 98);
	assert_string_equal(t.m[1].source, "/dev/root");
	assert_int_equal(t.m[2].major, 0);
	assert_string_equal(t.m[3].mountpoint, "/boot");
	/* 0:45 is anonymous: found through the /dev/NAME source instead */
	assert_ptr_equal(pt_mount_find(&t, &d), &t.m[2]);
	d.major = 8;
	d.minor = 17;
	strcpy(d.name, "other");
	assert_ptr_equal(pt_mount_find(&t, &d), &t.m[3]);
	d.minor = 18;
	assert_null(pt_mount_find(&t, &d));
	pt_mount_table_free(&t);

	assert_int_equal(pt_swaps_parse("Filename Type Size Used Priority\n"
					"/dev/nonexistent-sdq partition 65532 0 -2\n"
					"/swap\\040file file 1024 0 -3\n",
					&t),
			 0);
	assert_int_equal(t.count, 2);
	assert_string_equal(t.m[1].source, "/swap file");
	strcpy(d.name, "nonexistent-sdq");
	assert_ptr_equal(pt_mount_find(&t, &d), &t.m[0]);
	pt_mount_table_free(&t);
}

/* ---- a fake sysfs/proc/dev tree ---- */

static char fake_root[512];

/* mkdir -p of the folder that holds @path. */
static void make_parents(const char *path)
{
	char d[1024], *p;

	snprintf(d, sizeof(d), "%s", path);
	for (p = d + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		if (mkdir(d, 0755) < 0 && errno != EEXIST)
			fail_msg("mkdir %s: %s", d, strerror(errno));
		*p = '/';
	}
}

static void put_file(const char *rel, const char *content)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fake_root, rel);
	make_parents(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void put_link(const char *rel, const char *target)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", fake_root, rel);
	make_parents(path);
	assert_int_equal(symlink(target, path), 0);
}

#define DEVS "sys/devices/virtual/block"

/* A whole disk: size in 512-byte sectors, queue limits, optional ids. */
static void fake_disk(const char *name, const char *devno, const char *sectors, unsigned lsec,
		      unsigned psec, const char *wwid, const char *serial)
{
	char rel[256], v[96];

	snprintf(rel, sizeof(rel), DEVS "/%s/dev", name);
	put_file(rel, devno);
	snprintf(rel, sizeof(rel), DEVS "/%s/size", name);
	put_file(rel, sectors);
	snprintf(rel, sizeof(rel), DEVS "/%s/ro", name);
	put_file(rel, "0\n");
	snprintf(rel, sizeof(rel), DEVS "/%s/queue/logical_block_size", name);
	snprintf(v, sizeof(v), "%u\n", lsec);
	put_file(rel, v);
	snprintf(rel, sizeof(rel), DEVS "/%s/queue/physical_block_size", name);
	snprintf(v, sizeof(v), "%u\n", psec);
	put_file(rel, v);
	snprintf(rel, sizeof(rel), DEVS "/%s/queue/rotational", name);
	put_file(rel, "1\n");
	snprintf(rel, sizeof(rel), DEVS "/%s/queue/discard_max_bytes", name);
	put_file(rel, "0\n");
	snprintf(rel, sizeof(rel), DEVS "/%s/holders/.keep", name);
	put_file(rel, "");
	if (wwid) {
		snprintf(rel, sizeof(rel), DEVS "/%s/device/wwid", name);
		put_file(rel, wwid);
	}
	if (serial) {
		snprintf(rel, sizeof(rel), DEVS "/%s/device/serial", name);
		put_file(rel, serial);
	}
	snprintf(rel, sizeof(rel), "sys/class/block/%s", name);
	snprintf(v, sizeof(v), "../../devices/virtual/block/%s", name);
	put_link(rel, v);
}

static void fake_part(const char *disk, const char *name, const char *devno, unsigned n,
		      const char *start, const char *sectors)
{
	char rel[256], v[96];

	snprintf(rel, sizeof(rel), DEVS "/%s/%s/dev", disk, name);
	put_file(rel, devno);
	snprintf(rel, sizeof(rel), DEVS "/%s/%s/size", disk, name);
	put_file(rel, sectors);
	snprintf(rel, sizeof(rel), DEVS "/%s/%s/start", disk, name);
	put_file(rel, start);
	snprintf(rel, sizeof(rel), DEVS "/%s/%s/partition", disk, name);
	snprintf(v, sizeof(v), "%u\n", n);
	put_file(rel, v);
	snprintf(rel, sizeof(rel), "sys/class/block/%s", name);
	snprintf(v, sizeof(v), "../../devices/virtual/block/%s/%s", disk, name);
	put_link(rel, v);
}

/*
 * sda: the root disk (/boot on sda1, / on dm-0 over sdb);
 * sdb: under dm-0 (held); sdc: swap; sdd: free, WWN + serial; sde: read-only,
 * free; sdf: free, two partitions; loop5: empty (size 0); sdg: hidden.
 */
static void build_fake_tree(void)
{
	static const uint8_t vpd80[] = { 0x00, 0x80, 0x00, 0x08, ' ', 'S',
					 'N',  '-',  'F',  '0',  '0', ' ' };
	char path[1024];
	FILE *f;

	snprintf(fake_root, sizeof(fake_root), "%s", test_tmp_path("fake-tree"));
	test_system("rm -rf '%s'", fake_root);
	fake_disk("sda", "8:0\n", "2097152\n", 512, 4096, "naa.5000000000000a00\n", NULL);
	fake_part("sda", "sda1", "8:1\n", 1, "2048\n", "1048576\n");
	fake_part("sda", "sda2", "8:2\n", 2, "1050624\n", "1046528\n");
	fake_disk("sdb", "8:16\n", "4194304\n", 512, 512, "naa.5000000000000b00\n", NULL);
	put_file(DEVS "/sdb/holders/dm-0", "");
	fake_disk("dm-0", "253:0\n", "4194304\n", 512, 512, NULL, NULL);
	put_file(DEVS "/dm-0/slaves/sdb", "");
	fake_disk("sdc", "8:32\n", "1048576\n", 4096, 4096, NULL, "SWAPSERIAL\n");
	fake_disk("sdd", "8:48\n", "8388608\n", 512, 4096, "naa.5000000000000d00\n",
		  "  SN-D00  \n");
	fake_disk("sde", "8:64\n", "1048576\n", 512, 512, "naa.5000000000000e00\n", NULL);
	put_file(DEVS "/sde/ro", "1\n");
	fake_disk("sdf", "8:80\n", "2097152\n", 512, 512, NULL, NULL);
	snprintf(path, sizeof(path), "%s/" DEVS "/sdf/device/vpd_pg80", fake_root);
	make_parents(path);
	f = fopen(path, "wb");
	assert_non_null(f);
	fwrite(vpd80, 1, sizeof(vpd80), f);
	fclose(f);
	fake_part("sdf", "sdf1", "8:81\n", 1, "2048\n", "1000000\n");
	fake_part("sdf", "sdf2", "8:82\n", 2, "1002048\n", "1000000\n");
	fake_disk("loop5", "7:5\n", "0\n", 512, 512, NULL, NULL);
	fake_disk("sdg", "8:96\n", "1000\n", 512, 512, NULL, NULL);
	put_file(DEVS "/sdg/hidden", "1\n");
	put_file("proc/self/mountinfo", "27 1 253:0 / / rw - ext4 /dev/mapper/root rw\n"
					"28 27 8:1 / /boot rw - vfat /dev/sda1 rw\n"
					"29 27 0:30 / /tmp rw - tmpfs tmpfs rw\n");
	put_file("proc/swaps",
		 "Filename\tType\tSize\tUsed\tPriority\n"
		 "/dev/sdc                                partition\t524284\t0\t-2\n");
	put_file("dev/.keep", "");
}

static void fake_opts(struct pt_discover_opts *o, char *sys, char *proc, char *dev)
{
	sprintf(sys, "%s/sys", fake_root);
	sprintf(proc, "%s/proc", fake_root);
	sprintf(dev, "%s/dev", fake_root);
	pt_discover_opts_init(o, sizeof(*o));
	o->sysfs_root = sys;
	o->proc_root = proc;
	o->dev_root = dev;
	o->flags = PT_DISCOVER_NO_PROBE | PT_DISCOVER_NO_EXCL;
}

static struct pt_device_list *fake_discover(const struct pt_lunmap *map)
{
	static char sys[600], proc[600], dev[600];
	struct pt_discover_opts o;
	struct pt_device_list *list = NULL;
	struct vdisk_err err = { 0 };

	fake_opts(&o, sys, proc, dev);
	o.map = map;
	if (pt_discover(&o, &list, &err) != 0)
		fail_msg("discover: %s", err.msg);
	return list;
}

static const struct pt_device *dev_named(const struct pt_device_list *list, const char *name)
{
	const struct pt_device *d = pt_list_by_name(list, name);

	if (!d)
		fail_msg("device %s not discovered", name);
	return d;
}

static void test_discover_fake(void **state)
{
	struct pt_device_list *list;
	const struct pt_device *d;
	char why[512];
	size_t i;

	build_fake_tree();
	list = fake_discover(NULL);
	/* loop5 (empty) and sdg (hidden) are left out; the rest in natural order */
	assert_int_equal(pt_device_list_count(list), 11);
	assert_string_equal(pt_device_list_get(list, 0)->name, "dm-0");
	assert_string_equal(pt_device_list_get(list, 1)->name, "sda");
	assert_string_equal(pt_device_list_get(list, 2)->name, "sda1");
	assert_null(pt_device_list_get(list, 11));

	d = dev_named(list, "sda");
	assert_int_equal(d->size_bytes, 1ULL << 30);
	assert_int_equal(d->logical_sector_bytes, 512);
	assert_int_equal(d->physical_sector_bytes, 4096);
	assert_int_equal(d->minimum_io_bytes, 4096);
	assert_true(d->rotational);
	assert_string_equal(d->wwn, "naa.5000000000000a00");
	assert_string_equal(d->path, ""); /* no node in the fake /dev */
	d = dev_named(list, "sda1");
	assert_int_equal(d->partition, 1);
	assert_string_equal(d->parent, "sda");
	assert_int_equal(d->start_bytes, 2048 * 512);
	assert_int_equal(d->size_bytes, 1048576ULL * 512);
	assert_int_equal(d->physical_sector_bytes, 4096); /* the disk's queue */
	assert_string_equal(d->wwn, "");                  /* ids belong to the disk */
	d = dev_named(list, "sdc");
	assert_int_equal(d->logical_sector_bytes, 4096);
	assert_string_equal(d->serial, "SWAPSERIAL");
	assert_string_equal(dev_named(list, "sdd")->serial, "SN-D00");
	assert_string_equal(dev_named(list, "sdf")->serial, "SN-F00"); /* from VPD page 0x80 */
	assert_true(dev_named(list, "sde")->readonly);

	/* busy states */
	d = dev_named(list, "sda1");
	assert_int_equal(d->busy, PT_BUSY_MOUNTED | PT_BUSY_HOST_ROOT);
	assert_string_equal(d->mountpoint, "/boot");
	d = dev_named(list, "sda");
	assert_int_equal(d->busy, PT_BUSY_MOUNTED | PT_BUSY_HOST_ROOT);
	assert_string_equal(d->mountpoint, "sda1:/boot");
	assert_int_equal(dev_named(list, "sda2")->busy, 0); /* a sibling of /boot is free */
	d = dev_named(list, "dm-0");
	assert_int_equal(d->busy, PT_BUSY_MOUNTED | PT_BUSY_HOST_ROOT);
	d = dev_named(list, "sdb");
	assert_int_equal(d->busy, PT_BUSY_HELD | PT_BUSY_HOST_ROOT);
	assert_string_equal(d->holders, "dm-0");
	d = dev_named(list, "sdc");
	assert_int_equal(d->busy, PT_BUSY_SWAP);
	assert_string_equal(pt_device_busy_text(d, why, sizeof(why)), "active swap");
	for (i = 0; i < pt_device_list_count(list); i++) {
		d = pt_device_list_get(list, i);
		if (!strcmp(d->name, "sdd") || !strcmp(d->name, "sde") ||
		    !strncmp(d->name, "sdf", 3))
			assert_int_equal(d->busy, 0);
	}
	pt_device_busy_text(dev_named(list, "sdb"), why, sizeof(why));
	assert_string_equal(why, "holds the host's root or boot filesystem; held by dm-0");
	pt_device_list_free(list);
	pt_device_list_free(NULL);
}

static void test_identity_resolution(void **state)
{
	struct pt_device_list *list;
	const struct pt_device *d;
	struct pt_device *sdf1, *sdf2, *sdf;
	struct pt_identity id;
	struct vdisk_err err = { 0 };

	build_fake_tree();
	list = fake_discover(NULL);
	/* give the partitions content identities as libblkid would */
	sdf = pt_list_by_name(list, "sdf");
	sdf1 = pt_list_by_name(list, "sdf1");
	sdf2 = pt_list_by_name(list, "sdf2");
	strcpy(sdf->ptuuid, "4da73b20-babd-3b4a-80ad-77c51eec682d");
	strcpy(sdf1->partuuid, "11111111-0000-4000-8000-000000000001");
	strcpy(sdf1->uuid, "cafe0000-0000-4000-8000-00000000beef");
	strcpy(sdf2->partuuid, "11111111-0000-4000-8000-000000000002");
	strcpy(sdf2->uuid, "cafe0000-0000-4000-8000-00000000beef"); /* a cloned filesystem */

	/* most stable identity: WWN for a disk, then serial, then PTUUID; PARTUUID for a partition */
	assert_int_equal(pt_device_stable_identity(list, dev_named(list, "sdd"), &id, NULL), 0);
	assert_int_equal(id.kind, PT_ID_WWN);
	assert_string_equal(id.value, "naa.5000000000000d00");
	assert_int_equal(pt_device_stable_identity(list, dev_named(list, "sdc"), &id, NULL), 0);
	assert_int_equal(id.kind, PT_ID_SERIAL);
	assert_int_equal(pt_device_stable_identity(list, sdf, &id, NULL), 0);
	assert_int_equal(id.kind, PT_ID_SERIAL); /* serial SN-F00 (VPD) before PTUUID */
	sdf->serial[0] = '\0';
	assert_int_equal(pt_device_stable_identity(list, sdf, &id, NULL), 0);
	assert_int_equal(id.kind, PT_ID_PTUUID);
	assert_int_equal(pt_device_stable_identity(list, sdf1, &id, NULL), 0);
	assert_int_equal(id.kind, PT_ID_PARTUUID);
	/* the cloned UUID names two devices: not usable */
	sdf1->partuuid[0] = '\0';
	assert_int_equal(pt_device_stable_identity(list, sdf1, &id, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "sdf1 has no stable identity"));
	vdisk_err_clear(&err);
	assert_int_equal(pt_device_stable_identity(list, dev_named(list, "sda2"), &id, &err),
			 -ENOENT);
	vdisk_err_clear(&err);

	/* resolution */
	assert_int_equal(pt_identity_parse("WWN=0x5000000000000D00", &id, NULL), 0);
	assert_int_equal(pt_device_resolve(list, &id, &d, NULL), 0);
	assert_string_equal(d->name, "sdd");
	assert_int_equal(pt_identity_parse("UUID=CAFE0000-0000-4000-8000-00000000BEEF", &id, NULL),
			 0);
	assert_int_equal(pt_device_resolve(list, &id, &d, &err), -ENOTUNIQ);
	assert_non_null(strstr(err.msg, "names 2 devices (sdf1, sdf2)"));
	vdisk_err_clear(&err);
	assert_int_equal(
	    pt_identity_parse("PTUUID=00000000-0000-0000-0000-000000000000", &id, NULL), 0);
	assert_int_equal(pt_device_resolve(list, &id, &d, &err), -ENODEV);
	assert_non_null(strstr(err.msg, "PTUUID=00000000-0000-0000-0000-000000000000: no block "
					"device"));
	vdisk_err_clear(&err);

	/* what a user may type */
	assert_int_equal(pt_device_find(list, "naa.5000000000000e00", &d, NULL), 0);
	assert_string_equal(d->name, "sde");
	assert_int_equal(pt_device_find(list, "SN-D00", &d, NULL), 0);
	assert_string_equal(d->name, "sdd");
	assert_int_equal(
	    pt_device_find(list, "partuuid=11111111-0000-4000-8000-000000000002", &d, NULL), 0);
	assert_string_equal(d->name, "sdf2");
	assert_int_equal(pt_device_find(list, "nothing-like-this", &d, &err), -ENODEV);
	vdisk_err_clear(&err);
	assert_int_equal(pt_device_find(list, "/etc/passwd", &d, &err), -ENOTBLK);
	assert_non_null(strstr(err.msg, "not a block device"));
	vdisk_err_clear(&err);
	assert_int_equal(pt_device_find(list, "/nonexistent/dev", &d, &err), -ENODEV);
	vdisk_err_clear(&err);
	assert_int_equal(pt_device_find(list, "BOGUS=1", &d, &err), -EINVAL);
	pt_device_list_free(list);
}

static void expect_refusal(const struct pt_device_list *list, const char *name,
			   const struct pt_lunmap *map, unsigned flags, int code, const char *msg)
{
	struct vdisk_err err = { 0 };
	struct pt_slot slot = { 0, 0, 0 };
	int r = pt_safety_check(list, dev_named(list, name), map, "vmX", &slot, flags, &err);

	if (r != code || (msg && !strstr(err.msg, msg)))
		fail_msg("%s: got %d '%s', expected %d '%s'", name, r, err.msg, code,
			 msg ? msg : "");
}

static void test_safety(void **state)
{
	struct pt_device_list *list;
	struct pt_lunmap *map;

	build_fake_tree();
	list = fake_discover(NULL);
	expect_refusal(list, "sda", NULL, PT_CHECK_FORCE, -EBUSY,
		       "refusing sda: holds the host's root or boot filesystem; mounted on "
		       "sda1:/boot (never handed to a VM)");
	expect_refusal(list, "sdb", NULL, PT_CHECK_FORCE, -EBUSY, "held by dm-0");
	expect_refusal(list, "dm-0", NULL, 0, -EBUSY, "host's root");
	expect_refusal(list, "sdc", NULL, PT_CHECK_FORCE, -EBUSY,
		       "refusing sdc: active swap (unmount, swapoff");
	expect_refusal(list, "sde", NULL, 0, -EROFS, "read-only; map it with --readonly");
	expect_refusal(list, "sde", NULL, PT_CHECK_READONLY, 0, NULL);
	expect_refusal(list, "sdd", NULL, 0, 0, NULL);
	expect_refusal(list, "sda2", NULL, 0, 0, NULL);
	/* claimed exclusively: --force overrides that one only */
	pt_list_by_name(list, "sdd")->busy |= PT_BUSY_EXCL;
	expect_refusal(list, "sdd", NULL, 0, -EBUSY, "open exclusively by another program");
	expect_refusal(list, "sdd", NULL, PT_CHECK_FORCE, 0, NULL);
	pt_device_list_free(list);

	/* mapped elsewhere: the device itself, its disk, or one of its partitions */
	map = parse_ok("vm1 0:0:0 rw WWN=naa.5000000000000d00\n"
		       "vm2 0:0:1 rw SERIAL=SN-F00\n");
	list = fake_discover(map);
	assert_int_equal(dev_named(list, "sdd")->busy, PT_BUSY_MAPPED);
	assert_string_equal(dev_named(list, "sdd")->mapped_to, "vm1 0:0:0");
	expect_refusal(list, "sdd", map, PT_CHECK_FORCE, -EBUSY,
		       "already mapped to vm1 0:0:0 as WWN=naa.5000000000000d00");
	expect_refusal(list, "sdf1", map, PT_CHECK_FORCE, -EBUSY, "already mapped to vm2 0:0:1");
	expect_refusal(list, "sde", map, PT_CHECK_READONLY, 0, NULL);
	{
		/* the slot that holds it may be re-mapped (a mode change) */
		struct pt_slot s = { 0, 0, 0 };
		assert_int_equal(
		    pt_safety_check(list, dev_named(list, "sdd"), map, "vm1", &s, 0, NULL), 0);
	}
	pt_device_list_free(list);
	pt_lunmap_free(map);
}

/* ---- editing the map file ---- */

static struct pt_discover_opts edit_dopts;
static char edit_sys[600], edit_proc[600], edit_dev[600];

static int map_dev(const char *path, const char *vm, const char *slot, const char *dev, bool ro,
		   bool force, struct vdisk_err *err)
{
	struct pt_map_opts o;
	struct pt_slot s;

	assert_int_equal(pt_slot_parse(slot, &s), 0);
	pt_map_opts_init(&o, sizeof(o));
	o.readonly = ro;
	o.force = force;
	o.discover = &edit_dopts;
	return pt_lun_map(path, vm, &s, dev, &o, NULL, err);
}

static void read_whole(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_map_file_edits(void **state)
{
	const char *path = test_tmp_path("maps/sub/luns.conf");
	struct vdisk_err err = { 0 };
	struct pt_lunmap *map = NULL;
	struct pt_lun_entry removed;
	struct pt_slot s;
	char text[4096];
	struct stat st;

	build_fake_tree();
	fake_opts(&edit_dopts, edit_sys, edit_proc, edit_dev);
	test_system("rm -rf '%s'", test_tmp_path("maps"));
	/* a missing file is an empty map; the folder is created on the first edit */
	assert_int_equal(pt_lunmap_load(path, &map, NULL), 0);
	assert_int_equal(pt_lunmap_count(map), 0);
	pt_lunmap_free(map);
	assert_int_equal(map_dev(path, "vm1", "0:0:0", "SN-D00", false, false, &err), 0);
	read_whole(path, text, sizeof(text));
	/* stored as the most stable identity, not as typed */
	assert_non_null(strstr(text, "\nvm1 0:0:0 rw WWN=naa.5000000000000d00\n"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	assert_int_equal(
	    map_dev(path, "vm1", "0:0:1", "WWN=naa.5000000000000e00", true, false, &err), 0);
	/* refusals leave the file alone */
	assert_int_equal(
	    map_dev(path, "vm2", "0:0:0", "WWN=naa.5000000000000d00", false, true, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "already mapped to vm1 0:0:0"));
	vdisk_err_clear(&err);
	assert_int_equal(map_dev(path, "vm1", "0:0:0", "SWAPSERIAL", false, true, &err), -EEXIST);
	vdisk_err_clear(&err);
	assert_int_equal(map_dev(path, "vm3", "0:0:0", "SWAPSERIAL", false, true, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "active swap"));
	vdisk_err_clear(&err);
	assert_int_equal(map_dev(path, "vm3", "0:0:0", "naa.5000000000000e00", false, false, &err),
			 -EBUSY); /* mapped to vm1 0:0:1 already (checked before read-only) */
	vdisk_err_clear(&err);
	assert_int_equal(map_dev(path, "bad name", "0:0:0", "SN-D00", false, false, &err), -EINVAL);
	vdisk_err_clear(&err);
	/* re-mapping the same device at its slot changes the mode */
	assert_int_equal(map_dev(path, "vm1", "0:0:0", "SN-D00", true, false, &err), 0);
	read_whole(path, text, sizeof(text));
	assert_non_null(strstr(text, "\nvm1 0:0:0 ro WWN=naa.5000000000000d00\n"));
	assert_non_null(strstr(text, "\nvm1 0:0:1 ro WWN=naa.5000000000000e00\n"));
	/* a user's comment survives edits */
	{
		FILE *f = fopen(path, "a");
		assert_non_null(f);
		fputs("# my note\n", f);
		fclose(f);
	}
	pt_slot_parse("0:0:0", &s);
	assert_int_equal(pt_lun_unmap(path, "vm1", &s, &removed, &err), 0);
	assert_string_equal(removed.id.value, "naa.5000000000000d00");
	assert_int_equal(pt_lun_unmap(path, "vm1", &s, NULL, &err), -ENOENT);
	vdisk_err_clear(&err);
	read_whole(path, text, sizeof(text));
	assert_null(strstr(text, "vm1 0:0:0"));
	assert_non_null(strstr(text, "# my note\n"));
	/* no temporary files left behind */
	assert_int_equal(test_system("! ls '%s' | grep -q tmp", test_tmp_path("maps/sub")), 0);
	/* a broken map is reported with its line, and not overwritten */
	{
		FILE *f = fopen(path, "a");
		fputs("vm9 0:0 rw UUID=x\n", f);
		fclose(f);
	}
	assert_int_equal(map_dev(path, "vm4", "0:0:0", "SN-D00", false, false, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "luns.conf:"));
	vdisk_err_clear(&err);

	/* a relative map path, in the current folder */
	{
		char cwd[1024];
		assert_non_null(getcwd(cwd, sizeof(cwd)));
		assert_int_equal(chdir(test_tmp_path("maps")), 0);
		assert_int_equal(map_dev("rel.conf", "vm1", "0:0:0", "SN-D00", false, false, &err),
				 0);
		assert_int_equal(stat("rel.conf", &st), 0);
		assert_true(S_ISREG(st.st_mode));
		read_whole("rel.conf", text, sizeof(text));
		assert_non_null(strstr(text, "\nvm1 0:0:0 rw WWN=naa.5000000000000d00\n"));
		assert_int_equal(chdir(cwd), 0);
	}
}

/* Children map different devices into one file at once: no edit may be lost. */
static void test_map_file_concurrent(void **state)
{
	static const char *const devs[] = { "SN-D00", "naa.5000000000000e00", "SN-F00" };
	const char *path = test_tmp_path("conc/luns.conf");
	struct pt_lunmap *map = NULL;
	pid_t pids[3];
	int i, round, status;

	build_fake_tree();
	fake_opts(&edit_dopts, edit_sys, edit_proc, edit_dev);
	for (round = 0; round < 5; round++) {
		test_system("rm -rf '%s'", test_tmp_path("conc"));
		for (i = 0; i < 3; i++) {
			pids[i] = fork();
			assert_true(pids[i] >= 0);
			if (pids[i] == 0) {
				char vm[16], slot[16];
				snprintf(vm, sizeof(vm), "vm%d", i);
				snprintf(slot, sizeof(slot), "0:0:%d", i);
				_exit(map_dev(path, vm, slot, devs[i], true, false, NULL) == 0 ? 0
											       : 1);
			}
		}
		for (i = 0; i < 3; i++) {
			assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
			assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		}
		assert_int_equal(pt_lunmap_load(path, &map, NULL), 0);
		assert_int_equal(pt_lunmap_count(map), 3);
		pt_lunmap_free(map);
	}
}

/* ---- odds and ends ---- */

static void test_refuse_snapshot(void **state)
{
	const char *f = test_tmp_path("plain-file");
	struct vdisk_err err = { 0 };
	char dev[300] = "";
	FILE *p;

	test_system("echo x > '%s'", f);
	assert_int_equal(pt_refuse_snapshot("snapshot", f, &err), 0);
	assert_int_equal(pt_refuse_snapshot("snapshot", "/nonexistent/x.vhdx", &err), 0);
	assert_int_equal(err.code, 0);
	/* any block device node of this machine will do */
	p = popen("for d in /sys/class/block/*; do n=/dev/${d##*/}; [ -b $n ] && { echo $n; "
		  "break; }; done",
		  "r");
	if (p) {
		if (!fgets(dev, sizeof(dev), p))
			dev[0] = '\0';
		pclose(p);
	}
	dev[strcspn(dev, "\n")] = '\0';
	if (!dev[0]) {
		print_message("no block device node here: block-device case not run\n");
		return;
	}
	assert_int_equal(pt_refuse_snapshot("merge", dev, &err), -EOPNOTSUPP);
	assert_non_null(strstr(err.msg, "passthrough disks have no snapshots, so merge is not"));
	assert_non_null(strstr(err.msg, dev));
}

static void test_geometry_not_blk(void **state)
{
	struct pt_geometry g;
	struct vdisk_err err = { 0 };
	int fd = open(test_tmp_path("plain-file"), O_RDONLY | O_CREAT, 0644);

	assert_true(fd >= 0);
	assert_int_equal(pt_geometry_from_fd(fd, &g, &err), -ENOTBLK);
	close(fd);
}

static void test_opts_struct_size(void **state)
{
	struct pt_discover_opts o;
	struct pt_env env;

	/* an older caller knows only the first fields: the rest must read as defaults */
	memset(&o, 0xff, sizeof(o));
	pt_discover_opts_init(&o, offsetof(struct pt_discover_opts, map));
	o.flags = PT_DISCOVER_NO_PROBE;
	pt_env_init(&env, &o);
	assert_string_equal(env.sysfs, "/sys");
	assert_string_equal(env.proc, "/proc");
	assert_string_equal(env.dev, "/dev");
	assert_int_equal(env.flags, PT_DISCOVER_NO_PROBE);
	assert_null(env.map);
	pt_env_init(&env, NULL);
	assert_string_equal(env.sysfs, "/sys");
}

/* ---- opening LUNs on real loop devices (root only) ---- */

#define MAX_LOOPS 4
static char loops[MAX_LOOPS][64];
static char loop_files[MAX_LOOPS][600];

/* Runs a command and returns its first output line in @buf (without the newline). */
static __attribute__((format(printf, 3, 4))) int run_line(char *buf, size_t len, const char *fmt,
							  ...)
{
	char cmd[1200];
	va_list ap;
	FILE *p;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (!fgets(buf, (int)len, p))
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return pclose(p) == 0 && buf[0] ? 0 : -1;
}

/* Attaches @file as loop slot @i; when @make, a new @mib MiB file that gets a GPT. */
static void attach(int i, const char *file, unsigned mib, unsigned sector, bool make)
{
	snprintf(loop_files[i], sizeof(loop_files[i]), "%s", file);
	if (make)
		assert_int_equal(test_system("rm -f '%s' && truncate -s %uM '%s'", file, mib, file),
				 0);
	assert_int_equal(run_line(loops[i], sizeof(loops[i]),
				  "losetup -f --show --sector-size %u '%s'", sector, file),
			 0);
	/* through the device, so the GPT fits its sector size; the re-read fails without partscan */
	if (make)
		test_system("printf 'label: gpt\\nsize=1MiB\\n' | sfdisk -q %s >/dev/null 2>&1",
			    loops[i]);
}

static void detach(int i)
{
	if (!loops[i][0])
		return;
	/* only if it is still ours */
	test_system("losetup -n -O BACK-FILE %s 2>/dev/null | grep -qF '%s' && losetup -d %s",
		    loops[i], loop_files[i], loops[i]);
	loops[i][0] = '\0';
}

static int detach_all(void **state)
{
	int i;

	for (i = 0; i < MAX_LOOPS; i++)
		detach(i);
	return 0;
}

static bool can_loop(void)
{
	if (geteuid() != 0 || access("/dev/loop-control", F_OK) != 0 ||
	    test_system("losetup --version >/dev/null 2>&1 && sfdisk --version >/dev/null 2>&1"))
		return false;
	return true;
}

static void test_lun_open_loop(void **state)
{
	const char *mpath = test_tmp_path("open/luns.conf");
	struct pt_lunmap *map = NULL, *romap = NULL;
	struct pt_lun *lun = NULL, *again = NULL, **luns = NULL;
	struct pt_lun_entry ro_entry;
	struct vdisk_disk *disk = NULL;
	struct vdisk_err err = { 0 };
	struct pt_slot s0 = { 0, 0, 0 }, s1 = { 0, 0, 1 };
	const struct pt_geometry *g;
	char buf[64];
	uint8_t *io, *back;
	size_t n;
	int fd;

	if (!can_loop()) {
		print_message("not root or no loop devices: LUN open test not run\n");
		skip();
	}
	test_system("rm -rf '%s'", test_tmp_path("open"));
	attach(0, test_tmp_path("lun-a.img"), 32, 4096, true);
	attach(1, test_tmp_path("lun-b.img"), 16, 512, true);
	assert_int_equal(pt_lun_map(mpath, "vm1", &s1, loops[1], NULL, NULL, &err), 0);
	assert_int_equal(pt_lun_map(mpath, "vm1", &s0, loops[0], NULL, NULL, &err), 0);
	assert_int_equal(pt_lunmap_load(mpath, &map, &err), 0);

	/* open: O_EXCL | O_DIRECT, the geometry of the 4096-byte device */
	assert_int_equal(pt_lun_open(map, "vm1", &s0, NULL, &lun, &err), 0);
	assert_string_equal(pt_lun_path(lun), loops[0]);
	g = pt_lun_geometry(lun);
	assert_int_equal(g->size_bytes, 32 << 20);
	assert_int_equal(g->logical_sector_bytes, 4096);
	assert_false(g->readonly);
	assert_int_equal(pt_lun_entry(lun)->slot.lun, 0);
	assert_string_equal(pt_lun_device(lun)->name, loops[0] + 5);
	assert_true(fcntl(pt_lun_fd(lun), F_GETFL) & O_DIRECT);
	fd = open(loops[0], O_RDONLY | O_EXCL);
	assert_int_equal(fd, -1);
	assert_int_equal(errno, EBUSY);
	assert_int_equal(pt_lun_open(map, "vm1", &s0, NULL, &again, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "vm1 0:0:0: refusing"));
	assert_non_null(strstr(err.msg, "open exclusively by another program"));
	vdisk_err_clear(&err);

	/* data lands on the device: written through the fd, read from the backing file */
	io = vdisk_aligned_alloc(8192);
	back = malloc(8192);
	assert_non_null(io);
	test_fill_pattern(io, 8192, 7);
	assert_int_equal(pwrite(pt_lun_fd(lun), io, 8192, 1 << 20), 8192);
	assert_int_equal(fdatasync(pt_lun_fd(lun)), 0);
	fd = open(loop_files[0], O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, back, 8192, 1 << 20), 8192);
	assert_memory_equal(io, back, 8192);
	/* and through the vdisk_disk view of the claimed device */
	assert_int_equal(pt_lun_disk_open(lun, VDISK_OPEN_DIRECT, &disk, &err), 0);
	assert_int_equal(vdisk_disk_size(disk), 32 << 20);
	assert_int_equal(vdisk_disk_logical_sector(disk), 4096);
	test_fill_pattern(io, 8192, 8);
	assert_int_equal(vdisk_disk_pwrite(disk, io, 8192, 4 << 20), 0);
	assert_int_equal(vdisk_disk_close(disk, &err), 0);
	assert_int_equal(pread(fd, back, 8192, 4 << 20), 8192);
	assert_memory_equal(io, back, 8192);
	close(fd);
	free(back);
	free(io);
	pt_lun_close(lun);
	fd = open(loops[0], O_RDONLY | O_EXCL);
	assert_true(fd >= 0); /* the claim ended with the LUN */
	close(fd);

	/* one device, outside the map: refused while the map gives it to vm1 */
	assert_int_equal(pt_lun_open_device(loops[0], map, false, NULL, &lun, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "already mapped to vm1 0:0:0"));
	vdisk_err_clear(&err);
	assert_int_equal(pt_lun_open_device(loops[0], NULL, true, NULL, &lun, &err), 0);
	assert_true(pt_lun_geometry(lun)->readonly);
	assert_null(pt_lun_entry(lun));
	assert_int_equal(pwrite(pt_lun_fd(lun), buf, 0, 0) < 0 ? errno : 0, EBADF);
	pt_lun_close(lun);

	/* read-only entries open read-only */
	assert_int_equal(pt_lunmap_new(&romap), 0);
	ro_entry = *pt_lunmap_find(map, "vm1", &s1);
	ro_entry.readonly = true;
	assert_int_equal(pt_lunmap_set(romap, &ro_entry, &err), 0);
	assert_int_equal(pt_lun_open(romap, "vm1", &s1, NULL, &lun, &err), 0);
	assert_true(pt_lun_geometry(lun)->readonly);
	assert_int_equal(fcntl(pt_lun_fd(lun), F_GETFL) & O_ACCMODE, O_RDONLY);
	pt_lun_close(lun);
	pt_lunmap_free(romap);

	/* every LUN of a VM, in slot order */
	assert_int_equal(pt_lun_open_vm(map, "vm1", NULL, &luns, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_string_equal(pt_lun_path(luns[0]), loops[0]);
	assert_string_equal(pt_lun_path(luns[1]), loops[1]);
	assert_int_equal(pt_lun_geometry(luns[1])->logical_sector_bytes, 512);
	pt_lun_close_all(luns, n);
	assert_int_equal(pt_lun_open_vm(map, "vm9", NULL, &luns, &n, &err), -ENOENT);
	vdisk_err_clear(&err);

	/* renamed: B re-attached on another number (a filler takes the old one) */
	snprintf(buf, sizeof(buf), "%s", loops[1]);
	detach(1);
	attach(2, test_tmp_path("lun-filler.img"), 8, 512, true);
	attach(1, test_tmp_path("lun-b.img"), 0, 512, false);
	assert_string_not_equal(loops[1], buf);
	assert_int_equal(pt_lun_open(map, "vm1", &s1, NULL, &lun, &err), 0);
	assert_string_equal(pt_lun_path(lun), loops[1]);
	pt_lun_close(lun);

	/* missing: the error names the identity */
	detach(1);
	assert_int_equal(pt_lun_open(map, "vm1", &s1, NULL, &lun, &err), -ENODEV);
	assert_non_null(strstr(err.msg, "vm1 0:0:1: PTUUID="));
	assert_non_null(strstr(err.msg, "no block device has this identity"));
	vdisk_err_clear(&err);
	assert_int_equal(pt_lun_open(map, "vm1", &(struct pt_slot){ 0, 0, 5 }, NULL, &lun, &err),
			 -ENOENT);
	assert_non_null(strstr(err.msg, "vm1 0:0:5: no LUN mapped there"));
	pt_lunmap_free(map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identity_parse),
		cmocka_unit_test(test_slot_and_vm),
		cmocka_unit_test(test_wwn_equal),
		cmocka_unit_test(test_map_parse),
		cmocka_unit_test(test_map_parse_errors),
		cmocka_unit_test(test_map_format_roundtrip),
		cmocka_unit_test(test_map_edit),
		cmocka_unit_test(test_default_path),
		cmocka_unit_test(test_mountinfo),
		cmocka_unit_test(test_discover_fake),
		cmocka_unit_test(test_identity_resolution),
		cmocka_unit_test(test_safety),
		cmocka_unit_test(test_map_file_edits),
		cmocka_unit_test(test_map_file_concurrent),
		cmocka_unit_test(test_refuse_snapshot),
		cmocka_unit_test(test_geometry_not_blk),
		cmocka_unit_test(test_opts_struct_size),
		cmocka_unit_test_teardown(test_lun_open_loop, detach_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
