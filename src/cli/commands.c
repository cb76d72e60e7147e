/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cli.h"
#include "commands.h"

const CliCommand *const cli_commands[] = {
        &cmd_image_pull,
        &cmd_image_list,
        &cmd_image_inspect,
        &cmd_image_rm,
        &cmd_version,
        &cmd_completion,
        NULL,
};
