/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Decode/encode pairs for every fixed VHDX structure: file identifier,
 * headers, region tables, metadata table, log entry header and the parent
 * locator. Checksums are verified over raw bytes before decoding; each
 * decoder says which field is wrong and what it found.
 */
#include <errno.h>
#include <string.h>

#include "byteorder.h"
#include "vhdx-int.h"

#define G(...)                       \
	{                            \
		.b = { __VA_ARGS__ } \
	}
const struct vdisk_guid vhdx_guid_bat_region =
	G(0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42, 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08);
const struct vdisk_guid vhdx_guid_meta_region =
	G(0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e);
const struct vdisk_guid vhdx_guid_file_params =
	G(0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d, 0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b);
const struct vdisk_guid vhdx_guid_disk_size =
	G(0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8);
const struct vdisk_guid vhdx_guid_page83 =
	G(0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45, 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46);
const struct vdisk_guid vhdx_guid_logical_sector =
	G(0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09, 0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f);
const struct vdisk_guid vhdx_guid_physical_sector =
	G(0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71, 0x44, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56);
const struct vdisk_guid vhdx_guid_parent_locator =
	G(0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c);
const struct vdisk_guid vhdx_guid_locator_type_vhdx =
	G(0xb7, 0xef, 0x4a, 0xb0, 0x9e, 0xd1, 0x81, 0x4a, 0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13);
const struct vdisk_guid vhdx_guid_chs =
	G(0xbc, 0xd7, 0x02, 0xda, 0x3a, 0x3d, 0x3c, 0x42, 0xac, 0x88, 0x2a, 0x36, 0xab, 0x21, 0x47, 0x9b);
const struct vdisk_guid vhdx_guid_incomplete =
	G(0xf0, 0x85, 0xcc, 0x71, 0x69, 0x1b, 0x28, 0x4e, 0x95, 0x58, 0xc3, 0xbf, 0x83, 0xae, 0x75, 0xd3);
const struct vdisk_guid vhdx_guid_pmem =
	G(0x8a, 0xae, 0xe1, 0x10, 0x7e, 0x4b, 0x69, 0x41, 0xa4, 0x0f, 0xcd, 0x70, 0xde, 0x92, 0x83, 0x93);
#undef G

/* CRC-32C of @len bytes with the 4-byte checksum field at @csum_off taken as zero. */
static uint32_t crc_with_hole(const uint8_t *buf, size_t len, size_t csum_off)
{
	static const uint8_t zero4[4];
	uint32_t c = vdisk_crc32c(0, buf, csum_off);

	c = vdisk_crc32c(c, zero4, 4);
	return vdisk_crc32c(c, buf + csum_off + 4, len - csum_off - 4);
}

static int check_sig_crc(const uint8_t *buf, size_t len, const char *sig, const char *what,
			 struct vdisk_err *err)
{
	uint32_t stored, calc;

	if (memcmp(buf, sig, 4) != 0)
		return vdisk_err_set(err, -EINVAL, "%s: signature is \"%.4s\", expected \"%s\"",
				     what, (const char *)buf, sig);
	stored = get_le32(buf + 4);
	calc = crc_with_hole(buf, len, 4);
	if (stored != calc)
		return vdisk_err_set(err, -EINVAL,
				     "%s: checksum 0x%08x does not match the content (0x%08x)", what,
				     stored, calc);
	return 0;
}

/* ---- file type identifier (section 3) ---- */

int vhdx_ident_decode(const uint8_t *buf, char *creator, size_t creator_len,
		      struct vdisk_err *err)
{
	size_t n = 0;

	if (memcmp(buf, "vhdxfile", 8) != 0)
		return vdisk_err_set(err, -EINVAL,
				     "file type identifier at 0x0: signature is not \"vhdxfile\"; not a VHDX image");
	while (n < 256 && (buf[8 + 2 * n] || buf[9 + 2 * n]))
		n++;
	if (creator && creator_len) {
		/* 256 UTF-16 units need up to 768 bytes of UTF-8: convert whole, then cut at
		 * a character boundary to fit (a full-length creator is kept, shortened) */
		char full[256 * 3 + 1];
		size_t len;

		if (vhdx_utf16le_to_utf8(buf + 8, 2 * n, full, sizeof(full)) < 0)
			full[0] = '\0';
		len = strlen(full);
		if (len >= creator_len) {
			len = creator_len - 1;
			while (len && ((unsigned char)full[len] & 0xC0) == 0x80)
				len--;
		}
		memcpy(creator, full, len);
		creator[len] = '\0';
	}
	return 0;
}

void vhdx_ident_encode(const char *creator, uint8_t *buf)
{
	memset(buf, 0, VHDX_IDENT_SIZE);
	memcpy(buf, "vhdxfile", 8);
	vhdx_utf8_to_utf16le(creator, buf + 8, 510);
}

/* ---- header (section 4) ---- */

int vhdx_header_decode(const uint8_t *buf, struct vhdx_header *out, struct vdisk_err *err)
{
	int r = check_sig_crc(buf, VHDX_HEADER_SIZE, "head", "header", err);

	if (r < 0)
		return r;
	out->checksum = get_le32(buf + 4);
	out->seq = get_le64(buf + 8);
	memcpy(out->file_write_guid.b, buf + 16, 16);
	memcpy(out->data_write_guid.b, buf + 32, 16);
	memcpy(out->log_guid.b, buf + 48, 16);
	out->log_version = get_le16(buf + 64);
	out->version = get_le16(buf + 66);
	out->log_length = get_le32(buf + 68);
	out->log_offset = get_le64(buf + 72);
	return 0;
}

void vhdx_header_encode(const struct vhdx_header *h, uint8_t *buf)
{
	memset(buf, 0, VHDX_HEADER_SIZE);
	memcpy(buf, "head", 4);
	put_le64(buf + 8, h->seq);
	memcpy(buf + 16, h->file_write_guid.b, 16);
	memcpy(buf + 32, h->data_write_guid.b, 16);
	memcpy(buf + 48, h->log_guid.b, 16);
	put_le16(buf + 64, h->log_version);
	put_le16(buf + 66, h->version);
	put_le32(buf + 68, h->log_length);
	put_le64(buf + 72, h->log_offset);
	put_le32(buf + 4, crc_with_hole(buf, VHDX_HEADER_SIZE, 4));
}

/* ---- region table (section 5) ---- */

int vhdx_region_decode(const uint8_t *buf, struct vhdx_region_table *out, struct vdisk_err *err)
{
	int r = check_sig_crc(buf, VHDX_RT_SIZE, "regi", "region table", err);
	uint32_t count;

	if (r < 0)
		return r;
	count = get_le32(buf + 8);
	if (count > VHDX_RT_MAX_ENTRIES)
		return vdisk_err_set(err, -EINVAL,
				     "region table: EntryCount %u exceeds the maximum of %u", count,
				     VHDX_RT_MAX_ENTRIES);
	out->count = count;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = buf + 16 + 32 * i;
		struct vhdx_region_entry *re = &out->entries[i];
		memcpy(re->guid.b, e, 16);
		re->file_offset = get_le64(e + 16);
		re->length = get_le32(e + 24);
		re->required = get_le32(e + 28);
		if (!IS_ALIGNED(re->file_offset, VHDX_ALIGN) || re->file_offset < VHDX_ALIGN)
			return vdisk_err_set(err, -EINVAL,
					     "region table: entry %u: FileOffset 0x%llx is not a multiple of 1 MiB at or after 1 MiB",
					     i, (unsigned long long)re->file_offset);
		if (!IS_ALIGNED(re->length, VHDX_ALIGN) || re->length == 0)
			return vdisk_err_set(err, -EINVAL,
					     "region table: entry %u: Length 0x%x is not a non-zero multiple of 1 MiB",
					     i, re->length);
		for (uint32_t j = 0; j < i; j++)
			if (vdisk_guid_equal(&out->entries[j].guid, &re->guid))
				return vdisk_err_set(err, -EINVAL,
						     "region table: entries %u and %u have the same GUID",
						     j, i);
	}
	return 0;
}

void vhdx_region_encode(const struct vhdx_region_table *rt, uint8_t *buf)
{
	memset(buf, 0, VHDX_RT_SIZE);
	memcpy(buf, "regi", 4);
	put_le32(buf + 8, rt->count);
	for (uint32_t i = 0; i < rt->count; i++) {
		uint8_t *e = buf + 16 + 32 * i;
		memcpy(e, rt->entries[i].guid.b, 16);
		put_le64(e + 16, rt->entries[i].file_offset);
		put_le32(e + 24, rt->entries[i].length);
		put_le32(e + 28, rt->entries[i].required);
	}
	put_le32(buf + 4, crc_with_hole(buf, VHDX_RT_SIZE, 4));
}

/* ---- metadata table (section 6) ---- */

int vhdx_meta_table_decode(const uint8_t *buf, struct vhdx_meta_table *out, struct vdisk_err *err)
{
	uint16_t count;

	if (memcmp(buf, "metadata", 8) != 0)
		return vdisk_err_set(err, -EINVAL,
				     "metadata table: signature is not \"metadata\"");
	count = get_le16(buf + 10);
	if (count > VHDX_META_MAX_ENTRIES)
		return vdisk_err_set(err, -EINVAL,
				     "metadata table: EntryCount %u exceeds the maximum of %u", count,
				     VHDX_META_MAX_ENTRIES);
	out->count = count;
	for (unsigned i = 0; i < count; i++) {
		const uint8_t *e = buf + 32 + 32 * i;
		struct vhdx_meta_entry *me = &out->entries[i];
		memcpy(me->item_id.b, e, 16);
		me->offset = get_le32(e + 16);
		me->length = get_le32(e + 20);
		me->flags = get_le32(e + 24);
	}
	return 0;
}

void vhdx_meta_table_encode(const struct vhdx_meta_table *mt, uint8_t *buf)
{
	memset(buf, 0, VHDX_META_TABLE_SIZE);
	memcpy(buf, "metadata", 8);
	put_le16(buf + 10, mt->count);
	for (unsigned i = 0; i < mt->count; i++) {
		uint8_t *e = buf + 32 + 32 * i;
		memcpy(e, mt->entries[i].item_id.b, 16);
		put_le32(e + 16, mt->entries[i].offset);
		put_le32(e + 20, mt->entries[i].length);
		put_le32(e + 24, mt->entries[i].flags);
	}
}

/* ---- log entry header (section 10.2) ---- */

int vhdx_log_hdr_decode(const uint8_t *buf, struct vhdx_log_entry_hdr *out)
{
	if (memcmp(buf, "loge", 4) != 0)
		return -EINVAL;
	out->checksum = get_le32(buf + 4);
	out->entry_length = get_le32(buf + 8);
	out->tail = get_le32(buf + 12);
	out->seq = get_le64(buf + 16);
	out->desc_count = get_le32(buf + 24);
	memcpy(out->log_guid.b, buf + 32, 16);
	out->flushed_file_offset = get_le64(buf + 48);
	out->last_file_offset = get_le64(buf + 56);
	return 0;
}

void vhdx_log_hdr_encode(const struct vhdx_log_entry_hdr *h, uint8_t *buf)
{
	memset(buf, 0, VHDX_LOG_ENTRY_HDR_SIZE);
	memcpy(buf, "loge", 4);
	put_le32(buf + 4, h->checksum);
	put_le32(buf + 8, h->entry_length);
	put_le32(buf + 12, h->tail);
	put_le64(buf + 16, h->seq);
	put_le32(buf + 24, h->desc_count);
	memcpy(buf + 32, h->log_guid.b, 16);
	put_le64(buf + 48, h->flushed_file_offset);
	put_le64(buf + 56, h->last_file_offset);
}

/* ---- UTF-16LE ---- */

int vhdx_utf16le_to_utf8(const uint8_t *in, size_t in_len, char *out, size_t out_cap)
{
	size_t o = 0;

	if (in_len % 2 || out_cap == 0)
		return -EINVAL;
	for (size_t i = 0; i + 1 < in_len; i += 2) {
		uint32_t c = get_le16(in + i);
		char tmp[4];
		size_t n;

		if (c >= 0xD800 && c <= 0xDBFF && i + 3 < in_len) {
			uint32_t lo = get_le16(in + i + 2);
			if (lo >= 0xDC00 && lo <= 0xDFFF) {
				c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
				i += 2;
			}
		}
		if (c == 0)
			return -EINVAL;
		if (c < 0x80) {
			tmp[0] = (char)c;
			n = 1;
		} else if (c < 0x800) {
			tmp[0] = (char)(0xC0 | c >> 6);
			tmp[1] = (char)(0x80 | (c & 0x3F));
			n = 2;
		} else if (c < 0x10000) {
			tmp[0] = (char)(0xE0 | c >> 12);
			tmp[1] = (char)(0x80 | ((c >> 6) & 0x3F));
			tmp[2] = (char)(0x80 | (c & 0x3F));
			n = 3;
		} else {
			tmp[0] = (char)(0xF0 | c >> 18);
			tmp[1] = (char)(0x80 | ((c >> 12) & 0x3F));
			tmp[2] = (char)(0x80 | ((c >> 6) & 0x3F));
			tmp[3] = (char)(0x80 | (c & 0x3F));
			n = 4;
		}
		if (o + n + 1 > out_cap)
			return -ENOSPC;
		memcpy(out + o, tmp, n);
		o += n;
	}
	out[o] = '\0';
	return (int)o;
}

int vhdx_utf8_to_utf16le(const char *in, uint8_t *out, size_t out_cap)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	while (*s) {
		uint32_t c;
		int extra;

		if (*s < 0x80) {
			c = *s;
			extra = 0;
		} else if ((*s & 0xE0) == 0xC0) {
			c = *s & 0x1F;
			extra = 1;
		} else if ((*s & 0xF0) == 0xE0) {
			c = *s & 0x0F;
			extra = 2;
		} else if ((*s & 0xF8) == 0xF0) {
			c = *s & 0x07;
			extra = 3;
		} else {
			return -EINVAL;
		}
		s++;
		for (int k = 0; k < extra; k++, s++) {
			if ((*s & 0xC0) != 0x80)
				return -EINVAL;
			c = c << 6 | (*s & 0x3F);
		}
		if (c >= 0x10000) {
			if (o + 4 > out_cap)
				return -ENOSPC;
			c -= 0x10000;
			put_le16(out + o, (uint16_t)(0xD800 + (c >> 10)));
			put_le16(out + o + 2, (uint16_t)(0xDC00 + (c & 0x3FF)));
			o += 4;
		} else {
			if (o + 2 > out_cap)
				return -ENOSPC;
			put_le16(out + o, (uint16_t)c);
			o += 2;
		}
	}
	return (int)o;
}

/* ---- parent locator (section 7) ---- */

int vhdx_locator_decode(const uint8_t *buf, size_t len, struct vhdx_locator *out,
			struct vdisk_err *err)
{
	unsigned count;

	if (len < 20)
		return vdisk_err_set(err, -EINVAL,
				     "parent locator: item is %zu bytes, shorter than its 20-byte header",
				     len);
	memcpy(out->type.b, buf, 16);
	count = get_le16(buf + 18);
	if (count > VHDX_MAX_LOCATOR_ENTRIES || 20 + 12ULL * count > len)
		return vdisk_err_set(err, -EINVAL,
				     "parent locator: KeyValueCount %u does not fit the %zu-byte item (at most %u entries)",
				     count, len, VHDX_MAX_LOCATOR_ENTRIES);
	out->count = count;
	for (unsigned i = 0; i < count; i++) {
		const uint8_t *e = buf + 20 + 12 * i;
		uint32_t ko = get_le32(e), vo = get_le32(e + 4);
		uint16_t kl = get_le16(e + 8), vl = get_le16(e + 10);
		struct vhdx_locator_entry *le = &out->entries[i];

		if (kl == 0 || vl == 0 || (uint64_t)ko + kl > len || (uint64_t)vo + vl > len)
			return vdisk_err_set(err, -EINVAL,
					     "parent locator: entry %u: key (offset %u, %u bytes) or value (offset %u, %u bytes) lies outside the %zu-byte item",
					     i, ko, kl, vo, vl, len);
		if (vhdx_utf16le_to_utf8(buf + ko, kl, le->key, sizeof(le->key)) < 0 ||
		    vhdx_utf16le_to_utf8(buf + vo, vl, le->value, sizeof(le->value)) < 0)
			return vdisk_err_set(err, -EINVAL,
					     "parent locator: entry %u: key or value is not valid UTF-16 or too long",
					     i);
		for (unsigned j = 0; j < i; j++)
			if (strcmp(out->entries[j].key, le->key) == 0)
				return vdisk_err_set(err, -EINVAL,
						     "parent locator: key \"%s\" appears twice", le->key);
	}
	return 0;
}

int vhdx_locator_encode(const struct vhdx_locator *loc, uint8_t *buf, size_t cap)
{
	size_t pos = 20 + 12 * (size_t)loc->count;

	if (pos > cap)
		return -ENOSPC;
	memset(buf, 0, pos);
	memcpy(buf, loc->type.b, 16);
	put_le16(buf + 18, (uint16_t)loc->count);
	for (unsigned i = 0; i < loc->count; i++) {
		uint8_t *e = buf + 20 + 12 * i;
		int kl = vhdx_utf8_to_utf16le(loc->entries[i].key, buf + pos, cap - pos);
		if (kl <= 0)
			return kl < 0 ? kl : -EINVAL;
		put_le32(e, (uint32_t)pos);
		put_le16(e + 8, (uint16_t)kl);
		pos += (size_t)kl;
		int vl = vhdx_utf8_to_utf16le(loc->entries[i].value, buf + pos, cap - pos);
		if (vl <= 0)
			return vl < 0 ? vl : -EINVAL;
		put_le32(e + 4, (uint32_t)pos);
		put_le16(e + 10, (uint16_t)vl);
		pos += (size_t)vl;
	}
	return (int)pos;
}

const char *vhdx_locator_get(const struct vhdx_locator *loc, const char *key)
{
	for (unsigned i = 0; i < loc->count; i++)
		if (strcmp(loc->entries[i].key, key) == 0)
			return loc->entries[i].value;
	return NULL;
}
