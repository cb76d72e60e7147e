/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "commands.h"
#include "error.h"
#include "image-index.h"
#include "output.h"

static int parse_option(int id, const char *arg) {
        return -EINVAL;
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        ImageRecord **found = NULL;
        json_t *j;
        size_t n = 0;
        int r;

        r = store_open(config->root_dir, &store);
        if (r >= 0)
                r = image_index_find(store, argv[0], &found, &n);
        if (r >= 0 && n > 1)
                r = error_set(-ENOTUNIQ, "'%s' names %zu images; use a full name", argv[0], n);
        if (r < 0) {
                image_record_array_free(found, n);
                log_error("Failed to inspect image '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }

        j = image_record_to_public_json(store, found[0], true);
        r = j ? output_json(j) : -ENOMEM;
        json_decref(j);
        image_record_array_free(found, n);
        if (r < 0) {
                log_error("Failed to print image '%s': %s", argv[0], error_message(r));
                return EXIT_FAILURE;
        }
        return 0;
}

const CliCommand cmd_image_inspect = {
        .group = "image",
        .name = "inspect",
        .args = "IMAGE",
        .summary = "Show an image as JSON",
        .description = "IMAGE is a name (\"ubuntu:24.04\" and \"docker.io/library/ubuntu:24.04\" are one\n"
                       "image), a URL of a cloud image, an image id, or an id prefix.",
        .min_args = 1,
        .max_args = 1,
        .parse_option = parse_option,
        .run = run,
};
