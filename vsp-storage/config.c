/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The configuration file for serving many disks from one daemon: an INI
 * file with one [export NAME] section per disk (keys: image, format, nbd,
 * vhost-user-blk, queues, readonly, io-engine, direct, nbd-any-host,
 * commit-interval, poll-us, search-dir (repeatable)) and an
 * optional [daemon] section (log-level). `#` and `;` start comments. Errors
 * name the file, line and key.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vsp-int.h"

void vsp_export_conf_init(struct vsp_export_conf *c)
{
	memset(c, 0, sizeof(*c));
	c->queues = VSP_DEFAULT_QUEUES;
	c->direct = true;
	c->format = VDISK_FORMAT_AUTO;
	c->engine = VDISK_ENGINE_AUTO;
	c->commit_secs = 5;
	c->poll_us = VSP_POLL_US_DEFAULT;
	c->claim_fd = -1;
}

int vsp_export_conf_add_search_dir(struct vsp_export_conf *c, const char *dir)
{
	struct stat st;

	if (c->nr_search_dirs >= VSP_MAX_SEARCH_DIRS)
		return -E2BIG;
	if (strlen(dir) >= sizeof(c->search_dirs[0]))
		return -ENAMETOOLONG;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return -ENOTDIR;
	strcpy(c->search_dirs[c->nr_search_dirs++], dir);
	return 0;
}

int vsp_config_add(struct vsp_config *cfg, const struct vsp_export_conf *c)
{
	struct vsp_export_conf *n = realloc(cfg->exports, (cfg->nr_exports + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	cfg->exports = n;
	cfg->exports[cfg->nr_exports++] = *c;
	return 0;
}

void vsp_config_free(struct vsp_config *cfg)
{
	free(cfg->exports);
	cfg->exports = NULL;
	cfg->nr_exports = 0;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

static int parse_bool(const char *v, bool *ret)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
		*ret = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

int vsp_parse_log_level(const char *v)
{
	if (!strcmp(v, "error"))
		return VSP_LOG_ERR;
	if (!strcmp(v, "warning") || !strcmp(v, "warn"))
		return VSP_LOG_WARN;
	if (!strcmp(v, "info"))
		return VSP_LOG_INFO;
	if (!strcmp(v, "debug"))
		return VSP_LOG_DEBUG;
	return -EINVAL;
}

static int copy_str(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return -ENAMETOOLONG;
	strcpy(dst, v);
	return 0;
}

/* One key of an [export] section. 0 or -errno. */
static int export_key(struct vsp_export_conf *c, const char *k, const char *v)
{
	char *end;

	if (!strcmp(k, "image"))
		return copy_str(c->image, sizeof(c->image), v);
	if (!strcmp(k, "nbd"))
		return copy_str(c->nbd, sizeof(c->nbd), v);
	if (!strcmp(k, "vhost-user-blk"))
		return copy_str(c->vhost, sizeof(c->vhost), v);
	if (!strcmp(k, "format"))
		return vdisk_format_parse(v, &c->format);
	if (!strcmp(k, "search-dir"))
		return vsp_export_conf_add_search_dir(c, v);
	if (!strcmp(k, "io-engine"))
		return vdisk_engine_kind_parse(v, &c->engine);
	if (!strcmp(k, "readonly"))
		return parse_bool(v, &c->readonly);
	if (!strcmp(k, "direct"))
		return parse_bool(v, &c->direct);
	if (!strcmp(k, "nbd-any-host"))
		return parse_bool(v, &c->any_host);
	if (!strcmp(k, "commit-interval")) {
		unsigned long n = strtoul(v, &end, 10);
		if (*v == '\0' || *end || n > 3600)
			return -ERANGE;
		c->commit_secs = (unsigned)n;
		return 0;
	}
	if (!strcmp(k, "poll-us")) {
		unsigned long n = strtoul(v, &end, 10);
		if (*v == '\0' || *end || n > VSP_POLL_US_MAX)
			return -ERANGE;
		c->poll_us = (unsigned)n;
		return 0;
	}
	if (!strcmp(k, "queues")) {
		unsigned long n = strtoul(v, &end, 10);
		if (*v == '\0' || *end || n < 1 || n > VSP_MAX_QUEUES)
			return -ERANGE;
		c->queues = (unsigned)n;
		return 0;
	}
	return -ENOENT;
}

static int finish_export(struct vsp_config *cfg, struct vsp_export_conf *c, const char *path,
			 unsigned line)
{
	if (!c->image[0]) {
		vsp_log(VSP_LOG_ERR, NULL, "%s:%u: export '%s' has no image", path, line, c->name);
		return -EINVAL;
	}
	if (!c->nbd[0] && !c->vhost[0]) {
		vsp_log(VSP_LOG_ERR, NULL, "%s:%u: export '%s' has neither nbd nor vhost-user-blk",
			path, line, c->name);
		return -EINVAL;
	}
	return vsp_config_add(cfg, c);
}

int vsp_config_load(struct vsp_config *cfg, const char *path)
{
	FILE *f = fopen(path, "re");
	struct vsp_export_conf cur;
	enum { NONE, DAEMON, EXPORT } sec = NONE;
	unsigned line = 0, start = 0;
	char buf[PATH_MAX + 128];
	int r = 0;

	if (!f) {
		r = -errno;
		vsp_log(VSP_LOG_ERR, NULL, "%s: %s", path, strerror(errno));
		return r;
	}
	while (fgets(buf, sizeof(buf), f)) {
		char *s, *eq, *k, *v;

		line++;
		if (!strchr(buf, '\n') && !feof(f)) {
			vsp_log(VSP_LOG_ERR, NULL, "%s:%u: line too long", path, line);
			r = -EINVAL;
			break;
		}
		s = trim(buf);
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			if (sec == EXPORT && (r = finish_export(cfg, &cur, path, start)) < 0)
				break;
			if (!close || close[1] != '\0') {
				vsp_log(VSP_LOG_ERR, NULL, "%s:%u: bad section header", path, line);
				r = -EINVAL;
				break;
			}
			*close = '\0';
			s = trim(s + 1);
			if (!strcmp(s, "daemon")) {
				sec = DAEMON;
			} else if (!strncmp(s, "export", 6) && isspace((unsigned char)s[6])) {
				vsp_export_conf_init(&cur);
				if (copy_str(cur.name, sizeof(cur.name), trim(s + 6)) < 0 || !cur.name[0]) {
					vsp_log(VSP_LOG_ERR, NULL, "%s:%u: bad export name", path, line);
					r = -EINVAL;
					break;
				}
				sec = EXPORT;
				start = line;
			} else {
				vsp_log(VSP_LOG_ERR, NULL, "%s:%u: unknown section [%s]", path, line, s);
				r = -EINVAL;
				break;
			}
			continue;
		}
		eq = strchr(s, '=');
		if (!eq) {
			vsp_log(VSP_LOG_ERR, NULL, "%s:%u: expected KEY = VALUE", path, line);
			r = -EINVAL;
			break;
		}
		*eq = '\0';
		k = trim(s);
		v = trim(eq + 1);
		if (sec == DAEMON && !strcmp(k, "log-level")) {
			r = vsp_parse_log_level(v);
			if (r >= 0) {
				cfg->log_level = r;
				r = 0;
			}
		} else if (sec == DAEMON && !strcmp(k, "pidfile")) {
			r = copy_str(cfg->pidfile, sizeof(cfg->pidfile), v);
		} else if (sec == EXPORT) {
			r = export_key(&cur, k, v);
		} else {
			r = -ENOENT;
		}
		if (r < 0) {
			vsp_log(VSP_LOG_ERR, NULL, "%s:%u: %s '%s'", path, line,
				r == -ENOENT ? "unknown key" : "bad value for", k);
			r = -EINVAL;
			break;
		}
	}
	if (r == 0 && sec == EXPORT)
		r = finish_export(cfg, &cur, path, start);
	fclose(f);
	return r;
}
