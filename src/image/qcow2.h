/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A parser for the qcow2 header (QEMU's docs/interop/qcow2.txt), for deciding whether an
 * untrusted qcow2 file is safe to hand to qemu-img. It reads memory only and never follows an
 * offset into the rest of the file, except for the header extensions, which sit in the first
 * cluster right after the header. */

#define QCOW2_MAGIC "QFI\xfb"
#define QCOW2_V2_HEADER_LENGTH 72U
#define QCOW2_V3_HEADER_LENGTH_MIN 104U

/* Incompatible feature bits (header offset 72, version 3 only). */
#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)

/* Header extension types. */
#define QCOW2_EXT_END 0x00000000U
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_DATA_FILE 0x44415441U

typedef struct Qcow2Header {
        uint32_t version;               /* 2 or 3 */
        uint64_t backing_file_offset;   /* 0 when there is no backing file */
        uint32_t backing_file_size;
        uint32_t cluster_bits;
        uint64_t virtual_size;          /* guest-visible size in bytes */
        uint32_t crypt_method;          /* 0 none, 1 AES, 2 LUKS */
        uint32_t l1_size;               /* entries of 8 bytes */
        uint64_t l1_table_offset;
        uint64_t refcount_table_offset;
        uint32_t refcount_table_clusters;
        uint32_t nb_snapshots;
        uint64_t snapshots_offset;
        uint64_t incompatible_features; /* 0 for version 2 */
        uint64_t compatible_features;
        uint64_t autoclear_features;
        uint32_t header_length;         /* 72 for version 2 */
        bool has_backing_format_ext;
        bool has_data_file_ext;         /* an external data file name in a header extension */
} Qcow2Header;

/* Parse the header at the start of data, which holds the first size bytes of the file; pass at
 * least the first cluster (or the whole file if it is smaller) so that the header extensions can
 * be checked. Returns -EBADMSG with a reason for a file that is not a well-formed qcow2 header,
 * -EPROTONOSUPPORT for a version other than 2 or 3. */
int qcow2_header_parse(const void *data, size_t size, Qcow2Header *ret);

bool qcow2_header_has_backing_file(const Qcow2Header *h);
bool qcow2_header_has_data_file(const Qcow2Header *h);

/* Check that qemu-img may read the image without opening any other file: reject a backing file,
 * an external data file, encryption, and images marked corrupt, with a reason (-EPERM for a
 * reference to another file, -EOPNOTSUPP otherwise). */
int qcow2_header_check_self_contained(const Qcow2Header *h);

/* Check that the tables the header points to (L1 table, refcount table, snapshot table) end
 * within a file of file_size bytes, which catches most truncated downloads before qemu-img reads
 * past the end (and sees zeros). -EBADMSG with a reason otherwise. */
int qcow2_header_check_file_size(const Qcow2Header *h, uint64_t file_size);

/* The qemu-img "compat" value of a header version: "0.10" for 2, "1.1" for 3. */
const char *qcow2_compat_to_string(uint32_t version);
