/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <string.h>

#include "reference.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(reference_freep) Reference *ref = NULL;
        _cleanup_free_ char *s = NULL, *again = NULL;
        _cleanup_(reference_freep) Reference *reparsed = NULL;

        s = strndup((const char *) data, size);
        if (!s || reference_parse(s, &ref) < 0)
                return 0;

        /* The normalised form must parse back to itself. */
        again = reference_to_string(ref);
        if (!again)
                return 0;
        if (reference_parse(again, &reparsed) < 0)
                abort();
        free(s);
        s = reference_to_string(reparsed);
        if (s && !streq(s, again))
                abort();
        (void) reference_api_host(ref);
        return 0;
}
