/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk serve [DAEMON-OPTIONS] IMAGE | --config FILE: runs the storage VSP
 * (vsp-storage) in the foreground by exec'ing it with the same arguments.
 * The daemon is looked up as $VDISK_VSP_STORAGE, next to this program, in
 * the build tree (../vsp-storage/), then on $PATH.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void try_exec(const char *path, char **argv)
{
	if (access(path, X_OK) == 0)
		execv(path, argv);
}

int cmd_serve(const struct vdisk_cmd *cmd, int argc, char **argv)
{
	char self[PATH_MAX], path[PATH_MAX + 64], *dir;
	const char *env = getenv("VDISK_VSP_STORAGE");
	ssize_t n;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
		return cli_help(cmd);
	if (argc < 2)
		return cli_usage(cmd, "missing IMAGE or --config FILE");
	argv[0] = "vsp-storage";
	if (env && *env)
		try_exec(env, argv);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		dir = dirname(self);
		snprintf(path, sizeof(path), "%s/vsp-storage", dir);
		try_exec(path, argv);
		snprintf(path, sizeof(path), "%s/../vsp-storage/vsp-storage", dir);
		try_exec(path, argv);
	}
	execvp("vsp-storage", argv);
	return cli_fail(cmd, "cannot run vsp-storage: %s", strerror(errno));
}
