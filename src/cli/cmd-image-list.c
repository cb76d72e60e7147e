/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "error.h"
#include "format.h"
#include "image-index.h"
#include "output.h"

static OutputFormat arg_format = OUTPUT_TABLE;
static bool arg_quiet = false;

enum { ARG_OUTPUT = 'o', ARG_QUIET = 'q' };

static const CliOption options[] = {
        { "output", 'o', "FORMAT", "output format: table or json (default table)", ARG_OUTPUT },
        { "format", 0, "FORMAT", "same as --output", ARG_OUTPUT },
        { "quiet", 'q', NULL, "print image names only", ARG_QUIET },
        {},
};

static int parse_option(int id, const char *arg) {
        switch (id) {
        case ARG_OUTPUT:
                return output_format_parse(arg, &arg_format);
        case ARG_QUIET:
                arg_quiet = true;
                return 0;
        }
        return -EINVAL;
}

static int print_table(const Store *store, ImageRecord **images, size_t n) {
        _cleanup_(table_freep) Table *t = table_new("TYPE", "NAME", "DIGEST", "SIZE", "CREATED", NULL);

        if (!t)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                char size[FORMAT_SIZE_MAX], created[FORMAT_TIMESTAMP_MAX], digest[20] = "-";
                const char *id = image_record_id(images[i]);

                /* "sha256:" plus 12 hex digits, as the Go Cocoon shows it. */
                if (id)
                        snprintf(digest, sizeof(digest), "%.19s", id);
                if (table_add_row(t, image_type_to_string(images[i]->type), images[i]->name, digest,
                                  format_size_decimal(size, sizeof(size), images[i]->size),
                                  format_timestamp_local(created, sizeof(created),
                                                         images[i]->created_at), NULL) < 0)
                        return -ENOMEM;
        }

        return table_print(t, stdout);
}

static int run(const Config *config, int argc, char **argv) {
        _cleanup_(store_freep) Store *store = NULL;
        ImageRecord **images = NULL;
        size_t n = 0, skipped = 0;
        int r;

        r = store_open(config->root_dir, &store);
        if (r >= 0)
                r = image_index_list(store, &images, &n, &skipped);
        if (r < 0) {
                log_error("Failed to list images: %s", error_message(r));
                return EXIT_FAILURE;
        }
        if (skipped > 0)
                log_warning("%zu image records could not be read and are not shown.", skipped);

        if (arg_quiet) {
                for (size_t i = 0; i < n; i++)
                        printf("%s\n", images[i]->name);
        } else if (arg_format == OUTPUT_JSON) {
                json_t *a = json_array();

                for (size_t i = 0; a && i < n; i++)
                        if (json_array_append_new(a, image_record_to_public_json(store, images[i], false)) < 0)
                                r = -ENOMEM;
                r = a && r >= 0 ? output_json(a) : -ENOMEM;
                json_decref(a);
        } else if (n == 0)
                printf("No images found.\n");
        else
                r = print_table(store, images, n);

        image_record_array_free(images, n);
        /* A reader that went away (cocoon image list | head) is not an error. */
        if (r < 0 && r != -EPIPE) {
                log_error("Failed to print images: %s", error_message(r));
                return EXIT_FAILURE;
        }
        return 0;
}

const CliCommand cmd_image_list = {
        .group = "image",
        .name = "list",
        .alias = "ls",
        .summary = "List images",
        .description = "Columns: TYPE NAME DIGEST SIZE CREATED, sorted by type and name.",
        .options = options,
        .max_args = 0,
        .parse_option = parse_option,
        .run = run,
};
