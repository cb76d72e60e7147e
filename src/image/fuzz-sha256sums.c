/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <string.h>

#include "cloudimg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The first line of the input is the file name to look up, the rest the SHA256SUMS text. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *nl = memchr(data, '\n', size);
        char *filename, *sum = NULL;
        size_t n = nl ? (size_t) (nl - data) : size;

        filename = strndup((const char *) data, n);
        if (!filename)
                return 0;

        if (cloudimg_sha256sums_find((const char *) data + MIN(n + 1, size), size - MIN(n + 1, size),
                                     filename, &sum) >= 0)
                free(sum);
        free(filename);
        return 0;
}
