/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "image-index.h"

static int parse_option(int id, const char *arg) {
        return -EINVAL;
}

static int remove_one(const Store *store, const char *query) {
        ImageRecord **found = NULL;
        size_t n = 0;
        int r;

        r = image_index_find(store, query, &found, &n);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                r = image_index_remove(store, found[i]);
                if (r == -ENOENT)
                        continue;  /* removed concurrently: the outcome the user asked for */
                if (r < 0) {
                        error_set(r, "cannot remove the record of '%s': %s", found[i]->name,
                                  strerror(-r));
                        break;
                }
                printf("Removed %s\n", found[i]->name);
        }

        image_record_array_free(found, n);
        return r < 0 && r != -ENOENT ? r : 0;
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        int r, ret = 0;

        r = store_open(config->root_dir, &store);
        if (r < 0) {
                log_error("Failed to open the store: %s", error_message(r));
                return EXIT_FAILURE;
        }

        /* Each argument is removed on its own, so one bad name does not stop the others. */
        for (int i = 0; i < argc; i++) {
                r = remove_one(store, argv[i]);
                if (r < 0) {
                        log_error("Failed to remove image '%s': %s", argv[i], error_message(r));
                        ret = EXIT_FAILURE;
                }
        }
        return ret;
}

const CliCommand cmd_image_rm = {
        .group = "image",
        .name = "rm",
        .args = "IMAGE...",
        .summary = "Remove images from the index",
        .description = "Only the index entries go; 'cocoon gc' reclaims blobs no image or VM uses.\n"
                       "IMAGE is a name, an image id or an id prefix of at least 4 hex digits.",
        .min_args = 1,
        .max_args = -1,
        .parse_option = parse_option,
        .run = run,
};
