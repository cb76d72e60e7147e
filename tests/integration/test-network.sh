#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
echo "1..0 # SKIP not written yet"
exit 77
