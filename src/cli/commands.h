/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "cli.h"

extern const CliCommand cmd_image_pull;
extern const CliCommand cmd_image_list;
extern const CliCommand cmd_image_inspect;
extern const CliCommand cmd_image_rm;
extern const CliCommand cmd_version;
extern const CliCommand cmd_completion;
