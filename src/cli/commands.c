/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cli.h"
#include "commands.h"

const CliCommand *const cli_commands[] = {
        &cmd_image_pull,
        &cmd_image_list,
        &cmd_image_inspect,
        &cmd_image_rm,
        &cmd_vm_create,
        &cmd_vm_run,
        &cmd_vm_start,
        &cmd_vm_stop,
        &cmd_vm_list,
        &cmd_vm_inspect,
        &cmd_vm_logs,
        &cmd_vm_console,
        &cmd_vm_rm,
        &cmd_vm_debug,
        &cmd_vm_autostart,
        &cmd_vm_shutdown_hook,
        &cmd_vm_network_down_hook,
        &cmd_vm_console_relay,
        &cmd_gc,
        &cmd_version,
        &cmd_completion,
        NULL,
};
