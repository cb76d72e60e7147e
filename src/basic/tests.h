/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A minimal harness for the unit tests: each TEST() registers a function, main() runs them all,
 * prints one line per test and a closing "N passed, N failed" line. Exit 77 from a test function
 * (return TEST_SKIP) marks it skipped, e.g. when a tool such as fsck.erofs is missing. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define TEST_SKIP 77

typedef int (*test_func_t)(void);

typedef struct TestCase {
        const char *name;
        test_func_t func;
} TestCase;

#define TEST_MAX 256
extern TestCase test_cases[TEST_MAX];
extern unsigned test_count;

#define TEST(n)                                                                          \
        static int test_##n(void);                                                       \
        static void __attribute__((constructor)) test_register_##n(void) {              \
                if (test_count < TEST_MAX)                                               \
                        test_cases[test_count++] = (TestCase) { #n, test_##n };          \
        }                                                                                \
        static int test_##n(void)

#define ASSERT_TRUE(expr)                                                                \
        do {                                                                             \
                if (!(expr)) {                                                           \
                        fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,       \
                                __LINE__, #expr);                                        \
                        return 1;                                                        \
                }                                                                        \
        } while (0)

#define ASSERT_OK(expr)                                                                  \
        do {                                                                             \
                int _r_ = (expr);                                                        \
                if (_r_ < 0) {                                                           \
                        fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__,    \
                                #expr, error_message(_r_));                              \
                        return 1;                                                        \
                }                                                                        \
        } while (0)

#define ASSERT_ERROR(expr, err)                                                          \
        do {                                                                             \
                int _r_ = (expr);                                                        \
                if (_r_ != -(err)) {                                                     \
                        fprintf(stderr, "%s:%d: %s returned %d, expected %d\n",          \
                                __FILE__, __LINE__, #expr, _r_, -(err));                 \
                        return 1;                                                        \
                }                                                                        \
        } while (0)

#define ASSERT_STREQ(a, b)                                                               \
        do {                                                                             \
                const char *_a_ = (a), *_b_ = (b);                                       \
                if (!_a_ || !_b_ || strcmp(_a_, _b_) != 0) {                             \
                        fprintf(stderr, "%s:%d: \"%s\" != \"%s\" (%s vs %s)\n", __FILE__, \
                                __LINE__, _a_ ? _a_ : "(null)", _b_ ? _b_ : "(null)",    \
                                #a, #b);                                                 \
                        return 1;                                                        \
                }                                                                        \
        } while (0)

#define ASSERT_EQ(a, b)                                                                  \
        do {                                                                             \
                intmax_t _a_ = (intmax_t) (a), _b_ = (intmax_t) (b);                     \
                if (_a_ != _b_) {                                                        \
                        fprintf(stderr, "%s:%d: %jd != %jd (%s vs %s)\n", __FILE__,      \
                                __LINE__, _a_, _b_, #a, #b);                             \
                        return 1;                                                        \
                }                                                                        \
        } while (0)

/* The reason recorded with error_set() for the last failure must read exactly msg. */
#define ASSERT_ERROR_MESSAGE(r, msg) ASSERT_STREQ(error_message(r), (msg))

int tests_run(int argc, char **argv);

#define DEFINE_TEST_MAIN                                                                 \
        TestCase test_cases[TEST_MAX];                                                   \
        unsigned test_count;                                                             \
        int main(int argc, char **argv) {                                                \
                return tests_run(argc, argv);                                            \
        }
