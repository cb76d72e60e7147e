/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs a libFuzzer entry point over every file of a corpus directory, so that the inputs that
 * once crashed a parser keep being replayed in the ordinary test suite, under the sanitizers. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        size_t size = 0, cap = 0, n;

        if (!f)
                return -1;
        do {
                if (size == cap) {
                        cap = cap ? cap * 2 : 4096;
                        buf = realloc(buf, cap);
                        if (!buf)
                                abort();
                }
                n = fread(buf + size, 1, cap - size, f);
                size += n;
        } while (n > 0);
        fclose(f);

        LLVMFuzzerTestOneInput(buf, size);
        free(buf);
        return 0;
}

int main(int argc, char **argv) {
        unsigned count = 0;

        for (int i = 1; i < argc; i++) {
                DIR *d = opendir(argv[i]);
                struct dirent *de;

                if (!d) {
                        if (run_file(argv[i]) == 0)
                                count++;
                        continue;
                }
                while ((de = readdir(d))) {
                        char path[4096];

                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
                        if (run_file(path) == 0)
                                count++;
                }
                closedir(d);
        }

        /* Always run the empty input too, so a target without a corpus still executes once. */
        LLVMFuzzerTestOneInput((const uint8_t *) "", 0);
        printf("%u corpus inputs replayed\n", count);
        return 0;
}
