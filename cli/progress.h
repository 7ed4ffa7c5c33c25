/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Progress bar on stderr for long commands (convert). Redrawn in place with
 * '\r', at most when the shown tenth of a percent changes, so it costs
 * nothing measurable on the copy loop.
 */
#ifndef VDISK_CLI_PROGRESS_H
#define VDISK_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
	bool enabled;
	uint64_t total;
	int shown; /* permille last drawn, -1 before the first draw */
};

/* Starts a bar over @total units; draws nothing unless @enabled. */
void progress_init(struct progress *p, bool enabled, uint64_t total);
/* @done units of @total are complete. */
void progress_update(struct progress *p, uint64_t done);
/* Draws 100% (when @success) and ends the line. */
void progress_end(struct progress *p, bool success);

#endif /* VDISK_CLI_PROGRESS_H */
