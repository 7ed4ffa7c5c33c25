/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Split virtqueues, device side (VIRTIO 1.2 section 2.7). Everything the
 * guest wrote is untrusted: each descriptor is copied out of guest memory
 * once, then checked (index in range, address range inside one memory
 * region, at most one indirect level, a chain no longer than its table,
 * device-readable segments before device-writable ones) before anything
 * points into guest memory. Ring indices are loaded with acquire and
 * published with release ordering; interrupts follow EVENT_IDX when
 * negotiated (2.7.7, 2.7.10).
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "virtq.h"

static void *region_ptr(const struct vsp_mem_region *r, uint64_t base, uint64_t addr, uint64_t len)
{
	uint64_t off;

	if (addr < base)
		return NULL;
	off = addr - base;
	if (off >= r->size || len > r->size - off)
		return NULL;
	return r->hva + off;
}

void *vsp_gpa_to_hva(const struct vsp_mem *m, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < m->n; i++) {
		void *p = region_ptr(&m->r[i], m->r[i].gpa, gpa, len);
		if (p)
			return p;
	}
	return NULL;
}

void *vsp_uva_to_hva(const struct vsp_mem *m, uint64_t uva, uint64_t len)
{
	for (unsigned i = 0; i < m->n; i++) {
		void *p = region_ptr(&m->r[i], m->r[i].uva, uva, len);
		if (p)
			return p;
	}
	return NULL;
}

int vsp_vring_setup(struct vsp_vring *vr, const struct vsp_mem *m, unsigned num,
		    uint64_t desc_uva, uint64_t avail_uva, uint64_t used_uva)
{
	uint8_t *d, *a, *u;

	if (num == 0 || num > VRING_MAX_SIZE || (num & (num - 1)))
		return -EINVAL;
	if (desc_uva % 16 || avail_uva % 2 || used_uva % 4)
		return -EINVAL;
	d = vsp_uva_to_hva(m, desc_uva, vring_desc_bytes(num));
	a = vsp_uva_to_hva(m, avail_uva, vring_avail_bytes(num));
	u = vsp_uva_to_hva(m, used_uva, vring_used_bytes(num));
	if (!d || !a || !u)
		return -EFAULT;
	/* mappings are page aligned, so host alignment follows the front end's */
	if ((uintptr_t)d % 16 || (uintptr_t)a % 2 || (uintptr_t)u % 4)
		return -EINVAL;
	vr->num = num;
	vr->desc = d;
	vr->avail = a;
	vr->used = u;
	return 0;
}

/*
 * Adds guest-physical [addr, addr+len) to the chain after its @*nseg
 * segments, split at region boundaries. 0 or -errno.
 */
static int add_segment(const struct vsp_mem *m, struct vsp_chain *c, unsigned *nseg,
		       uint64_t addr, uint32_t len)
{
	while (len > 0) {
		const struct vsp_mem_region *r = NULL;
		uint64_t room, n;

		for (unsigned i = 0; i < m->n; i++)
			if (addr >= m->r[i].gpa && addr - m->r[i].gpa < m->r[i].size) {
				r = &m->r[i];
				break;
			}
		if (!r)
			return -EFAULT;
		if (*nseg == VIRTQ_MAX_IOV)
			return -E2BIG;
		room = r->size - (addr - r->gpa);
		n = len < room ? len : room;
		c->iov[*nseg].iov_base = r->hva + (addr - r->gpa);
		c->iov[*nseg].iov_len = n;
		(*nseg)++;
		addr += n;
		len -= (uint32_t)n;
		if (len > 0 && addr == 0)
			return -EFAULT; /* wrapped around the address space */
	}
	return 0;
}

int vsp_virtq_walk(const struct vsp_mem *m, const struct vsp_vring *vr, uint16_t head,
		   struct vsp_chain *c)
{
	const uint8_t *table = vr->desc;
	unsigned count = vr->num, seen = 0, nseg = 0;
	uint16_t idx = head;
	bool indirect = false;

	c->n_out = c->n_in = 0;
	c->out_bytes = c->in_bytes = 0;
	if (head >= vr->num)
		return -EINVAL;
	for (;;) {
		uint8_t d[VRING_DESC_SIZE];
		unsigned before = nseg;
		uint64_t addr;
		uint32_t len;
		uint16_t flags, next;
		int r;

		if (++seen > count)
			return -EINVAL; /* a loop, or a chain longer than its table */
		/* one copy: the guest may change the descriptor while we look at it */
		memcpy(d, table + (size_t)idx * VRING_DESC_SIZE, sizeof(d));
		addr = le64_ld(d);
		len = le32_ld(d + 8);
		flags = le16_ld(d + 12);
		next = le16_ld(d + 14);
		if (flags & VRING_DESC_F_INDIRECT) {
			/* 2.7.5.3: one level, never with NEXT, a whole number of descriptors */
			if (indirect || !vr->indirect || (flags & VRING_DESC_F_NEXT))
				return -EINVAL;
			if (len == 0 || len % VRING_DESC_SIZE ||
			    len / VRING_DESC_SIZE > VRING_MAX_INDIRECT)
				return -EINVAL;
			table = vsp_gpa_to_hva(m, addr, len);
			if (!table)
				return -EFAULT;
			count = len / VRING_DESC_SIZE;
			idx = 0;
			seen = 0;
			indirect = true;
			continue;
		}
		if (!(flags & VRING_DESC_F_WRITE) && c->n_in > 0)
			return -EINVAL; /* 2.7.4.2: device-readable after device-writable */
		r = add_segment(m, c, &nseg, addr, len);
		if (r < 0)
			return r;
		if (flags & VRING_DESC_F_WRITE) {
			c->n_in += nseg - before;
			c->in_bytes += len;
		} else {
			c->n_out += nseg - before;
			c->out_bytes += len;
		}
		if (!(flags & VRING_DESC_F_NEXT))
			break;
		if (next >= count)
			return -EINVAL;
		idx = next;
	}
	return 0;
}

/* ---- rings ---- */

static inline uint16_t *avail_idx_p(const struct vsp_vring *vr)
{
	return (uint16_t *)(vr->avail + 2);
}

static inline uint16_t *used_idx_p(const struct vsp_vring *vr)
{
	return (uint16_t *)(vr->used + 2);
}

bool vsp_virtq_has_avail(const struct vsp_vring *vr)
{
	uint16_t a = le16toh(__atomic_load_n(avail_idx_p(vr), __ATOMIC_ACQUIRE));

	return a != vr->last_avail;
}

int vsp_virtq_pop(struct vsp_vring *vr, uint16_t *ret_head)
{
	uint16_t a = le16toh(__atomic_load_n(avail_idx_p(vr), __ATOMIC_ACQUIRE));

	if (a == vr->last_avail)
		return 0;
	if ((uint16_t)(a - vr->last_avail) > vr->num)
		return -EINVAL; /* the driver claims more entries than the ring has */
	*ret_head = le16_ld(vr->avail + 4 + 2 * (vr->last_avail & (vr->num - 1)));
	vr->last_avail++;
	return 1;
}

void vsp_virtq_push(struct vsp_vring *vr, uint16_t head, uint32_t len)
{
	uint8_t *e = vr->used + 4 + 8 * (size_t)(vr->used_idx & (vr->num - 1));

	le32_st(e, head);
	le32_st(e + 4, len);
	vr->used_idx++;
}

uint16_t vsp_virtq_used_idx(const struct vsp_vring *vr)
{
	return le16toh(__atomic_load_n(used_idx_p(vr), __ATOMIC_ACQUIRE));
}

/* 2.7.10.1: interrupt when the new used index passes used_event. */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool vsp_virtq_flush(struct vsp_vring *vr, uint16_t old_used)
{
	uint16_t new_idx = vr->used_idx;

	if (new_idx == old_used)
		return false;
	__atomic_store_n(used_idx_p(vr), htole16(new_idx), __ATOMIC_RELEASE);
	/* the driver's used_event/flags must be read after our index is visible */
	atomic_thread_fence(memory_order_seq_cst);
	if (!vr->event_idx)
		return !(le16_ld(vr->avail) & VRING_AVAIL_F_NO_INTERRUPT);
	{
		uint16_t ev = le16toh(__atomic_load_n((uint16_t *)(vr->avail + 4 + 2 * vr->num),
						      __ATOMIC_ACQUIRE));
		uint16_t old = vr->signalled;
		bool valid = vr->signalled_valid;

		vr->signalled = new_idx;
		vr->signalled_valid = true;
		return !valid || need_event(ev, new_idx, old);
	}
}

void vsp_virtq_notify_enable(struct vsp_vring *vr, bool enable)
{
	if (vr->event_idx) {
		if (enable)
			__atomic_store_n((uint16_t *)(vr->used + 4 + 8 * vr->num),
					 htole16(vr->last_avail), __ATOMIC_RELEASE);
	} else {
		uint16_t f = enable ? 0 : VRING_USED_F_NO_NOTIFY;
		__atomic_store_n((uint16_t *)vr->used, htole16(f), __ATOMIC_RELEASE);
	}
	atomic_thread_fence(memory_order_seq_cst);
}
