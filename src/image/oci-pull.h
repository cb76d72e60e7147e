/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "image-index.h"
#include "store.h"

/* Progress events of a pull, called from worker threads (serialised by the engine). The engine
 * itself never prints; the command renders these. Any callback may be NULL. */
typedef struct PullProgress {
        void *userdata;
        /* The manifest is resolved; n layers follow, in manifest order. */
        void (*start)(void *userdata, const char *name, size_t n_layers);
        void (*layer_cached)(void *userdata, size_t index, const char *digest);
        void (*layer_started)(void *userdata, size_t index, const char *digest, uint64_t size);
        void (*layer_bytes)(void *userdata, size_t index, uint64_t done);
        void (*layer_done)(void *userdata, size_t index, uint64_t erofs_size);
} PullProgress;

typedef struct PullOptions {
        char **insecure_registries;  /* NULL-terminated, may be NULL */
        unsigned concurrency;        /* layers fetched at once; 0 = 4 */
        const PullProgress *progress;
} PullOptions;

/* Pull an OCI image into the store: resolve the manifest for this host's platform, fetch every
 * missing layer in parallel while verifying its digest, convert each to an EROFS blob, find the
 * kernel and initrd, and commit blobs, boot files and the index record only once everything
 * checked out. A failure leaves the store as it was and removes the work directory.
 * *ret_up_to_date is true when the image was already complete and nothing was fetched. */
int oci_pull(const Store *s, const char *image, const PullOptions *opts, ImageRecord **ret,
             bool *ret_up_to_date);

/* Cancel a running oci_pull() from another thread: wakes up every transfer so the pull fails
 * promptly with -ECANCELED. Safe to call at any time. */
void oci_pull_cancel_all(void);
