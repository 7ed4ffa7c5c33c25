/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal interface of the vdisk command-line tool: the subcommand table
 * entry, the handlers (one cli/cmd-NAME.c each) and the helpers they share
 * for option parsing, usage errors, operational errors and opening images.
 * Exit codes: 0 success, 1 operational failure, 64 (EX_USAGE) usage error;
 * check adds 2 (corruption) and 3 (leaks only) like qemu-img check.
 */
#ifndef VDISK_CLI_H
#define VDISK_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sysexits.h>

#include <vdisk/common.h>
#include <vdisk/disk.h>
#include <vdisk/vhdx.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE EX_USAGE

struct vdisk_cmd;
typedef int (*vdisk_cmd_fn)(const struct vdisk_cmd *cmd, int argc, char **argv);

/* One subcommand: the table in main.c holds one per verb. */
struct vdisk_cmd {
	const char *name;
	vdisk_cmd_fn handler;
	int min_args;         /* positional arguments after the options */
	int max_args;
	const char *synopsis; /* "[--json] FILE" */
	const char *summary;  /* one line */
	const char *options;  /* option lines for --help, each "  --opt ARG  what\n"; may be "" */
};

int cmd_create(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_info(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_check(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_convert(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_read(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_write(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_discard(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_map(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_checksum(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_serve(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_mount(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_umount(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_snapshot(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_merge(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_rebase(const struct vdisk_cmd *cmd, int argc, char **argv);
int cmd_lun(const struct vdisk_cmd *cmd, int argc, char **argv);

/* --search-dir DIR (repeatable): extra folders where parents are looked for (cmd-merge.c). */
#define CLI_MAX_SEARCH_DIRS 16
struct cli_search_dirs {
	const char *dirs[CLI_MAX_SEARCH_DIRS + 1]; /* NULL-terminated, as vhdx_open_opts wants */
	unsigned n;
};

/* Adds @dir (must be a folder). 0 or a usage error exit code. */
int cli_search_dir_add(const struct vdisk_cmd *cmd, struct cli_search_dirs *s, const char *dir);

/* getopt_long values shared by every command (above any short option character). */
enum {
	CLI_OPT_HELP = 0x100,
	CLI_OPT_JSON,
	CLI_OPT_OUTPUT,
	CLI_OPT_FIRST_PRIVATE = 0x200, /* commands number their own long-only options from here */
};

#define CLI_LONGOPT_HELP { "help", no_argument, NULL, CLI_OPT_HELP }
#define CLI_OPT_SEARCH_DIR 0x1ff /* --search-dir, shared by the chain commands */
#define CLI_LONGOPT_SEARCH_DIR { "search-dir", required_argument, NULL, CLI_OPT_SEARCH_DIR }
#define CLI_LONGOPT_JSON { "json", no_argument, NULL, CLI_OPT_JSON }, \
			 { "output", required_argument, NULL, CLI_OPT_OUTPUT }

/* Returned by cli_getopt() for a bad option, after the usage message was printed. */
#define CLI_GETOPT_ERROR '?'

/*
 * getopt_long() with vdisk's messages: an unknown option or a missing
 * argument prints a usage error and returns CLI_GETOPT_ERROR; --help prints
 * the command's help and returns CLI_OPT_HELP. -h means --help. @shortopts must not start with ':' nor use h.
 */
int cli_getopt(const struct vdisk_cmd *cmd, int argc, char **argv, const char *shortopts,
	       const struct option *longopts);

/* Checks the positional count against the table. Returns 0 or prints a usage error and returns EX_USAGE. */
int cli_check_nargs(const struct vdisk_cmd *cmd, int nargs);

/* Prints the help text of @cmd to stdout. Returns 0. */
int cli_help(const struct vdisk_cmd *cmd);

/* "vdisk: VERB: message" + synopsis to stderr. Returns CLI_EXIT_USAGE. */
int cli_usage(const struct vdisk_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "vdisk: VERB: message" to stderr. Returns CLI_EXIT_FAIL. */
int cli_fail(const struct vdisk_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Reports a failed library call: the message of @err when set, else
 * "@path: strerror(-@code)". The file name is prepended when the library's
 * message does not already start with it. Returns CLI_EXIT_FAIL.
 */
int cli_fail_err(const struct vdisk_cmd *cmd, const char *path, int code,
		 const struct vdisk_err *err);

/* Parses --output=json|human. Returns 0 (setting *json) or a usage error exit code. */
int cli_parse_output(const struct vdisk_cmd *cmd, const char *arg, bool *json);

/* Parses a size/offset argument through vdisk_parse_size(). 0 or a usage error exit code. */
int cli_parse_size_arg(const struct vdisk_cmd *cmd, const char *what, const char *arg,
		       uint64_t *ret_val);

/* Opens @path with the format probed by content. 0, or reports the error and returns 1. */
int cli_open_disk(const struct vdisk_cmd *cmd, const char *path, unsigned flags,
		  struct vdisk_disk **ret_disk);

/*
 * cli_open_disk() that also looks for VHDX parents in @dirs (the --search-dir
 * folders; NULL: none). 0, or reports the error and returns 1.
 */
int cli_open_chain(const struct vdisk_cmd *cmd, const char *path, unsigned flags,
		   const struct cli_search_dirs *dirs, struct vdisk_disk **ret_disk);

/*
 * Parses the options of a command whose only ones are --search-dir DIR
 * (repeatable, into @dirs) and --help. Returns -1 to go on, else the exit
 * code (0 after --help, 64 after a usage error).
 */
int cli_parse_search_dirs_only(const struct vdisk_cmd *cmd, int argc, char **argv,
			       struct cli_search_dirs *dirs);

/* Flushes (when writable) and closes @d, reporting any error. 0 or 1. */
int cli_close_disk(const struct vdisk_cmd *cmd, const char *path, struct vdisk_disk *d);

/* Checks that [@offset, @offset + @length) lies inside the disk. 0 or reports and returns 1. */
int cli_check_range(const struct vdisk_cmd *cmd, const char *path, const struct vdisk_disk *d,
		    uint64_t offset, uint64_t length);

/* "dynamic" or "fixed" (create, convert --type). 0 or a usage error exit code. */
int cli_parse_vhdx_type(const struct vdisk_cmd *cmd, const char *arg, enum vhdx_type *ret_type);

/* --block-size S: a power of two from 1 MiB to 256 MiB. 0 or a usage error exit code. */
int cli_parse_block_size(const struct vdisk_cmd *cmd, const char *arg, uint32_t *ret_bytes);

/* Formats @bytes as "1.5 GiB" (or "512 B") into @buf. Returns @buf. */
const char *cli_human_size(uint64_t bytes, char *buf, size_t len);

/* True when all @len bytes are zero; fast (memcmp against itself shifted by one). */
bool cli_is_zero(const void *buf, size_t len);

/* Writes all of @len bytes to @fd, retrying short writes and EINTR. 0 or -errno. */
int cli_write_all(int fd, const void *buf, size_t len);

/* Reads up to @len bytes from @fd, stopping early only at EOF. Returns bytes read or -errno. */
ssize_t cli_read_full(int fd, void *buf, size_t len);

#endif /* VDISK_CLI_H */
