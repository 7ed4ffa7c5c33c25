/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target for the LUN map parser (docs/lun-map.md). The input is the
 * map text. Besides memory errors, the target aborts on a broken contract:
 * a failed parse must return -EINVAL (or -ENOMEM) with that code and a
 * "NAME:LINE:COLUMN: " message in the error buffer; a successful one must
 * format to text that parses back to the same entries and formats to the
 * same text again, and every entry must survive removal and re-adding.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/passthrough.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                            \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			fprintf(stderr, "fuzz-lunmap: contract broken: %s (line %d)\n", #cond, \
				__LINE__);                                                     \
			abort();                                                               \
		}                                                                              \
	} while (0)

static bool same_entry(const struct pt_lun_entry *a, const struct pt_lun_entry *b)
{
	return strcmp(a->vm, b->vm) == 0 && a->slot.controller == b->slot.controller &&
	       a->slot.target == b->slot.target && a->slot.lun == b->slot.lun &&
	       a->readonly == b->readonly && a->id.kind == b->id.kind &&
	       strcmp(a->id.value, b->id.value) == 0;
}

static void check_roundtrip(struct pt_lunmap *map)
{
	struct pt_lunmap *again = NULL;
	char *text = NULL, *text2 = NULL;
	size_t len = 0, len2 = 0, i, n = pt_lunmap_count(map);
	struct vdisk_err err = { 0 };

	CHECK(pt_lunmap_format(map, &text, &len, &err) == 0);
	CHECK(strlen(text) == len);
	CHECK(pt_lunmap_parse(text, len, "formatted", &again, &err) == 0);
	CHECK(pt_lunmap_count(again) == n);
	for (i = 0; i < n; i++) {
		const struct pt_lun_entry *a = pt_lunmap_get(map, i), *b = pt_lunmap_get(again, i);
		char idtext[PT_ID_STRLEN];
		struct pt_identity id;
		CHECK(same_entry(a, b));
		CHECK(pt_vm_name_valid(a->vm));
		/* the identity's text form parses back to itself */
		CHECK(pt_identity_format(&a->id, idtext, sizeof(idtext)) == 0);
		CHECK(pt_identity_parse(idtext, &id, NULL) == 0);
		CHECK(id.kind == a->id.kind && strcmp(id.value, a->id.value) == 0);
	}
	CHECK(pt_lunmap_format(again, &text2, &len2, &err) == 0);
	CHECK(len == len2 && memcmp(text, text2, len) == 0);
	free(text);
	free(text2);

	/* remove and re-add the first entry: the map keeps its size and the entry */
	if (n > 0) {
		struct pt_lun_entry e = *pt_lunmap_get(again, 0), removed;
		CHECK(pt_lunmap_remove(again, e.vm, &e.slot, &removed, &err) == 0);
		CHECK(same_entry(&e, &removed));
		CHECK(pt_lunmap_count(again) == n - 1);
		CHECK(pt_lunmap_find(again, e.vm, &e.slot) == NULL);
		CHECK(pt_lunmap_set(again, &e, &err) == 0);
		CHECK(pt_lunmap_count(again) == n);
		CHECK(pt_lunmap_find(again, e.vm, &e.slot) != NULL);
	}
	pt_lunmap_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vdisk_err err = { 0 };
	struct pt_lunmap *map = NULL;
	int r;

	r = pt_lunmap_parse((const char *)data, size, "fuzz.conf", &map, &err);
	if (r) {
		CHECK(r == -EINVAL || r == -ENOMEM);
		CHECK(err.code == r && err.msg[0] != '\0');
		CHECK(strncmp(err.msg, "fuzz.conf:", 10) == 0);
		CHECK(map == NULL);
		return 0;
	}
	CHECK(map != NULL);
	check_roundtrip(map);
	pt_lunmap_free(map);
	return 0;
}
