/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), init and final
 * XOR 0xFFFFFFFF. Uses the SSE4.2 crc32 instruction when the CPU has it
 * (chosen once, at first use), else a slicing-by-8 table.
 */
#include <stdint.h>
#include <string.h>

#include <vdisk/common.h>

#include "util.h"

static uint32_t table[8][256];

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78U : c >> 1;
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

/* Portable path; @crc is the raw (already inverted) register. */
uint32_t vdisk_crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
		w = __builtin_bswap64(w);
#endif
		uint32_t lo = (uint32_t)w ^ crc, hi = (uint32_t)(w >> 32);
		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
		      table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		      table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
							     size_t len)
{
	uint64_t c = crc;

	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		len -= 8;
	}
	crc = (uint32_t)c;
	while (len--)
		crc = __builtin_ia32_crc32qi(crc, *p++);
	return crc;
}
#endif

typedef uint32_t (*crc_fn)(uint32_t, const uint8_t *, size_t);
static crc_fn impl;

static crc_fn choose(void)
{
	table_init();
#if defined(__x86_64__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2"))
		return crc32c_hw;
#endif
	return vdisk_crc32c_sw;
}

uint32_t vdisk_crc32c(uint32_t crc, const void *buf, size_t len)
{
	crc_fn f = __atomic_load_n(&impl, __ATOMIC_ACQUIRE);

	if (!f) {
		f = choose();
		__atomic_store_n(&impl, f, __ATOMIC_RELEASE);
	}
	return ~f(~crc, buf, len);
}

void vdisk_crc32c_force_sw(int sw)
{
	table_init();
	__atomic_store_n(&impl, sw ? vdisk_crc32c_sw : choose(), __ATOMIC_RELEASE);
}
