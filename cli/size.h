/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Size parser of the vdisk tool: "4096", "64K", "2GiB", "1T". Binary
 * multiples only (K = KiB = 1024), no sign, no spaces, no fractions ("1.5G"
 * is rejected); anything else is rejected rather than guessed.
 */
#ifndef VDISK_CLI_SIZE_H
#define VDISK_CLI_SIZE_H

#include <stdint.h>

/*
 * Parses @s as a byte count: decimal digits followed by an optional suffix
 * B, K, M, G, T, P, E (any case), optionally followed by "iB" (K/KiB/k/kib
 * all mean 1024). Returns 0 with *@ret_bytes set, -EINVAL for malformed
 * text, -ERANGE when the value does not fit in 64 bits.
 */
int vdisk_parse_size(const char *s, uint64_t *ret_bytes);

#endif /* VDISK_CLI_SIZE_H */
