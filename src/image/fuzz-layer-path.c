/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "layer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *name = NULL, *path = NULL, *again = NULL;

        name = strndup((const char *) data, size);
        if (!name)
                return 0;

        if (layer_path_normalize(name, &path) >= 0) {
                /* A normalised path is a fixed point of the policy. The root ("") is the exception,
                 * because an empty tar name is rejected. */
                if (!isempty(path) && (layer_path_normalize(path, &again) < 0 || !streq(path, again)))
                        abort();
                if (path[0] == '/' || strlen(path) > LAYER_PATH_MAX)
                        abort();
        }

        error_clear();
        return 0;
}
