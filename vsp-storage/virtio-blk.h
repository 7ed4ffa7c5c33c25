/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk device side (virtio_blk.c): offered features, configuration
 * space, and the decoding of a request's header, data and status byte from
 * a walked descriptor chain.
 */
#ifndef VSP_VIRTIO_BLK_H
#define VSP_VIRTIO_BLK_H

#include "virtq.h"
#include "vsp-int.h"

#define VSP_BLK_SEG_MAX (VSP_MAX_IOV - 2) /* data segments; header and status take two more */
#define VSP_BLK_MAX_SEGS 16               /* discard / write-zeroes segments per request */

struct vsp_blk_parsed {
	uint32_t type;
	uint64_t sector;
	uint8_t *status;                   /* in guest memory */
	struct iovec out[VIRTQ_MAX_IOV];   /* device-readable data after the header */
	unsigned out_cnt;
	uint64_t out_bytes;
	struct iovec in[VIRTQ_MAX_IOV];    /* device-writable data before the status */
	unsigned in_cnt;
	uint64_t in_bytes;
};

uint64_t vsp_blk_features(const struct vsp_export *e);
/* Fills VHOST_CONFIG_MAX bytes of configuration space for @nq queues. */
void vsp_blk_config(const struct vsp_export *e, unsigned nq, uint8_t *cfg);
/* Splits a chain into header, data and status. 0 or -EINVAL (too short, no status byte). */
int vsp_blk_parse(const struct vsp_chain *c, struct vsp_blk_parsed *p);
/* Copies the first @len bytes of @iov into @dst; false when the iovecs are shorter. */
bool vsp_blk_gather(uint8_t *dst, const struct iovec *iov, unsigned cnt, size_t len);

#endif /* VSP_VIRTIO_BLK_H */
