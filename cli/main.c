/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vdisk: the command-line tool. One table of subcommands (name, handler,
 * positional argument counts, synopsis, summary, option help) as in git.c
 * and qemu-img.c; each handler lives in cli/cmd-NAME.c and parses its own
 * options. `vdisk` alone lists the commands; `vdisk help CMD` and
 * `vdisk CMD --help` print the same text.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define OPT_JSON_HELP "  --json, --output=json       JSON output\n"
#define OPT_SEARCH_DIR_HELP \
	"  --search-dir DIR            look for parent images in DIR too (repeatable)\n"

static const struct vdisk_cmd commands[] = {
	{ "create", cmd_create, 1, 2,
	  "[--type dynamic|fixed] [--block-size S] [--logical-sector 512|4096] "
	  "[--physical-sector 512|4096] [--parent P] [--overwrite] FILE [SIZE]",
	  "Create a VHDX image of SIZE bytes, or a differencing image over P",
	  "  --type dynamic|fixed        image type (default dynamic)\n"
	  "  --block-size S              payload block size, 1M to 256M, power of two\n"
	  "                              (default 32M dynamic, 2M fixed and differencing)\n"
	  "  --logical-sector 512|4096   logical sector size (default 512)\n"
	  "  --physical-sector 512|4096  physical sector size (default 4096)\n"
	  "  --parent P                  make a differencing image over P; SIZE defaults\n"
	  "                              to the parent's\n"
	  "  --overwrite                 replace FILE when it exists\n" },
	{ "info", cmd_info, 1, 1, "[--json] [--chain [--search-dir DIR]...] FILE",
	  "Show the format, sizes, type, GUIDs, log state and parent locator of an image",
	  OPT_JSON_HELP
	  "  --chain                     open the parents too and show every layer, top first\n"
	  "  --search-dir DIR            with --chain: look for parents in DIR too\n" },
	{ "check", cmd_check, 1, 1, "[--json] [--repair] [--search-dir DIR]... FILE",
	  "Check a VHDX image for corruption and leaked space (exit 0 clean, 2 corrupt, "
	  "3 leaks)",
	  OPT_JSON_HELP "  --repair                    fix what can be fixed\n"
	  "  --search-dir DIR            look for parent images in DIR too (repeatable); a\n"
	  "                              parent found nowhere fails the check (exit 1)\n" },
	{ "convert", cmd_convert, 2, 2,
	  "[-p] [-O vhdx|raw] [--type dynamic|fixed] [--block-size S] [--search-dir DIR]... "
	  "SRC DST",
	  "Copy the virtual content of SRC into a new image DST, skipping zeros",
	  "  -p, --progress              show a progress bar on stderr\n"
	  "  -O, --output-format vhdx|raw\n"
	  "                              format of DST (default vhdx)\n"
	  "  --type dynamic|fixed        VHDX type of DST (default dynamic)\n"
	  "  --block-size S              VHDX block size of DST\n"
	  "  --search-dir DIR            look for the parent images of SRC in DIR too\n"
	  "                              (repeatable)\n" },
	{ "read", cmd_read, 3, 3, "[--search-dir DIR]... FILE OFFSET LENGTH",
	  "Write LENGTH bytes of the virtual disk at OFFSET to stdout", OPT_SEARCH_DIR_HELP },
	{ "write", cmd_write, 2, 2, "[--search-dir DIR]... FILE OFFSET",
	  "Write stdin, until end of file, to the virtual disk at OFFSET", OPT_SEARCH_DIR_HELP },
	{ "discard", cmd_discard, 3, 3, "[--search-dir DIR]... FILE OFFSET LENGTH",
	  "Discard a range of the virtual disk; it reads as zeros afterwards",
	  OPT_SEARCH_DIR_HELP },
	{ "map", cmd_map, 1, 1, "[--json] [--search-dir DIR]... FILE",
	  "List the data, zero and unallocated ranges of the virtual disk",
	  OPT_JSON_HELP OPT_SEARCH_DIR_HELP },
	{ "serve", cmd_serve, 0, -1,
	  "[--nbd ADDR] [--vhost-user-blk SOCKET] [OPTIONS] IMAGE | [--map FILE] --vm VM",
	  "Serve a disk over NBD and vhost-user-blk (runs vsp-storage; see vsp-storage --help)",
	  "  --search-dir DIR            look for parent images in DIR too (repeatable;\n"
	  "                              in a --config file: search-dir = DIR)\n" },
	{ "checksum", cmd_checksum, 1, -1, "[--search-dir DIR]... FILE...",
	  "Print the XXH3-128 hash of the virtual content, as xxhsum -H2 does",
	  OPT_SEARCH_DIR_HELP },
	{ "mount", cmd_mount, 2, 3,
	  "[--rw] [--allow-other] [-f] [-d] [--fs PART] [--search-dir DIR]... IMAGE MOUNTPOINT "
	  "[DIR]",
	  "Show IMAGE on MOUNTPOINT as the files disk, p1, p2... (one per partition)",
	  "  --rw                        writable, with an exclusive lock (default read-only)\n"
	  "  --allow-other               let other users use the mount\n"
	  "  -f, --foreground            serve in the foreground until unmounted\n"
	  "  -d, --debug                 print every FUSE request (implies -f)\n"
	  "  --fs PART                   (root) also mount the file system of partition\n"
	  "                              PART (1, p1 or disk) on DIR, through a loop device\n"
	  OPT_SEARCH_DIR_HELP },
	{ "umount", cmd_umount, 1, 1, "MOUNTPOINT",
	  "Take down a vdisk mount (and --fs file systems on it) once the image is closed",
	  "" },
	{ "snapshot", cmd_snapshot, 2, 3,
	  "create [--name NAME] FILE | list [--json] FILE | revert FILE NAME | delete FILE NAME",
	  "Freeze FILE into a snapshot that FILE keeps running on, list, revert to or delete "
	  "snapshots",
	  "  --name NAME                 create: the snapshot's name (default: the time,\n"
	  "                              YYYYmmddTHHMMSSZ)\n" OPT_JSON_HELP },
	{ "merge", cmd_merge, 1, 1,
	  "[-p] [--force] [--keep-child] [--search-dir DIR]... CHILD [--into ANCESTOR]",
	  "Commit a differencing image into its parent or an older ancestor",
	  "  -p, --progress              show a progress bar on stderr\n"
	  "  --into ANCESTOR             merge into this ancestor (default: the parent)\n"
	  "  --force                     merge even when the target has other children\n"
	  "  --keep-child                keep the merged layers' files\n"
	  "  --search-dir DIR            look for parents and children in DIR too\n" },
	{ "rebase", cmd_rebase, 1, 1, "[--unsafe] [-p] --parent NEWPARENT CHILD",
	  "Make NEWPARENT the parent of CHILD, keeping CHILD's content unless --unsafe",
	  "  --parent NEWPARENT          the new parent image\n"
	  "  --unsafe                    only rewrite the parent link, copy nothing\n"
	  "  -p, --progress              show a progress bar on stderr\n" },
	{ "lun", cmd_lun, 1, 4,
	  "[--map FILE] list [--json] [--all] | map [--readonly] [--force] VM C:T:L DEVICE | "
	  "unmap VM C:T:L | show [--json] [VM]",
	  "Passthrough disks: list block devices, map them to VM SCSI slots by stable identity",
	  "  --map FILE                  the LUN map (default $VDISK_LUN_MAP, else\n"
	  "                              /var/lib/vdisk/luns.conf)\n"
	  "  --readonly                  map: the VM gets the device read-only\n"
	  "  --force                     map: even if another program has it open\n"
	  "                              exclusively (nothing else is overridable)\n"
	  "  --all                       list: include empty devices\n" OPT_JSON_HELP },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct vdisk_cmd *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void list_commands(FILE *f)
{
	size_t i;

	fprintf(f, "usage: vdisk [--version] [--help] COMMAND [ARGS...]\n\nCommands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nOptions:\n"
		   "  -h, --help     list the commands\n"
		   "  -V, --version  print the version\n"
		   "\nRun 'vdisk help COMMAND' or 'vdisk COMMAND --help' for the options of a "
		   "command.\nSee vdisk(1).\n");
}

/* "vdisk: @what 'ARG'" (or just @what) plus the global synopsis. Returns EX_USAGE. */
static int global_usage(const char *what, const char *arg)
{
	if (arg)
		fprintf(stderr, "vdisk: %s '%s'\n", what, arg);
	else
		fprintf(stderr, "vdisk: %s\n", what);
	fprintf(stderr, "usage: vdisk [--version] [--help] COMMAND [ARGS...]\n");
	return CLI_EXIT_USAGE;
}

/* vdisk help [COMMAND] */
static int do_help(int argc, char **argv)
{
	const struct vdisk_cmd *cmd;

	if (argc < 2) {
		list_commands(stdout);
		return CLI_EXIT_OK;
	}
	if (argc > 2)
		return global_usage("help: too many arguments", NULL);
	cmd = find_command(argv[1]);
	if (!cmd)
		return global_usage("help: unknown command", argv[1]);
	return cli_help(cmd);
}

int main(int argc, char **argv)
{
	const struct vdisk_cmd *cmd;
	const char *verb;

	if (argc < 2) {
		list_commands(stdout);
		return CLI_EXIT_OK;
	}
	verb = argv[1];
	if (strcmp(verb, "--version") == 0 || strcmp(verb, "-V") == 0) {
		printf("vdisk %s (libvdisk %s)\n", VDISK_VERSION_STRING, vdisk_version());
		return CLI_EXIT_OK;
	}
	if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0)
		return do_help(1, argv + 1);
	if (strcmp(verb, "help") == 0)
		return do_help(argc - 1, argv + 1);
	if (verb[0] == '-')
		return global_usage("unknown option", verb);
	cmd = find_command(verb);
	if (!cmd)
		return global_usage("unknown command", verb);
	return cmd->handler(cmd, argc - 1, argv + 1);
}
