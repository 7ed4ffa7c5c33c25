/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vhost-user-blk front end (placeholder until the protocol lands). */
#include <errno.h>

#include "vsp-int.h"

int vsp_vhost_start(struct vsp_export *e)
{
	vsp_log(VSP_LOG_ERR, e->conf.name, "vhost-user-blk is not implemented yet");
	return -ENOTSUP;
}

void vsp_vhost_stop(struct vsp_export *e)
{
}
