/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "cni.h"
#include "error.h"
#include "fileio.h"
#include "strv.h"

/* Bytes kept of a plugin's stdout and of its stderr; the rest is dropped. Real results are a few
 * KiB. */
#define CNI_OUTPUT_MAX (1024U * 1024U)
/* How much of a plugin's error text goes into a reason. */
#define CNI_MESSAGE_MAX 400U

static const char *const command_table[_CNI_COMMAND_MAX] = {
        [CNI_COMMAND_ADD] = "ADD",
        [CNI_COMMAND_DEL] = "DEL",
        [CNI_COMMAND_CHECK] = "CHECK",
};

const char *cni_command_to_string(CniCommand c) {
        return c >= 0 && c < _CNI_COMMAND_MAX ? command_table[c] : NULL;
}

/* The verb of a reason: "failed to add eth0". */
static const char *command_verb(CniCommand c) {
        switch (c) {
        case CNI_COMMAND_ADD:
                return "add";
        case CNI_COMMAND_DEL:
                return "delete";
        default:
                return "check";
        }
}

CniNetwork *cni_network_free(CniNetwork *n) {
        if (!n)
                return NULL;
        free(n->name);
        free(n->cni_version);
        json_decref(n->plugins);
        json_decref(n->json);
        free(n->file);
        free(n);
        return NULL;
}

static bool name_char_ok(char c, bool first) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                return true;
        return !first && (c == '_' || c == '.' || c == '-');
}

/* The CNI 1.0 grammar of network names and container ids: [A-Za-z0-9][A-Za-z0-9_.-]*. */
static bool cni_name_is_valid(const char *s, size_t max) {
        size_t n;

        if (isempty(s))
                return false;
        n = strlen(s);
        if (n > max)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_char_ok(s[i], i == 0))
                        return false;
        return true;
}

bool cni_network_name_is_valid(const char *name) {
        return cni_name_is_valid(name, 128);
}

bool cni_container_id_is_valid(const char *id) {
        return cni_name_is_valid(id, 128);
}

/* The kernel's rules for interface names (dev_valid_name()): 1-15 bytes, not "." or "..", no '/',
 * ':' or white space. */
bool cni_ifname_is_valid(const char *ifname) {
        size_t n;

        if (isempty(ifname) || streq(ifname, ".") || streq(ifname, ".."))
                return false;
        n = strlen(ifname);
        if (n > 15)
                return false;
        for (size_t i = 0; i < n; i++)
                if (ifname[i] == '/' || ifname[i] == ':' || ifname[i] == ' ' || ifname[i] == '\t' ||
                    ifname[i] == '\n' || (unsigned char) ifname[i] < 0x20)
                        return false;
        return true;
}

/* A plugin type names a file in CNI_PATH, so it must be a plain file name. */
static bool plugin_type_is_valid(const char *type) {
        return !isempty(type) && !strchr(type, '/') && !streq(type, ".") && !streq(type, "..");
}

/* Parse "MAJOR.MINOR.PATCH" into one comparable number. */
static int version_parse(const char *s, unsigned long *ret) {
        unsigned long part[3];
        const char *p = s;

        for (size_t i = 0; i < 3; i++) {
                char *end;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                part[i] = strtoul(p, &end, 10);
                if (part[i] > 999)
                        return -EINVAL;
                if (i < 2 && *end != '.')
                        return -EINVAL;
                if (i == 2 && *end != '\0')
                        return -EINVAL;
                p = end + 1;
        }
        *ret = part[0] * 1000000UL + part[1] * 1000UL + part[2];
        return 0;
}

#define VERSION_0_3_0 3000UL
#define VERSION_0_4_0 4000UL

static bool streq_ptr(const char *a, const char *b) {
        return a && b && streq(a, b);
}

static const char *strempty_or(const char *s) {
        return s ?: "";
}

static const char *get_string(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

/* Check a list object and fill a CniNetwork from it; list is not consumed. */
int cni_network_from_json(json_t *list, const char *file, CniNetwork **ret) {
        _cleanup_(cni_network_freep) CniNetwork *n = NULL;
        const char *name, *version;
        unsigned long v;
        json_t *plugins, *disable, *p;
        size_t i;

        if (!json_is_object(list))
                return error_set(-EBADMSG, "CNI configuration %s is not a JSON object", file);

        name = get_string(list, "name");
        if (isempty(name))
                return error_set(-EBADMSG, "missing 'name' in CNI configuration %s", file);
        if (!cni_network_name_is_valid(name))
                return error_set(-EBADMSG, "invalid network name '%s' in CNI configuration %s", name,
                                 file);

        version = get_string(list, "cniVersion");
        if (isempty(version))
                return error_set(-EBADMSG, "missing 'cniVersion' in CNI configuration %s", file);
        if (version_parse(version, &v) < 0 || v < VERSION_0_3_0)
                return error_set(-EBADMSG, "unsupported cniVersion '%s' in CNI configuration %s; "
                                           "0.3.0 or later is required", version, file);

        disable = json_object_get(list, "disableCheck");
        if (disable && !json_is_boolean(disable))
                return error_set(-EBADMSG, "invalid 'disableCheck' in CNI configuration %s; "
                                           "expected true or false", file);

        plugins = json_object_get(list, "plugins");
        if (!plugins)
                return error_set(-EBADMSG, "missing 'plugins' in CNI configuration %s", file);
        if (!json_is_array(plugins))
                return error_set(-EBADMSG, "invalid 'plugins' in CNI configuration %s; expected an array",
                                 file);
        if (json_array_size(plugins) == 0)
                return error_set(-EBADMSG, "empty 'plugins' in CNI configuration %s", file);

        json_array_foreach(plugins, i, p) {
                const char *type = json_is_object(p) ? get_string(p, "type") : NULL;

                if (!json_is_object(p))
                        return error_set(-EBADMSG, "plugins[%zu] of CNI configuration %s is not a JSON "
                                                   "object", i, file);
                if (isempty(type))
                        return error_set(-EBADMSG, "missing 'type' in plugins[%zu] of CNI configuration %s",
                                         i, file);
                if (!plugin_type_is_valid(type))
                        return error_set(-EBADMSG, "invalid plugin type '%s' in CNI configuration %s", type,
                                         file);
        }

        n = calloc(1, sizeof(CniNetwork));
        if (!n)
                return -ENOMEM;
        n->name = strdup(name);
        n->cni_version = strdup(version);
        n->file = strdup(file);
        n->disable_check = json_is_true(disable);
        n->plugins = json_incref(plugins);
        n->json = json_incref(list);
        if (!n->name || !n->cni_version || !n->file)
                return -ENOMEM;

        *ret = TAKE_PTR(n);
        return 0;
}

/* libcni turns a single-plugin file into a list of one: the list takes name and cniVersion of the
 * plugin, which stays whole as the only element. */
static int wrap_single(json_t *conf, const char *file, json_t **ret) {
        const char *name = get_string(conf, "name"), *version = get_string(conf, "cniVersion");
        const char *type = get_string(conf, "type");
        json_t *list;

        if (isempty(name))
                return error_set(-EBADMSG, "missing 'name' in CNI configuration %s", file);
        if (isempty(version))
                return error_set(-EBADMSG, "missing 'cniVersion' in CNI configuration %s", file);
        if (isempty(type))
                return error_set(-EBADMSG, "missing 'type' in CNI configuration %s", file);

        list = json_pack("{s:s, s:s, s:[O]}", "cniVersion", version, "name", name, "plugins", conf);
        if (!list)
                return -ENOMEM;
        *ret = list;
        return 0;
}

int cni_network_parse(const char *text, size_t size, const char *file, bool is_list, CniNetwork **ret) {
        json_t *root, *list = NULL;
        json_error_t e;
        int r;

        root = json_loadb(text, size, 0, &e);
        if (!root)
                return error_set(-EBADMSG, "invalid JSON in CNI configuration %s: %s (line %d)", file,
                                 e.text, e.line);
        if (!json_is_object(root)) {
                json_decref(root);
                return error_set(-EBADMSG, "CNI configuration %s is not a JSON object", file);
        }

        if (is_list)
                list = json_incref(root);
        else {
                r = wrap_single(root, file, &list);
                if (r < 0) {
                        json_decref(root);
                        return r;
                }
        }
        json_decref(root);

        r = cni_network_from_json(list, file, ret);
        json_decref(list);
        return r;
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The configuration files of dir in file name order. */
static int list_config_files(const char *dir, char ***ret) {
        _cleanup_strv_free_ char **files = NULL;
        DIR *d;
        struct dirent *de;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                if (errno == ENOENT)
                        return error_set(-ENOENT, "no CNI network configuration in %s", dir);
                return error_set(-errno, "cannot read CNI configuration directory %s: %s", dir,
                                 strerror(errno));
        }

        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL;
                struct stat st;

                if (de->d_name[0] == '.')
                        continue;
                if (!endswith(de->d_name, ".conflist") && !endswith(de->d_name, ".conf") &&
                    !endswith(de->d_name, ".json"))
                        continue;
                path = strjoin(dir, "/", de->d_name, NULL);
                if (!path) {
                        r = -ENOMEM;
                        break;
                }
                if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                r = strv_consume(&files, TAKE_PTR(path));
                if (r < 0)
                        break;
        }
        closedir(d);
        if (r < 0)
                return r;

        if (strv_length(files) == 0)
                return error_set(-ENOENT, "no CNI network configuration in %s", dir);
        qsort(files, strv_length(files), sizeof(char *), compare_strings);
        *ret = TAKE_PTR(files);
        return 0;
}

static int load_file(const char *path, CniNetwork **ret) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = read_file(path, CNI_CONFIG_SIZE_MAX, &text, &size);
        if (r == -EFBIG)
                return error_set(r, "CNI configuration %s is larger than %u KiB", path,
                                 CNI_CONFIG_SIZE_MAX / 1024);
        if (r < 0)
                return error_set(r, "cannot read CNI configuration %s: %s", path, strerror(-r));

        return cni_network_parse(text, size, path, endswith(path, ".conflist"), ret);
}

int cni_network_load(const char *conf_dir, const char *name, CniNetwork **ret) {
        _cleanup_(cni_network_freep) CniNetwork *found = NULL;
        _cleanup_strv_free_ char **files = NULL, **names = NULL;
        _cleanup_free_ char *available = NULL;
        int r;

        r = list_config_files(conf_dir, &files);
        if (r < 0)
                return r;

        STRV_FOREACH(f, files) {
                _cleanup_(cni_network_freep) CniNetwork *n = NULL;

                r = load_file(*f, &n);
                if (r < 0)
                        return r;
                /* Like libcni, the first file that defines a name wins. */
                if (!found && (!name || streq(n->name, name)))
                        found = TAKE_PTR(n);
                else if (!strv_contains(names, n->name) && strv_extend(&names, n->name) < 0)
                        return -ENOMEM;
        }

        if (!found) {
                available = strv_join(names, ", ");
                if (!available)
                        return -ENOMEM;
                return error_set(-ENOENT, "CNI network '%s' not found in %s (available: %s)", name,
                                 conf_dir, available);
        }

        *ret = TAKE_PTR(found);
        return 0;
}

int cni_args_build(char *const *items, char **ret) {
        STRV_FOREACH(i, items) {
                const char *eq = strchr(*i, '=');

                if (!eq || eq == *i || strchr(*i, ';'))
                        return error_set(-EINVAL, "invalid CNI argument '%s'; expected KEY=VALUE without ';'",
                                         *i);
        }

        *ret = strv_join((char **) items, ";");
        return *ret ? 0 : -ENOMEM;
}

/* runtimeConfig: the capabilities the plugin declares as true, with the runtime's value for each. */
static int build_runtime_config(json_t *plugin, json_t *capability_args, json_t **ret) {
        json_t *caps = json_object_get(plugin, "capabilities"), *rc, *value;
        const char *key;

        *ret = NULL;
        if (!json_is_object(caps) || !json_is_object(capability_args))
                return 0;

        rc = json_object();
        if (!rc)
                return -ENOMEM;
        json_object_foreach(caps, key, value) {
                json_t *arg = json_object_get(capability_args, key);

                if (!json_is_true(value) || !arg)
                        continue;
                if (json_object_set(rc, key, arg) < 0) {
                        json_decref(rc);
                        return -ENOMEM;
                }
        }

        if (json_object_size(rc) == 0)
                json_decref(rc);
        else
                *ret = rc;
        return 0;
}

int cni_build_stdin(const CniNetwork *net, size_t index, json_t *capability_args, json_t *prev_result,
                    char **ret) {
        json_t *plugin = json_array_get(net->plugins, index), *conf, *rc = NULL;
        char *text;
        int r;

        if (!json_is_object(plugin))
                return -EINVAL;

        conf = json_deep_copy(plugin);
        if (!conf)
                return -ENOMEM;

        r = build_runtime_config(plugin, capability_args, &rc);
        if (r >= 0 && json_object_set_new(conf, "cniVersion", json_string(net->cni_version)) < 0)
                r = -ENOMEM;
        if (r >= 0 && json_object_set_new(conf, "name", json_string(net->name)) < 0)
                r = -ENOMEM;
        if (r >= 0 && rc && json_object_set_new(conf, "runtimeConfig", TAKE_PTR(rc)) < 0)
                r = -ENOMEM;
        if (r >= 0 && prev_result && json_object_set(conf, "prevResult", prev_result) < 0)
                r = -ENOMEM;
        if (r >= 0)
                (void) json_object_del(conf, "capabilities");
        json_decref(rc);
        if (r < 0) {
                json_decref(conf);
                return r;
        }

        text = json_dumps(conf, JSON_COMPACT);
        json_decref(conf);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

CniResult *cni_result_free(CniResult *r) {
        if (!r)
                return NULL;
        free(r->cni_version);
        for (size_t i = 0; i < r->n_interfaces; i++) {
                free(r->interfaces[i].name);
                free(r->interfaces[i].mac);
                free(r->interfaces[i].sandbox);
        }
        free(r->interfaces);
        for (size_t i = 0; i < r->n_ips; i++) {
                free(r->ips[i].address);
                free(r->ips[i].gateway);
        }
        free(r->ips);
        for (size_t i = 0; i < r->n_routes; i++) {
                free(r->routes[i].dst);
                free(r->routes[i].gw);
        }
        free(r->routes);
        strv_free(r->dns_nameservers);
        free(r->dns_domain);
        strv_free(r->dns_search);
        strv_free(r->dns_options);
        json_decref(r->json);
        free(r);
        return NULL;
}

/* Copy an optional string member; -EBADMSG when it is present with another type. */
static int copy_optional_string(json_t *o, const char *key, const char *where, char **ret) {
        json_t *v = json_object_get(o, key);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return error_set(-EBADMSG, "'%s' of %s is not a string", key, where);
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static int copy_string_array(json_t *o, const char *key, const char *where, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        json_t *a = json_object_get(o, key), *v;
        size_t i;

        *ret = NULL;
        if (!a || json_is_null(a))
                return 0;
        if (!json_is_array(a))
                return error_set(-EBADMSG, "'%s' of %s is not an array", key, where);
        json_array_foreach(a, i, v) {
                if (!json_is_string(v))
                        return error_set(-EBADMSG, "'%s[%zu]' of %s is not a string", key, i, where);
                if (strv_extend(&l, json_string_value(v)) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Check "ADDRESS/PREFIX" for IPv4 or IPv6. */
static bool cidr_is_valid(const char *s) {
        const char *slash = strchr(s, '/');
        char addr[INET6_ADDRSTRLEN];
        unsigned char buf[16];
        unsigned long prefix;
        char *end;
        size_t n;

        if (!slash || slash[1] < '0' || slash[1] > '9')
                return false;
        n = (size_t) (slash - s);
        if (n == 0 || n >= sizeof(addr))
                return false;
        memcpy(addr, s, n);
        addr[n] = '\0';
        errno = 0;
        prefix = strtoul(slash + 1, &end, 10);
        if (errno != 0 || *end != '\0')
                return false;
        if (inet_pton(AF_INET, addr, buf) == 1)
                return prefix <= 32;
        if (inet_pton(AF_INET6, addr, buf) == 1)
                return prefix <= 128;
        return false;
}

static bool ip_is_valid(const char *s) {
        unsigned char buf[16];

        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Get the array member key of o, or NULL with *ret_n = 0 when it is absent. */
static int get_array(json_t *o, const char *key, json_t **ret, size_t *ret_n) {
        json_t *a = json_object_get(o, key);

        *ret = NULL;
        *ret_n = 0;
        if (!a || json_is_null(a))
                return 0;
        if (!json_is_array(a))
                return error_set(-EBADMSG, "'%s' is not an array", key);
        *ret = a;
        *ret_n = json_array_size(a);
        return 0;
}

static int parse_interfaces(json_t *j, CniResult *res) {
        json_t *a, *v;
        size_t i, n;
        int r;

        r = get_array(j, "interfaces", &a, &n);
        if (r < 0 || n == 0)
                return r;
        res->interfaces = calloc(n, sizeof(CniInterface));
        if (!res->interfaces)
                return -ENOMEM;

        json_array_foreach(a, i, v) {
                CniInterface *iface = &res->interfaces[i];
                char where[48];

                snprintf(where, sizeof(where), "interfaces[%zu]", i);
                if (!json_is_object(v))
                        return error_set(-EBADMSG, "%s is not a JSON object", where);
                res->n_interfaces++;
                if ((r = copy_optional_string(v, "name", where, &iface->name)) < 0 ||
                    (r = copy_optional_string(v, "mac", where, &iface->mac)) < 0 ||
                    (r = copy_optional_string(v, "sandbox", where, &iface->sandbox)) < 0)
                        return r;
                if (isempty(iface->name))
                        return error_set(-EBADMSG, "%s has no 'name'", where);
        }
        return 0;
}

static int parse_ips(json_t *j, CniResult *res) {
        json_t *a, *v;
        size_t i, n;
        int r;

        r = get_array(j, "ips", &a, &n);
        if (r < 0 || n == 0)
                return r;
        res->ips = calloc(n, sizeof(CniIp));
        if (!res->ips)
                return -ENOMEM;

        json_array_foreach(a, i, v) {
                CniIp *ip = &res->ips[i];
                json_t *index;
                char where[48];

                snprintf(where, sizeof(where), "ips[%zu]", i);
                if (!json_is_object(v))
                        return error_set(-EBADMSG, "%s is not a JSON object", where);
                res->n_ips++;
                ip->interface = -1;
                if ((r = copy_optional_string(v, "address", where, &ip->address)) < 0 ||
                    (r = copy_optional_string(v, "gateway", where, &ip->gateway)) < 0)
                        return r;
                if (!ip->address)
                        return error_set(-EBADMSG, "%s has no 'address'", where);
                if (!cidr_is_valid(ip->address))
                        return error_set(-EBADMSG, "invalid address '%s' in %s; expected CIDR notation",
                                         ip->address, where);
                if (ip->gateway && !ip_is_valid(ip->gateway))
                        return error_set(-EBADMSG, "invalid gateway '%s' in %s", ip->gateway, where);

                index = json_object_get(v, "interface");
                if (!index || json_is_null(index))
                        continue;
                if (!json_is_integer(index) || json_integer_value(index) < 0 ||
                    (size_t) json_integer_value(index) >= res->n_interfaces)
                        return error_set(-EBADMSG, "'interface' of %s is not an index into the %zu "
                                                   "interfaces", where, res->n_interfaces);
                ip->interface = (long) json_integer_value(index);
        }
        return 0;
}

static int parse_routes(json_t *j, CniResult *res) {
        json_t *a, *v;
        size_t i, n;
        int r;

        r = get_array(j, "routes", &a, &n);
        if (r < 0 || n == 0)
                return r;
        res->routes = calloc(n, sizeof(CniRoute));
        if (!res->routes)
                return -ENOMEM;

        json_array_foreach(a, i, v) {
                CniRoute *route = &res->routes[i];
                char where[48];

                snprintf(where, sizeof(where), "routes[%zu]", i);
                if (!json_is_object(v))
                        return error_set(-EBADMSG, "%s is not a JSON object", where);
                res->n_routes++;
                if ((r = copy_optional_string(v, "dst", where, &route->dst)) < 0 ||
                    (r = copy_optional_string(v, "gw", where, &route->gw)) < 0)
                        return r;
                if (!route->dst)
                        return error_set(-EBADMSG, "%s has no 'dst'", where);
                if (!cidr_is_valid(route->dst))
                        return error_set(-EBADMSG, "invalid destination '%s' in %s", route->dst, where);
                if (route->gw && !ip_is_valid(route->gw))
                        return error_set(-EBADMSG, "invalid gateway '%s' in %s", route->gw, where);
        }
        return 0;
}

static int parse_dns(json_t *j, CniResult *res) {
        json_t *dns = json_object_get(j, "dns");
        int r;

        if (!dns || json_is_null(dns))
                return 0;
        if (!json_is_object(dns))
                return error_set(-EBADMSG, "'dns' is not a JSON object");
        if ((r = copy_string_array(dns, "nameservers", "dns", &res->dns_nameservers)) < 0 ||
            (r = copy_optional_string(dns, "domain", "dns", &res->dns_domain)) < 0 ||
            (r = copy_string_array(dns, "search", "dns", &res->dns_search)) < 0 ||
            (r = copy_string_array(dns, "options", "dns", &res->dns_options)) < 0)
                return r;
        return 0;
}

int cni_result_from_json(json_t *j, CniResult **ret) {
        _cleanup_(cni_result_freep) CniResult *res = NULL;
        int r;

        if (!json_is_object(j))
                return error_set(-EBADMSG, "result is not a JSON object");

        res = calloc(1, sizeof(CniResult));
        if (!res)
                return -ENOMEM;
        res->json = json_incref(j);

        if ((r = copy_optional_string(j, "cniVersion", "the result", &res->cni_version)) < 0 ||
            (r = parse_interfaces(j, res)) < 0 ||
            (r = parse_ips(j, res)) < 0 ||
            (r = parse_routes(j, res)) < 0 ||
            (r = parse_dns(j, res)) < 0)
                return r;

        *ret = TAKE_PTR(res);
        return 0;
}

int cni_result_parse(const char *text, size_t size, CniResult **ret) {
        json_error_t e;
        json_t *j;
        int r;

        j = json_loadb(text, size, 0, &e);
        if (!j)
                return error_set(-EBADMSG, "result is not valid JSON: %s", e.text);
        r = cni_result_from_json(j, ret);
        json_decref(j);
        return r;
}

static bool cidr_is_ipv4(const char *cidr) {
        const char *slash = strchr(cidr, '/');
        char addr[INET_ADDRSTRLEN];
        struct in_addr a;
        size_t n = slash ? (size_t) (slash - cidr) : strlen(cidr);

        if (n >= sizeof(addr))
                return false;
        memcpy(addr, cidr, n);
        addr[n] = '\0';
        return inet_pton(AF_INET, addr, &a) == 1;
}

const CniIp *cni_result_find_ipv4(const CniResult *r, const char *ifname) {
        for (size_t i = 0; i < r->n_ips; i++) {
                const CniIp *ip = &r->ips[i];
                const CniInterface *iface;

                if (ip->interface < 0 || !cidr_is_ipv4(ip->address))
                        continue;
                iface = &r->interfaces[ip->interface];
                if (streq(iface->name, ifname) && !isempty(iface->sandbox))
                        return ip;
        }
        for (size_t i = 0; i < r->n_ips; i++)
                if (r->ips[i].interface < 0 && cidr_is_ipv4(r->ips[i].address))
                        return &r->ips[i];
        return NULL;
}

/* Collapse white space runs (new lines included) into single spaces, trim, and cut long text. */
static char *one_line(const char *s) {
        size_t n = 0;
        char *out = malloc(strlen(s) + 1);
        bool space = false;

        if (!out)
                return NULL;
        for (const char *p = s; *p; p++) {
                if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
                        space = n > 0;
                        continue;
                }
                if (space)
                        out[n++] = ' ';
                space = false;
                out[n++] = *p;
        }
        out[n] = '\0';

        if (n > CNI_MESSAGE_MAX)
                memcpy(out + CNI_MESSAGE_MAX - 3, "...", 4);
        return out;
}

char *cni_error_message(const char *out, const char *err, int exit_status) {
        _cleanup_free_ char *o = one_line(out ?: ""), *e = one_line(err ?: "");
        char *message = NULL;
        json_t *j;

        if (!o || !e)
                return NULL;

        if (!isempty(o)) {
                j = json_loads(out, 0, NULL);
                if (json_is_object(j)) {
                        const char *msg = get_string(j, "msg"), *details = get_string(j, "details");
                        json_t *code = json_object_get(j, "code");

                        if (!isempty(msg) && !isempty(details))
                                (void) asprintf(&message, "%s; %s", msg, details);
                        else if (!isempty(msg))
                                message = strdup(msg);
                        else if (json_is_integer(code))
                                (void) asprintf(&message, "error code %lld with no message",
                                                (long long) json_integer_value(code));
                        json_decref(j);
                        if (message) {
                                char *line = one_line(message);

                                free(message);
                                return line;
                        }
                } else
                        json_decref(j);
                if (!message)
                        return TAKE_PTR(o);
        }

        if (!isempty(e))
                return TAKE_PTR(e);

        (void) asprintf(&message, "exit status %d with no error output", exit_status);
        return message;
}

static int find_plugin(const char *bin_dir, const char *type, char **ret) {
        _cleanup_strv_free_ char **dirs = NULL;
        int r;

        r = strv_split(bin_dir, ":", &dirs);
        if (r < 0)
                return r;
        STRV_FOREACH(d, dirs) {
                _cleanup_free_ char *p = strjoin(*d, "/", type, NULL);
                struct stat st;

                if (!p)
                        return -ENOMEM;
                if (stat(p, &st) >= 0 && S_ISREG(st.st_mode) && access(p, X_OK) >= 0) {
                        *ret = TAKE_PTR(p);
                        return 0;
                }
        }
        return error_set(-ENOENT, "CNI plugin '%s' not found in %s", type, bin_dir);
}

static long elapsed_ms(const struct timespec *start) {
        struct timespec now;

        clock_gettime(CLOCK_MONOTONIC, &now);
        return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

typedef struct Capture {
        char *data;
        size_t size;
} Capture;

static int capture_read(int fd, Capture *c) {
        char buf[8192];
        ssize_t n;

        n = read(fd, buf, sizeof(buf));
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 1 : -errno;
        if (n == 0)
                return 0;
        if (c->size < CNI_OUTPUT_MAX) {
                size_t take = MIN((size_t) n, CNI_OUTPUT_MAX - c->size);

                memcpy(c->data + c->size, buf, take);
                c->size += take;
                c->data[c->size] = '\0';
        }
        return 1;
}

extern char **environ;

/* Run program with stdin text and env, collect stdout and stderr. stdin is a socket pair so that
 * writing to a plugin that exited early fails with EPIPE (MSG_NOSIGNAL) instead of raising
 * SIGPIPE in the caller. Returns the exit status, -ETIMEDOUT or -ECHILD (signal). */
static int run_program(const char *program, char *const *env, const char *input, unsigned timeout_sec,
                       char **ret_out, char **ret_err) {
        _cleanup_free_ char *out_buf = malloc(CNI_OUTPUT_MAX + 1), *err_buf = malloc(CNI_OUTPUT_MAX + 1);
        Capture out = { .data = out_buf }, err = { .data = err_buf };
        int in_pair[2] = { -EBADF, -EBADF }, out_pipe[2] = { -EBADF, -EBADF }, err_pipe[2] = { -EBADF, -EBADF };
        char *argv[] = { (char *) program, NULL };
        posix_spawn_file_actions_t actions;
        size_t input_len = strlen(input), written = 0;
        struct timespec start;
        bool timed_out = false;
        int status, r;
        pid_t pid;

        if (!out_buf || !err_buf)
                return -ENOMEM;
        out_buf[0] = err_buf[0] = '\0';

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) < 0)
                return -errno;
        if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
                r = -errno;
                goto finish_fds;
        }

        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, in_pair[1], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);
        r = posix_spawn(&pid, program, &actions, NULL, argv, (char **) env);
        posix_spawn_file_actions_destroy(&actions);
        in_pair[1] = safe_close(in_pair[1]);
        out_pipe[1] = safe_close(out_pipe[1]);
        err_pipe[1] = safe_close(err_pipe[1]);
        if (r != 0) {
                r = error_set(-r, "cannot run '%s': %s", program, strerror(r));
                goto finish_fds;
        }

        (void) fcntl(in_pair[0], F_SETFL, O_NONBLOCK);
        clock_gettime(CLOCK_MONOTONIC, &start);
        while (out_pipe[0] >= 0 || err_pipe[0] >= 0) {
                struct pollfd p[3];
                int timeout = -1, np = 0;

                if (in_pair[0] >= 0 && written == input_len)
                        in_pair[0] = safe_close(in_pair[0]);

                if (timeout_sec > 0) {
                        long left = (long) timeout_sec * 1000 - elapsed_ms(&start);

                        if (left <= 0) {
                                timed_out = true;
                                (void) kill(pid, SIGKILL);
                                break;
                        }
                        timeout = (int) left;
                }

                p[np++] = (struct pollfd) { .fd = out_pipe[0], .events = POLLIN };
                p[np++] = (struct pollfd) { .fd = err_pipe[0], .events = POLLIN };
                p[np++] = (struct pollfd) { .fd = in_pair[0], .events = POLLOUT };
                if (poll(p, np, timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        (void) kill(pid, SIGKILL);
                        break;
                }

                if (p[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
                        ssize_t n = send(in_pair[0], input + written, input_len - written,
                                         MSG_NOSIGNAL | MSG_DONTWAIT);

                        /* A plugin that stops reading early still gets to report why. */
                        if (n < 0 && errno != EINTR && errno != EAGAIN)
                                in_pair[0] = safe_close(in_pair[0]);
                        else if (n > 0)
                                written += (size_t) n;
                }
                if (p[0].revents & (POLLIN | POLLHUP | POLLERR) && capture_read(out_pipe[0], &out) <= 0)
                        out_pipe[0] = safe_close(out_pipe[0]);
                if (p[1].revents & (POLLIN | POLLHUP | POLLERR) && capture_read(err_pipe[0], &err) <= 0)
                        err_pipe[0] = safe_close(err_pipe[0]);
        }

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        r = -errno;
                        goto finish_fds;
                }

        if (timed_out)
                r = -ETIMEDOUT;
        else if (WIFSIGNALED(status))
                r = error_set(-ECHILD, "killed by signal %d", WTERMSIG(status));
        else {
                r = WEXITSTATUS(status);
                *ret_out = TAKE_PTR(out_buf);
                *ret_err = TAKE_PTR(err_buf);
        }

finish_fds:
        safe_close(in_pair[0]);
        safe_close(in_pair[1]);
        safe_close(out_pipe[0]);
        safe_close(out_pipe[1]);
        safe_close(err_pipe[0]);
        safe_close(err_pipe[1]);
        return r;
}

static int env_add(char ***env, const char *key, const char *value) {
        return strv_consume(env, strjoin(key, "=", value ?: "", NULL));
}

static int build_env(const CniRuntime *rt, CniCommand command, const CniAttachment *a, const char *netns,
                     char ***ret) {
        _cleanup_strv_free_ char **env = NULL;
        int r;

        if ((r = env_add(&env, "CNI_COMMAND", cni_command_to_string(command))) < 0 ||
            (r = env_add(&env, "CNI_CONTAINERID", a->container_id)) < 0 ||
            (r = env_add(&env, "CNI_NETNS", netns)) < 0 ||
            (r = env_add(&env, "CNI_IFNAME", a->ifname)) < 0 ||
            (r = env_add(&env, "CNI_PATH", rt->bin_dir)) < 0)
                return r;
        if (!isempty(a->args) && (r = env_add(&env, "CNI_ARGS", a->args)) < 0)
                return r;
        /* Some plugins run tools such as iptables by name. */
        r = env_add(&env, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        if (r < 0)
                return r;

        *ret = TAKE_PTR(env);
        return 0;
}

/* Run plugin index of net for command; on exit status 0 return its stdout. */
static int run_plugin(const CniRuntime *rt, const CniNetwork *net, size_t index, CniCommand command,
                      const CniAttachment *a, const char *netns, json_t *prev_result, char **ret_out) {
        json_t *plugin = json_array_get(net->plugins, index);
        const char *type = get_string(plugin, "type");
        unsigned timeout = rt->timeout_sec ?: CNI_TIMEOUT_DEFAULT_SEC;
        _cleanup_free_ char *program = NULL, *input = NULL, *out = NULL, *err = NULL, *message = NULL;
        _cleanup_strv_free_ char **env = NULL;
        int r;

        r = find_plugin(rt->bin_dir, type, &program);
        if (r < 0)
                return r;
        r = cni_build_stdin(net, index, a->capability_args, prev_result, &input);
        if (r < 0)
                return r;
        r = build_env(rt, command, a, netns, &env);
        if (r < 0)
                return r;

        r = run_program(program, env, input, timeout, &out, &err);
        if (r == -ETIMEDOUT)
                return error_set(r, "CNI plugin '%s' timed out after %u s while trying to %s %s", type,
                                 timeout, command_verb(command), a->ifname);
        if (r < 0)
                return error_prefix(r, "CNI plugin '%s' failed to %s %s: ", type, command_verb(command),
                                    a->ifname);
        if (r > 0) {
                message = cni_error_message(out, err, r);
                if (!message)
                        return -ENOMEM;
                return error_set(-EIO, "CNI plugin '%s' failed to %s %s: %s", type, command_verb(command),
                                 a->ifname, message);
        }

        *ret_out = TAKE_PTR(out);
        return 0;
}

char *cni_cache_path(const char *cache_dir, const char *network, const char *container_id,
                     const char *ifname) {
        char *p = NULL;

        if (asprintf(&p, "%s/%s-%s-%s.json", cache_dir, network, container_id, ifname) < 0)
                return NULL;
        return p;
}

static int check_attachment(const CniAttachment *a) {
        if (!cni_container_id_is_valid(a->container_id))
                return error_set(-EINVAL, "invalid CNI container id '%s'", strempty_or(a->container_id));
        if (!cni_ifname_is_valid(a->ifname))
                return error_set(-EINVAL, "invalid interface name '%s'", strempty_or(a->ifname));
        return 0;
}

static int cache_write(const CniRuntime *rt, const CniNetwork *net, const CniAttachment *a, json_t *result) {
        _cleanup_free_ char *path = cni_cache_path(rt->cache_dir, net->name, a->container_id, a->ifname);
        _cleanup_free_ char *text = NULL;
        json_t *entry;
        int r;

        if (!path)
                return -ENOMEM;
        entry = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:O, s:O}", "kind", "cniCacheV1", "containerId",
                          a->container_id, "ifName", a->ifname, "networkName", net->name, "cniArgs",
                          a->args, "config", net->json, "result", result);
        if (!entry)
                return -ENOMEM;
        text = json_dumps(entry, JSON_INDENT(2));
        json_decref(entry);
        if (!text)
                return -ENOMEM;

        r = mkdir_p(rt->cache_dir, 0700);
        if (r >= 0)
                r = write_file_atomic(path, text, strlen(text), 0600);
        if (r < 0)
                return error_set(r, "cannot write CNI cache %s: %s", path, strerror(-r));
        return 0;
}

int cni_cache_read(const char *path, const char *network, const char *container_id, const char *ifname,
                   json_t **ret_list, json_t **ret_result) {
        _cleanup_free_ char *text = NULL;
        json_t *j, *list, *result;
        size_t size;
        int r;

        r = read_file(path, CNI_OUTPUT_MAX + CNI_CONFIG_SIZE_MAX, &text, &size);
        if (r == -ENOENT)
                return r;
        if (r < 0)
                return error_set(r, "cannot read CNI cache %s: %s", path, strerror(-r));

        j = json_loadb(text, size, 0, NULL);
        list = json_object_get(j, "config");
        result = json_object_get(j, "result");
        if (!json_is_object(j) || !streq_ptr(get_string(j, "kind"), "cniCacheV1") ||
            !streq_ptr(get_string(j, "networkName"), network) ||
            !streq_ptr(get_string(j, "containerId"), container_id) ||
            !streq_ptr(get_string(j, "ifName"), ifname) || !json_is_object(result)) {
                json_decref(j);
                return error_set(-EBADMSG, "invalid CNI cache entry %s", path);
        }

        if (ret_list)
                *ret_list = json_is_object(list) ? json_incref(list) : NULL;
        if (ret_result)
                *ret_result = json_incref(result);
        json_decref(j);
        return 0;
}

int cni_add(const CniRuntime *rt, const CniNetwork *net, const CniAttachment *a, CniResult **ret) {
        _cleanup_(cni_result_freep) CniResult *result = NULL;
        json_t *prev = NULL;
        int r;

        r = check_attachment(a);
        if (r < 0)
                return r;
        if (isempty(a->netns))
                return error_set(-EINVAL, "CNI ADD of %s needs a network namespace", a->ifname);

        for (size_t i = 0; i < json_array_size(net->plugins); i++) {
                _cleanup_free_ char *out = NULL;
                CniResult *parsed = NULL;

                r = run_plugin(rt, net, i, CNI_COMMAND_ADD, a, a->netns, prev, &out);
                if (r >= 0) {
                        r = cni_result_parse(out, strlen(out), &parsed);
                        if (r < 0)
                                r = error_prefix(r, "invalid result from CNI plugin '%s' for %s: ",
                                                 get_string(json_array_get(net->plugins, i), "type"),
                                                 a->ifname);
                }
                json_decref(prev);
                prev = NULL;
                if (r < 0)
                        return r;

                prev = json_incref(parsed->json);
                cni_result_free(result);
                result = parsed;
        }
        json_decref(prev);

        r = cache_write(rt, net, a, result->json);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(result);
        return 0;
}

int cni_del(const CniRuntime *rt, const CniNetwork *net, const char *network, const CniAttachment *a) {
        _cleanup_(cni_network_freep) CniNetwork *cached_net = NULL;
        _cleanup_free_ char *path = NULL;
        json_t *list = NULL, *result = NULL;
        const CniNetwork *use = net;
        const char *netns = a->netns;
        int r;

        r = check_attachment(a);
        if (r < 0)
                return r;
        if (!network)
                network = net ? net->name : NULL;
        if (!cni_network_name_is_valid(network))
                return error_set(-EINVAL, "invalid CNI network name '%s'", strempty_or(network));

        path = cni_cache_path(rt->cache_dir, network, a->container_id, a->ifname);
        if (!path)
                return -ENOMEM;
        r = cni_cache_read(path, network, a->container_id, a->ifname, &list, &result);
        if (r < 0 && r != -ENOENT)
                return r;

        if (list) {
                r = cni_network_from_json(list, path, &cached_net);
                json_decref(list);
                if (r < 0) {
                        json_decref(result);
                        return r;
                }
                use = cached_net;
        }
        if (!use) {
                /* Neither a cached result nor a configuration: nothing is known to undo. */
                json_decref(result);
                return 0;
        }

        /* DEL must work after the namespace is gone, e.g. after a reboot. */
        if (!isempty(netns) && access(netns, F_OK) < 0)
                netns = "";

        for (size_t i = json_array_size(use->plugins); i > 0; i--) {
                _cleanup_free_ char *out = NULL;

                r = run_plugin(rt, use, i - 1, CNI_COMMAND_DEL, a, netns, result, &out);
                if (r < 0) {
                        json_decref(result);
                        return r;
                }
        }
        json_decref(result);

        if (unlink(path) < 0 && errno != ENOENT)
                return error_set(-errno, "cannot remove CNI cache %s: %s", path, strerror(errno));
        return 0;
}

int cni_check(const CniRuntime *rt, const CniNetwork *net, const CniAttachment *a, CniCheckFlags flags) {
        _cleanup_free_ char *path = NULL;
        json_t *result = NULL;
        unsigned long v;
        int r;

        r = check_attachment(a);
        if (r < 0)
                return r;
        if (net->disable_check)
                return error_set(-EOPNOTSUPP, "CNI network '%s' sets disableCheck", net->name);
        if (version_parse(net->cni_version, &v) < 0 || v < VERSION_0_4_0)
                return error_set(-EOPNOTSUPP, "CNI network '%s' uses cniVersion %s, which has no CHECK",
                                 net->name, net->cni_version);

        path = cni_cache_path(rt->cache_dir, net->name, a->container_id, a->ifname);
        if (!path)
                return -ENOMEM;
        r = cni_cache_read(path, net->name, a->container_id, a->ifname, NULL, &result);
        if (r == -ENOENT)
                return error_set(r, "no cached CNI result for %s of %s in network '%s'", a->ifname,
                                 a->container_id, net->name);
        if (r < 0)
                return r;

        if (flags & CNI_CHECK_WITHOUT_ADDRESSES) {
                json_t *copy = json_deep_copy(result);

                json_decref(result);
                if (!copy)
                        return -ENOMEM;
                (void) json_object_del(copy, "ips");
                (void) json_object_del(copy, "routes");
                result = copy;
        }

        for (size_t i = 0; i < json_array_size(net->plugins); i++) {
                _cleanup_free_ char *out = NULL;

                r = run_plugin(rt, net, i, CNI_COMMAND_CHECK, a, a->netns, result, &out);
                if (r < 0)
                        break;
        }
        json_decref(result);
        return r < 0 ? r : 0;
}

int cni_cache_list(const char *cache_dir, const char *container_id, char ***ret_networks,
                   char ***ret_ifnames) {
        _cleanup_strv_free_ char **networks = NULL, **ifnames = NULL;
        struct dirent *de;
        DIR *d;
        int r = 0;

        d = opendir(cache_dir);
        if (!d && errno != ENOENT)
                return error_set(-errno, "cannot read CNI cache %s: %s", cache_dir, strerror(errno));

        while (d && (de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *text = NULL;
                const char *network, *ifname;
                size_t size;
                json_t *j;

                if (de->d_name[0] == '.' || !endswith(de->d_name, ".json"))
                        continue;
                path = strjoin(cache_dir, "/", de->d_name, NULL);
                if (!path) {
                        r = -ENOMEM;
                        break;
                }
                if (read_file(path, CNI_OUTPUT_MAX + CNI_CONFIG_SIZE_MAX, &text, &size) < 0)
                        continue;
                j = json_loadb(text, size, 0, NULL);
                network = get_string(j, "networkName");
                ifname = get_string(j, "ifName");
                if (streq_ptr(get_string(j, "containerId"), container_id) &&
                    cni_network_name_is_valid(network) && cni_ifname_is_valid(ifname) &&
                    (strv_extend(&networks, network) < 0 || strv_extend(&ifnames, ifname) < 0))
                        r = -ENOMEM;
                json_decref(j);
                if (r < 0)
                        break;
        }
        if (d)
                closedir(d);
        if (r < 0)
                return r;

        if (!networks && !(networks = calloc(1, sizeof(char *))))
                return -ENOMEM;
        if (!ifnames && !(ifnames = calloc(1, sizeof(char *))))
                return -ENOMEM;
        *ret_networks = TAKE_PTR(networks);
        *ret_ifnames = TAKE_PTR(ifnames);
        return 0;
}
