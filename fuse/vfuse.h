/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The FUSE front end as the CLI sees it: `vdisk mount` serves an image (raw
 * or any VHDX layer) as a folder holding `disk`, the whole virtual disk, and
 * `pN`, one file per partition; `vdisk umount` takes such a mount down and
 * returns once the serving process has committed the image and exited.
 * Errors come back as -errno with @err set; nothing here calls exit().
 */
#ifndef VFUSE_H
#define VFUSE_H

#include <stdbool.h>

#include <vdisk/common.h>

struct vfuse_opts {
	const char *image;      /* image file (or block device) */
	const char *mountpoint; /* an existing folder */
	bool rw;                /* writable, exclusive lock; default read-only, shared lock */
	bool allow_other;       /* let other users in (needs user_allow_other for non-root) */
	bool foreground;        /* serve in this process until unmounted */
	bool debug;             /* libfuse debug output (implies foreground) */
	const char *fs_part;    /* --fs: partition ("1", "p1" or "disk") to mount, or NULL */
	const char *fs_dir;     /* --fs: where its file system goes */
	/* --search-dir: folders where a child's parents are looked for too (NULL-terminated,
	 * absolute: the background server runs in /), or NULL */
	const char *const *search_dirs;
};

/*
 * Mounts @o->image on @o->mountpoint. In the background (the default) it
 * returns once the mount is ready, the serving process carrying on alone;
 * with @o->foreground it serves until the mount goes away (unmount, SIGINT,
 * SIGTERM) and returns after the image is closed. With @o->fs_part (root
 * only) the partition is attached to a loop device and its file system
 * mounted on @o->fs_dir. Notes for the user (a point-in-time view of an
 * image in use) go to stderr. Returns 0 or -errno with @err set.
 */
int vfuse_mount(const struct vfuse_opts *o, struct vdisk_err *err);

/*
 * Unmounts the vdisk mount at @mountpoint in order: file systems mounted
 * from loop devices backed by its files, the loop devices, then the FUSE
 * mount itself; waits for the serving process to close the image (so the
 * VHDX metadata is committed when this returns). A mount whose process died
 * is just unmounted. Returns 0 or -errno with @err set.
 */
int vfuse_umount(const char *mountpoint, struct vdisk_err *err);

#endif /* VFUSE_H */
