/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "cli.h"

extern const CliCommand cmd_image_pull;
extern const CliCommand cmd_image_list;
extern const CliCommand cmd_image_inspect;
extern const CliCommand cmd_image_rm;
extern const CliCommand cmd_vm_create;
extern const CliCommand cmd_vm_run;
extern const CliCommand cmd_vm_start;
extern const CliCommand cmd_vm_stop;
extern const CliCommand cmd_vm_list;
extern const CliCommand cmd_vm_inspect;
extern const CliCommand cmd_vm_logs;
extern const CliCommand cmd_vm_rm;
extern const CliCommand cmd_vm_debug;
extern const CliCommand cmd_vm_autostart;
extern const CliCommand cmd_vm_shutdown_hook;
extern const CliCommand cmd_vm_network_down_hook;
extern const CliCommand cmd_vm_console;
extern const CliCommand cmd_vm_console_relay;
extern const CliCommand cmd_gc;
extern const CliCommand cmd_version;
extern const CliCommand cmd_completion;
