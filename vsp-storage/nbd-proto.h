/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD protocol (doc/proto.md of the NBD project): constants of the fixed
 * newstyle handshake, the transmission phase and structured replies, with
 * big-endian accessors over byte buffers. Shared by the server (nbd.c) and
 * the handshake fuzz target; no structure is ever cast over wire bytes.
 */
#ifndef VSP_NBD_PROTO_H
#define VSP_NBD_PROTO_H

#include <stdint.h>
#include <string.h>
#include <endian.h>

/* handshake */
#define NBD_MAGIC 0x4e42444d41474943ULL   /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454f5054ULL /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x0003e889045565a9ULL

#define NBD_FLAG_FIXED_NEWSTYLE (1U << 0)
#define NBD_FLAG_NO_ZEROES (1U << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE NBD_FLAG_FIXED_NEWSTYLE
#define NBD_FLAG_C_NO_ZEROES NBD_FLAG_NO_ZEROES

#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_LIST 3
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10

#define NBD_REP_ACK 1
#define NBD_REP_SERVER 2
#define NBD_REP_INFO 3
#define NBD_REP_META_CONTEXT 4
#define NBD_REP_ERR_UNSUP (0x80000000U + 1)
#define NBD_REP_ERR_POLICY (0x80000000U + 2)
#define NBD_REP_ERR_INVALID (0x80000000U + 3)
#define NBD_REP_ERR_PLATFORM (0x80000000U + 4)
#define NBD_REP_ERR_TLS_REQD (0x80000000U + 5)
#define NBD_REP_ERR_UNKNOWN (0x80000000U + 6)
#define NBD_REP_ERR_SHUTDOWN (0x80000000U + 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (0x80000000U + 8)
#define NBD_REP_ERR_TOO_BIG (0x80000000U + 9)

#define NBD_INFO_EXPORT 0
#define NBD_INFO_NAME 1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE 3

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS (1U << 0)
#define NBD_FLAG_READ_ONLY (1U << 1)
#define NBD_FLAG_SEND_FLUSH (1U << 2)
#define NBD_FLAG_SEND_FUA (1U << 3)
#define NBD_FLAG_ROTATIONAL (1U << 4)
#define NBD_FLAG_SEND_TRIM (1U << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1U << 6)
#define NBD_FLAG_SEND_DF (1U << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1U << 8)

/* requests */
#define NBD_REQUEST_MAGIC 0x25609513U
#define NBD_REQUEST_SIZE 28
#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_CACHE 5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7

#define NBD_CMD_FLAG_FUA (1U << 0)
#define NBD_CMD_FLAG_NO_HOLE (1U << 1)
#define NBD_CMD_FLAG_DF (1U << 2)
#define NBD_CMD_FLAG_REQ_ONE (1U << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1U << 4)

/* replies */
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698U
#define NBD_SIMPLE_REPLY_SIZE 16
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efU
#define NBD_STRUCTURED_REPLY_SIZE 20
#define NBD_REPLY_FLAG_DONE (1U << 0)
#define NBD_REPLY_TYPE_NONE 0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR 32769
#define NBD_REPLY_TYPE_ERROR_OFFSET 32770

/* base:allocation */
#define NBD_META_BASE_ALLOCATION "base:allocation"
#define NBD_STATE_HOLE (1U << 0)
#define NBD_STATE_ZERO (1U << 1)

/* errors on the wire */
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95
#define NBD_ESHUTDOWN 108

#define NBD_MAX_STRING 4096   /* export names, option payloads we accept */
#define NBD_MAX_OPTION_LEN 65536

static inline uint16_t nbd_get16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}

static inline uint32_t nbd_get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static inline uint64_t nbd_get64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static inline void nbd_put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static inline void nbd_put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static inline void nbd_put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

/* A decoded transmission request. */
struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
};

/* Decodes 28 bytes; returns 0, or -1 on a bad magic. */
static inline int nbd_request_decode(const uint8_t *b, struct nbd_request *r)
{
	if (nbd_get32(b) != NBD_REQUEST_MAGIC)
		return -1;
	r->flags = nbd_get16(b + 4);
	r->type = nbd_get16(b + 6);
	r->cookie = nbd_get64(b + 8);
	r->offset = nbd_get64(b + 16);
	r->length = nbd_get32(b + 24);
	return 0;
}

#endif /* VSP_NBD_PROTO_H */
