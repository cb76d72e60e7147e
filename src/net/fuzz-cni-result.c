/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(cni_result_freep) CniResult *r = NULL;

        if (cni_result_parse((const char *) data, size, &r) >= 0)
                (void) cni_result_find_ipv4(r, "eth0");

        /* The error path parses the same untrusted bytes when a plugin fails. */
        char *text = strndup((const char *) data, size);
        if (text) {
                free(cni_error_message(text, text, 1));
                free(text);
        }
        return 0;
}
