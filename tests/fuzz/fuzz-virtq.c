/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target for the split-virtqueue device side (vsp-storage/virtq.c) and
 * the virtio-blk request decoder (vsp-storage/virtio_blk.c). The input is
 * guest memory: byte 0 holds options (bit 0 indirect descriptors, bit 1
 * EVENT_IDX, bits 4-7 log2 of the ring size), the rest fills two regions of
 * 32 KiB each, mapped from separate allocations so a segment that runs
 * across regions is caught. The ring sits at the start of region 0
 * (descriptors, then avail, then used). Every head the avail ring offers
 * is walked and decoded, and every byte of every resulting segment is read
 * and written, so ASan sees any pointer outside guest memory.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../vsp-storage/virtq.c"
#include "../../vsp-storage/virtio_blk.c"

#define REGION 32768

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vsp_chain chain;
	static struct vsp_blk_parsed parsed;
	struct vsp_mem mem = { 0 };
	struct vsp_vring vr = { 0 };
	uint8_t *r0, *r1, opt;
	unsigned num, budget = 64;
	volatile uint8_t sink = 0;

	if (size < 1)
		return 0;
	opt = data[0];
	data++;
	size--;
	r0 = calloc(1, REGION);
	r1 = calloc(1, REGION);
	if (!r0 || !r1)
		goto out;
	memcpy(r0, data, size < REGION ? size : REGION);
	if (size > REGION)
		memcpy(r1, data + REGION, size - REGION < REGION ? size - REGION : REGION);
	mem.n = 2;
	mem.r[0] = (struct vsp_mem_region){ .gpa = 0, .size = REGION, .uva = 0x10000, .hva = r0 };
	mem.r[1] = (struct vsp_mem_region){ .gpa = REGION, .size = REGION, .uva = 0x10000 + REGION,
					    .hva = r1 };
	num = 1u << ((opt >> 4) % 9); /* 1 .. 256 */
	if (vsp_vring_setup(&vr, &mem, num, 0x10000, 0x10000 + 16 * num,
			    0x10000 + ((16 * num + 6 + 2 * num + 3) & ~3u)) < 0)
		goto out;
	vr.indirect = opt & 1;
	vr.event_idx = opt & 2;
	for (;;) {
		uint16_t head, old = vr.used_idx;
		int r = vsp_virtq_pop(&vr, &head);

		if (r <= 0 || budget-- == 0)
			break;
		if (vsp_virtq_walk(&mem, &vr, head, &chain) == 0) {
			for (unsigned i = 0; i < chain.n_out + chain.n_in; i++) {
				uint8_t *p = chain.iov[i].iov_base;
				for (size_t k = 0; k < chain.iov[i].iov_len; k++)
					sink ^= p[k];
				if (i >= chain.n_out && chain.iov[i].iov_len)
					p[chain.iov[i].iov_len - 1] ^= 0x5a;
			}
			if (vsp_blk_parse(&chain, &parsed) == 0) {
				uint8_t segs[VIRTIO_BLK_SEG_SIZE * 4];
				*parsed.status = VIRTIO_BLK_S_OK;
				vsp_blk_gather(segs, parsed.out, parsed.out_cnt, sizeof(segs));
				for (unsigned i = 0; i < parsed.in_cnt; i++)
					memset(parsed.in[i].iov_base, 0, parsed.in[i].iov_len);
			}
		}
		vsp_virtq_push(&vr, head, 1);
		vsp_virtq_flush(&vr, old);
	}
	vsp_virtq_notify_enable(&vr, true);
	vsp_virtq_notify_enable(&vr, false);
out:
	free(r0);
	free(r1);
	(void)sink;
	return 0;
}
