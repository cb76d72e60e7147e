/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The command line of the Cloud Hypervisor v53 test double, parsed into the same shape as CH's
 * VmConfig. Parsing is pure: nothing here opens files, sockets or TAP devices. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CH_CHAIN_MAX 12

/* A failure as CH reports it: a chain of messages from the outermost context to the root cause
 * ("Error parsing config" → "Error parsing --disk" → "unknown option: foo"). CH prints it on
 * stderr and returns it as a JSON array in API error bodies. */
typedef struct ChErrorChain {
        char *items[CH_CHAIN_MAX];
        size_t n;
} ChErrorChain;

void ch_chain_push(ChErrorChain *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ch_chain_clear(ChErrorChain *c);

/* Exit codes: clap (CH's argument parser) exits 2 on a grammar error, CH itself exits 1 when
 * the configuration or the boot fails. */
#define CH_EXIT_USAGE 2
#define CH_EXIT_FAILURE 1

typedef enum ChConsoleMode {
        CH_CONSOLE_OFF,
        CH_CONSOLE_PTY,
        CH_CONSOLE_TTY,
        CH_CONSOLE_FILE,
        CH_CONSOLE_SOCKET,
        CH_CONSOLE_NULL,
} ChConsoleMode;

typedef struct ChConsoleConfig {
        ChConsoleMode mode;
        char *file;   /* File mode: the output file. Pty mode: the PTY path, set once allocated. */
        char *socket; /* Socket mode: the path of the listening unix socket. */
        bool iommu;
} ChConsoleConfig;

typedef struct ChQueueAffinity {
        unsigned queue_index;
        unsigned host_cpus[64];
        size_t n_host_cpus;
} ChQueueAffinity;

typedef struct ChDiskConfig {
        char *path;
        char *id;
        char *serial;
        char *image_type;       /* "Raw", "Qcow2", "FixedVhd", "Vhdx" or "Unknown" */
        char *lock_granularity; /* "ByteRange" or "Full" */
        char *rate_limit_group;
        char *vhost_socket;
        bool readonly, direct, iommu, vhost_user, sparse, backing_files;
        unsigned num_queues, queue_size;
        int pci_segment;
        ChQueueAffinity *queue_affinity;
        size_t n_queue_affinity;
} ChDiskConfig;

typedef struct ChNetConfig {
        char *tap, *ip, *mask, *mac, *host_mac, *id, *vhost_socket, *vhost_mode;
        bool iommu, vhost_user, offload_tso, offload_ufo, offload_csum;
        unsigned num_queues, queue_size, mtu;
        int pci_segment;
} ChNetConfig;

typedef struct ChLandlockRule {
        char *path;
        char *access;
} ChLandlockRule;

typedef struct ChConfig {
        /* VMM options */
        char *api_socket_path;
        int api_socket_fd; /* -1 unless fd=<n> was given */
        char *event_monitor_path;
        int event_monitor_fd;
        char *log_file;
        unsigned verbosity;
        char *seccomp;
        bool landlock;

        /* VM options. has_vm is false when neither --kernel nor --firmware was given, and the
         * VMM then runs without a VM (the double does not emulate vm.create). */
        bool has_vm;
        unsigned boot_vcpus, max_vcpus, max_phys_bits;
        bool kvm_hyperv, nested;
        char *core_scheduling;
        uint64_t memory_size, hotplug_size, hugepage_size;
        bool mergeable, shared, hugepages, prefault, thp;
        char *hotplug_method;
        char *kernel, *initramfs, *cmdline, *firmware;
        ChDiskConfig *disks;
        size_t n_disks;
        ChNetConfig *nets;
        size_t n_nets;
        char *rng_src;
        bool rng_iommu;
        bool has_balloon;
        uint64_t balloon_size;
        bool balloon_deflate_on_oom, balloon_free_page_reporting;
        bool has_vsock;
        uint32_t vsock_cid;
        char *vsock_socket;
        char *vsock_id;
        ChConsoleConfig serial, console;
        bool watchdog;
        ChLandlockRule *landlock_rules;
        size_t n_landlock_rules;

        /* Set by --version / --help: print and exit 0. */
        bool show_version, show_help;
} ChConfig;

/* Parse argv the way CH v53 does. Returns 0 on success. On failure returns the process exit
 * code (CH_EXIT_USAGE or CH_EXIT_FAILURE) and fills ret_message (usage errors, printed as is)
 * or ret_chain (configuration errors, printed with ch_chain_print()). */
int ch_config_parse(int argc, char **argv, ChConfig *ret_config, char **ret_message, ChErrorChain *ret_chain);

void ch_config_done(ChConfig *c);

const char *ch_console_mode_to_string(ChConsoleMode mode);

/* Print chain as CH does when the process fails: "Error: Cloud Hypervisor exited with ...". */
void ch_chain_print(const ChErrorChain *c);

/* Help text for --help. */
void ch_config_print_help(void);
