/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target for the partition-table decoder of `vdisk mount`
 * (fuse/partition.c: protective MBR, GPT header and entry array with their
 * CRCs, backup GPT, MBR primaries, EBR chains). The input is the disk: its
 * first byte chooses the logical sector size (bit 0 set: 4096, else 512),
 * the rest are the disk's bytes, so a backup GPT sits at the end of the
 * input. The decoder is built into this target from its source, since it
 * lives in the vdisk tool rather than in libvdisk.
 *
 * Besides memory errors, the target aborts when the decoder reads outside
 * the disk, fails on a disk it can read, or returns partitions that break
 * the contract: empty, outside the disk, duplicate numbers, more than
 * VFUSE_MAX_PARTS, or partitions with no table kind.
 *
 * Seeds (tests/fuzz/corpus/partitions/, named after what they reach) are
 * small disks partitioned by sfdisk, prefixed with the sector-size byte:
 *   truncate -s 256K d; printf 'label: gpt\nstart=40,size=100\nstart=200,size=200\n' |
 *     sfdisk -q d; { printf '\0'; cat d; } > gpt-two-partitions
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../fuse/partition.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct disk {
	const uint8_t *p;
	size_t len;
};

static int disk_read(void *opaque, void *buf, size_t len, uint64_t offset)
{
	const struct disk *d = opaque;

	/* the decoder must bound every read by the disk size it was given */
	if (offset > d->len || len > d->len - offset)
		abort();
	memcpy(buf, d->p + offset, len);
	return 0;
}

static void check(const struct vfuse_table *t, uint64_t disk_bytes)
{
	if (t->count > VFUSE_MAX_PARTS || (t->count && t->kind == VFUSE_TABLE_NONE))
		abort();
	if (memchr(t->note, '\0', sizeof(t->note)) == NULL)
		abort();
	for (unsigned i = 0; i < t->count; i++) {
		const struct vfuse_part *p = &t->parts[i];
		if (p->size_bytes == 0 || p->start_bytes >= disk_bytes ||
		    p->size_bytes > disk_bytes - p->start_bytes || p->number == 0)
			abort();
		if (!memchr(p->name, '\0', sizeof(p->name)) || !memchr(p->type, '\0', sizeof(p->type)))
			abort();
		for (unsigned k = 0; k < i; k++)
			if (t->parts[k].number == p->number)
				abort();
		if (vfuse_parts_find(t, p->number) != p)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vfuse_table t; /* 40 KiB: not on the stack */
	struct disk d;
	uint32_t sector;

	if (size < 1)
		return 0;
	sector = (data[0] & 1) ? 4096 : 512;
	d.p = data + 1;
	d.len = size - 1;
	if (vfuse_parts_scan(disk_read, &d, d.len, sector, &t) != 0)
		abort(); /* reads never fail here, so neither may the scan */
	check(&t, d.len);
	/* an unsupported sector size is refused, not guessed */
	if (vfuse_parts_scan(disk_read, &d, d.len, 1024, &t) != -EINVAL)
		abort();
	return 0;
}
