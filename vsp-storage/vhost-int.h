/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared by vhost_user.c (the control thread: messages and device state)
 * and blk_queue.c (one worker thread per started virtqueue). The control
 * thread changes a queue's configuration only while its worker is stopped.
 */
#ifndef VSP_VHOST_INT_H
#define VSP_VHOST_INT_H

#include "vhost-user-proto.h"
#include "virtio-blk.h"
#include "virtq.h"
#include "vsp-int.h"

struct vhost_dev;

struct blk_slot {
	struct vsp_req req;
	struct vhost_vq *v;
	bool busy;
	uint16_t head;
	uint8_t *status;      /* the status byte, in guest memory */
	uint32_t used_len;
	struct iovec iov[VIRTQ_MAX_IOV];
};

struct vhost_vq {
	struct vhost_dev *dev;
	unsigned index;
	char ctx[112];
	/* configuration from the front end (control thread) */
	unsigned num;
	uint64_t desc_uva, avail_uva, used_uva;
	bool addr_set;
	uint16_t base;        /* next avail index; updated when the worker stops */
	int kick_fd, call_fd, err_fd;
	bool enabled;
	bool started_once;
	/* worker */
	bool running;
	pthread_t thr;
	int stop_efd;
	atomic_bool stop;
	bool broken;
	struct vsp_vring vr;
	struct vsp_queue q;
	struct blk_slot *slots;
	unsigned nslots;
	struct vsp_chain chain;          /* scratch of the worker */
	struct vsp_blk_parsed parsed;
	uint8_t *inflight;               /* this queue's inflight region, or NULL */
	uint64_t counter;
	uint16_t *done;                  /* heads pushed since the last flush */
	unsigned ndone;
	unsigned bad_chains;
	uint64_t stat_reqs, stat_kicks, stat_calls;
	unsigned poll_hits; /* polls in a row that found requests (poll_briefly) */
};

struct vhost_dev {
	struct vsp_export *exp;
	int fd;
	char ctx[96];
	unsigned nq;
	struct vhost_vq *vqs;
	uint64_t features, protocol_features;
	bool features_set, owner;
	struct vsp_mem mem;
	uint8_t *inflight;
	size_t inflight_size;
	uint16_t inflight_nq, inflight_qsize;
};

/* Starts the worker of @v (control thread). 0 or -errno (bad ring addresses...). */
int vsp_vq_start(struct vhost_vq *v);
/* Stops the worker of @v after it drained what is in flight. No-op when stopped. */
void vsp_vq_stop(struct vhost_vq *v);

#endif /* VSP_VHOST_INT_H */
