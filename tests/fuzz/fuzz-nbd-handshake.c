/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target for the NBD fixed newstyle handshake of vsp-storage
 * (vsp-storage/nbd-handshake.c). The input is what a client sends after the
 * greeting: client flags, then options. The server side runs in a thread on
 * one end of a socketpair; this side writes the input, then half-closes,
 * and drains every reply until the server is done.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../vsp-storage/nbd-handshake.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct srv {
	int fd;
	int ret;
	struct nbd_hs_result res;
};

static void *server(void *arg)
{
	struct srv *s = arg;
	const struct nbd_hs_export ex = {
		.name = "disk", .description = "fuzz", .size = 1 << 30,
		.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH,
		.min_block = 1, .pref_block = 4096, .max_block = 32 << 20,
	};

	s->ret = vsp_nbd_handshake(s->fd, &ex, &s->res);
	shutdown(s->fd, SHUT_RDWR);
	return NULL;
}

static void *drain(void *arg)
{
	int fd = *(int *)arg;
	char buf[65536];

	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct srv s = { 0 };
	pthread_t ts, td;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	s.fd = sv[0];
	pthread_create(&ts, NULL, server, &s);
	pthread_create(&td, NULL, drain, &sv[1]);
	while (size > 0) {
		ssize_t n = send(sv[1], data, size, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		data += n;
		size -= (size_t)n;
	}
	shutdown(sv[1], SHUT_WR);
	pthread_join(ts, NULL);
	pthread_join(td, NULL);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
