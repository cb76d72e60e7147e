/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image-index.h"
#include "store.h"

/* Cloud images: a disk image downloaded over HTTP(S), such as Ubuntu's
 * noble-server-cloudimg-amd64.img, stored as a read-only qcow2 version 3 base at
 * blobs/sha256/<hex>.qcow2, where <hex> is the sha256 of the downloaded bytes. VMs boot it with
 * UEFI firmware behind a qcow2 overlay of their own. */

#define CLOUDIMG_MAX_SIZE_DEFAULT (UINT64_C(20) << 30)
#define CLOUDIMG_MAX_REDIRECTS 10U
#define CLOUDIMG_MAX_ATTEMPTS 5U
/* Long enough for a 20 GiB image on a slow disk. */
#define CLOUDIMG_CONVERT_TIMEOUT_SEC_DEFAULT (60U * 60U)

typedef enum CloudImgFormat {
        CLOUDIMG_FORMAT_QCOW2,
        CLOUDIMG_FORMAT_RAW,
        _CLOUDIMG_FORMAT_MAX,
        _CLOUDIMG_FORMAT_INVALID = -EINVAL,
} CloudImgFormat;

const char *cloudimg_format_to_string(CloudImgFormat f);

/* How the downloaded bytes were checked against the publisher's checksum. */
typedef enum CloudImgVerification {
        CLOUDIMG_NOT_VERIFIED,
        CLOUDIMG_VERIFIED_BY_SHA256SUMS,  /* the SHA256SUMS file next to the image */
        CLOUDIMG_VERIFIED_BY_CHECKSUM,    /* the checksum the caller passed */
} CloudImgVerification;

/* Progress events, called on the pulling thread. The engine never prints; the command renders
 * these. Any callback may be NULL. */
typedef struct CloudImgProgress {
        void *userdata;
        /* A response with the image starts; offset > 0 when it resumes a cut transfer. size is
         * the whole image in bytes, 0 when the server did not say. */
        void (*download_started)(void *userdata, const char *url, uint64_t offset, uint64_t size);
        void (*download_bytes)(void *userdata, uint64_t done, uint64_t size);
        /* A transfer failed with reason and is tried again (attempt counts from 1). */
        void (*download_retry)(void *userdata, unsigned attempt, unsigned max_attempts,
                               const char *reason);
        void (*download_done)(void *userdata, uint64_t size);
        /* qemu-img starts to convert the download; not called when the blob is already stored. */
        void (*convert_started)(void *userdata, CloudImgFormat format);
} CloudImgProgress;

typedef struct CloudImgOptions {
        uint64_t max_size;              /* largest download accepted; 0 = CLOUDIMG_MAX_SIZE_DEFAULT */
        const char *checksum;           /* "sha256:<hex>"; NULL = look for SHA256SUMS */
        bool force;                     /* download even when the image is up to date */
        unsigned convert_timeout_sec;   /* 0 = CLOUDIMG_CONVERT_TIMEOUT_SEC_DEFAULT */
        const CloudImgProgress *progress;
} CloudImgOptions;

/* Whether an image argument names a cloud image: it starts with http:// or https://. */
bool cloudimg_is_url(const char *s);

/* Pull the cloud image at url into the store: download it (following at most
 * CLOUDIMG_MAX_REDIRECTS redirects, resuming a cut transfer where the server supports ranges),
 * verify it against opts->checksum or the SHA256SUMS file published next to it, reject anything
 * that is not a self-contained qcow2 or raw disk image, convert it to a qcow2 version 3 base with
 * qemu-img, and record it. A failure leaves the store as it was and removes the work directory.
 * *ret_up_to_date is true when the URL's record and blob were already there and nothing was
 * fetched; *ret_verification is CLOUDIMG_NOT_VERIFIED then. */
int cloudimg_pull(const Store *s, const char *url, const CloudImgOptions *opts, ImageRecord **ret,
                  CloudImgVerification *ret_verification, bool *ret_up_to_date);

/* Cancel a running cloudimg_pull() from another thread: the pull stops its transfer or its
 * qemu-img child and fails promptly with -ECANCELED. Safe to call at any time. */
void cloudimg_pull_cancel_all(void);

/* Path of the base image of a cloud image with this content sum ("sha256:<hex>" or "<hex>"). */
char *cloudimg_blob_path(const Store *s, const char *content_sum);

/* The pure steps, exposed for tests. */

/* Reject data that is certainly not a disk image (an HTML page, a compressed file, an archive,
 * another disk format), with a reason that says what was received. head is the start of the
 * data, at least 512 bytes unless the data is shorter. */
int cloudimg_sniff_reject(const void *head, size_t size);

/* Decide the format of a complete download of file_size bytes starting with head: qcow2 by its
 * magic; otherwise raw, which must be a non-zero multiple of 512 bytes. */
int cloudimg_sniff(const void *head, size_t size, uint64_t file_size, CloudImgFormat *ret);

/* Find filename in the text of a SHA256SUMS file (lines "<hex>  <file>", "<hex> *<file>" or
 * "SHA256 (<file>) = <hex>"; other lines, such as an OpenPGP signature, are ignored). Returns
 * "sha256:<hex>" in lowercase, -ENOENT when the file is not listed, -EBADMSG with a reason when
 * it is listed twice with different checksums. */
int cloudimg_sha256sums_find(const char *text, size_t size, const char *filename, char **ret);

/* The URL of the SHA256SUMS file in the directory of url (query and fragment dropped) and the
 * URL-decoded file name it lists the image under. -EINVAL with a reason for an invalid URL,
 * -ENOENT when the path has no file name (it ends with '/'). */
int cloudimg_sha256sums_url(const char *url, char **ret_url, char **ret_filename);

/* Parse a Content-Range header value "bytes <first>-<last>/<total>"; total is 0 for '*'. */
int cloudimg_parse_content_range(const char *value, uint64_t *ret_first, uint64_t *ret_last,
                                 uint64_t *ret_total);
