/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "tests.h"
DEFINE_TEST_MAIN
