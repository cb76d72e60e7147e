/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <string.h>

#include "error.h"
#include "qcow2.h"

/* qemu accepts clusters from 512 bytes to 2 MiB. */
#define QCOW2_CLUSTER_BITS_MIN 9U
#define QCOW2_CLUSTER_BITS_MAX 21U

static uint32_t read_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static uint64_t read_be64(const uint8_t *p) {
        return (uint64_t) read_be32(p) << 32 | read_be32(p + 4);
}

/* Walk the header extensions, which start right after the header and end with an extension of
 * type 0 or at the end of the first cluster (or at the backing file name, if that comes first). */
static int parse_extensions(const uint8_t *data, size_t size, Qcow2Header *h) {
        uint64_t end = UINT64_C(1) << h->cluster_bits;
        uint64_t offset = h->header_length;

        if (h->backing_file_offset > 0 && h->backing_file_offset < end)
                end = h->backing_file_offset;

        while (offset < end) {
                uint32_t type, length;
                uint64_t next;

                if (offset + 8 > end)
                        return error_set(-EBADMSG, "qcow2 header extension at offset %" PRIu64
                                                   " is cut off at offset %" PRIu64, offset, end);
                if (offset + 8 > size)
                        return error_set(-EBADMSG, "qcow2 header is truncated: its extensions run "
                                                   "past the end of the file at %zu bytes", size);

                type = read_be32(data + offset);
                length = read_be32(data + offset + 4);
                if (type == QCOW2_EXT_END)
                        return 0;

                /* Extension data is padded to a multiple of 8 bytes. */
                next = offset + 8 + ALIGN_TO((uint64_t) length, 8);
                if (next > end)
                        return error_set(-EBADMSG, "qcow2 header extension 0x%08" PRIx32 " of %" PRIu32
                                                   " bytes is cut off at offset %" PRIu64,
                                         type, length, end);
                if (next > size)
                        return error_set(-EBADMSG, "qcow2 header is truncated: its extensions run "
                                                   "past the end of the file at %zu bytes", size);

                if (type == QCOW2_EXT_BACKING_FORMAT)
                        h->has_backing_format_ext = true;
                else if (type == QCOW2_EXT_DATA_FILE)
                        h->has_data_file_ext = true;

                offset = next;
        }
        return 0;
}

int qcow2_header_parse(const void *data, size_t size, Qcow2Header *ret) {
        const uint8_t *p = data;
        Qcow2Header h = {};
        int r;

        if (size < 8 || memcmp(p, QCOW2_MAGIC, 4) != 0)
                return error_set(-EBADMSG, "not a qcow2 image: the magic 'QFI\\xfb' is missing");

        h.version = read_be32(p + 4);
        if (h.version != 2 && h.version != 3)
                return error_set(-EPROTONOSUPPORT, "unsupported qcow2 version %" PRIu32
                                                   ": expected 2 or 3", h.version);

        if (size < QCOW2_V2_HEADER_LENGTH)
                return error_set(-EBADMSG, "qcow2 header is truncated: the file has %zu bytes, "
                                           "the header needs %u", size, QCOW2_V2_HEADER_LENGTH);

        h.backing_file_offset = read_be64(p + 8);
        h.backing_file_size = read_be32(p + 16);
        h.cluster_bits = read_be32(p + 20);
        h.virtual_size = read_be64(p + 24);
        h.crypt_method = read_be32(p + 32);
        h.l1_size = read_be32(p + 36);
        h.l1_table_offset = read_be64(p + 40);
        h.refcount_table_offset = read_be64(p + 48);
        h.refcount_table_clusters = read_be32(p + 56);
        h.nb_snapshots = read_be32(p + 60);
        h.snapshots_offset = read_be64(p + 64);
        h.header_length = QCOW2_V2_HEADER_LENGTH;

        if (h.version == 3) {
                if (size < QCOW2_V3_HEADER_LENGTH_MIN)
                        return error_set(-EBADMSG, "qcow2 header is truncated: the file has %zu "
                                                   "bytes, a version 3 header needs %u",
                                         size, QCOW2_V3_HEADER_LENGTH_MIN);
                h.incompatible_features = read_be64(p + 72);
                h.compatible_features = read_be64(p + 80);
                h.autoclear_features = read_be64(p + 88);
                h.header_length = read_be32(p + 100);
                if (h.header_length < QCOW2_V3_HEADER_LENGTH_MIN || h.header_length % 8 != 0)
                        return error_set(-EBADMSG, "invalid qcow2 header length %" PRIu32
                                                   ": expected a multiple of 8 of at least %u",
                                         h.header_length, QCOW2_V3_HEADER_LENGTH_MIN);
        }

        if (h.cluster_bits < QCOW2_CLUSTER_BITS_MIN || h.cluster_bits > QCOW2_CLUSTER_BITS_MAX)
                return error_set(-EBADMSG, "invalid qcow2 cluster size 2^%" PRIu32
                                           ": expected 2^%u to 2^%u bytes",
                                 h.cluster_bits, QCOW2_CLUSTER_BITS_MIN, QCOW2_CLUSTER_BITS_MAX);

        if (h.header_length > (UINT64_C(1) << h.cluster_bits))
                return error_set(-EBADMSG, "invalid qcow2 header length %" PRIu32
                                           ": larger than a cluster", h.header_length);
        if (h.header_length > size)
                return error_set(-EBADMSG, "qcow2 header is truncated: the file has %zu bytes, "
                                           "the header needs %" PRIu32, size, h.header_length);

        if (h.virtual_size > INT64_MAX)
                return error_set(-EBADMSG, "invalid qcow2 virtual size %" PRIu64, h.virtual_size);

        r = parse_extensions(p, size, &h);
        if (r < 0)
                return r;

        *ret = h;
        return 0;
}

bool qcow2_header_has_backing_file(const Qcow2Header *h) {
        /* Either field alone is enough for some reader to go looking for a file. */
        return h->backing_file_offset != 0 || h->backing_file_size != 0;
}

bool qcow2_header_has_data_file(const Qcow2Header *h) {
        return (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) || h->has_data_file_ext;
}

int qcow2_header_check_self_contained(const Qcow2Header *h) {
        /* Converting such an image would copy a file of this host into the new image. */
        if (qcow2_header_has_backing_file(h))
                return error_set(-EPERM, "qcow2 image declares a backing file, which would make "
                                         "qemu-img read a file of this host: only self-contained "
                                         "images are accepted");
        if (qcow2_header_has_data_file(h))
                return error_set(-EPERM, "qcow2 image declares an external data file, which would "
                                         "make qemu-img read a file of this host: only "
                                         "self-contained images are accepted");

        if (h->crypt_method != 0)
                return error_set(-EOPNOTSUPP, "qcow2 image is encrypted (method %" PRIu32
                                              "), which is not supported", h->crypt_method);
        if (h->incompatible_features & QCOW2_INCOMPAT_CORRUPT)
                return error_set(-EOPNOTSUPP, "qcow2 image is marked corrupt");
        if (h->virtual_size == 0)
                return error_set(-EOPNOTSUPP, "qcow2 image has a virtual size of 0 bytes");
        return 0;
}

static int check_table(const char *what, uint64_t offset, uint64_t length, uint64_t file_size) {
        if (offset > file_size || length > file_size - offset)
                return error_set(-EBADMSG, "qcow2 %s (offset %" PRIu64 ", %" PRIu64 " bytes) lies "
                                           "beyond the end of the file at %" PRIu64 " bytes; "
                                           "is the download truncated?",
                                 what, offset, length, file_size);
        return 0;
}

int qcow2_header_check_file_size(const Qcow2Header *h, uint64_t file_size) {
        uint64_t cluster_size = UINT64_C(1) << h->cluster_bits;
        int r;

        /* The multiplications cannot overflow: both factors are below 2^32 and 2^21. */
        r = check_table("L1 table", h->l1_table_offset, (uint64_t) h->l1_size * 8, file_size);
        if (r < 0)
                return r;
        r = check_table("refcount table", h->refcount_table_offset,
                        (uint64_t) h->refcount_table_clusters * cluster_size, file_size);
        if (r < 0)
                return r;
        if (h->nb_snapshots > 0)
                return check_table("snapshot table", h->snapshots_offset, 1, file_size);
        return 0;
}

const char *qcow2_compat_to_string(uint32_t version) {
        switch (version) {
        case 2:
                return "0.10";
        case 3:
                return "1.1";
        default:
                return NULL;
        }
}
