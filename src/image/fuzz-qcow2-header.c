/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>

#include "qcow2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Qcow2Header h;

        if (qcow2_header_parse(data, size, &h) < 0)
                return 0;

        (void) qcow2_header_check_self_contained(&h);
        (void) qcow2_header_check_file_size(&h, size);
        (void) qcow2_compat_to_string(h.version);
        return 0;
}
