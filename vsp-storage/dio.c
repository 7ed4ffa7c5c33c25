/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * O_DIRECT alignment of an image file or block device, from statx()'s
 * STATX_DIOALIGN (Linux 6.1). glibc's struct statx lacks those fields, so
 * this file talks to the kernel with the UAPI header and the raw system
 * call, and is kept apart from files that include <sys/stat.h>.
 */
#include <fcntl.h>
#include <linux/stat.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vsp-int.h"

void vsp_dio_align(const char *path, uint32_t *ret_mem, uint32_t *ret_off)
{
	struct statx stx = { 0 };

	*ret_mem = 512;
	*ret_off = 512;
	if (syscall(SYS_statx, AT_FDCWD, path, 0, STATX_DIOALIGN, &stx) != 0)
		return;
	if (!(stx.stx_mask & STATX_DIOALIGN) || stx.stx_dio_mem_align == 0)
		return; /* not reported (or no O_DIRECT there): keep the safe default */
	*ret_mem = stx.stx_dio_mem_align;
	*ret_off = stx.stx_dio_offset_align;
}
