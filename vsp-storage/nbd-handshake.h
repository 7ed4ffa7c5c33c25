/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Server side of the NBD fixed newstyle handshake (nbd-handshake.c): what
 * the export offers, what the client negotiated, and the blocking socket
 * helpers it uses. Independent of the rest of the daemon so the fuzz target
 * can build it alone.
 */
#ifndef VSP_NBD_HANDSHAKE_H
#define VSP_NBD_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd-proto.h"

#define NBD_META_ID_BASE_ALLOCATION 1
#define NBD_MAX_OPTIONS 1024 /* options one client may send before transmission */

struct nbd_hs_export {
	const char *name;
	const char *description; /* may be NULL */
	uint64_t size;
	uint16_t tflags;         /* NBD_FLAG_* transmission flags */
	uint32_t min_block, pref_block, max_block;
};

struct nbd_hs_result {
	bool structured; /* NBD_OPT_STRUCTURED_REPLY acknowledged */
	bool base_alloc; /* base:allocation selected by SET_META_CONTEXT */
	bool no_zeroes;
};

/*
 * Runs the handshake on the blocking socket @fd. Returns 1 when the client
 * entered transmission (GO or EXPORT_NAME), or -errno: -ECONNABORTED after
 * NBD_OPT_ABORT, -EPROTO for a protocol violation, -ECONNRESET at end of file.
 */
int vsp_nbd_handshake(int fd, const struct nbd_hs_export *ex, struct nbd_hs_result *res);

/* recv/send until @len bytes moved. 0 or -errno (-ECONNRESET at end of file). */
int vsp_nbd_read_full(int fd, void *buf, size_t len);
int vsp_nbd_write_full(int fd, const void *buf, size_t len);

#endif /* VSP_NBD_HANDSHAKE_H */
