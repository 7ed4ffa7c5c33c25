/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/passthrough: physical disks and LUNs handed whole to a VM, as Hyper-V's
 * passthrough disks. Discovery lists the host's block devices with their
 * geometry, stable identities (WWN, serial, by-id names, PTUUID, PARTUUID,
 * filesystem UUID, from sysfs and libblkid) and what holds them; the LUN map
 * (a text file, docs/lun-map.md) assigns devices to a VM's SCSI slots
 * (controller:target:lun) by identity, never by /dev name; safety checks
 * refuse devices that are mounted, swap, held by another block layer, carry
 * the host's root or boot filesystem, are mapped elsewhere or are open
 * exclusively; pt_lun_open() resolves an identity when the LUN is served and
 * hands the daemon an O_EXCL | O_DIRECT descriptor plus the device geometry.
 *
 * Threading: nothing here is on the data path. Functions may run in any
 * thread; one handle (list, map, LUN) must not be used by two threads at once
 * except through its const getters.
 */
#ifndef VDISK_PASSTHROUGH_H
#define VDISK_PASSTHROUGH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vdisk_disk;

/* ---- identities ---- */

/*
 * Kinds of stable identity, most stable first for a whole disk (WWN, SERIAL,
 * BYID, PTUUID, UUID) and for a partition (PARTUUID, BYID, UUID). Text form
 * "KIND=value", e.g. "WWN=naa.5000c500a1b2c3d4", "PARTUUID=0f1e...".
 */
enum pt_id_kind {
	PT_ID_NONE = 0,
	PT_ID_WWN = 1,      /* world wide name: SCSI VPD 0x83 / NVMe EUI-64, NGUID (sysfs wwid) */
	PT_ID_SERIAL = 2,   /* unit serial number: VPD 0x80, virtio-blk, NVMe */
	PT_ID_BYID = 3,     /* a /dev/disk/by-id name, without the folder (needs udev) */
	PT_ID_PTUUID = 4,   /* partition table id of a whole disk: GPT disk GUID, MBR signature */
	PT_ID_PARTUUID = 5, /* partition entry id: GPT partition GUID, MBR "signature-NN" */
	PT_ID_UUID = 6,     /* content UUID found by libblkid, usually a filesystem's */
};

#define PT_ID_VALUE_MAX 256 /* bytes of a value, NUL included */
#define PT_ID_STRLEN    (16 + PT_ID_VALUE_MAX)

struct pt_identity {
	uint32_t kind; /* enum pt_id_kind */
	char value[PT_ID_VALUE_MAX];
};

/* "WWN", "SERIAL", "BYID", "PTUUID", "PARTUUID", "UUID"; NULL for an unknown kind. */
VDISK_API const char *pt_id_kind_name(enum pt_id_kind kind);

/*
 * Parses "KIND=value" (KIND in any case; the value is printable ASCII without
 * control characters, 1..255 bytes; UUID kinds are compared case-insensitively).
 * Returns 0 or -EINVAL with @err set.
 */
VDISK_API int pt_identity_parse(const char *s, struct pt_identity *ret_id, struct vdisk_err *err);

/* Formats "KIND=value" into @buf (PT_ID_STRLEN bytes always suffice). Returns 0 or -ENOSPC. */
VDISK_API int pt_identity_format(const struct pt_identity *id, char *buf, size_t len);

/* ---- SCSI slots ---- */

#define PT_MAX_CONTROLLER 255
#define PT_MAX_TARGET     255
#define PT_MAX_LUN        16383 /* SAM flat addressing */
#define PT_SLOT_STRLEN    20

/* A slot of a VM's virtual SCSI bus. */
struct pt_slot {
	uint32_t controller;
	uint32_t target;
	uint32_t lun;
};

/* Parses "C:T:L" (decimal, within the PT_MAX_* limits). Returns 0 or -EINVAL. */
VDISK_API int pt_slot_parse(const char *s, struct pt_slot *ret_slot);
/* Formats "C:T:L" into @buf (PT_SLOT_STRLEN bytes). */
VDISK_API void pt_slot_format(const struct pt_slot *slot, char *buf);

#define PT_VM_NAME_MAX 64

/* A VM name: 1..64 of [A-Za-z0-9._-], starting with a letter or digit. */
VDISK_API bool pt_vm_name_valid(const char *vm);

/* ---- discovery ---- */

/* Why a device cannot be handed to a VM (struct pt_device.busy). */
enum pt_busy {
	PT_BUSY_MOUNTED = 1 << 0,   /* it or one of its partitions is mounted */
	PT_BUSY_SWAP = 1 << 1,      /* it or one of its partitions is active swap */
	PT_BUSY_HELD = 1 << 2,      /* held by device-mapper, MD, bcache... (sysfs holders) */
	PT_BUSY_HOST_ROOT = 1 << 3, /* holds the host's / , /boot, /boot/efi, /efi or /usr */
	PT_BUSY_EXCL = 1 << 4,      /* an O_EXCL open fails: another program claims it */
	PT_BUSY_MAPPED = 1 << 5,    /* mapped to a VM slot in the map given to discovery */
};

/*
 * The only refusal --force may override, and only when editing the map: a
 * device another program has open exclusively right now. Mapping writes
 * nothing to it, and serving re-checks with an O_EXCL open of its own.
 */
#define PT_BUSY_FORCEABLE PT_BUSY_EXCL

#define PT_DEVNAME_MAX 32
#define PT_MAX_BYID    8

/*
 * One block device (whole disk, partition, loop, dm, md...). Allocated by
 * the library; fields are only ever appended, so do not allocate or copy
 * arrays of it. Strings are "" when unknown.
 */
struct pt_device {
	char name[PT_DEVNAME_MAX];   /* kernel name: "sda", "loop0p1", "nvme0n1" */
	char path[96];               /* "/dev/NAME"; "" when /dev has no node for it */
	char parent[PT_DEVNAME_MAX]; /* a partition's whole disk; "" for a whole disk */
	uint32_t major, minor;
	uint32_t partition;   /* partition number, 0 for a whole disk */
	uint64_t start_bytes; /* a partition's offset in its disk */
	uint64_t size_bytes;
	uint32_t logical_sector_bytes;
	uint32_t physical_sector_bytes;
	uint32_t minimum_io_bytes;
	uint32_t optimal_io_bytes;      /* 0: the device states none */
	int32_t alignment_offset_bytes; /* -1: the kernel reports it misaligned */
	uint32_t reserved0;
	uint64_t discard_granularity_bytes;
	uint64_t discard_max_bytes;      /* 0: no discard */
	uint64_t write_zeroes_max_bytes; /* 0: no write-zeroes offload */
	bool rotational;
	bool readonly;
	bool removable;
	char vendor[64];
	char model[128];
	char serial[128];
	char wwn[128];           /* the kernel's wwid: "naa.5000...", "eui.0025..." */
	char backing_file[1024]; /* loop devices: the file behind it */
	unsigned by_id_count;
	char by_id[PT_MAX_BYID][128]; /* /dev/disk/by-id names pointing here (with udev only) */
	char pttype[16];              /* partition table on it: "gpt", "dos" */
	char ptuuid[64];
	char partuuid[64]; /* partitions: the entry's id in the parent's table */
	char partlabel[128];
	char parttype[64]; /* partition type GUID or MBR type */
	char fstype[32];   /* content type found by libblkid: "ext4", "swap", "LVM2_member" */
	char uuid[64];
	char label[128];
	int probe_error;      /* 0, or -errno when libblkid could not read it */
	uint32_t busy;        /* enum pt_busy bits */
	char mountpoint[256]; /* first mount point (of it or a partition, "sda1:/boot") */
	char holders[256]; /* holders, space-separated ("dm-0", or "sda1:md0" for a partition's) */
	char mapped_to[128]; /* "VM C:T:L" of the first map entry naming it */
};

enum {
	PT_DISCOVER_NO_PROBE = 1 << 0, /* skip libblkid (no content identities) */
	PT_DISCOVER_NO_EXCL = 1 << 1,  /* do not try O_EXCL opens (PT_BUSY_EXCL never set) */
	PT_DISCOVER_EMPTY = 1 << 2,    /* include devices of size 0 (unattached loop devices) */
};

struct pt_lunmap;

struct pt_discover_opts {
	size_t struct_size;          /* set by pt_discover_opts_init() */
	unsigned flags;              /* PT_DISCOVER_* */
	const struct pt_lunmap *map; /* sets PT_BUSY_MAPPED and mapped_to; may be NULL */
	const char *sysfs_root;      /* default "/sys"; tests point these at a fake tree */
	const char *proc_root;       /* default "/proc" (self/mountinfo, swaps) */
	const char *dev_root;        /* default "/dev" (device nodes, disk/by-id) */
};

VDISK_API void pt_discover_opts_init(struct pt_discover_opts *o, size_t size);

struct pt_device_list;

/*
 * Lists every block device of the host (hidden and, unless asked, empty ones
 * left out), sorted by name. Opens each device read-only to probe it and,
 * unless PT_DISCOVER_NO_EXCL, once more with O_EXCL for an instant to learn
 * whether someone claims it. @o may be NULL. Returns 0 or -errno with @err set.
 */
VDISK_API int pt_discover(const struct pt_discover_opts *o, struct pt_device_list **ret_list,
			  struct vdisk_err *err);
/* NULL-safe. */
VDISK_API void pt_device_list_free(struct pt_device_list *list);
VDISK_API size_t pt_device_list_count(const struct pt_device_list *list);
/* The @i-th device, borrowed until the list is freed; NULL past the end. */
VDISK_API const struct pt_device *pt_device_list_get(const struct pt_device_list *list, size_t i);

/* True when @dev carries @id (WWN compared as naa./0x-insensitive, UUIDs case-insensitively). */
VDISK_API bool pt_device_has_identity(const struct pt_device *dev, const struct pt_identity *id);

/*
 * The single device of @list carrying @id. -ENODEV when none does, -ENOTUNIQ
 * when several do (a cloned disk); the message names the identity.
 */
VDISK_API int pt_device_resolve(const struct pt_device_list *list, const struct pt_identity *id,
				const struct pt_device **ret_dev, struct vdisk_err *err);

/*
 * Finds the device a user named: a /dev path (symlinks followed), a
 * /dev/disk/by-id name, a WWN or serial number as such, or "KIND=value".
 * Returns 0, -ENODEV, -ENOTUNIQ or -ENOTBLK with @err set.
 */
VDISK_API int pt_device_find(const struct pt_device_list *list, const char *arg,
			     const struct pt_device **ret_dev, struct vdisk_err *err);

/*
 * The most stable identity of @dev that names only it in @list (see enum
 * pt_id_kind for the order). -ENOENT when it has none, with a hint.
 */
VDISK_API int pt_device_stable_identity(const struct pt_device_list *list,
					const struct pt_device *dev, struct pt_identity *ret_id,
					struct vdisk_err *err);

/*
 * Describes the busy bits of @dev ("mounted on /mnt; held by dm-0"). Writes
 * "" when it is free. Returns @buf.
 */
VDISK_API const char *pt_device_busy_text(const struct pt_device *dev, char *buf, size_t len);

/* ---- safety ---- */

enum {
	PT_CHECK_FORCE = 1 << 0,    /* override PT_BUSY_FORCEABLE refusals */
	PT_CHECK_READONLY = 1 << 1, /* the LUN is read-only (a read-only device is fine) */
};

/*
 * Decides whether @dev may be given to slot @slot of @vm: refuses (-EBUSY,
 * or -EROFS for a read-only device mapped read-write) with the reason and
 * what to do about it when @dev is mounted, swap, held, holds the host's
 * root or boot filesystem, overlaps a device @map gives to another slot (the
 * device itself, its whole disk or one of its partitions), or is claimed
 * exclusively (overridable with PT_CHECK_FORCE). @map, @vm and @slot may be
 * NULL (no map to compare with). Returns 0 when it may.
 */
VDISK_API int pt_safety_check(const struct pt_device_list *list, const struct pt_device *dev,
			      const struct pt_lunmap *map, const char *vm,
			      const struct pt_slot *slot, unsigned flags, struct vdisk_err *err);

/*
 * For `vdisk snapshot` and `vdisk merge` (@op): passthrough disks have no
 * snapshots. Returns -EOPNOTSUPP with a message when @path is a block device
 * (a passthrough LUN, or a device that could be one), else 0. A missing
 * @path is not this function's business (0).
 */
VDISK_API int pt_refuse_snapshot(const char *op, const char *path, struct vdisk_err *err);

/* ---- the LUN map ---- */

/* One line of the map: VM, slot, mode, identity. Plain value. */
struct pt_lun_entry {
	char vm[PT_VM_NAME_MAX + 1];
	struct pt_slot slot;
	bool readonly;
	struct pt_identity id;
	unsigned line; /* line number in the file it came from, 0 when added in memory */
};

/*
 * The default map file: $VDISK_LUN_MAP when set and not empty, else
 * /var/lib/vdisk/luns.conf. Borrowed (environment or static storage).
 */
VDISK_API const char *pt_lunmap_default_path(void);

/* An empty map. Returns 0 or -ENOMEM. */
VDISK_API int pt_lunmap_new(struct pt_lunmap **ret_map);

/*
 * Parses map text (format in docs/lun-map.md); @name (a file name) prefixes
 * messages, which give the line and column. Comments and blank lines are
 * kept for pt_lunmap_format(). Returns 0 or -EINVAL with @err set.
 */
VDISK_API int pt_lunmap_parse(const char *text, size_t len, const char *name,
			      struct pt_lunmap **ret_map, struct vdisk_err *err);

/* Reads and parses @path. A missing file is an empty map. Returns 0 or -errno. */
VDISK_API int pt_lunmap_load(const char *path, struct pt_lunmap **ret_map, struct vdisk_err *err);

/* NULL-safe. */
VDISK_API void pt_lunmap_free(struct pt_lunmap *map);
VDISK_API size_t pt_lunmap_count(const struct pt_lunmap *map);
/* The @i-th entry in file order, borrowed until the next change or free; NULL past the end. */
VDISK_API const struct pt_lun_entry *pt_lunmap_get(const struct pt_lunmap *map, size_t i);
/* The entry of @vm at @slot, or NULL. Borrowed likewise. */
VDISK_API const struct pt_lun_entry *pt_lunmap_find(const struct pt_lunmap *map, const char *vm,
						    const struct pt_slot *slot);

/*
 * Adds @e, or replaces the entry at its slot when that entry names the same
 * identity (changing the mode). -EEXIST when the slot holds another identity,
 * -EINVAL for an invalid VM name or identity.
 */
VDISK_API int pt_lunmap_set(struct pt_lunmap *map, const struct pt_lun_entry *e,
			    struct vdisk_err *err);
/* Removes the entry of @vm at @slot, copying it to @ret_removed (may be NULL). -ENOENT if none. */
VDISK_API int pt_lunmap_remove(struct pt_lunmap *map, const char *vm, const struct pt_slot *slot,
			       struct pt_lun_entry *ret_removed, struct vdisk_err *err);

/* The map as text (parses back to the same entries). Caller frees *ret_text with free(). */
VDISK_API int pt_lunmap_format(const struct pt_lunmap *map, char **ret_text, size_t *ret_len,
			       struct vdisk_err *err);

/* ---- editing the map file (vdisk lun map / unmap) ---- */

struct pt_map_opts {
	size_t struct_size;                      /* set by pt_map_opts_init() */
	bool readonly;                           /* map read-only */
	bool force;                              /* override PT_BUSY_FORCEABLE refusals */
	const struct pt_discover_opts *discover; /* NULL: the host's real /sys, /proc, /dev */
};

VDISK_API void pt_map_opts_init(struct pt_map_opts *o, size_t size);

/*
 * Maps @device (anything pt_device_find() takes) to @slot of @vm in the map
 * file @map_path, stored as its most stable identity, after the safety
 * checks. The file is edited under an exclusive flock() of "@map_path.lock"
 * and replaced atomically (temporary file, fsync, rename, fsync of the
 * folder), which is created when missing. @ret_entry (may be NULL) receives
 * what was written. Returns 0 or -errno with @err set.
 */
VDISK_API int pt_lun_map(const char *map_path, const char *vm, const struct pt_slot *slot,
			 const char *device, const struct pt_map_opts *o,
			 struct pt_lun_entry *ret_entry, struct vdisk_err *err);

/* Removes the entry of @vm at @slot from @map_path, locked and atomic likewise. -ENOENT if none. */
VDISK_API int pt_lun_unmap(const char *map_path, const char *vm, const struct pt_slot *slot,
			   struct pt_lun_entry *ret_removed, struct vdisk_err *err);

/* ---- serving: opening a mapped LUN ---- */

/* What the guest should be told about the device. */
struct pt_geometry {
	uint64_t size_bytes;
	uint32_t logical_sector_bytes;
	uint32_t physical_sector_bytes;
	uint32_t minimum_io_bytes;
	uint32_t optimal_io_bytes;       /* 0: none stated */
	uint32_t alignment_offset_bytes; /* of the first logical sector within a physical one */
	uint32_t reserved0;
	uint64_t discard_granularity_bytes;
	uint64_t discard_max_bytes;      /* 0: BLKDISCARD unsupported */
	uint64_t write_zeroes_max_bytes; /* 0: BLKZEROOUT falls back to writing zeros */
	bool readonly;                   /* the LUN (map entry or device) is read-only */
	bool rotational;
	bool discard;      /* discard_max_bytes > 0 */
	bool write_zeroes; /* write_zeroes_max_bytes > 0 */
};

/*
 * Reads the geometry of an open block device (BLK* ioctls, queue limits from
 * sysfs /sys/dev/block/MAJ:MIN). Returns 0 or -errno (-ENOTBLK for a file).
 */
VDISK_API int pt_geometry_from_fd(int fd, struct pt_geometry *ret_geo, struct vdisk_err *err);

enum {
	PT_OPEN_NO_DIRECT = 1 << 0, /* buffered I/O instead of O_DIRECT */
	PT_OPEN_READONLY = 1 << 1,  /* read-only even if the map says read-write */
};

struct pt_open_opts {
	size_t struct_size;                      /* set by pt_open_opts_init() */
	unsigned flags;                          /* PT_OPEN_* */
	const struct pt_discover_opts *discover; /* NULL: the host's real /sys, /proc, /dev */
};

VDISK_API void pt_open_opts_init(struct pt_open_opts *o, size_t size);

struct pt_lun;

/*
 * Opens the LUN @map gives to @slot of @vm: resolves its identity among the
 * devices present now (-ENODEV naming the identity when it is missing,
 * -ENOTUNIQ when it matches several), applies every safety check (nothing is
 * forced) and opens the device O_EXCL | O_DIRECT (read-only or read-write as
 * mapped), then checks the node it opened is the device it resolved. The
 * claim lasts until pt_lun_close(). @o may be NULL. Returns 0 or -errno
 * (-ENOENT when @map has no such entry) with @err set.
 */
VDISK_API int pt_lun_open(const struct pt_lunmap *map, const char *vm, const struct pt_slot *slot,
			  const struct pt_open_opts *o, struct pt_lun **ret_lun,
			  struct vdisk_err *err);

/*
 * Opens every LUN of @vm (all or none), in slot order, into a malloc'd array
 * of *@ret_count handles. Free with pt_lun_close_all(). -ENOENT when @vm has
 * no LUN.
 */
VDISK_API int pt_lun_open_vm(const struct pt_lunmap *map, const char *vm,
			     const struct pt_open_opts *o, struct pt_lun ***ret_luns,
			     size_t *ret_count, struct vdisk_err *err);

/*
 * Opens one device named as pt_device_find() takes it, outside any map
 * (`vdisk serve /dev/DEVICE`), with the same checks; @map (may be NULL) is
 * consulted so a device mapped to a VM is not served twice. @readonly adds
 * PT_OPEN_READONLY.
 */
VDISK_API int pt_lun_open_device(const char *device, const struct pt_lunmap *map, bool readonly,
				 const struct pt_open_opts *o, struct pt_lun **ret_lun,
				 struct vdisk_err *err);

/* Releases the claim and closes the descriptor. Returns 0. NULL-safe. */
VDISK_API int pt_lun_close(struct pt_lun *lun);
/* Closes @count handles and frees the array from pt_lun_open_vm(). NULL-safe. */
VDISK_API void pt_lun_close_all(struct pt_lun **luns, size_t count);

/* The O_EXCL descriptor; owned by the LUN (do not close it). */
VDISK_API int pt_lun_fd(const struct pt_lun *lun);
/* Borrowed until pt_lun_close(). */
VDISK_API const struct pt_geometry *pt_lun_geometry(const struct pt_lun *lun);
/* The /dev path it resolved to right now. Borrowed. */
VDISK_API const char *pt_lun_path(const struct pt_lun *lun);
/* The map entry it was opened from (a copy), or NULL for pt_lun_open_device(). Borrowed. */
VDISK_API const struct pt_lun_entry *pt_lun_entry(const struct pt_lun *lun);
/* The device as discovered when opened. Borrowed. */
VDISK_API const struct pt_device *pt_lun_device(const struct pt_lun *lun);

/*
 * A struct vdisk_disk (raw format) over the claimed device, for code written
 * against disk.h: it reopens the LUN's descriptor through /proc/self/fd, so
 * it is the same device even if /dev changed meanwhile. @flags are
 * VDISK_OPEN_* (VDISK_OPEN_RDONLY is added for a read-only LUN). Close the
 * disk with vdisk_disk_close() before the LUN. Returns 0 or -errno.
 */
VDISK_API int pt_lun_disk_open(const struct pt_lun *lun, unsigned flags,
			       struct vdisk_disk **ret_disk, struct vdisk_err *err);

#ifdef __cplusplus
}
#endif

#endif /* VDISK_PASSTHROUGH_H */
