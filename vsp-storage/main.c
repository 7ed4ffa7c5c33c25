/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vsp-storage: the storage VSP. Serves one disk (the command line) or many
 * (a configuration file) over NBD and vhost-user-blk. The main thread
 * parses options, opens the images, starts the listeners and then only
 * waits for SIGTERM/SIGINT: on either it stops accepting, lets every
 * connection drain what is in flight, flushes and closes the images. With
 * NOTIFY_SOCKET set (systemd Type=notify) it reports readiness.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <vdisk/vhdx.h>

#include "vsp-int.h"

int vsp_log_max = VSP_LOG_INFO;
atomic_bool vsp_stopping;
static bool log_prio_prefix;

void vsp_log(int level, const char *ctx, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	int saved = errno;

	if (level > vsp_log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_prio_prefix)
		fprintf(stderr, "<%d>%s%s%s%s\n", level, ctx ? "[" : "", ctx ? ctx : "",
			ctx ? "] " : "", msg);
	else
		fprintf(stderr, VSP_NAME ": %s%s%s%s\n", ctx ? "[" : "", ctx ? ctx : "",
			ctx ? "] " : "", msg);
	errno = saved;
}

/* sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, path);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
	close(fd);
}

int vsp_export_open(struct vsp_export *e)
{
	const char *dirs[VSP_MAX_SEARCH_DIRS + 1] = { NULL };
	struct vdisk_err err = { 0 };
	struct vdisk_disk_opts o;
	char src[PATH_MAX];
	struct stat st;
	uint32_t ma, oa;
	int r;

	vdisk_disk_opts_init(&o, sizeof(o));
	if (e->conf.readonly)
		o.flags |= VDISK_OPEN_RDONLY;
	for (unsigned i = 0; i < e->conf.nr_search_dirs; i++)
		dirs[i] = e->conf.search_dirs[i];
	o.search_dirs = dirs;
	/* O_DIRECT is applied on the data path (queue.c) through twin descriptors */
	e->raw_fd = -1;
	if (e->conf.claim_fd >= 0)
		snprintf(src, sizeof(src), "/proc/self/fd/%d", e->conf.claim_fd);
	else
		snprintf(src, sizeof(src), "%s", e->conf.image);
	r = vdisk_disk_open_opts(src, e->conf.format, &o, &e->disk, &err);
	if (r < 0) {
		vsp_log(VSP_LOG_ERR, e->conf.name, "%s", err.msg);
		return r;
	}
	e->size = vdisk_disk_size(e->disk);
	e->lsec = vdisk_disk_logical_sector(e->disk);
	e->psec = vdisk_disk_physical_sector(e->disk);
	e->raw = vdisk_disk_format(e->disk) == VDISK_FORMAT_RAW;
	if (e->raw) {
		/* 1:1: serve the data path on our own descriptor, no translation */
		e->raw_fd = open(src,
				 (e->conf.readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC |
					 (e->conf.direct ? O_DIRECT : 0));
		if (e->raw_fd < 0) {
			r = -errno;
			vsp_log(VSP_LOG_ERR, e->conf.name, "%s: %s", e->conf.image, strerror(errno));
			return r;
		}
		e->raw_file = fstat(e->raw_fd, &st) == 0 && S_ISREG(st.st_mode);
	}
	if (e->conf.direct) {
		vsp_dio_align(src, &ma, &oa);
	} else {
		ma = 1;
		oa = 1;
	}
	e->mem_align = ma ? ma : 1;
	e->off_align = oa > e->lsec ? oa : e->lsec;
	memset(e->serial, 0, sizeof(e->serial));
	memcpy(e->serial, e->conf.name, strnlen(e->conf.name, sizeof(e->serial) - 1));
	vsp_log(VSP_LOG_INFO, e->conf.name,
		"%s: %s, %llu bytes, %u-byte sectors%s%s", e->conf.image,
		vdisk_format_name(vdisk_disk_format(e->disk)), (unsigned long long)e->size, e->lsec,
		e->conf.readonly ? ", read-only" : "", e->conf.direct ? ", O_DIRECT" : "");
	return 0;
}

int vsp_export_close(struct vsp_export *e)
{
	struct vdisk_err err = { 0 };
	int r;

	if (e->raw_fd >= 0) {
		if (!e->conf.readonly)
			fdatasync(e->raw_fd);
		close(e->raw_fd);
		e->raw_fd = -1;
	}
	r = vdisk_disk_close(e->disk, &err);
	e->disk = NULL;
	if (r < 0)
		vsp_log(VSP_LOG_ERR, e->conf.name, "closing: %s", err.msg);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " VSP_NAME " [OPTIONS] IMAGE\n"
		"       " VSP_NAME " [OPTIONS] [--map FILE] --vm VM\n"
		"       " VSP_NAME " --config FILE\n"
		"Serve a disk image (VHDX chain, raw file or block device) over NBD and\n"
		"vhost-user-blk.\n\n"
		"  --nbd unix:PATH|tcp:HOST:PORT   serve NBD (TCP binds loopback only unless\n"
		"                                  --nbd-any-host)\n"
		"  --nbd-any-host                  allow a non-loopback NBD address\n"
		"  --vhost-user-blk SOCKET         serve vhost-user-blk on a UNIX socket\n"
		"  --queues N                      most virtqueues offered (default %u, max %u)\n"
		"  --readonly                      serve read-only\n"
		"  --io-engine io_uring|libaio|auto  I/O engine (default auto: io_uring, else libaio)\n"
		"  --format auto|raw|vhdx          image format (default: probed)\n"
		"  --search-dir DIR                look for VHDX parents in DIR too (after the\n"
		"                                  child's folder; repeatable, up to %u)\n"
		"  --no-direct                     use the page cache (default O_DIRECT)\n"
		"  --commit-interval S             commit written metadata S seconds after a\n"
		"                                  write the guest did not flush (default 5, 0: off)\n"
		"  --poll-us N                     vhost-user-blk: with 2+ requests in flight, look\n"
		"                                  for new ones N microseconds before sleeping\n"
		"                                  (default 32, 0: off)\n"
		"  --name NAME                     export name (default: the image's file name)\n"
		"  --config FILE                   serve the exports of a configuration file\n"
		"  --vm VM                         serve every passthrough LUN the LUN map gives VM,\n"
		"                                  one export each (sockets SOCKET.C-T-L, TCP PORT+i)\n"
		"  --map FILE                      the LUN map (default $VDISK_LUN_MAP or\n"
		"                                  /var/lib/vdisk/luns.conf)\n"
		"  --pidfile FILE                  write the process id to FILE\n"
		"  -v, --verbose                   debug logging\n"
		"  -q, --quiet                     errors and warnings only\n"
		"  -h, --help                      this help\n"
		"  -V, --version                   print the version\n",
		VSP_DEFAULT_QUEUES, VSP_MAX_QUEUES, VSP_MAX_SEARCH_DIRS);
}

enum {
	OPT_NBD = 0x100,
	OPT_NBD_ANY,
	OPT_VHOST,
	OPT_QUEUES,
	OPT_READONLY,
	OPT_ENGINE,
	OPT_FORMAT,
	OPT_NO_DIRECT,
	OPT_NAME,
	OPT_CONFIG,
	OPT_PIDFILE,
	OPT_COMMIT,
	OPT_POLL,
	OPT_MAP,
	OPT_VM,
	OPT_SEARCH_DIR,
};

static const struct option long_options[] = {
	{ "nbd", required_argument, NULL, OPT_NBD },
	{ "nbd-any-host", no_argument, NULL, OPT_NBD_ANY },
	{ "vhost-user-blk", required_argument, NULL, OPT_VHOST },
	{ "queues", required_argument, NULL, OPT_QUEUES },
	{ "readonly", no_argument, NULL, OPT_READONLY },
	{ "io-engine", required_argument, NULL, OPT_ENGINE },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "no-direct", no_argument, NULL, OPT_NO_DIRECT },
	{ "name", required_argument, NULL, OPT_NAME },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "pidfile", required_argument, NULL, OPT_PIDFILE },
	{ "commit-interval", required_argument, NULL, OPT_COMMIT },
	{ "poll-us", required_argument, NULL, OPT_POLL },
	{ "map", required_argument, NULL, OPT_MAP },
	{ "vm", required_argument, NULL, OPT_VM },
	{ "search-dir", required_argument, NULL, OPT_SEARCH_DIR },
	{ "verbose", no_argument, NULL, 'v' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int bad_usage(const char *what, const char *arg)
{
	fprintf(stderr, VSP_NAME ": %s%s%s\nTry '" VSP_NAME " --help'.\n", arg ? arg : "",
		arg ? ": " : "", what);
	return 2;
}

/* Parses the command line into @cfg. Returns -1 to go on, else an exit code. */
static int parse_args(int argc, char **argv, struct vsp_config *cfg)
{
	struct vsp_export_conf c;
	const char *config = NULL, *map = NULL, *vm = NULL;
	bool have_export_opts = false;
	char *end;
	int opt;

	vsp_export_conf_init(&c);
	while ((opt = getopt_long(argc, argv, "vqhV", long_options, NULL)) != -1) {
		if (opt >= OPT_NBD && opt != OPT_CONFIG && opt != OPT_PIDFILE)
			have_export_opts = true;
		switch (opt) {
		case OPT_NBD:
			if (strlen(optarg) >= sizeof(c.nbd))
				return bad_usage("--nbd: too long", optarg);
			strcpy(c.nbd, optarg);
			break;
		case OPT_NBD_ANY:
			c.any_host = true;
			break;
		case OPT_VHOST:
			if (strlen(optarg) >= sizeof(c.vhost))
				return bad_usage("--vhost-user-blk: too long", optarg);
			strcpy(c.vhost, optarg);
			break;
		case OPT_QUEUES: {
			unsigned long n = strtoul(optarg, &end, 10);
			if (!*optarg || *end || n < 1 || n > VSP_MAX_QUEUES)
				return bad_usage("--queues: expected 1 to 64", optarg);
			c.queues = (unsigned)n;
			break;
		}
		case OPT_READONLY:
			c.readonly = true;
			break;
		case OPT_ENGINE:
			if (vdisk_engine_kind_parse(optarg, &c.engine) < 0)
				return bad_usage("--io-engine: expected io_uring, libaio or auto", optarg);
			break;
		case OPT_FORMAT:
			if (vdisk_format_parse(optarg, &c.format) < 0)
				return bad_usage("--format: expected auto, raw or vhdx", optarg);
			break;
		case OPT_NO_DIRECT:
			c.direct = false;
			break;
		case OPT_SEARCH_DIR:
			switch (vsp_export_conf_add_search_dir(&c, optarg)) {
			case 0:
				break;
			case -E2BIG:
				return bad_usage("--search-dir: too many folders", optarg);
			case -ENAMETOOLONG:
				return bad_usage("--search-dir: too long", optarg);
			default:
				return bad_usage("--search-dir: not a folder", optarg);
			}
			break;
		case OPT_NAME:
			if (!*optarg || strlen(optarg) >= sizeof(c.name))
				return bad_usage("--name: empty or too long", optarg);
			strcpy(c.name, optarg);
			break;
		case OPT_COMMIT: {
			unsigned long n = strtoul(optarg, &end, 10);
			if (!*optarg || *end || n > 3600)
				return bad_usage("--commit-interval: expected 0 to 3600 seconds", optarg);
			c.commit_secs = (unsigned)n;
			break;
		}
		case OPT_POLL: {
			unsigned long n = strtoul(optarg, &end, 10);
			if (!*optarg || *end || n > VSP_POLL_US_MAX)
				return bad_usage("--poll-us: expected 0 to 1000 microseconds", optarg);
			c.poll_us = (unsigned)n;
			break;
		}
		case OPT_CONFIG:
			config = optarg;
			break;
		case OPT_MAP:
			map = optarg;
			break;
		case OPT_VM:
			vm = optarg;
			break;
		case OPT_PIDFILE:
			snprintf(cfg->pidfile, sizeof(cfg->pidfile), "%s", optarg);
			break;
		case 'v':
			cfg->log_level = VSP_LOG_DEBUG;
			break;
		case 'q':
			cfg->log_level = VSP_LOG_WARN;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf(VSP_NAME " %s (libvdisk %s)\n", VDISK_VERSION_STRING, vdisk_version());
			return 0;
		default:
			fprintf(stderr, "Try '" VSP_NAME " --help'.\n");
			return 2;
		}
	}
	if (config) {
		if (have_export_opts || optind < argc)
			return bad_usage("--config takes no IMAGE nor export options", NULL);
		return vsp_config_load(cfg, config) < 0 ? 1 : -1;
	}
	if (map && !vm)
		return bad_usage("--map goes with --vm", NULL);
	if (vm) {
		if (optind != argc)
			return bad_usage("--vm serves the VM's LUNs: no IMAGE", NULL);
		if (!c.nbd[0] && !c.vhost[0])
			return bad_usage("nothing to serve: give --nbd and/or --vhost-user-blk", NULL);
		return vsp_pt_add_vm(cfg, &c, map, vm) < 0 ? 1 : -1;
	}
	if (optind != argc - 1)
		return bad_usage(optind < argc ? "one IMAGE only" : "missing IMAGE", NULL);
	/* a block device is claimed (O_EXCL) after the passthrough safety checks */
	if (vsp_pt_claim_device(argv[optind], c.readonly, &c.claim_fd) < 0)
		return 1;
	if (strlen(argv[optind]) >= sizeof(c.image))
		return bad_usage("path too long", argv[optind]);
	strcpy(c.image, argv[optind]);
	if (!c.nbd[0] && !c.vhost[0])
		return bad_usage("nothing to serve: give --nbd and/or --vhost-user-blk", NULL);
	if (!c.name[0]) {
		char tmp[PATH_MAX];
		snprintf(tmp, sizeof(tmp), "%s", c.image);
		snprintf(c.name, sizeof(c.name), "%s", basename(tmp));
	}
	return vsp_config_add(cfg, &c) < 0 ? 1 : -1;
}

/*
 * The commit timer (architecture: metadata is committed at the guest's
 * FLUSH, or FUA, or a short timer): an export written to without a flush
 * for commit_secs seconds is committed from here.
 */
static void commit_timer(struct vsp_export *exps, unsigned n)
{
	time_t now = time(NULL);

	for (unsigned i = 0; i < n; i++) {
		struct vsp_export *e = &exps[i];

		if (!e->conf.commit_secs || e->conf.readonly ||
		    !atomic_load_explicit(&e->dirty, memory_order_relaxed)) {
			e->dirty_since = 0;
			continue;
		}
		if (!e->dirty_since)
			e->dirty_since = now;
		if (now - e->dirty_since < (time_t)e->conf.commit_secs)
			continue;
		e->dirty_since = 0;
		if (vsp_export_flush(e) < 0)
			vsp_log(VSP_LOG_ERR, e->conf.name, "timed commit failed");
		else
			vsp_debug(e->conf.name, "timed commit");
	}
}

static void write_pidfile(const char *path)
{
	FILE *f = fopen(path, "we");

	if (!f) {
		vsp_log(VSP_LOG_WARN, NULL, "%s: %s, ignoring", path, strerror(errno));
		return;
	}
	fprintf(f, "%ld\n", (long)getpid());
	fclose(f);
}

int main(int argc, char **argv)
{
	struct vsp_config cfg = { .log_level = 0 };
	struct vsp_export *exps;
	sigset_t set;
	int r, sig, rc = 0;
	unsigned n = 0;

	log_prio_prefix = getenv("JOURNAL_STREAM") != NULL;
	r = parse_args(argc, argv, &cfg);
	if (r >= 0)
		return r;
	if (cfg.log_level)
		vsp_log_max = cfg.log_level;
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	exps = calloc(cfg.nr_exports, sizeof(*exps));
	if (!exps)
		return 1;
	for (n = 0; n < cfg.nr_exports; n++) {
		struct vsp_export *e = &exps[n];

		e->conf = cfg.exports[n];
		e->raw_fd = -1;
		r = vsp_export_open(e);
		if (r == 0 && e->conf.nbd[0])
			r = vsp_nbd_start(e);
		if (r == 0 && e->conf.vhost[0])
			r = vsp_vhost_start(e);
		if (r < 0) {
			rc = 1;
			n++;
			goto out;
		}
	}
	if (cfg.pidfile[0])
		write_pidfile(cfg.pidfile);
	vsp_log(VSP_LOG_INFO, NULL, "ready: %u export(s)", cfg.nr_exports);
	notify("READY=1");
	for (;;) {
		struct timespec tick = { 1, 0 };

		sig = sigtimedwait(&set, NULL, &tick);
		if (sig < 0) {
			commit_timer(exps, cfg.nr_exports);
			continue;
		}
		if (sig == SIGHUP) {
			vsp_log(VSP_LOG_INFO, NULL, "SIGHUP: nothing to reload, ignoring");
			continue;
		}
		break;
	}
	vsp_log(VSP_LOG_INFO, NULL, "%s: draining and closing", strsignal(sig));
	notify("STOPPING=1");
out:
	atomic_store(&vsp_stopping, true);
	while (n-- > 0) {
		struct vsp_export *e = &exps[n];

		vsp_vhost_stop(e);
		vsp_nbd_stop(e);
		if (e->disk && vsp_export_close(e) < 0)
			rc = 1;
	}
	vsp_direct_fds_close();
	if (cfg.pidfile[0])
		unlink(cfg.pidfile);
	free(exps);
	vsp_config_free(&cfg);
	vsp_pt_release();
	if (rc == 0)
		vsp_log(VSP_LOG_INFO, NULL, "stopped cleanly");
	return rc;
}
