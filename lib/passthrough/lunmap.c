/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The LUN map in memory: parsing the text format of docs/lun-map.md (one
 * LUN per line, "VM C:T:L ro|rw KIND=value", '#' comment lines), formatting
 * it back with comments and blank lines kept in place, and editing entries.
 * The parser takes bytes from anywhere (it is a fuzz target): every line,
 * field and count is bounded, and errors name the line and column.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pt-int.h"
#include "util.h"

#define MAP_MAX_LINE  4096
#define MAP_MAX_LINES 65536
#define MAP_HEADER                                                                        \
	"# vdisk LUN map (format: docs/lun-map.md). One LUN per line:\n"                  \
	"#   VM  CONTROLLER:TARGET:LUN  ro|rw  IDENTITY\n"                                \
	"# Edit with `vdisk lun map` and `vdisk lun unmap`, which lock and replace this " \
	"file atomically.\n"

/* One line of the file: a LUN entry, or text kept as it was (comment, blank). */
struct map_line {
	bool is_entry;
	struct pt_lun_entry e;
	char *text; /* without the newline; NULL for entries */
};

struct pt_lunmap {
	struct map_line *lines;
	size_t nlines, cap;
	size_t *entry_idx; /* line index of each entry, in file order */
	size_t nentries;
};

const char *pt_lunmap_default_path(void)
{
	const char *e = getenv("VDISK_LUN_MAP");

	return e && *e ? e : "/var/lib/vdisk/luns.conf";
}

int pt_lunmap_new(struct pt_lunmap **ret_map)
{
	struct pt_lunmap *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	*ret_map = m;
	return 0;
}

void pt_lunmap_free(struct pt_lunmap *map)
{
	size_t i;

	if (!map)
		return;
	for (i = 0; i < map->nlines; i++)
		free(map->lines[i].text);
	free(map->lines);
	free(map->entry_idx);
	free(map);
}

size_t pt_lunmap_count(const struct pt_lunmap *map)
{
	return map ? map->nentries : 0;
}

const struct pt_lun_entry *pt_lunmap_get(const struct pt_lunmap *map, size_t i)
{
	if (!map || i >= map->nentries)
		return NULL;
	return &map->lines[map->entry_idx[i]].e;
}

static bool slot_equal(const struct pt_slot *a, const struct pt_slot *b)
{
	return a->controller == b->controller && a->target == b->target && a->lun == b->lun;
}

/* Index into lines[] of the entry at (vm, slot), or -1. */
static ssize_t find_line(const struct pt_lunmap *map, const char *vm, const struct pt_slot *slot)
{
	size_t i;

	for (i = 0; i < map->nentries; i++) {
		const struct pt_lun_entry *e = &map->lines[map->entry_idx[i]].e;
		if (strcmp(e->vm, vm) == 0 && slot_equal(&e->slot, slot))
			return (ssize_t)map->entry_idx[i];
	}
	return -1;
}

const struct pt_lun_entry *pt_lunmap_find(const struct pt_lunmap *map, const char *vm,
					  const struct pt_slot *slot)
{
	ssize_t l;

	if (!map || !vm || !slot)
		return NULL;
	l = find_line(map, vm, slot);
	return l < 0 ? NULL : &map->lines[l].e;
}

static int reindex(struct pt_lunmap *map)
{
	size_t *idx = NULL, i, n = 0;

	if (map->nlines) {
		idx = malloc(map->nlines * sizeof(*idx));
		if (!idx)
			return -ENOMEM;
	}
	for (i = 0; i < map->nlines; i++)
		if (map->lines[i].is_entry)
			idx[n++] = i;
	free(map->entry_idx);
	map->entry_idx = idx;
	map->nentries = n;
	return 0;
}

static int add_line(struct pt_lunmap *map, const struct map_line *l)
{
	if (map->nlines == map->cap) {
		size_t cap = map->cap ? map->cap * 2 : 16;
		struct map_line *n = realloc(map->lines, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		map->lines = n;
		map->cap = cap;
	}
	map->lines[map->nlines++] = *l;
	return 0;
}

/* ---- parsing ---- */

struct cursor {
	const char *name; /* for messages */
	unsigned line;
	const char *start; /* of the line */
	const char *p, *end;
};

static __attribute__((format(printf, 3, 4))) int fail(const struct cursor *c, struct vdisk_err *err,
						      const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vdisk_err_set(err, -EINVAL, "%s:%u:%u: %s", c->name, c->line,
			     (unsigned)(c->p - c->start) + 1, msg);
}

static void skip_blank(struct cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
}

/* A bare token: up to white space. Copies into @buf (bounded). Returns its length or -1. */
static int token(struct cursor *c, char *buf, size_t len)
{
	const char *s = c->p;
	size_t n;

	while (c->p < c->end && *c->p != ' ' && *c->p != '\t')
		c->p++;
	n = (size_t)(c->p - s);
	if (n == 0 || n >= len)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return (int)n;
}

/* The identity value: bare, or "quoted" with \" and \\ escapes. */
static int parse_value(struct cursor *c, char *buf, size_t len, struct vdisk_err *err)
{
	size_t o = 0;

	if (c->p < c->end && *c->p == '"') {
		c->p++;
		for (;;) {
			char ch;
			if (c->p >= c->end)
				return fail(c, err, "unterminated quoted value");
			ch = *c->p++;
			if (ch == '"')
				break;
			if (ch == '\\') {
				if (c->p >= c->end || (*c->p != '"' && *c->p != '\\'))
					return fail(c, err, "only \\\" and \\\\ may be escaped");
				ch = *c->p++;
			}
			if (o + 1 >= len)
				return fail(c, err, "identity value longer than %d bytes",
					    PT_ID_VALUE_MAX - 1);
			buf[o++] = ch;
		}
		buf[o] = '\0';
		if (c->p < c->end && *c->p != ' ' && *c->p != '\t')
			return fail(c, err, "garbage after the quoted value");
	} else {
		const char *s = c->p;
		if (token(c, buf, len) < 0)
			return fail(c, err,
				    c->p == s ? "missing identity value"
					      : "identity value too long");
		if (strpbrk(buf, "\"\\")) {
			c->p = s;
			return fail(c, err, "a value with '\"' or '\\' must be quoted");
		}
	}
	if (!pt_id_value_valid(buf))
		return fail(c, err,
			    "identity value must be printable ASCII, no control "
			    "characters, no leading or trailing space");
	return 0;
}

static int parse_identity(struct cursor *c, struct pt_identity *id, struct vdisk_err *err)
{
	const char *s = c->p, *eq;
	char kind[16];
	unsigned k;

	for (eq = s; eq < c->end && *eq != '=' && *eq != ' ' && *eq != '\t'; eq++)
		;
	if (eq >= c->end || *eq != '=')
		return fail(c, err,
			    "expected KIND=value (WWN, SERIAL, BYID, PTUUID, PARTUUID, "
			    "UUID)");
	if ((size_t)(eq - s) >= sizeof(kind) || eq == s)
		return fail(c, err, "unknown identity kind");
	memcpy(kind, s, (size_t)(eq - s));
	kind[eq - s] = '\0';
	for (k = PT_ID_WWN; k <= PT_ID_UUID; k++)
		if (strcmp(kind, pt_id_kind_name(k)) == 0)
			break;
	if (k > PT_ID_UUID)
		return fail(c, err,
			    "unknown identity kind '%s' (WWN, SERIAL, BYID, PTUUID, "
			    "PARTUUID, UUID)",
			    kind);
	c->p = eq + 1;
	id->kind = k;
	return parse_value(c, id->value, sizeof(id->value), err);
}

static int parse_entry(struct cursor *c, struct pt_lun_entry *e, struct vdisk_err *err)
{
	char buf[PT_VM_NAME_MAX + 2];

	memset(e, 0, sizeof(*e));
	e->line = c->line;
	if (token(c, buf, sizeof(buf)) < 0 || !pt_vm_name_valid(buf))
		return fail(c, err,
			    "invalid VM name (1 to %d of A-Z a-z 0-9 . _ -, starting "
			    "with a letter or digit)",
			    PT_VM_NAME_MAX);
	pt_strlcpy(e->vm, buf, sizeof(e->vm));
	skip_blank(c);
	if (token(c, buf, sizeof(buf)) < 0 || pt_slot_parse(buf, &e->slot) < 0)
		return fail(c, err, "expected a slot CONTROLLER:TARGET:LUN (at most %d:%d:%d)",
			    PT_MAX_CONTROLLER, PT_MAX_TARGET, PT_MAX_LUN);
	skip_blank(c);
	if (token(c, buf, sizeof(buf)) < 0 || (strcmp(buf, "ro") && strcmp(buf, "rw")))
		return fail(c, err, "expected the mode, ro or rw");
	e->readonly = buf[1] == 'o';
	skip_blank(c);
	if (parse_identity(c, &e->id, err) < 0)
		return -EINVAL;
	skip_blank(c);
	if (c->p < c->end)
		return fail(c, err, "unexpected text after the identity");
	return 0;
}

static int parse_line(struct pt_lunmap *map, struct cursor *c, struct vdisk_err *err)
{
	struct map_line l = { .is_entry = false };
	const char *q;
	int r;

	if ((size_t)(c->end - c->start) > MAP_MAX_LINE)
		return fail(c, err, "line longer than %d bytes", MAP_MAX_LINE);
	for (q = c->start; q < c->end; q++)
		if (*q == '\0')
			return fail(c, err, "NUL byte");
	skip_blank(c);
	if (c->p == c->end || *c->p == '#') {
		/* not strndup: the text is not NUL-terminated (ASan reads one byte past it) */
		size_t n = (size_t)(c->end - c->start);
		l.text = malloc(n + 1);
		if (l.text) {
			memcpy(l.text, c->start, n);
			l.text[n] = '\0';
		}
		if (!l.text)
			return vdisk_err_set(err, -ENOMEM, "out of memory");
	} else {
		l.is_entry = true;
		r = parse_entry(c, &l.e, err);
		if (r)
			return r;
		if (find_line(map, l.e.vm, &l.e.slot) >= 0) {
			char s[PT_SLOT_STRLEN];
			pt_slot_format(&l.e.slot, s);
			c->p = c->start;
			return fail(c, err, "%s %s is mapped twice", l.e.vm, s);
		}
	}
	r = add_line(map, &l);
	if (r) {
		free(l.text);
		return vdisk_err_set(err, r, "out of memory");
	}
	/* entries must be findable for the duplicate check of the next lines */
	if (l.is_entry) {
		size_t *n = realloc(map->entry_idx, (map->nentries + 1) * sizeof(*n));
		if (!n)
			return vdisk_err_set(err, -ENOMEM, "out of memory");
		map->entry_idx = n;
		map->entry_idx[map->nentries++] = map->nlines - 1;
	}
	return 0;
}

int pt_lunmap_parse(const char *text, size_t len, const char *name, struct pt_lunmap **ret_map,
		    struct vdisk_err *err)
{
	struct cursor c = { .name = name ? name : "LUN map", .line = 0 };
	const char *p = text, *end = text + len;
	struct pt_lunmap *map;
	int r;

	r = pt_lunmap_new(&map);
	if (r)
		return vdisk_err_set(err, r, "out of memory");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if (++c.line > MAP_MAX_LINES) {
			r = vdisk_err_set(err, -EINVAL, "%s: more than %d lines", c.name,
					  MAP_MAX_LINES);
			goto out_free;
		}
		c.start = c.p = p;
		/* CRLF files: every carriage return at the end of the line goes */
		for (c.end = le; c.end > p && c.end[-1] == '\r'; c.end--)
			;
		r = parse_line(map, &c, err);
		if (r)
			goto out_free;
		p = nl ? nl + 1 : end;
	}
	*ret_map = map;
	return 0;

out_free:
	pt_lunmap_free(map);
	return r;
}

int pt_lunmap_load(const char *path, struct pt_lunmap **ret_map, struct vdisk_err *err)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	r = pt_read_text(path, &text, &len);
	if (r == -ENOENT)
		return pt_lunmap_new(ret_map) ? vdisk_err_set(err, -ENOMEM, "out of memory") : 0;
	if (r)
		return vdisk_err_set(err, r, "%s: cannot read the LUN map: %s", path, strerror(-r));
	r = pt_lunmap_parse(text, len, path, ret_map, err);
	free(text);
	return r;
}

/* ---- formatting ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = MAX(b->cap * 2, b->len + n + 256);
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static bool needs_quotes(const char *v)
{
	return v[0] == '"' || strpbrk(v, " \t\"\\") != NULL;
}

static void format_entry(struct sbuf *b, const struct pt_lun_entry *e)
{
	char slot[PT_SLOT_STRLEN];
	const char *v = e->id.value;

	pt_slot_format(&e->slot, slot);
	sb_str(b, e->vm);
	sb_str(b, " ");
	sb_str(b, slot);
	sb_str(b, e->readonly ? " ro " : " rw ");
	sb_str(b, pt_id_kind_name(e->id.kind));
	sb_str(b, "=");
	if (!needs_quotes(v)) {
		sb_str(b, v);
	} else {
		sb_str(b, "\"");
		for (; *v; v++) {
			if (*v == '"' || *v == '\\')
				sb_str(b, "\\");
			sb_add(b, v, 1);
		}
		sb_str(b, "\"");
	}
	sb_str(b, "\n");
}

int pt_lunmap_format(const struct pt_lunmap *map, char **ret_text, size_t *ret_len,
		     struct vdisk_err *err)
{
	struct sbuf b = { NULL, 0, 0, false };
	bool has_text = false;
	size_t i;

	for (i = 0; i < map->nlines; i++)
		has_text |= !map->lines[i].is_entry;
	/* a map made from scratch gets the header that says what it is */
	sb_str(&b, has_text ? "" : MAP_HEADER);
	for (i = 0; i < map->nlines; i++) {
		const struct map_line *l = &map->lines[i];
		if (l->is_entry) {
			format_entry(&b, &l->e);
		} else {
			sb_str(&b, l->text);
			sb_str(&b, "\n");
		}
	}
	if (b.oom) {
		free(b.p);
		return vdisk_err_set(err, -ENOMEM, "out of memory");
	}
	*ret_text = b.p;
	if (ret_len)
		*ret_len = b.len;
	return 0;
}

/* ---- editing ---- */

static bool same_identity(const struct pt_identity *a, const struct pt_identity *b)
{
	if (a->kind != b->kind)
		return false;
	switch (a->kind) {
	case PT_ID_WWN:
		return pt_wwn_equal(a->value, b->value);
	case PT_ID_PTUUID:
	case PT_ID_PARTUUID:
	case PT_ID_UUID:
		return strcasecmp(a->value, b->value) == 0;
	default:
		return strcmp(a->value, b->value) == 0;
	}
}

int pt_lunmap_set(struct pt_lunmap *map, const struct pt_lun_entry *e, struct vdisk_err *err)
{
	struct map_line l = { .is_entry = true };
	char slot[PT_SLOT_STRLEN], id[PT_ID_STRLEN];
	ssize_t at;
	int r;

	if (!pt_vm_name_valid(e->vm))
		return vdisk_err_set(err, -EINVAL, "invalid VM name '%.80s'", e->vm);
	if (e->slot.controller > PT_MAX_CONTROLLER || e->slot.target > PT_MAX_TARGET ||
	    e->slot.lun > PT_MAX_LUN)
		return vdisk_err_set(err, -EINVAL, "slot out of range");
	if (!pt_id_kind_name(e->id.kind) || e->id.kind == PT_ID_NONE ||
	    !memchr(e->id.value, '\0', sizeof(e->id.value)) || !pt_id_value_valid(e->id.value))
		return vdisk_err_set(err, -EINVAL, "invalid identity");
	pt_slot_format(&e->slot, slot);
	at = find_line(map, e->vm, &e->slot);
	if (at >= 0) {
		struct pt_lun_entry *old = &map->lines[at].e;
		if (!same_identity(&old->id, &e->id)) {
			pt_identity_format(&old->id, id, sizeof(id));
			return vdisk_err_set(err, -EEXIST, "%s %s holds %s already: unmap it first",
					     e->vm, slot, id);
		}
		old->readonly = e->readonly;
		return 0;
	}
	l.e = *e;
	l.e.line = 0;
	r = add_line(map, &l);
	if (r == 0)
		r = reindex(map);
	return r ? vdisk_err_set(err, r, "out of memory") : 0;
}

int pt_lunmap_remove(struct pt_lunmap *map, const char *vm, const struct pt_slot *slot,
		     struct pt_lun_entry *ret_removed, struct vdisk_err *err)
{
	char s[PT_SLOT_STRLEN];
	ssize_t at = find_line(map, vm, slot);

	if (at < 0) {
		pt_slot_format(slot, s);
		return vdisk_err_set(err, -ENOENT, "%s %s: no LUN mapped there", vm, s);
	}
	if (ret_removed)
		*ret_removed = map->lines[at].e;
	memmove(&map->lines[at], &map->lines[at + 1],
		(map->nlines - (size_t)at - 1) * sizeof(map->lines[0]));
	map->nlines--;
	return reindex(map) ? vdisk_err_set(err, -ENOMEM, "out of memory") : 0;
}

/* ---- conflicts ---- */

bool pt_device_overlaps(const struct pt_device *a, const struct pt_device *b)
{
	if (a->major == b->major && a->minor == b->minor)
		return true;
	return (a->partition && strcmp(a->parent, b->name) == 0) ||
	       (b->partition && strcmp(b->parent, a->name) == 0);
}

const struct pt_lun_entry *pt_lunmap_conflict(const struct pt_lunmap *map,
					      const struct pt_device_list *list,
					      const struct pt_device *dev, const char *vm,
					      const struct pt_slot *slot)
{
	size_t k, i;

	for (k = 0; k < pt_lunmap_count(map); k++) {
		const struct pt_lun_entry *e = pt_lunmap_get(map, k);
		if (vm && slot && strcmp(e->vm, vm) == 0 && slot_equal(&e->slot, slot))
			continue;
		if (pt_device_has_identity(dev, &e->id))
			return e;
		for (i = 0; i < list->count; i++)
			if (pt_device_has_identity(&list->devs[i], &e->id) &&
			    pt_device_overlaps(&list->devs[i], dev))
				return e;
	}
	return NULL;
}
