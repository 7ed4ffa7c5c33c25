/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers shared by the subcommands: option parsing with vdisk's own
 * messages, the two kinds of errors (usage: one line plus the synopsis,
 * exit 64; operational: the library's message, exit 1), opening images with
 * the format probed by content, and small I/O utilities.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "size.h"

static __attribute__((format(printf, 2, 0))) void vmessage(const struct vdisk_cmd *cmd,
							   const char *fmt, va_list ap)
{
	fprintf(stderr, "vdisk: %s: ", cmd->name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

int cli_usage(const struct vdisk_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage(cmd, fmt, ap);
	va_end(ap);
	fprintf(stderr, "usage: vdisk %s %s\n", cmd->name, cmd->synopsis);
	return CLI_EXIT_USAGE;
}

int cli_fail(const struct vdisk_cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmessage(cmd, fmt, ap);
	va_end(ap);
	return CLI_EXIT_FAIL;
}

int cli_fail_err(const struct vdisk_cmd *cmd, const char *path, int code,
		 const struct vdisk_err *err)
{
	const char *msg;
	size_t plen = path ? strlen(path) : 0;

	if (err && err->code != 0 && err->msg[0] != '\0')
		msg = err->msg;
	else
		msg = strerror(code < 0 ? -code : code);
	/* the library names the file in most messages; do not say it twice */
	if (path && !(strncmp(msg, path, plen) == 0 && msg[plen] == ':'))
		return cli_fail(cmd, "%s: %s", path, msg);
	return cli_fail(cmd, "%s", msg);
}

int cli_help(const struct vdisk_cmd *cmd)
{
	printf("usage: vdisk %s %s\n\n%s.\n", cmd->name, cmd->synopsis, cmd->summary);
	printf("\nOptions:\n%s  -h, --help                  show this help\n", cmd->options);
	return CLI_EXIT_OK;
}

int cli_getopt(const struct vdisk_cmd *cmd, int argc, char **argv, const char *shortopts,
	       const struct option *longopts)
{
	char spec[64];
	int c;

	/* leading ':' tells a missing argument (':') from an unknown option ('?'); -h is --help */
	snprintf(spec, sizeof(spec), ":h%s", shortopts);
	opterr = 0;
	c = getopt_long(argc, argv, spec, longopts, NULL);
	if (c == 'h')
		c = CLI_OPT_HELP;
	if (c == ':') {
		if (optopt && optopt < 0x100)
			cli_usage(cmd, "option '-%c' needs an argument", optopt);
		else
			cli_usage(cmd, "option '%s' needs an argument", argv[optind - 1]);
		return CLI_GETOPT_ERROR;
	}
	if (c == '?') {
		if (optopt && optopt < 0x100)
			cli_usage(cmd, "unknown option '-%c'", optopt);
		else
			cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
		return CLI_GETOPT_ERROR;
	}
	if (c == CLI_OPT_HELP)
		cli_help(cmd);
	return c;
}

int cli_check_nargs(const struct vdisk_cmd *cmd, int nargs)
{
	if (nargs < cmd->min_args)
		return cli_usage(cmd, "missing arguments");
	if (cmd->max_args >= 0 && nargs > cmd->max_args)
		return cli_usage(cmd, "too many arguments");
	return 0;
}

int cli_parse_output(const struct vdisk_cmd *cmd, const char *arg, bool *json)
{
	if (strcmp(arg, "json") == 0)
		*json = true;
	else if (strcmp(arg, "human") == 0)
		*json = false;
	else
		return cli_usage(cmd, "--output: unknown format '%s' (json or human)", arg);
	return 0;
}

int cli_parse_size_arg(const struct vdisk_cmd *cmd, const char *what, const char *arg,
		       uint64_t *ret_val)
{
	int r = vdisk_parse_size(arg, ret_val);

	if (r == -ERANGE)
		return cli_usage(cmd, "%s '%s' is too large", what, arg);
	if (r < 0)
		return cli_usage(cmd, "%s '%s' is not a size (digits, then K, M, G, T...)", what,
				 arg);
	return 0;
}

int cli_open_chain(const struct vdisk_cmd *cmd, const char *path, unsigned flags,
		   const struct cli_search_dirs *dirs, struct vdisk_disk **ret_disk)
{
	struct vdisk_err err = { 0 };
	struct vdisk_disk_opts o;
	int r;

	vdisk_disk_opts_init(&o, sizeof(o));
	o.flags = flags;
	o.search_dirs = dirs && dirs->n ? dirs->dirs : NULL;
	r = vdisk_disk_open_opts(path, VDISK_FORMAT_AUTO, &o, ret_disk, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	return 0;
}

int cli_open_disk(const struct vdisk_cmd *cmd, const char *path, unsigned flags,
		  struct vdisk_disk **ret_disk)
{
	return cli_open_chain(cmd, path, flags, NULL, ret_disk);
}

int cli_parse_search_dirs_only(const struct vdisk_cmd *cmd, int argc, char **argv,
			       struct cli_search_dirs *dirs)
{
	static const struct option options[] = {
		CLI_LONGOPT_SEARCH_DIR,
		CLI_LONGOPT_HELP,
		{ NULL, 0, NULL, 0 },
	};
	int c, r;

	while ((c = cli_getopt(cmd, argc, argv, "", options)) != -1) {
		if (c == CLI_OPT_HELP)
			return CLI_EXIT_OK;
		if (c != CLI_OPT_SEARCH_DIR)
			return CLI_EXIT_USAGE;
		r = cli_search_dir_add(cmd, dirs, optarg);
		if (r)
			return r;
	}
	return -1;
}

int cli_close_disk(const struct vdisk_cmd *cmd, const char *path, struct vdisk_disk *d)
{
	struct vdisk_err err = { 0 };
	int r;

	r = vdisk_disk_close(d, &err);
	if (r < 0)
		return cli_fail_err(cmd, path, r, &err);
	return 0;
}

int cli_check_range(const struct vdisk_cmd *cmd, const char *path, const struct vdisk_disk *d,
		    uint64_t offset, uint64_t length)
{
	uint64_t size = vdisk_disk_size(d), end;

	if (__builtin_add_overflow(offset, length, &end) || end > size)
		return cli_fail(cmd,
				"%s: range %llu+%llu is beyond the end of the disk (%llu bytes)",
				path, (unsigned long long)offset, (unsigned long long)length,
				(unsigned long long)size);
	return 0;
}

const char *cli_human_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double v = (double)bytes;
	unsigned u = 0;
	char num[32], *dot;
	size_t n;

	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	snprintf(num, sizeof(num), "%.2f", v);
	dot = strchr(num, '.');
	if (dot) {
		/* "1.50" -> "1.5", "2.00" -> "2" */
		n = strlen(num);
		while (num[n - 1] == '0')
			num[--n] = '\0';
		if (num[n - 1] == '.')
			num[n - 1] = '\0';
	}
	snprintf(buf, len, "%s %s", num, units[u]);
	return buf;
}

bool cli_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	/* p[0] == 0 and p[i] == p[i+1] for all i: glibc's vectorised memcmp does the work */
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

int cli_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t cli_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	ssize_t n;

	while (got < len) {
		n = read(fd, p + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}
