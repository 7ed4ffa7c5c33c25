/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target for vsp-storage's vhost-user message handling
 * (vsp-storage/vhost_user.c and the queue start/stop it drives). The input
 * is a list of messages, each: u8 fd spec (bits 0-1: how many descriptors
 * to attach, bit 2: memfds of 1 MiB instead of eventfds), u32 request,
 * u32 flags, u16 payload size, payload. The control loop (serve_conn) runs
 * in a thread on one end of a socketpair against a raw 8 MiB export with
 * two queues; this side sends the messages, half-closes, and drains the
 * replies until the back end hangs up and has torn everything down.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../vsp-storage/config.c"
#include "../../vsp-storage/queue.c"
#include "../../vsp-storage/virtq.c"
#include "../../vsp-storage/virtio_blk.c"
#include "../../vsp-storage/blk_queue.c"
#include "../../vsp-storage/vhost_user.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* what main.c and nbd.c provide in the daemon */
int vsp_log_max = VSP_LOG_ERR - 1; /* quiet */
atomic_bool vsp_stopping;

void vsp_log(int level, const char *ctx, const char *fmt, ...)
{
	va_list ap;

	if (!getenv("FUZZ_VERBOSE"))
		return;
	va_start(ap, fmt);
	fprintf(stderr, "%d [%s] ", level, ctx ? ctx : "");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

int vsp_listen_unix(const char *path, const char *ctx)
{
	(void)path;
	(void)ctx;
	return -ENOTSUP;
}

static struct vsp_export exp_;
static struct vsp_vhost_server srv_;

static int setup(void)
{
	static int done;
	char path[64];
	int fd;

	if (done)
		return done > 0 ? 0 : -1;
	done = -1;
	if (getenv("FUZZ_VERBOSE"))
		vsp_log_max = VSP_LOG_DEBUG;
	fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, 8 << 20) < 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	vsp_export_conf_init(&exp_.conf);
	strcpy(exp_.conf.name, "fuzz");
	exp_.conf.queues = 2;
	exp_.conf.direct = false;
	if (vdisk_disk_open(path, VDISK_FORMAT_RAW, VDISK_OPEN_NOLOCK, &exp_.disk, NULL) < 0)
		return -1;
	exp_.size = vdisk_disk_size(exp_.disk);
	exp_.lsec = 512;
	exp_.psec = 4096;
	exp_.mem_align = 1;
	exp_.off_align = 512;
	exp_.raw = true;
	exp_.raw_fd = fd;
	strcpy(exp_.serial, "fuzz");
	srv_.exp = &exp_;
	srv_.conn_fd = -1;
	pthread_mutex_init(&srv_.lock, NULL);
	done = 1;
	return 0;
}

static void *server(void *arg)
{
	serve_conn(&srv_, *(int *)arg);
	return NULL;
}

static void *drain(void *arg)
{
	int fd = *(int *)arg;
	char buf[8192];

	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	return NULL;
}

static void send_one(int sock, uint8_t spec, const uint8_t *hdr, const uint8_t *payload,
		     uint16_t size)
{
	uint8_t buf[VHOST_USER_HDR_SIZE + 65536];
	char cbuf[CMSG_SPACE(sizeof(int) * 3)];
	struct iovec iov = { buf, VHOST_USER_HDR_SIZE + size };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	unsigned nfds = spec & 3;
	int fds[3];

	memcpy(buf, hdr, 8);
	vu_st32(buf + 8, size);
	memcpy(buf + VHOST_USER_HDR_SIZE, payload, size);
	for (unsigned i = 0; i < nfds; i++) {
		if (spec & 4) {
			fds[i] = memfd_create("fuzz-mem", MFD_CLOEXEC);
			if (fds[i] >= 0 && ftruncate(fds[i], 1 << 20) < 0) {
				close(fds[i]);
				fds[i] = -1;
			}
		} else {
			fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		}
		if (fds[i] < 0)
			nfds = i;
	}
	if (nfds) {
		struct cmsghdr *c;
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	sendmsg(sock, &mh, MSG_NOSIGNAL);
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pthread_t ts, td;
	int sv[2];

	if (setup() < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	pthread_create(&ts, NULL, server, &sv[0]);
	pthread_create(&td, NULL, drain, &sv[1]);
	for (unsigned n = 0; size >= 11 && n < 64; n++) {
		uint8_t spec = data[0];
		uint16_t len = (uint16_t)(data[9] | data[10] << 8);

		if (len > size - 11)
			len = (uint16_t)(size - 11);
		send_one(sv[1], spec, data + 1, data + 11, len);
		data += 11 + len;
		size -= 11 + (size_t)len;
	}
	shutdown(sv[1], SHUT_WR);
	pthread_join(ts, NULL); /* serve_conn closes sv[0] */
	pthread_join(td, NULL);
	close(sv[1]);
	return 0;
}
