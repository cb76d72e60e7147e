/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "network.h"
#include "store.h"

typedef enum GcItemKind {
        GC_BLOB,          /* an image blob no image or VM references */
        GC_BOOT,          /* the boot files of such a layer */
        GC_VM_CREATING,   /* a VM stuck in "creating" for more than a day */
        GC_VM_ORPHAN,     /* a VM directory without a readable record */
        GC_RUN_DIR,       /* a runtime directory of no VM */
        GC_NAME,          /* a name reservation whose VM is gone */
        GC_TEMP,          /* a work directory untouched for more than an hour */
        GC_LOCK,          /* a lock file of something that no longer exists */
        GC_NETWORK,       /* a network namespace, TAPs and CNI leases of no VM */
        _GC_ITEM_KIND_MAX,
} GcItemKind;

const char *gc_item_kind_to_string(GcItemKind k);

/* Reported for every item gc removes, would remove (dry run), skips because it is in use, or
 * fails to remove (r < 0). */
typedef enum GcOutcome {
        GC_REMOVED,
        GC_WOULD_REMOVE,
        GC_SKIPPED_IN_USE,
        GC_FAILED,
} GcOutcome;

typedef void (*GcReportFunc)(void *userdata, GcItemKind kind, const char *what, uint64_t size,
                             GcOutcome outcome, int r);

typedef struct GcOptions {
        const Store *store;
        const char *run_dir;
        const NetworkConfig *network;   /* NULL: leave networks alone */
        bool dry_run;
        uint64_t now_sec;               /* current time; 0 = now */
        uint64_t temp_max_age_sec;      /* 0 = 3600 */
        uint64_t creating_max_age_sec;  /* 0 = 86400 */
        GcReportFunc report;
        void *userdata;
} GcOptions;

/* Collect garbage under the root directory. Items locked by a running pull, create or start are
 * skipped (and reported), not waited for; one item failing does not stop the others. Returns the
 * number of items that failed, or a negative errno when gc could not run at all. */
int gc_run(const GcOptions *opts);
