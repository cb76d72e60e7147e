/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "format.h"
#include "gc.h"

static bool arg_dry_run = false;

enum { ARG_DRY_RUN = 'n' };

static const CliOption options[] = {
        { "dry-run", 'n', NULL, "list what would be removed, remove nothing", ARG_DRY_RUN },
        {},
};

static int parse_option(int id, const char *arg) {
        if (id == ARG_DRY_RUN) {
                arg_dry_run = true;
                return 0;
        }
        return -EINVAL;
}

typedef struct GcTotals {
        unsigned removed, skipped, failed;
        uint64_t freed;
} GcTotals;

static void on_item(void *userdata, GcItemKind kind, const char *what, uint64_t size,
                    GcOutcome outcome, int r) {
        GcTotals *t = userdata;
        char buf[FORMAT_SIZE_MAX];

        switch (outcome) {
        case GC_REMOVED:
        case GC_WOULD_REMOVE:
                t->removed++;
                t->freed += size;
                printf("%s %s %s%s%s%s\n", outcome == GC_REMOVED ? "Removed" : "Would remove",
                       gc_item_kind_to_string(kind), what, size ? " (" : "",
                       size ? format_size_decimal(buf, sizeof(buf), size) : "", size ? ")" : "");
                break;
        case GC_SKIPPED_IN_USE:
                t->skipped++;
                printf("Skipped %s %s: in use by a running operation\n",
                       gc_item_kind_to_string(kind), what);
                break;
        case GC_FAILED:
                t->failed++;
                log_error("Failed to remove %s %s: %s", gc_item_kind_to_string(kind), what,
                          error_message(r));
                break;
        }
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        _cleanup_free_ char *cni_state = NULL;
        NetworkConfig network = {
                .conf_dir = config->cni_conf_dir,
                .bin_dir = config->cni_bin_dir,
        };
        GcTotals totals = {};
        char buf[FORMAT_SIZE_MAX];
        int r;

        r = store_open(config->root_dir, &store);
        if (r >= 0) {
                network.state_dir = cni_state = store_path(store, "cni", NULL);
                if (!cni_state)
                        r = -ENOMEM;
        }
        if (r >= 0)
                r = gc_run(&(GcOptions) {
                        .store = store,
                        .run_dir = config->run_dir,
                        .network = &network,
                        .dry_run = arg_dry_run,
                        .report = on_item,
                        .userdata = &totals,
                });
        if (r < 0) {
                log_error("Failed to collect garbage: %s", error_message(r));
                return EXIT_FAILURE;
        }

        printf("gc: %s %u %s (%s), skipped %u in use, %u failed\n",
               arg_dry_run ? "would remove" : "removed", totals.removed,
               totals.removed == 1 ? "item" : "items",
               format_size_decimal(buf, sizeof(buf), totals.freed), totals.skipped, totals.failed);
        return totals.failed > 0 ? EXIT_FAILURE : 0;
}

const CliCommand cmd_gc = {
        .name = "gc",
        .summary = "Remove unused blobs, stale work directories and leftovers of interrupted commands",
        .description = "Removes image blobs and boot files no image or VM uses, VMs stuck in \"creating\"\n"
                       "for more than a day, directories and name reservations of no VM, and work\n"
                       "directories untouched for an hour. Anything a running pull, create or start\n"
                       "holds is skipped and reported, never waited for.",
        .options = options,
        .max_args = 0,
        .parse_option = parse_option,
        .run = run,
};
