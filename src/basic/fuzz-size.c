/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <string.h>

#include "format.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = strndup((const char *) data, size);
        char buf[FORMAT_SIZE_MAX];
        uint64_t v;

        if (!s)
                return 0;
        if (parse_size(s, &v) >= 0) {
                format_size_decimal(buf, sizeof(buf), v);
                format_size_binary(buf, sizeof(buf), v);
        }
        return 0;
}
