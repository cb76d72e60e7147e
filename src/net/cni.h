/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "macro.h"

/* A CNI 1.0 runtime without libcni: network configuration lists, plugin execution and the
 * result cache. Plugins run in the caller's network namespace (the "host" side) with the
 * configuration on stdin and a clean environment. A plugin's error message becomes the recorded
 * reason of the failure. */

/* Files larger than this in the configuration directory are rejected. */
#define CNI_CONFIG_SIZE_MAX (1024U * 1024U)
/* A plugin gets this long when the caller passes a timeout of 0. */
#define CNI_TIMEOUT_DEFAULT_SEC 60U

typedef enum CniCommand {
        CNI_COMMAND_ADD,
        CNI_COMMAND_DEL,
        CNI_COMMAND_CHECK,
        _CNI_COMMAND_MAX,
} CniCommand;

const char *cni_command_to_string(CniCommand c);

/* One network configuration list. A single-plugin .conf file is wrapped into a list of one. */
typedef struct CniNetwork {
        char *name;
        char *cni_version;
        bool disable_check;
        json_t *plugins;   /* array of plugin objects, as written in the file */
        json_t *json;      /* the whole list, as cached for DEL */
        char *file;        /* where it was loaded from, for messages */
} CniNetwork;

CniNetwork *cni_network_free(CniNetwork *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(CniNetwork *, cni_network_free);

/* Parse one configuration file's text. is_list selects the .conflist format; otherwise the text
 * is one plugin object. file only names the source in error reasons. */
int cni_network_parse(const char *text, size_t size, const char *file, bool is_list, CniNetwork **ret);

/* Build a network from a list object already in memory (the cached copy of a list). */
int cni_network_from_json(json_t *list, const char *file, CniNetwork **ret);

/* Load every *.conflist, *.conf and *.json file of conf_dir in file name order and select the list
 * named name, or the first one when name is NULL. Every file must parse: a broken file is an
 * error naming it, even when another file contains the requested network. */
int cni_network_load(const char *conf_dir, const char *name, CniNetwork **ret);

/* Validators for the values that end up in the plugin environment and in cache file names. */
bool cni_network_name_is_valid(const char *name);
bool cni_container_id_is_valid(const char *id);
bool cni_ifname_is_valid(const char *ifname);

/* Build CNI_ARGS ("K=V;K2=V2") from "K=V" items. Keys and values must not contain ';', keys must
 * not contain '=' and must not be empty. */
int cni_args_build(char *const *items, char **ret);

/* Build the stdin of plugin index of net: the plugin object with cniVersion and name of the list,
 * runtimeConfig holding the capability_args the plugin declares in its "capabilities", and
 * prev_result when not NULL; "capabilities" itself is left out. */
int cni_build_stdin(const CniNetwork *net, size_t index, json_t *capability_args, json_t *prev_result,
                    char **ret);

typedef struct CniInterface {
        char *name;
        char *mac;
        char *sandbox;     /* set for interfaces inside the container's namespace */
} CniInterface;

typedef struct CniIp {
        long interface;    /* index into interfaces[], or -1 when the result names none */
        char *address;     /* CIDR notation, IPv4 or IPv6 */
        char *gateway;
} CniIp;

typedef struct CniRoute {
        char *dst;
        char *gw;
} CniRoute;

typedef struct CniResult {
        char *cni_version;
        CniInterface *interfaces;
        size_t n_interfaces;
        CniIp *ips;
        size_t n_ips;
        CniRoute *routes;
        size_t n_routes;
        char **dns_nameservers;
        char *dns_domain;
        char **dns_search;
        char **dns_options;
        json_t *json;      /* the result as the plugin wrote it, for prevResult and the cache */
} CniResult;

CniResult *cni_result_free(CniResult *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(CniResult *, cni_result_free);

/* Parse a result of CNI 0.3.0 to 1.x. Returns -EBADMSG with a reason for anything malformed. */
int cni_result_parse(const char *text, size_t size, CniResult **ret);
int cni_result_from_json(json_t *j, CniResult **ret);

/* The first IPv4 entry of the result on the container interface ifname: an entry whose interface
 * index names ifname inside the sandbox, else the first IPv4 entry that names no interface.
 * Returns NULL when there is none (the guest then uses DHCP). */
const CniIp *cni_result_find_ipv4(const CniResult *r, const char *ifname);

/* Turn a failed plugin's output into one line: "msg; details" of the error object on stdout,
 * else the stderr text, else a description of the exit status. */
char *cni_error_message(const char *out, const char *err, int exit_status);

/* Where a plugin runs and where results are cached. */
typedef struct CniRuntime {
        const char *bin_dir;     /* CNI_PATH: ':'-separated directories */
        const char *cache_dir;   /* results are cached here */
        unsigned timeout_sec;    /* per plugin run; 0 = CNI_TIMEOUT_DEFAULT_SEC */
} CniRuntime;

/* One attachment of a container to a network. */
typedef struct CniAttachment {
        const char *container_id;
        const char *netns;           /* path; NULL or "" allowed for DEL only */
        const char *ifname;
        const char *args;            /* CNI_ARGS, or NULL */
        json_t *capability_args;     /* runtime values for declared capabilities, or NULL */
} CniAttachment;

/* Run ADD through the chain, cache the final result and return it. On failure nothing is
 * cached; the caller still owes a DEL (a failed ADD may leave an interface or a lease). */
int cni_add(const CniRuntime *rt, const CniNetwork *net, const CniAttachment *a, CniResult **ret);

/* Run DEL through the chain in reverse order with the cached result as prevResult, then remove
 * the cache entry. A cached copy of the list is used instead of net, so that DEL undoes what ADD
 * did even after the file changed. net may be NULL then, and network names the cache entry.
 * Succeeds when nothing is cached. */
int cni_del(const CniRuntime *rt, const CniNetwork *net, const char *network, const CniAttachment *a);

typedef enum CniCheckFlags {
        /* Leave "ips" and "routes" out of prevResult, for a runtime that moves the addresses from
         * the container interface elsewhere (into a VM) and would fail the plugins' address
         * checks. */
        CNI_CHECK_WITHOUT_ADDRESSES = 1 << 0,
} CniCheckFlags;

/* Run CHECK through the chain with the cached result. -ENOENT when nothing is cached,
 * -EOPNOTSUPP when the list sets disableCheck or its version predates CHECK (0.4.0). */
int cni_check(const CniRuntime *rt, const CniNetwork *net, const CniAttachment *a, CniCheckFlags flags);

/* The cache entry of an attachment: <cache_dir>/<network>-<container id>-<ifname>.json. */
char *cni_cache_path(const char *cache_dir, const char *network, const char *container_id,
                     const char *ifname);

/* Read a cache entry: the cached list and result. -ENOENT when there is none. */
int cni_cache_read(const char *path, const char *network, const char *container_id, const char *ifname,
                   json_t **ret_list, json_t **ret_result);

/* List the cache entries of container_id as (network, ifname) pairs: ret_networks[i] and
 * ret_ifnames[i] belong together. Both are NULL-terminated string arrays. */
int cni_cache_list(const char *cache_dir, const char *container_id, char ***ret_networks,
                   char ***ret_ifnames);
