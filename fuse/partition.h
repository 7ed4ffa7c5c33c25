/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Partition tables of a virtual disk, as `vdisk mount` exposes them: GPT
 * (primary header, else the backup at the last LBA) behind a protective or
 * hybrid MBR, and MBR (four primary entries plus the logical partitions in
 * each extended partition). Decoded from bytes fetched through a callback,
 * so the same code runs on any image format and under the fuzzer; every
 * count, LBA and length read from the disk is bounded before use. Numbering
 * follows Linux: GPT slot + 1, MBR 1-4 primary and 5.. logical. An invalid
 * or absent table is not an error: the disk then has no partitions.
 */
#ifndef VFUSE_PARTITION_H
#define VFUSE_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VFUSE_MAX_PARTS 256

enum vfuse_table_kind {
	VFUSE_TABLE_NONE = 0,
	VFUSE_TABLE_MBR = 1,
	VFUSE_TABLE_GPT = 2,
};

struct vfuse_part {
	unsigned number;      /* Linux numbering: pNUMBER */
	uint64_t start_bytes; /* offset in the virtual disk */
	uint64_t size_bytes;  /* > 0; start_bytes + size_bytes <= disk size */
	char type[40];        /* GPT type GUID (lower case) or MBR type ("0x83") */
	char name[112];       /* GPT partition name as UTF-8, "" for MBR */
};

struct vfuse_table {
	enum vfuse_table_kind kind;
	uint32_t sector_bytes; /* logical sector size the table was decoded with */
	bool gpt_backup;       /* the primary GPT header was damaged: the backup was used */
	unsigned count;
	struct vfuse_part parts[VFUSE_MAX_PARTS];
	char note[160];        /* why a table was rejected or partly ignored; "" when clean */
};

/* Reads exactly @len bytes at @offset of the disk. Returns 0 or -errno. */
typedef int (*vfuse_read_fn)(void *opaque, void *buf, size_t len, uint64_t offset);

/*
 * Finds the partitions of a disk of @disk_bytes bytes with logical sectors of
 * @sector_bytes (512 or 4096). A GPT written for 512-byte sectors on a 4096
 * disk (tools that treat an image file as 512-byte) is found too. Fills
 * @ret_table (kind NONE and count 0 when there is no valid table). Returns 0,
 * or -errno when @read fails or @sector_bytes is unsupported.
 */
int vfuse_parts_scan(vfuse_read_fn read, void *opaque, uint64_t disk_bytes,
		     uint32_t sector_bytes, struct vfuse_table *ret_table);

/* The partition numbered @number in @t, or NULL. */
const struct vfuse_part *vfuse_parts_find(const struct vfuse_table *t, unsigned number);

/* CRC-32 (IEEE 802.3, as GPT uses it); crc32(0, "123456789", 9) == 0xCBF43926. */
uint32_t vfuse_crc32(uint32_t crc, const void *buf, size_t len);

#endif /* VFUSE_PARTITION_H */
