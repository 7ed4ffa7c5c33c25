/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk, device side (VIRTIO 1.2 section 5.2): the features and the
 * configuration space we offer for an export, and the decoding of one
 * request from its walked descriptor chain. The driver may frame a request
 * any way it likes (2.6.4), so the 16-byte header is gathered from the
 * first device-readable bytes and the status byte is the last
 * device-writable byte; what lies between is the data, as iovecs into guest
 * memory.
 */
#include <errno.h>
#include <string.h>

#include "virtio-blk.h"

uint64_t vsp_blk_features(const struct vsp_export *e)
{
	uint64_t f = (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_RING_INDIRECT_DESC) |
		     (1ULL << VIRTIO_F_RING_EVENT_IDX) | (1ULL << VHOST_USER_F_PROTOCOL_FEATURES) |
		     (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
		     (1ULL << VIRTIO_BLK_F_TOPOLOGY) | (1ULL << VIRTIO_BLK_F_FLUSH) |
		     (1ULL << VIRTIO_BLK_F_MQ);

	if (e->conf.readonly)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	else
		f |= (1ULL << VIRTIO_BLK_F_DISCARD) | (1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
	return f;
}

static unsigned ilog2(uint32_t v)
{
	unsigned n = 0;

	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

void vsp_blk_config(const struct vsp_export *e, unsigned nq, uint8_t *cfg)
{
	uint32_t max_sectors = VSP_MAX_REQ_BYTES / VIRTIO_BLK_SECTOR;
	uint32_t gran = e->psec > e->lsec ? e->psec : e->lsec;

	memset(cfg, 0, VHOST_CONFIG_MAX);
	le64_st(cfg + VBLK_CFG_CAPACITY, e->size / VIRTIO_BLK_SECTOR);
	le32_st(cfg + VBLK_CFG_SEG_MAX, VSP_BLK_SEG_MAX);
	le32_st(cfg + VBLK_CFG_BLK_SIZE, e->lsec);
	cfg[VBLK_CFG_PHYS_BLOCK_EXP] = (uint8_t)ilog2(gran / e->lsec);
	cfg[VBLK_CFG_ALIGNMENT_OFFSET] = 0;
	/* in logical blocks (5.2.4), unlike the discard fields below */
	le16_st(cfg + VBLK_CFG_MIN_IO_SIZE, (uint16_t)(gran / e->lsec));
	le32_st(cfg + VBLK_CFG_OPT_IO_SIZE, 0);
	cfg[VBLK_CFG_WRITEBACK] = 1;
	le16_st(cfg + VBLK_CFG_NUM_QUEUES, (uint16_t)nq);
	le32_st(cfg + VBLK_CFG_MAX_DISCARD_SECTORS, max_sectors);
	le32_st(cfg + VBLK_CFG_MAX_DISCARD_SEG, VSP_BLK_MAX_SEGS);
	le32_st(cfg + VBLK_CFG_DISCARD_ALIGN, gran / VIRTIO_BLK_SECTOR);
	le32_st(cfg + VBLK_CFG_MAX_WZ_SECTORS, max_sectors);
	le32_st(cfg + VBLK_CFG_MAX_WZ_SEG, VSP_BLK_MAX_SEGS);
	cfg[VBLK_CFG_WZ_MAY_UNMAP] = 1;
}

/* Copies @len bytes from the start of @iov[0..cnt) into @dst. Returns false when short. */
static bool gather(uint8_t *dst, const struct iovec *iov, unsigned cnt, size_t len)
{
	for (unsigned i = 0; i < cnt && len > 0; i++) {
		size_t n = iov[i].iov_len < len ? iov[i].iov_len : len;
		memcpy(dst, iov[i].iov_base, n);
		dst += n;
		len -= n;
	}
	return len == 0;
}

/* Copies @iov[0..cnt) to @out, dropping the first @skip bytes. Returns the count. */
static unsigned trim_front(struct iovec *out, const struct iovec *iov, unsigned cnt, size_t skip)
{
	unsigned n = 0;

	for (unsigned i = 0; i < cnt; i++) {
		size_t l = iov[i].iov_len;
		if (skip >= l) {
			skip -= l;
			continue;
		}
		out[n].iov_base = (uint8_t *)iov[i].iov_base + skip;
		out[n].iov_len = l - skip;
		skip = 0;
		n++;
	}
	return n;
}

int vsp_blk_parse(const struct vsp_chain *c, struct vsp_blk_parsed *p)
{
	uint8_t hdr[VIRTIO_BLK_HDR_SIZE];
	const struct iovec *in = c->iov + c->n_out;
	const struct iovec *last;
	unsigned n_in = c->n_in;

	/* the scalars only: zeroing the iovec arrays would cost kilobytes per request */
	p->type = 0;
	p->sector = 0;
	p->status = NULL;
	p->out_cnt = p->in_cnt = 0;
	p->out_bytes = p->in_bytes = 0;
	if (c->out_bytes < VIRTIO_BLK_HDR_SIZE || c->in_bytes < 1)
		return -EINVAL;
	if (!gather(hdr, c->iov, c->n_out, sizeof(hdr)))
		return -EINVAL;
	p->type = le32_ld(hdr);
	p->sector = le64_ld(hdr + 8);
	/* the status byte: last byte of the last writable segment with bytes */
	while (n_in > 0 && in[n_in - 1].iov_len == 0)
		n_in--;
	if (n_in == 0)
		return -EINVAL;
	last = &in[n_in - 1];
	p->status = (uint8_t *)last->iov_base + last->iov_len - 1;
	/* device-readable data after the header */
	p->out_cnt = trim_front(p->out, c->iov, c->n_out, VIRTIO_BLK_HDR_SIZE);
	p->out_bytes = c->out_bytes - VIRTIO_BLK_HDR_SIZE;
	/* device-writable data before the status byte */
	memcpy(p->in, in, n_in * sizeof(*in));
	p->in_cnt = n_in;
	p->in[n_in - 1].iov_len--;
	if (p->in[n_in - 1].iov_len == 0)
		p->in_cnt--;
	p->in_bytes = c->in_bytes - 1;
	return 0;
}

bool vsp_blk_gather(uint8_t *dst, const struct iovec *iov, unsigned cnt, size_t len)
{
	return gather(dst, iov, cnt, len);
}
