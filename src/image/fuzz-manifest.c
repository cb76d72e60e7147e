/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>

#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        const Descriptor *d;

        if (manifest_parse(data, size, NULL, NULL, &m) < 0)
                return 0;

        if (m->is_index)
                (void) manifest_select_platform(m, "linux", manifest_host_architecture(), &d);
        return 0;
}
