/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Constants of the vhost-user protocol (QEMU docs/interop/vhost-user.rst),
 * of split virtqueues and of virtio-blk (VIRTIO 1.2, sections 2.7 and 5.2),
 * with the byte offsets of every field we read or write. vhost-user
 * messages are in the host's byte order; rings and virtio-blk structures
 * are little-endian. Shared by the daemon, the test driver (tests/vsp/) and
 * the fuzz targets.
 */
#ifndef VSP_VHOST_USER_PROTO_H
#define VSP_VHOST_USER_PROTO_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

/* ---- vhost-user messages ---- */

#define VHOST_USER_HDR_SIZE 12 /* u32 request, u32 flags, u32 size */
#define VHOST_USER_VERSION 0x1
#define VHOST_USER_VERSION_MASK 0x3
#define VHOST_USER_REPLY (1U << 2)
#define VHOST_USER_NEED_REPLY (1U << 3)
#define VHOST_USER_MAX_PAYLOAD 4096
#define VHOST_USER_MAX_FDS 8
#define VHOST_USER_MAX_REGIONS 8

enum vhost_user_request {
	VHOST_USER_GET_FEATURES = 1,
	VHOST_USER_SET_FEATURES = 2,
	VHOST_USER_SET_OWNER = 3,
	VHOST_USER_RESET_OWNER = 4,
	VHOST_USER_SET_MEM_TABLE = 5,
	VHOST_USER_SET_LOG_BASE = 6,
	VHOST_USER_SET_LOG_FD = 7,
	VHOST_USER_SET_VRING_NUM = 8,
	VHOST_USER_SET_VRING_ADDR = 9,
	VHOST_USER_SET_VRING_BASE = 10,
	VHOST_USER_GET_VRING_BASE = 11,
	VHOST_USER_SET_VRING_KICK = 12,
	VHOST_USER_SET_VRING_CALL = 13,
	VHOST_USER_SET_VRING_ERR = 14,
	VHOST_USER_GET_PROTOCOL_FEATURES = 15,
	VHOST_USER_SET_PROTOCOL_FEATURES = 16,
	VHOST_USER_GET_QUEUE_NUM = 17,
	VHOST_USER_SET_VRING_ENABLE = 18,
	VHOST_USER_SEND_RARP = 19,
	VHOST_USER_NET_SET_MTU = 20,
	VHOST_USER_SET_SLAVE_REQ_FD = 21,
	VHOST_USER_IOTLB_MSG = 22,
	VHOST_USER_SET_VRING_ENDIAN = 23,
	VHOST_USER_GET_CONFIG = 24,
	VHOST_USER_SET_CONFIG = 25,
	VHOST_USER_GET_INFLIGHT_FD = 31,
	VHOST_USER_SET_INFLIGHT_FD = 32,
	VHOST_USER_RESET_DEVICE = 34,
	VHOST_USER_GET_MAX_MEM_SLOTS = 36,
};

#define VHOST_USER_PROTOCOL_F_MQ 0
#define VHOST_USER_PROTOCOL_F_LOG_SHMFD 1
#define VHOST_USER_PROTOCOL_F_REPLY_ACK 3
#define VHOST_USER_PROTOCOL_F_CONFIG 9
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD 12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE 13

#define VHOST_USER_F_PROTOCOL_FEATURES 30
#define VHOST_USER_VRING_IDX_MASK 0xff
#define VHOST_USER_VRING_NOFD (1U << 8)

/* payload layouts (offsets in bytes) */
#define VHOST_STATE_SIZE 8          /* u32 index, u32 num */
#define VHOST_ADDR_SIZE 40          /* u32 index, u32 flags, u64 desc, used, avail, log */
#define VHOST_ADDR_F_LOG 1
#define VHOST_MEM_HDR_SIZE 8        /* u32 nregions, u32 padding */
#define VHOST_MEM_REGION_SIZE 32    /* u64 gpa, size, uva, mmap_offset */
#define VHOST_CONFIG_HDR_SIZE 12    /* u32 offset, u32 size, u32 flags */
#define VHOST_CONFIG_MAX 256
#define VHOST_INFLIGHT_SIZE 24      /* u64 mmap_size, u64 mmap_offset, u16 num_queues, u16 queue_size, pad */

/* ---- split virtqueues ---- */

#define VRING_DESC_SIZE 16 /* le64 addr, le32 len, le16 flags, le16 next */
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1
#define VRING_MAX_SIZE 1024 /* largest queue we accept (QEMU's maximum) */
#define VRING_MAX_INDIRECT 1024

static inline uint64_t vring_desc_bytes(unsigned num)
{
	return 16ULL * num;
}

/* flags, idx, ring[num], used_event */
static inline uint64_t vring_avail_bytes(unsigned num)
{
	return 6ULL + 2ULL * num;
}

/* flags, idx, ring[num] of (le32 id, le32 len), avail_event */
static inline uint64_t vring_used_bytes(unsigned num)
{
	return 6ULL + 8ULL * num;
}

/* ---- virtio features ---- */

#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* ---- virtio-blk ---- */

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_HDR_SIZE 16  /* le32 type, le32 reserved, le64 sector */
#define VIRTIO_BLK_ID_BYTES 20
#define VIRTIO_BLK_SEG_SIZE 16  /* discard/write-zeroes: le64 sector, le32 num_sectors, le32 flags */
#define VIRTIO_BLK_WZ_F_UNMAP 1
#define VIRTIO_BLK_SECTOR 512

/* struct virtio_blk_config, byte offsets */
#define VBLK_CFG_CAPACITY 0
#define VBLK_CFG_SIZE_MAX 8
#define VBLK_CFG_SEG_MAX 12
#define VBLK_CFG_BLK_SIZE 20
#define VBLK_CFG_PHYS_BLOCK_EXP 24
#define VBLK_CFG_ALIGNMENT_OFFSET 25
#define VBLK_CFG_MIN_IO_SIZE 26
#define VBLK_CFG_OPT_IO_SIZE 28
#define VBLK_CFG_WRITEBACK 32
#define VBLK_CFG_NUM_QUEUES 34
#define VBLK_CFG_MAX_DISCARD_SECTORS 36
#define VBLK_CFG_MAX_DISCARD_SEG 40
#define VBLK_CFG_DISCARD_ALIGN 44
#define VBLK_CFG_MAX_WZ_SECTORS 48
#define VBLK_CFG_MAX_WZ_SEG 52
#define VBLK_CFG_WZ_MAY_UNMAP 56
#define VBLK_CFG_SIZE 60

/* ---- inflight tracking region (split rings) ---- */

#define VHOST_INFLIGHT_VERSION 1
#define VHOST_INFLIGHT_HDR 16  /* u64 features, u16 version, desc_num, last_batch_head, used_idx */
#define VHOST_INFLIGHT_DESC 16 /* u8 inflight, u8 pad[5], u16 next, u64 counter */

static inline uint64_t vhost_inflight_queue_bytes(unsigned qsize)
{
	/* each queue region starts 64-byte aligned */
	return (VHOST_INFLIGHT_HDR + (uint64_t)VHOST_INFLIGHT_DESC * qsize + 63) & ~63ULL;
}

/* native-order and little-endian accessors over bytes */
static inline uint16_t vu_ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static inline uint32_t vu_ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t vu_ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline void vu_st32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void vu_st64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static inline uint16_t le16_ld(const uint8_t *p)
{
	return le16toh(vu_ld16(p));
}

static inline uint32_t le32_ld(const uint8_t *p)
{
	return le32toh(vu_ld32(p));
}

static inline uint64_t le64_ld(const uint8_t *p)
{
	return le64toh(vu_ld64(p));
}

static inline void le16_st(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static inline void le32_st(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static inline void le64_st(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

#endif /* VSP_VHOST_USER_PROTO_H */
