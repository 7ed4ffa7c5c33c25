/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD fixed newstyle handshake, server side: greeting, client flags and
 * the option haggling (EXPORT_NAME, ABORT, LIST, INFO, GO,
 * STRUCTURED_REPLY, LIST/SET_META_CONTEXT for base:allocation; STARTTLS and
 * anything else are refused). Every length from the client is bounded
 * before it is read and checked against the option's own layout. It only
 * reads and writes the socket, so the fuzz target drives it over a
 * socketpair with no export behind it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd-handshake.h"

int vsp_nbd_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int vsp_nbd_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int opt_reply(int fd, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
	uint8_t h[20];
	int r;

	nbd_put64(h, NBD_REP_MAGIC);
	nbd_put32(h + 8, opt);
	nbd_put32(h + 12, type);
	nbd_put32(h + 16, len);
	r = vsp_nbd_write_full(fd, h, sizeof(h));
	if (r == 0 && len > 0)
		r = vsp_nbd_write_full(fd, data, len);
	return r;
}

static int info_export(int fd, uint32_t opt, const struct nbd_hs_export *ex)
{
	uint8_t b[12];

	nbd_put16(b, NBD_INFO_EXPORT);
	nbd_put64(b + 2, ex->size);
	nbd_put16(b + 10, ex->tflags);
	return opt_reply(fd, opt, NBD_REP_INFO, b, sizeof(b));
}

static int info_block_size(int fd, uint32_t opt, const struct nbd_hs_export *ex)
{
	uint8_t b[14];

	nbd_put16(b, NBD_INFO_BLOCK_SIZE);
	nbd_put32(b + 2, ex->min_block);
	nbd_put32(b + 6, ex->pref_block);
	nbd_put32(b + 10, ex->max_block);
	return opt_reply(fd, opt, NBD_REP_INFO, b, sizeof(b));
}

static int info_string(int fd, uint32_t opt, uint16_t type, const char *s)
{
	uint8_t b[2 + NBD_MAX_STRING];
	size_t n = strlen(s);

	if (n > NBD_MAX_STRING)
		n = NBD_MAX_STRING;
	nbd_put16(b, type);
	memcpy(b + 2, s, n);
	return opt_reply(fd, opt, NBD_REP_INFO, b, (uint32_t)(2 + n));
}

static bool name_matches(const struct nbd_hs_export *ex, const uint8_t *name, uint32_t len)
{
	if (len == 0)
		return true; /* the default export */
	return strlen(ex->name) == len && memcmp(ex->name, name, len) == 0;
}

/* OPT_INFO / OPT_GO: u32 name length, name, u16 count, count x u16 info requests. */
static int opt_info_go(int fd, uint32_t opt, const uint8_t *p, uint32_t len,
		       const struct nbd_hs_export *ex)
{
	uint32_t nlen, nreq;
	bool want_name = false, want_desc = false;
	int r;

	if (len < 6)
		return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
	nlen = nbd_get32(p);
	if (nlen > len - 6)
		return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
	nreq = nbd_get16(p + 4 + nlen);
	if (len != 4 + nlen + 2 + 2 * nreq)
		return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
	for (uint32_t i = 0; i < nreq; i++) {
		uint16_t t = nbd_get16(p + 6 + nlen + 2 * i);
		if (t == NBD_INFO_NAME)
			want_name = true;
		else if (t == NBD_INFO_DESCRIPTION)
			want_desc = true;
	}
	if (!name_matches(ex, p + 4, nlen))
		return opt_reply(fd, opt, NBD_REP_ERR_UNKNOWN, NULL, 0);
	r = info_export(fd, opt, ex);
	/* always: we can serve any alignment, but this is what performs */
	if (r == 0)
		r = info_block_size(fd, opt, ex);
	if (r == 0 && want_name)
		r = info_string(fd, opt, NBD_INFO_NAME, ex->name);
	if (r == 0 && want_desc && ex->description)
		r = info_string(fd, opt, NBD_INFO_DESCRIPTION, ex->description);
	if (r == 0)
		r = opt_reply(fd, opt, NBD_REP_ACK, NULL, 0);
	return r < 0 ? r : (opt == NBD_OPT_GO ? 1 : 0);
}

static int meta_reply(int fd, uint32_t opt)
{
	uint8_t b[4 + sizeof(NBD_META_BASE_ALLOCATION) - 1];

	nbd_put32(b, NBD_META_ID_BASE_ALLOCATION);
	memcpy(b + 4, NBD_META_BASE_ALLOCATION, sizeof(NBD_META_BASE_ALLOCATION) - 1);
	return opt_reply(fd, opt, NBD_REP_META_CONTEXT, b, sizeof(b));
}

/* LIST/SET_META_CONTEXT: u32 name length, name, u32 count, count x (u32 length, query). */
static int opt_meta(int fd, uint32_t opt, const uint8_t *p, uint32_t len,
		    const struct nbd_hs_export *ex, struct nbd_hs_result *res)
{
	static const char ba[] = NBD_META_BASE_ALLOCATION;
	uint32_t nlen, nq, pos;
	bool match = false;
	int r;

	if (!res->structured)
		return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
	if (len < 8)
		return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
	nlen = nbd_get32(p);
	if (nlen > len - 8)
		return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
	nq = nbd_get32(p + 4 + nlen);
	pos = 8 + nlen;
	for (uint32_t i = 0; i < nq; i++) {
		uint32_t ql;
		if (len - pos < 4)
			return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
		ql = nbd_get32(p + pos);
		pos += 4;
		if (ql > len - pos)
			return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
		if ((ql == sizeof(ba) - 1 && memcmp(p + pos, ba, ql) == 0) ||
		    (opt == NBD_OPT_LIST_META_CONTEXT && ql == 5 && memcmp(p + pos, "base:", 5) == 0))
			match = true;
		pos += ql;
	}
	if (pos != len)
		return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
	if (!name_matches(ex, p + 4, nlen))
		return opt_reply(fd, opt, NBD_REP_ERR_UNKNOWN, NULL, 0);
	if (nq == 0 && opt == NBD_OPT_LIST_META_CONTEXT)
		match = true;
	if (opt == NBD_OPT_SET_META_CONTEXT)
		res->base_alloc = match;
	if (match) {
		r = meta_reply(fd, opt);
		if (r < 0)
			return r;
	}
	r = opt_reply(fd, opt, NBD_REP_ACK, NULL, 0);
	return r < 0 ? r : 0;
}

static int opt_list(int fd, uint32_t len, const struct nbd_hs_export *ex)
{
	uint8_t b[4 + NBD_MAX_STRING];
	size_t n = strlen(ex->name);
	int r;

	if (len != 0)
		return opt_reply(fd, NBD_OPT_LIST, NBD_REP_ERR_INVALID, NULL, 0);
	if (n > NBD_MAX_STRING)
		n = NBD_MAX_STRING;
	nbd_put32(b, (uint32_t)n);
	memcpy(b + 4, ex->name, n);
	r = opt_reply(fd, NBD_OPT_LIST, NBD_REP_SERVER, b, (uint32_t)(4 + n));
	if (r == 0)
		r = opt_reply(fd, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
	return r;
}

/* NBD_OPT_EXPORT_NAME: no reply on error, the connection just ends. */
static int opt_export_name(int fd, const uint8_t *p, uint32_t len, const struct nbd_hs_export *ex,
			   const struct nbd_hs_result *res)
{
	uint8_t b[10 + 124];

	if (!name_matches(ex, p, len))
		return -ENOENT;
	nbd_put64(b, ex->size);
	nbd_put16(b + 8, ex->tflags);
	memset(b + 10, 0, 124);
	return vsp_nbd_write_full(fd, b, res->no_zeroes ? 10 : sizeof(b));
}

/* Reads and drops @len bytes. */
static int skip_bytes(int fd, uint32_t len)
{
	uint8_t b[4096];

	while (len > 0) {
		uint32_t n = len > sizeof(b) ? sizeof(b) : len;
		int r = vsp_nbd_read_full(fd, b, n);
		if (r < 0)
			return r;
		len -= n;
	}
	return 0;
}

static int handle_option(int fd, uint32_t opt, const uint8_t *p, uint32_t len,
			 const struct nbd_hs_export *ex, struct nbd_hs_result *res)
{
	switch (opt) {
	case NBD_OPT_EXPORT_NAME: {
		int r = opt_export_name(fd, p, len, ex, res);
		return r < 0 ? r : 1;
	}
	case NBD_OPT_ABORT:
		/* the reply is best effort: the client may already be gone */
		opt_reply(fd, opt, NBD_REP_ACK, NULL, 0);
		return -ECONNABORTED;
	case NBD_OPT_LIST:
		return opt_list(fd, len, ex);
	case NBD_OPT_STARTTLS:
		return opt_reply(fd, opt, NBD_REP_ERR_POLICY, NULL, 0);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return opt_info_go(fd, opt, p, len, ex);
	case NBD_OPT_STRUCTURED_REPLY:
		if (len != 0)
			return opt_reply(fd, opt, NBD_REP_ERR_INVALID, NULL, 0);
		res->structured = true;
		return opt_reply(fd, opt, NBD_REP_ACK, NULL, 0);
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		return opt_meta(fd, opt, p, len, ex, res);
	default:
		return opt_reply(fd, opt, NBD_REP_ERR_UNSUP, NULL, 0);
	}
}

int vsp_nbd_handshake(int fd, const struct nbd_hs_export *ex, struct nbd_hs_result *res)
{
	uint8_t greet[18], h[16];
	uint8_t *payload = NULL;
	unsigned nopts = 0;
	uint32_t cflags;
	int r;

	memset(res, 0, sizeof(*res));
	nbd_put64(greet, NBD_MAGIC);
	nbd_put64(greet + 8, NBD_IHAVEOPT);
	nbd_put16(greet + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	r = vsp_nbd_write_full(fd, greet, sizeof(greet));
	if (r < 0)
		return r;
	r = vsp_nbd_read_full(fd, h, 4);
	if (r < 0)
		return r;
	cflags = nbd_get32(h);
	if (cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return -EPROTO;
	res->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
	payload = malloc(NBD_MAX_OPTION_LEN);
	if (!payload)
		return -ENOMEM;
	for (;;) {
		uint32_t opt, len;

		r = -EPROTO;
		if (++nopts > NBD_MAX_OPTIONS)
			break; /* a client haggling forever */
		r = vsp_nbd_read_full(fd, h, sizeof(h));
		if (r < 0)
			break;
		r = -EPROTO;
		if (nbd_get64(h) != NBD_IHAVEOPT)
			break;
		opt = nbd_get32(h + 8);
		len = nbd_get32(h + 12);
		if (len > NBD_MAX_OPTION_LEN) {
			if (opt == NBD_OPT_EXPORT_NAME)
				break;
			r = skip_bytes(fd, len);
			if (r == 0)
				r = opt_reply(fd, opt, NBD_REP_ERR_TOO_BIG, NULL, 0);
			if (r < 0)
				break;
			continue;
		}
		r = vsp_nbd_read_full(fd, payload, len);
		if (r < 0)
			break;
		r = handle_option(fd, opt, payload, len, ex, res);
		if (r != 0)
			break;
	}
	free(payload);
	return r;
}
