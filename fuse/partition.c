/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * GPT and MBR decoding for `vdisk mount` (see partition.h). The rules are
 * the Linux kernel's (block/partitions/efi.c and msdos.c), so pN here is the
 * partition a host would call sdXN: GPT only behind a protective (or hybrid)
 * MBR entry 0xEE starting at LBA 1, header and entry array CRC-32 checked,
 * backup header at the last LBA when the primary is damaged, entries outside
 * the disk skipped; MBR only when every boot indicator is 0x00 or 0x80, an
 * MBR with a 0xEE entry but no valid GPT has no partitions, logical
 * partitions follow the EBR chain (at most 100 links), and a partition that
 * runs past the end of the disk is truncated. Unlike Linux, extended
 * containers are not exposed (they hold no data).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vdisk/common.h>

#include "byteorder.h"
#include "partition.h"
#include "util.h"

/* MBR (and EBR) layout. */
#define MBR_TABLE_OFFSET 446
#define MBR_ENTRY_SIZE 16
#define MBR_SIG_OFFSET 510
#define MBR_TYPE_GPT 0xEE
#define MBR_MAX_EBR_LINKS 100

/* GPT header (UEFI 2.x, 5.3.2) and entry (5.3.3) layout. */
#define GPT_SIGNATURE "EFI PART"
#define GPT_HDR_MIN_SIZE 92
#define GPT_HDR_SIZE_OFF 12
#define GPT_HDR_CRC_OFF 16
#define GPT_HDR_MY_LBA_OFF 24
#define GPT_HDR_FIRST_USABLE_OFF 40
#define GPT_HDR_LAST_USABLE_OFF 48
#define GPT_HDR_ENTRIES_LBA_OFF 72
#define GPT_HDR_NUM_ENTRIES_OFF 80
#define GPT_HDR_ENTRY_SIZE_OFF 84
#define GPT_HDR_ENTRIES_CRC_OFF 88
#define GPT_ENTRY_MIN_SIZE 128
#define GPT_ENTRY_MAX_SIZE 4096
#define GPT_MAX_TABLE_BYTES (4u << 20)
#define GPT_ENTRY_FIRST_LBA_OFF 32
#define GPT_ENTRY_LAST_LBA_OFF 40
#define GPT_ENTRY_NAME_OFF 56
#define GPT_ENTRY_NAME_UNITS 36

struct scan {
	vfuse_read_fn read;
	void *opaque;
	uint64_t disk_bytes;
	uint32_t lsec;
	struct vfuse_table *t;
	uint8_t *sec; /* one sector */
};

uint32_t vfuse_crc32(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

static void note(struct vfuse_table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(struct vfuse_table *t, const char *fmt, ...)
{
	va_list ap;

	if (t->note[0])
		return; /* the first reason is the useful one */
	va_start(ap, fmt);
	vsnprintf(t->note, sizeof(t->note), fmt, ap);
	va_end(ap);
}

/* Reads sector @lba into s->sec; -ERANGE when it is not inside the disk. */
static int read_sector(struct scan *s, uint64_t lba)
{
	uint64_t off, end;

	if (mul_overflows_u64(lba, s->lsec, &off) || add_overflows_u64(off, s->lsec, &end) ||
	    end > s->disk_bytes)
		return -ERANGE;
	return s->read(s->opaque, s->sec, s->lsec, off);
}

static bool add_part(struct scan *s, unsigned number, uint64_t start, uint64_t size,
		     const char *type)
{
	struct vfuse_table *t = s->t;
	struct vfuse_part *p;

	if (size == 0 || start >= s->disk_bytes)
		return false;
	if (size > s->disk_bytes - start) {
		note(t, "partition %u runs past the end of the disk: truncated", number);
		size = s->disk_bytes - start;
	}
	if (t->count == VFUSE_MAX_PARTS) {
		note(t, "more than %d partitions: the rest are not shown", VFUSE_MAX_PARTS);
		return false;
	}
	p = &t->parts[t->count++];
	memset(p, 0, sizeof(*p));
	p->number = number;
	p->start_bytes = start;
	p->size_bytes = size;
	snprintf(p->type, sizeof(p->type), "%s", type);
	return true;
}

/* ---- GPT ---- */

/* UTF-16LE (36 units, NUL-terminated early) to UTF-8; bad surrogates become U+FFFD. */
static void gpt_name(const uint8_t *in, char *out, size_t cap)
{
	size_t o = 0;

	for (unsigned i = 0; i < GPT_ENTRY_NAME_UNITS; i++) {
		uint32_t c = get_le16(in + 2 * i);
		if (c == 0)
			break;
		if (c >= 0xD800 && c <= 0xDBFF && i + 1 < GPT_ENTRY_NAME_UNITS) {
			uint32_t lo = get_le16(in + 2 * (i + 1));
			if (lo >= 0xDC00 && lo <= 0xDFFF) {
				c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
				i++;
			} else {
				c = 0xFFFD;
			}
		} else if (c >= 0xD800 && c <= 0xDFFF) {
			c = 0xFFFD;
		}
		if (o + 5 > cap)
			break;
		if (c < 0x80) {
			out[o++] = (char)c;
		} else if (c < 0x800) {
			out[o++] = (char)(0xC0 | c >> 6);
			out[o++] = (char)(0x80 | (c & 0x3F));
		} else if (c < 0x10000) {
			out[o++] = (char)(0xE0 | c >> 12);
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (c & 0x3F));
		} else {
			out[o++] = (char)(0xF0 | c >> 18);
			out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
			out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
			out[o++] = (char)(0x80 | (c & 0x3F));
		}
	}
	out[o] = '\0';
}

struct gpt_hdr {
	uint64_t first_usable, last_usable, entries_lba;
	uint32_t num_entries, entry_size, entries_crc;
};

/* Decodes and validates the header in s->sec, read from @lba. */
static bool gpt_header_valid(struct scan *s, uint64_t lba, struct gpt_hdr *h)
{
	uint64_t last_lba = s->disk_bytes / s->lsec - 1, table_bytes, end;
	uint8_t *b = s->sec;
	uint32_t size, crc;

	if (memcmp(b, GPT_SIGNATURE, 8) != 0)
		return false;
	size = get_le32(b + GPT_HDR_SIZE_OFF);
	if (size < GPT_HDR_MIN_SIZE || size > s->lsec) {
		note(s->t, "GPT header at LBA %llu: size %u", (unsigned long long)lba, size);
		return false;
	}
	crc = get_le32(b + GPT_HDR_CRC_OFF);
	put_le32(b + GPT_HDR_CRC_OFF, 0);
	if (vfuse_crc32(0, b, size) != crc) {
		note(s->t, "GPT header at LBA %llu: bad CRC", (unsigned long long)lba);
		return false;
	}
	if (get_le64(b + GPT_HDR_MY_LBA_OFF) != lba)
		return false;
	h->first_usable = get_le64(b + GPT_HDR_FIRST_USABLE_OFF);
	h->last_usable = get_le64(b + GPT_HDR_LAST_USABLE_OFF);
	h->entries_lba = get_le64(b + GPT_HDR_ENTRIES_LBA_OFF);
	h->num_entries = get_le32(b + GPT_HDR_NUM_ENTRIES_OFF);
	h->entry_size = get_le32(b + GPT_HDR_ENTRY_SIZE_OFF);
	h->entries_crc = get_le32(b + GPT_HDR_ENTRIES_CRC_OFF);
	if (h->first_usable > h->last_usable || h->last_usable > last_lba) {
		note(s->t, "GPT header at LBA %llu: usable LBAs %llu..%llu outside the disk",
		     (unsigned long long)lba, (unsigned long long)h->first_usable,
		     (unsigned long long)h->last_usable);
		return false;
	}
	/* UEFI: 128 * 2^n bytes per entry */
	if (h->entry_size < GPT_ENTRY_MIN_SIZE || h->entry_size > GPT_ENTRY_MAX_SIZE ||
	    h->entry_size % GPT_ENTRY_MIN_SIZE || !IS_POW2(h->entry_size / GPT_ENTRY_MIN_SIZE) ||
	    h->num_entries == 0) {
		note(s->t, "GPT header at LBA %llu: %u entries of %u bytes", (unsigned long long)lba,
		     h->num_entries, h->entry_size);
		return false;
	}
	table_bytes = (uint64_t)h->num_entries * h->entry_size;
	if (table_bytes > GPT_MAX_TABLE_BYTES ||
	    mul_overflows_u64(h->entries_lba, s->lsec, &end) ||
	    add_overflows_u64(end, table_bytes, &end) || end > s->disk_bytes || h->entries_lba < 1) {
		note(s->t, "GPT header at LBA %llu: entry array at LBA %llu (%llu bytes) outside the disk",
		     (unsigned long long)lba, (unsigned long long)h->entries_lba,
		     (unsigned long long)table_bytes);
		return false;
	}
	return true;
}

static int gpt_entries(struct scan *s, const struct gpt_hdr *h, uint64_t last_lba)
{
	size_t len = (size_t)h->num_entries * h->entry_size;
	uint8_t *tab = malloc(len);
	static const uint8_t zero_guid[16];
	int r;

	if (!tab)
		return -ENOMEM;
	r = s->read(s->opaque, tab, len, h->entries_lba * s->lsec);
	if (r < 0)
		goto out;
	if (vfuse_crc32(0, tab, len) != h->entries_crc) {
		note(s->t, "GPT entry array at LBA %llu: bad CRC", (unsigned long long)h->entries_lba);
		r = 1; /* not valid: try the other header */
		goto out;
	}
	s->t->kind = VFUSE_TABLE_GPT;
	s->t->sector_bytes = s->lsec;
	for (uint32_t i = 0; i < h->num_entries; i++) {
		const uint8_t *e = tab + (size_t)i * h->entry_size;
		uint64_t first = get_le64(e + GPT_ENTRY_FIRST_LBA_OFF);
		uint64_t last = get_le64(e + GPT_ENTRY_LAST_LBA_OFF);
		struct vdisk_guid type;
		char text[VDISK_GUID_STRLEN];

		if (memcmp(e, zero_guid, 16) == 0)
			continue;
		if (first > last || last > last_lba) {
			note(s->t, "GPT entry %u: LBAs %llu..%llu outside the disk: skipped", i + 1,
			     (unsigned long long)first, (unsigned long long)last);
			continue;
		}
		memcpy(type.b, e, 16);
		vdisk_guid_format(&type, text);
		/* last <= last_lba < disk_bytes / lsec: no overflow */
		if (add_part(s, i + 1, first * s->lsec, (last - first + 1) * s->lsec, text))
			gpt_name(e + GPT_ENTRY_NAME_OFF, s->t->parts[s->t->count - 1].name,
				 sizeof(s->t->parts[0].name));
	}
	r = 0;
out:
	free(tab);
	return r;
}

/* Returns 0 when a GPT was decoded, 1 when there is none at this sector size, or -errno. */
static int scan_gpt(struct scan *s)
{
	uint64_t last_lba;
	struct gpt_hdr h;
	int r;

	if (s->disk_bytes / s->lsec < 3)
		return 1;
	last_lba = s->disk_bytes / s->lsec - 1;
	r = read_sector(s, 1);
	if (r < 0)
		return r;
	if (gpt_header_valid(s, 1, &h)) {
		r = gpt_entries(s, &h, last_lba);
		if (r <= 0)
			return r;
	}
	r = read_sector(s, last_lba);
	if (r < 0)
		return r;
	if (!gpt_header_valid(s, last_lba, &h))
		return 1;
	r = gpt_entries(s, &h, last_lba);
	if (r == 0)
		s->t->gpt_backup = true;
	return r;
}

/* ---- MBR ---- */

struct mbr_entry {
	uint8_t boot, type;
	uint32_t start, count; /* sectors */
};

static void mbr_decode(const uint8_t *sec, struct mbr_entry e[4])
{
	for (int i = 0; i < 4; i++) {
		const uint8_t *p = sec + MBR_TABLE_OFFSET + MBR_ENTRY_SIZE * i;
		e[i].boot = p[0];
		e[i].type = p[4];
		e[i].start = get_le32(p + 8);
		e[i].count = get_le32(p + 12);
	}
}

static bool mbr_signature(const uint8_t *sec)
{
	return sec[MBR_SIG_OFFSET] == 0x55 && sec[MBR_SIG_OFFSET + 1] == 0xAA;
}

static bool is_extended(uint8_t type)
{
	return type == 0x05 || type == 0x0F || type == 0x85;
}

/* Logical partitions: the EBR chain of the extended partition at [@first, +@size) sectors. */
static int scan_extended(struct scan *s, uint64_t first, uint64_t size, unsigned *next_number)
{
	uint64_t this = first, this_size = size;

	for (int links = 0; links < MBR_MAX_EBR_LINKS; links++) {
		struct mbr_entry e[4];
		char type[8];
		int i, r = read_sector(s, this);

		if (r == -ERANGE)
			return 0;
		if (r < 0)
			return r;
		if (!mbr_signature(s->sec))
			return 0;
		mbr_decode(s->sec, e);
		for (i = 0; i < 4; i++) {
			uint64_t start = this + e[i].start;
			if (!e[i].count || is_extended(e[i].type))
				continue;
			/* the 3rd and 4th entries sometimes hold garbage: keep them inside */
			if (i >= 2 && ((uint64_t)e[i].start + e[i].count > this_size ||
				       start + e[i].count > first + size))
				continue;
			snprintf(type, sizeof(type), "0x%02x", e[i].type);
			if (add_part(s, *next_number, start * s->lsec, (uint64_t)e[i].count * s->lsec,
				     type))
				(*next_number)++;
		}
		for (i = 0; i < 4; i++)
			if (e[i].count && is_extended(e[i].type))
				break;
		if (i == 4)
			return 0;
		this = first + e[i].start;
		this_size = e[i].count;
	}
	note(s->t, "more than %d extended boot records: the rest are ignored", MBR_MAX_EBR_LINKS);
	return 0;
}

static int scan_mbr(struct scan *s, const struct mbr_entry e[4])
{
	unsigned next = 5;
	char type[8];
	int r;

	s->t->kind = VFUSE_TABLE_MBR;
	s->t->sector_bytes = s->lsec;
	for (int i = 0; i < 4; i++) {
		if (!e[i].count || !e[i].type)
			continue;
		if (is_extended(e[i].type)) {
			r = scan_extended(s, e[i].start, e[i].count, &next);
			if (r < 0)
				return r;
			continue;
		}
		snprintf(type, sizeof(type), "0x%02x", e[i].type);
		add_part(s, (unsigned)i + 1, (uint64_t)e[i].start * s->lsec,
			 (uint64_t)e[i].count * s->lsec, type);
	}
	return 0;
}

/* MBR tables list logical partitions before later primaries: order them as pN names read. */
static void sort_by_number(struct vfuse_table *t)
{
	for (unsigned i = 1; i < t->count; i++) {
		struct vfuse_part p = t->parts[i];
		unsigned k = i;

		for (; k > 0 && t->parts[k - 1].number > p.number; k--)
			t->parts[k] = t->parts[k - 1];
		t->parts[k] = p;
	}
}

static void reset(struct vfuse_table *t)
{
	t->kind = VFUSE_TABLE_NONE;
	t->count = 0;
	t->gpt_backup = false;
}

int vfuse_parts_scan(vfuse_read_fn read, void *opaque, uint64_t disk_bytes,
		     uint32_t sector_bytes, struct vfuse_table *ret_table)
{
	struct scan s = { .read = read, .opaque = opaque, .disk_bytes = disk_bytes,
			  .lsec = sector_bytes, .t = ret_table };
	struct mbr_entry e[4];
	bool has_gpt_entry = false, protective = false;
	int r;

	memset(ret_table, 0, sizeof(*ret_table));
	if (sector_bytes != 512 && sector_bytes != 4096)
		return -EINVAL;
	if (disk_bytes < sector_bytes)
		return 0;
	s.sec = malloc(4096);
	if (!s.sec)
		return -ENOMEM;
	r = read_sector(&s, 0);
	if (r < 0)
		goto out;
	if (!mbr_signature(s.sec))
		goto out; /* no table */
	mbr_decode(s.sec, e);
	for (int i = 0; i < 4; i++) {
		if (e[i].boot != 0 && e[i].boot != 0x80) {
			note(s.t, "MBR entry %d: boot indicator 0x%02x: not a partition table", i + 1,
			     e[i].boot);
			goto out;
		}
		if (e[i].type == MBR_TYPE_GPT) {
			has_gpt_entry = true;
			protective |= e[i].start == 1;
		}
	}
	if (!has_gpt_entry) {
		r = scan_mbr(&s, e);
		goto out;
	}
	if (!protective) {
		note(s.t, "MBR entry 0xEE does not start at LBA 1: no partitions");
		goto out;
	}
	r = scan_gpt(&s);
	if (r == 1 && sector_bytes == 4096) {
		/* a table written by a tool that took the image file for a 512-byte disk */
		reset(s.t);
		s.lsec = 512;
		r = scan_gpt(&s);
	}
	if (r == 1) {
		note(s.t, "protective MBR without a valid GPT: no partitions");
		reset(s.t);
		r = 0;
	}
out:
	if (r < 0)
		reset(s.t);
	sort_by_number(s.t);
	free(s.sec);
	return r < 0 ? r : 0;
}

const struct vfuse_part *vfuse_parts_find(const struct vfuse_table *t, unsigned number)
{
	for (unsigned i = 0; i < t->count; i++)
		if (t->parts[i].number == number)
			return &t->parts[i];
	return NULL;
}
