/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The progress bar: "[#########.........]  45.3%" on stderr, redrawn in
 * place. Only convert uses it; it is shown with -p or when stderr is a TTY.
 */
#include <stdio.h>

#include "progress.h"

#define BAR_WIDTH 40

static void draw(struct progress *p, int permille)
{
	char bar[BAR_WIDTH + 1];
	int i, fill = permille * BAR_WIDTH / 1000;

	for (i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = '\0';
	fprintf(stderr, "\r[%s] %3d.%d%%", bar, permille / 10, permille % 10);
	fflush(stderr);
	p->shown = permille;
}

void progress_init(struct progress *p, bool enabled, uint64_t total)
{
	p->enabled = enabled;
	p->total = total;
	p->shown = -1;
	if (enabled)
		draw(p, 0);
}

void progress_update(struct progress *p, uint64_t done)
{
	int permille;

	if (!p->enabled)
		return;
	if (p->total == 0 || done >= p->total)
		permille = 1000;
	else
		permille = (int)((double)done * 1000.0 / (double)p->total);
	if (permille != p->shown)
		draw(p, permille);
}

void progress_end(struct progress *p, bool success)
{
	if (!p->enabled)
		return;
	if (success)
		draw(p, 1000);
	fputc('\n', stderr);
	fflush(stderr);
}
