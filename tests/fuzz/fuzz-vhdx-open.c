/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target for the VHDX open path (identifier, headers, region tables,
 * metadata, BAT, log replay in memory), the data path (translate, pread) and
 * the checker (with and without repair). A VHDX file keeps its metadata
 * between 1 and 4 MiB, so a whole image makes a poor fuzz input; the input
 * is instead a compact sparse description of the file, expanded into a
 * memfd that the library opens through /proc/self/fd/N:
 *
 *   input   := size_hdr record*
 *   size_hdr:= LE32: bits 0-30: minimum file size in 4 KiB pages (taken
 *              modulo 4097, so 0..4096 pages = at most 16 MiB); bit 31:
 *              fix checksums (below)
 *   record  := LE32 page, then up to 4096 bytes of page data
 *              page: the low 12 bits give the page number (file offset =
 *              number * 4 KiB, below 16 MiB); the upper bits are ignored.
 *              The data of the last record may be shorter than 4096 bytes:
 *              the rest of that page stays zero. A later record for the same
 *              page overwrites an earlier one.
 *
 * The file size is the larger of size_hdr and the end of the highest page
 * written; everything not written reads as zeros. Inputs shorter than 4
 * bytes are ignored. fixtures/make-fuzz-seeds.sh turns real images made by
 * vdisk and qemu-img into this form (their non-zero pages below 16 MiB),
 * with bit 31 set.
 *
 * Headers, region tables and log entries carry CRC-32C checksums, which
 * random mutations almost always break, so the fuzzer would rarely get past
 * them. With bit 31 set the harness recomputes, after expansion, the
 * checksum of each header (64 and 128 KiB) and region table (192 and 256
 * KiB) that has its signature, and of each log entry ("loge" at a 4 KiB
 * boundary of a header's log region, not wrapping, at most 4 MiB): mutated
 * fields then reach the validation behind the checksum. With bit 31 clear
 * the file is used as written, which exercises the checksum checks.
 *
 * An image that opens but checks corrupt is then checked again with
 * VHDX_CHECK_REPAIR, which writes to the memfd.
 *
 * Besides memory errors, the target aborts on a broken API contract: a
 * failing call must return -errno and leave that code and a message in its
 * error buffer, and translated extents must tile the requested range.
 *
 * Running libFuzzer (the library needs coverage instrumentation too):
 *   CC=clang cmake -S . -B build-fuzz -DVDISK_FUZZ=ON -DVDISK_SANITIZE=address,undefined \
 *         -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link
 *   cmake --build build-fuzz --target fuzz-vhdx-open-libfuzzer
 *   cp -r tests/fuzz/corpus/vhdx-open work && build-fuzz/tests/fuzz-vhdx-open-libfuzzer \
 *         -max_len=131072 -timeout=10 -max_total_time=600 work
 * Each input is also decoded as vdisk's snapshot metadata item
 * (vhdx_snap_item_decode), whose lengths come from the file.
 * A crasher is kept by copying it to the corpus as regress-WHAT once fixed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vdisk/vhdx.h>

#include "vhdx-int.h" /* vhdx_snap_item_decode */

#define PAGE_BYTES   4096u
#define MAX_PAGES    4096u /* 16 MiB */
#define RECORD_HDR   4u
#define IO_BYTES     (64u * 1024)
#define MAX_EXTENTS  16
#define FLAG_FIX_CRC (1u << 31)
#define MAX_LOG_SCAN (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* Sets the checksum at +4 of the @len-byte structure at @buf (zeroed while computing). */
static void set_crc(uint8_t *buf, size_t len)
{
	put_le32(buf + 4, 0);
	put_le32(buf + 4, vdisk_crc32c(0, buf, len));
}

/* Fixes the checksum of the structure at @off in @fd when it starts with @sig. */
static void fix_struct(int fd, uint64_t off, size_t len, const char *sig)
{
	static uint8_t buf[64 * 1024];

	if (pread(fd, buf, len, (off_t)off) != (ssize_t)len || memcmp(buf, sig, strlen(sig)))
		return;
	set_crc(buf, len);
	(void)!pwrite(fd, buf, len, (off_t)off);
}

/* Fixes every non-wrapping log entry of the log that the header at @hdr_off points to. */
static void fix_log(int fd, uint64_t hdr_off)
{
	static uint8_t log[MAX_LOG_SCAN];
	uint8_t hdr[80];
	uint64_t log_off, log_len;

	if (pread(fd, hdr, sizeof(hdr), (off_t)hdr_off) != sizeof(hdr) || memcmp(hdr, "head", 4))
		return;
	log_len = le32(hdr + 68);
	log_off = le32(hdr + 72) | (uint64_t)le32(hdr + 76) << 32;
	if (log_len > MAX_LOG_SCAN || log_off % PAGE_BYTES ||
	    log_off + log_len > (uint64_t)MAX_PAGES * PAGE_BYTES)
		return;
	if (pread(fd, log, log_len, (off_t)log_off) != (ssize_t)log_len)
		return;
	for (uint64_t p = 0; p + PAGE_BYTES <= log_len;) {
		uint32_t entry_len = le32(log + p + 8);

		if (memcmp(log + p, "loge", 4) || entry_len == 0 || entry_len % PAGE_BYTES ||
		    entry_len > log_len - p) {
			p += PAGE_BYTES;
			continue;
		}
		set_crc(log + p, entry_len);
		p += entry_len;
	}
	(void)!pwrite(fd, log, log_len, (off_t)log_off);
}

static void fix_checksums(int fd)
{
	fix_struct(fd, 64 * 1024, 4096, "head");
	fix_struct(fd, 128 * 1024, 4096, "head");
	fix_struct(fd, 192 * 1024, 64 * 1024, "regi");
	fix_struct(fd, 256 * 1024, 64 * 1024, "regi");
	fix_log(fd, 64 * 1024);
	fix_log(fd, 128 * 1024);
}

/* Expands the sparse description into @fd. Returns 0 or -errno. */
static int expand(int fd, const uint8_t *data, size_t size)
{
	uint64_t file_pages = (le32(data) & ~FLAG_FIX_CRC) % (MAX_PAGES + 1);
	size_t pos = RECORD_HDR;

	while (pos + RECORD_HDR <= size) {
		uint32_t page = le32(data + pos) & (MAX_PAGES - 1);
		size_t len = size - pos - RECORD_HDR;

		if (len > PAGE_BYTES)
			len = PAGE_BYTES;
		if (pwrite(fd, data + pos + RECORD_HDR, len, (off_t)page * PAGE_BYTES) !=
		    (ssize_t)len)
			return -errno;
		/* A short last record still claims its whole page. */
		if (page + 1 > file_pages)
			file_pages = page + 1;
		pos += RECORD_HDR + len;
	}
	if (ftruncate(fd, (off_t)(file_pages * PAGE_BYTES)) < 0)
		return -errno;
	if (le32(data) & FLAG_FIX_CRC)
		fix_checksums(fd);
	return 0;
}

static void noop_report(void *opaque, enum vhdx_check_severity sev, const char *msg)
{
	/* Touch the message so a bad pointer or a missing NUL shows up under ASan. */
	volatile size_t n = strlen(msg);
	(void)n;
}

/* A broken API contract is a finding too: abort so the fuzzer keeps the input. */
#define contract(cond)                                                                      \
	do {                                                                                \
		if (!(cond)) {                                                              \
			fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, \
				#cond);                                                     \
			abort();                                                            \
		}                                                                           \
	} while (0)

/* Failing slow-path calls return a negative errno and leave it, with a message, in @err. */
static void check_err(int r, const struct vdisk_err *err)
{
	if (r < 0)
		contract(err->code == r && err->msg[0] != '\0');
}

/*
 * Translates and reads [@offset, @offset + @len), clipped to the disk. The
 * extents must tile a prefix of the range in order (all of it when fewer
 * than the maximum came back).
 */
static void read_range(struct vhdx_image *img, uint64_t disk, uint64_t offset, uint64_t len)
{
	static uint8_t buf[IO_BYTES];
	struct vdisk_extent ext[MAX_EXTENTS];
	uint64_t pos = offset;
	int n;

	if (offset >= disk)
		return;
	if (len > disk - offset)
		len = disk - offset;
	if (len > IO_BYTES)
		len = IO_BYTES;
	n = vhdx_translate(img, offset, len, ext, MAX_EXTENTS);
	contract(n != 0 && n <= MAX_EXTENTS);
	for (int i = 0; i < n; i++) {
		contract(ext[i].offset == pos && ext[i].length > 0);
		contract(ext[i].length <= offset + len - pos);
		contract(ext[i].type <= VDISK_EXTENT_UNALLOCATED);
		contract(ext[i].type != VDISK_EXTENT_DATA || ext[i].fd >= 0);
		pos += ext[i].length;
	}
	if (n > 0 && n < MAX_EXTENTS)
		contract(pos == offset + len);
	vhdx_pread(img, buf, len, offset);
}

static void exercise(const char *path)
{
	struct vhdx_open_opts o;
	struct vhdx_image *img = NULL;
	struct vhdx_info info;
	struct vhdx_check_result res;
	struct vdisk_err err = { 0 };
	uint64_t disk, block;
	int r;

	vhdx_open_opts_init(&o, sizeof(o));
	o.flags = VHDX_OPEN_RDONLY | VHDX_OPEN_NOLOCK | VHDX_OPEN_NO_PARENT;
	r = vhdx_open(path, &o, &img, &err);
	check_err(r, &err);
	if (r == 0) {
		contract(img != NULL);
		vhdx_get_info(img, &info);
		disk = vhdx_disk_size(img);
		block = vhdx_block_size(img);
		/*
		 * One sector-sized page at the start (present in the child when a
		 * differencing seed wrote it: reaches the sector bitmap without
		 * needing the parent), then start, middle and end of the disk,
		 * and a range across the first block boundary.
		 */
		read_range(img, disk, 0, 4096);
		read_range(img, disk, 0, IO_BYTES);
		read_range(img, disk, disk / 2 & ~(uint64_t)511, IO_BYTES);
		read_range(img, disk, disk > IO_BYTES ? disk - IO_BYTES : 0, IO_BYTES);
		if (block > 4096)
			read_range(img, disk, block - 4096, 8192);
		/* Unaligned, odd-length read. */
		read_range(img, disk, disk / 3 + 1, 1000);
		vdisk_err_clear(&err);
		check_err(vhdx_close(img, &err), &err);
	}
	vdisk_err_clear(&err);
	memset(&res, 0, sizeof(res));
	check_err(vhdx_check(path, 0, noop_report, NULL, &res, &err), &err);
	if (!res.opened || res.corruptions == 0)
		return;
	/*
	 * The memfd belongs to this input alone, so the repair paths (log
	 * replay on disk, region table rewrite, truncation) may write to it.
	 */
	vdisk_err_clear(&err);
	check_err(vhdx_check(path, VHDX_CHECK_REPAIR, noop_report, NULL, &res, &err), &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd;

	/* vdisk's snapshot metadata item, read from any child: the input as an item */
	{
		char name[256];
		int64_t t;
		uint32_t fl;
		if (vhdx_snap_item_decode(data, size, name, sizeof(name), &t, &fl) &&
		    strlen(name) >= sizeof(name))
			abort();
	}
	if (size < RECORD_HDR)
		return 0;
	fd = memfd_create("fuzz-vhdx-open", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (expand(fd, data, size) == 0) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		exercise(path);
	}
	close(fd);
	return 0;
}
