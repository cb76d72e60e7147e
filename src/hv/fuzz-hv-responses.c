/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz the parsers of what a hypervisor sends back: QMP messages from QEMU and the vm.info
 * answer of Cloud Hypervisor. A VMM is trusted more than a registry, but a crashed or confused
 * one must still not crash cocoon. */
#include <stdint.h>
#include <string.h>

#include "ch.h"
#include "error.h"
#include "qemu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = strndup((const char *) data, size);
        QmpMessage m = {};

        if (!text)
                return 0;

        if (qmp_message_parse(text, &m) >= 0)
                qmp_message_done(&m);

        for (int serial = 0; serial < 2; serial++) {
                _cleanup_free_ char *path = NULL;

                (void) ch_console_path_from_info(text, serial, &path);
        }
        error_clear();
        return 0;
}
