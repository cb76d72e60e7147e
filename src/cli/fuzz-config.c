/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = strndup((const char *) data, size);
        Config c = {};

        if (!text)
                return 0;
        /* Unknown keys would be logged; keep the fuzzer's output quiet. */
        log_set_max_level(LOG_LEVEL_ERROR);
        (void) config_parse_ini(&c, text, "fuzz");
        config_done(&c);
        error_clear();
        return 0;
}
