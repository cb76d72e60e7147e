/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "layer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feed the bytes as a layer through layer_convert() into a memfd. Nothing touches the disk: there is
 * no boot directory, and the image lives in memory. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t uuid[16] = {};
        _cleanup_close_ int input = -EBADF, output = -EBADF;
        LayerInfo info = {};

        input = memfd_create("fuzz-layer-input", MFD_CLOEXEC);
        output = memfd_create("fuzz-layer-output", MFD_CLOEXEC);
        if (input < 0 || output < 0)
                return 0;

        if (size > 0 && write(input, data, size) != (ssize_t) size)
                return 0;
        if (lseek(input, 0, SEEK_SET) < 0)
                return 0;

        /* Keep sparse files from growing the memfd past what a fuzzer run can afford. */
        if (layer_convert(input, output, -EBADF, uuid,
                          &(LayerLimits) { .max_entries = 10000, .max_file_size = 64 << 20 }, &info) >= 0)
                layer_info_done(&info);

        error_clear();
        return 0;
}
