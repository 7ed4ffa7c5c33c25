/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guest memory and split virtqueues, device side (virtq.c): the memory
 * table from VHOST_USER_SET_MEM_TABLE with bounds-checked address
 * translation, the descriptor-chain walker (direct and indirect tables,
 * loops, out-of-memory addresses and layout rules all rejected), and the
 * avail/used ring operations with EVENT_IDX. Free of the rest of the daemon
 * so the fuzz target can build it alone.
 */
#ifndef VSP_VIRTQ_H
#define VSP_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vhost-user-proto.h"

#define VIRTQ_MAX_IOV 260 /* segments of one chain, header and status included */

struct vsp_mem_region {
	uint64_t gpa;       /* guest physical address */
	uint64_t size;
	uint64_t uva;       /* the front end's virtual address */
	uint8_t *hva;       /* our mapping of gpa */
	void *map;          /* mmap() result and length, for munmap */
	uint64_t map_len;
};

struct vsp_mem {
	unsigned n;
	struct vsp_mem_region r[VHOST_USER_MAX_REGIONS];
};

/* Host pointer of guest-physical [gpa, gpa+len) when it lies in one region, else NULL. */
void *vsp_gpa_to_hva(const struct vsp_mem *m, uint64_t gpa, uint64_t len);
/* Host pointer of front-end-virtual [uva, uva+len) when it lies in one region, else NULL. */
void *vsp_uva_to_hva(const struct vsp_mem *m, uint64_t uva, uint64_t len);

struct vsp_vring {
	unsigned num;        /* entries, a power of two */
	uint8_t *desc;       /* host pointers, validated at setup */
	uint8_t *avail;
	uint8_t *used;
	uint16_t last_avail; /* next avail entry to consume */
	uint16_t used_idx;   /* our copy of used->idx */
	uint16_t signalled;  /* used idx at the last interrupt */
	bool signalled_valid;
	bool event_idx;
	bool indirect;
};

/* A walked chain: device-readable segments first, then device-writable ones. */
struct vsp_chain {
	struct iovec iov[VIRTQ_MAX_IOV];
	unsigned n_out, n_in;
	uint64_t out_bytes, in_bytes;
};

/*
 * Sets up @vr from the front end's ring addresses: each part must lie in one
 * region and be aligned (desc 16, avail 2, used 4). 0 or -EINVAL/-EFAULT.
 */
int vsp_vring_setup(struct vsp_vring *vr, const struct vsp_mem *m, unsigned num,
		    uint64_t desc_uva, uint64_t avail_uva, uint64_t used_uva);

/*
 * Walks the chain starting at @head into @c. Returns 0, -EINVAL (bad
 * index, loop, nested or malformed indirect table, readable after writable),
 * -EFAULT (an address outside guest memory) or -E2BIG (too many segments).
 */
int vsp_virtq_walk(const struct vsp_mem *m, const struct vsp_vring *vr, uint16_t head,
		   struct vsp_chain *c);

/* Next head from the avail ring: 1 (in *ret_head), 0 when empty, -EINVAL when the index is bogus. */
int vsp_virtq_pop(struct vsp_vring *vr, uint16_t *ret_head);
/* True when the avail ring holds entries we have not consumed. */
bool vsp_virtq_has_avail(const struct vsp_vring *vr);
/* Adds a used element (not yet visible to the driver). */
void vsp_virtq_push(struct vsp_vring *vr, uint16_t head, uint32_t len);
/* Publishes the used elements; returns true when the driver wants an interrupt. */
bool vsp_virtq_flush(struct vsp_vring *vr, uint16_t old_used);
/* Asks for (true) or suppresses (false) kicks; a full barrier follows. */
void vsp_virtq_notify_enable(struct vsp_vring *vr, bool enable);
/* used->idx as the guest sees it. */
uint16_t vsp_virtq_used_idx(const struct vsp_vring *vr);

#endif /* VSP_VIRTQ_H */
