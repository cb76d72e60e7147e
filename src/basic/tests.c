/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tests.h"

int tests_run(int argc, char **argv) {
        unsigned passed = 0, failed = 0, skipped = 0;

        for (unsigned i = 0; i < test_count; i++) {
                int r;

                /* A name on the command line runs that test only. */
                if (argc > 1 && strcmp(argv[1], test_cases[i].name) != 0)
                        continue;

                error_clear();
                r = test_cases[i].func();
                if (r == TEST_SKIP) {
                        printf("SKIP %s\n", test_cases[i].name);
                        skipped++;
                } else if (r != 0) {
                        printf("FAIL %s\n", test_cases[i].name);
                        failed++;
                } else {
                        printf("ok   %s\n", test_cases[i].name);
                        passed++;
                }
        }

        printf("%u passed, %u failed, %u skipped\n", passed, failed, skipped);
        if (failed > 0)
                return 1;
        if (passed == 0 && skipped > 0)
                return TEST_SKIP;
        return 0;
}
