/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "auth.h"
#include "config.h"
#include "digest.h"
#include "error.h"
#include "manifest.h"
#include "registry.h"

/* Registry error documents and token responses are small; only this much of them is kept. */
#define RESPONSE_TEXT_MAX (64U * 1024U)
#define TOKEN_RESPONSE_MAX (1024U * 1024U)

#define RETRY_DELAY_INITIAL_MS 200U
#define RETRY_AFTER_MAX_SEC 10U

/* Docker's token servers issue tokens for 60 s when the response has no "expires_in". A cached
 * token is dropped this long before it expires, so that it does not run out in flight. */
#define TOKEN_LIFETIME_MIN_SEC 60
#define TOKEN_EXPIRY_MARGIN_SEC 10

#define USER_AGENT "cocoon/" PROJECT_VERSION

typedef struct Token {
        char *scope;
        char *value;
        time_t expires; /* CLOCK_MONOTONIC seconds */
} Token;

struct RegistryClient {
        char *registry;   /* as written in the reference, for reasons and credentials */
        char *host;       /* API host[:port] */
        char *repository;
        char *default_scope;
        char **insecure_registries; /* copy of RegistryOptions.insecure_registries */
        bool insecure;    /* unverified https first, then plain http */
        long connect_timeout_sec;
        long low_speed_time_sec;
        unsigned max_retries;
        uint64_t max_manifest_size;
        AuthCredentials *credentials;
        char *basic_authorization;

        pthread_mutex_t lock;
        /* Protected by lock. */
        const char *scheme; /* NULL until the first connection decided between https and http */
        bool use_basic;     /* the registry sent a Basic challenge */
        Token *tokens;
        size_t n_tokens;
};

typedef enum RequestKind {
        REQUEST_MANIFEST,
        REQUEST_BLOB,
} RequestKind;

typedef struct Request {
        RegistryClient *client;
        RequestKind kind;
        const char *reference; /* tag or digest */
        char *scope;           /* token scope for this request, from the last challenge */
        char errbuf[CURL_ERROR_SIZE];

        /* The response of the current attempt; a redirect starts a new one. */
        long status;
        long os_errno; /* errno of a failed connect, from libcurl */
        char *redirect_host; /* host:port that sent the final response, when a redirect left the registry */
        char *content_type;
        char *www_authenticate;
        char *retry_after;
        char *content_range;
        uint64_t content_length;
        bool has_content_length;
        bool body_started;
        int sink_error;
        char *error_body;
        size_t error_size;

        /* Manifest body */
        char *body;
        size_t size;
        size_t allocated;

        /* Blob sink */
        int fd;
        Digest *digest;
        uint64_t written;
        uint64_t expected_size;
        uint64_t skip; /* bytes to drop from a 200 response to a resumed request */
        void (*progress)(void *userdata, uint64_t done);
        void *userdata;
} Request;

static void *mfree(void *p) {
        free(p);
        return NULL;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void) {
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int curl_setup(void) {
        pthread_once(&curl_once, curl_init_once);
        if (curl_init_result != CURLE_OK)
                return error_set(-EIO, "failed to initialise libcurl: %s", curl_easy_strerror(curl_init_result));
        return 0;
}

static time_t now_sec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- Hosts ---- */

static void strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

static int strv_copy(char **l, char ***ret) {
        size_t n = 0;
        char **copy;

        while (l && l[n])
                n++;

        copy = calloc(n + 1, sizeof(char *));
        if (!copy)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                copy[i] = strdup(l[i]);
                if (!copy[i]) {
                        strv_free(copy);
                        return -ENOMEM;
                }
        }

        *ret = copy;
        return 0;
}

static size_t host_name_length(const char *host) {
        if (host[0] == '[') {
                const char *end = strchr(host, ']');
                return end ? (size_t) (end - host + 1) : strlen(host);
        }
        return strcspn(host, ":");
}

static bool host_is_loopback(const char *host) {
        _cleanup_free_ char *name = strndup(host, host_name_length(host));
        struct in_addr a;

        if (!name)
                return false;

        if (streq(name, "localhost") || streq(name, "[::1]"))
                return true;

        return inet_pton(AF_INET, name, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static bool host_is_insecure(const char *host, char **insecure_registries) {
        if (host_is_loopback(host))
                return true;

        for (char **i = insecure_registries; i && *i; i++) {
                if (streq(*i, host))
                        return true;
                /* An entry without a port allows every port of that host. */
                if (strlen(*i) == host_name_length(host) && strneq(*i, host, strlen(*i)) && !strchr(*i + host_name_length(*i), ':'))
                        return true;
        }

        return false;
}

/* "host:port" of a URL, for reasons about connections. */
static char *url_host_port(const char *url) {
        _cleanup_free_ char *host = NULL, *port = NULL;
        CURLU *u;
        char *s = NULL;

        u = curl_url();
        if (!u)
                return NULL;

        if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
                if (asprintf(&s, "%s:%s", host, port) < 0)
                        s = NULL;
        }

        curl_url_cleanup(u);
        return s;
}

/* ---- Token cache ---- */

static void token_done(Token *t) {
        free(t->scope);
        if (t->value) {
                explicit_bzero(t->value, strlen(t->value));
                free(t->value);
        }
}

/* The Authorization header value for scope: a cached token, else basic credentials when the
 * registry asked for them, else NULL. */
static int client_authorization(RegistryClient *c, const char *scope, char **ret) {
        char *value = NULL;
        int r = 0;

        pthread_mutex_lock(&c->lock);

        for (size_t i = 0; i < c->n_tokens; i++) {
                Token *t = &c->tokens[i];

                if (!streq(t->scope, scope) || now_sec() >= t->expires)
                        continue;

                if (asprintf(&value, "Bearer %s", t->value) < 0)
                        r = -ENOMEM;
                goto finish;
        }

        if (c->use_basic && c->basic_authorization) {
                value = strdup(c->basic_authorization);
                if (!value)
                        r = -ENOMEM;
        }

finish:
        pthread_mutex_unlock(&c->lock);
        if (r < 0)
                return r;

        *ret = value;
        return 0;
}

static int client_store_token(RegistryClient *c, const char *scope, const char *value, long expires_in) {
        _cleanup_free_ char *s = NULL, *v = NULL;
        int r = 0;

        s = strdup(scope);
        v = strdup(value);
        if (!s || !v)
                return -ENOMEM;

        pthread_mutex_lock(&c->lock);

        for (size_t i = 0; i < c->n_tokens; i++)
                if (streq(c->tokens[i].scope, scope)) {
                        token_done(&c->tokens[i]);
                        c->tokens[i] = c->tokens[--c->n_tokens];
                        break;
                }

        Token *tokens = realloc(c->tokens, (c->n_tokens + 1) * sizeof(Token));
        if (!tokens)
                r = -ENOMEM;
        else {
                c->tokens = tokens;
                c->tokens[c->n_tokens++] = (Token) {
                        .scope = TAKE_PTR(s),
                        .value = TAKE_PTR(v),
                        .expires = now_sec() + MAX(expires_in, TOKEN_LIFETIME_MIN_SEC) - TOKEN_EXPIRY_MARGIN_SEC,
                };
        }

        pthread_mutex_unlock(&c->lock);
        return r;
}

static const char *client_scheme(RegistryClient *c) {
        const char *s;

        pthread_mutex_lock(&c->lock);
        s = c->scheme;
        pthread_mutex_unlock(&c->lock);
        return s;
}

static void client_set_scheme(RegistryClient *c, const char *scheme) {
        pthread_mutex_lock(&c->lock);
        if (!c->scheme)
                c->scheme = scheme;
        pthread_mutex_unlock(&c->lock);
}

/* ---- Response state ---- */

static void request_reset_response(Request *req) {
        req->status = 0;
        req->content_type = mfree(req->content_type);
        req->www_authenticate = mfree(req->www_authenticate);
        req->retry_after = mfree(req->retry_after);
        req->content_range = mfree(req->content_range);
        req->has_content_length = false;
        req->content_length = 0;
        req->body_started = false;
        req->error_body = mfree(req->error_body);
        req->error_size = 0;
}

static void request_done(Request *req) {
        request_reset_response(req);
        free(req->redirect_host);
        free(req->scope);
        free(req->body);
        digest_free(req->digest);
}

static const char *request_what(const Request *req, char *buf, size_t size) {
        if (req->kind == REQUEST_BLOB)
                snprintf(buf, size, "blob %s", req->reference);
        else
                snprintf(buf, size, "manifest '%s'", req->reference);
        return buf;
}

/* Store header "name: value" when it is one we use. A repeated WWW-Authenticate is joined into
 * one challenge list, as RFC 9110 allows. */
static int request_store_header(Request *req, const char *name, size_t name_length, const char *value) {
        char **slot = NULL;

        if (name_length == 12 && strncasecmp(name, "Content-Type", 12) == 0)
                slot = &req->content_type;
        else if (name_length == 11 && strncasecmp(name, "Retry-After", 11) == 0)
                slot = &req->retry_after;
        else if (name_length == 13 && strncasecmp(name, "Content-Range", 13) == 0)
                slot = &req->content_range;
        else if (name_length == 14 && strncasecmp(name, "Content-Length", 14) == 0) {
                char *end;

                errno = 0;
                req->content_length = strtoull(value, &end, 10);
                req->has_content_length = errno == 0 && end != value && *end == '\0';
                return 0;
        } else if (name_length == 16 && strncasecmp(name, "WWW-Authenticate", 16) == 0) {
                if (req->www_authenticate) {
                        char *joined;

                        if (asprintf(&joined, "%s, %s", req->www_authenticate, value) < 0)
                                return -ENOMEM;
                        free(req->www_authenticate);
                        req->www_authenticate = joined;
                        return 0;
                }
                slot = &req->www_authenticate;
        }

        if (!slot)
                return 0;

        free(*slot);
        *slot = strdup(value);
        return *slot ? 0 : -ENOMEM;
}

static size_t header_callback(char *buffer, size_t size, size_t nitems, void *userdata) {
        Request *req = userdata;
        size_t n = size * nitems, name_length;
        _cleanup_free_ char *line = NULL;
        char *colon, *value, *end;

        line = strndup(buffer, n);
        if (!line)
                goto oom;

        end = line + strlen(line);
        while (end > line && strchr("\r\n \t", end[-1]))
                *--end = '\0';

        /* Every status line starts a new response: a redirect, or the final response. */
        if (strneq(line, "HTTP/", 5)) {
                const char *space = strchr(line, ' ');

                request_reset_response(req);
                req->status = space ? strtol(space + 1, NULL, 10) : 0;
                return n;
        }

        colon = strchr(line, ':');
        if (!colon)
                return n;
        name_length = colon - line;
        value = colon + 1 + strspn(colon + 1, " \t");

        if (request_store_header(req, line, name_length, value) < 0)
                goto oom;

        return n;

oom:
        req->sink_error = -ENOMEM;
        return 0;
}

static bool status_is_success(long status) {
        return status >= 200 && status < 300;
}

static int fd_write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd pfd = { .fd = fd, .events = POLLOUT };

                                if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                                        return -errno;
                                continue;
                        }
                        return -errno;
                }

                p += k;
                n -= k;
        }

        return 0;
}

/* Check the first body bytes of a successful response against what the request expects. */
static int request_begin_body(Request *req) {
        RegistryClient *c = req->client;
        char what[128];

        if (req->kind == REQUEST_MANIFEST) {
                if (req->has_content_length && req->content_length > c->max_manifest_size)
                        return error_set(-EFBIG, "manifest '%s' in %s/%s is %" PRIu64 " bytes, over the limit of %" PRIu64,
                                         req->reference, c->registry, c->repository, req->content_length,
                                         c->max_manifest_size);
                return 0;
        }

        if (req->written == 0)
                return 0;

        /* A resumed transfer. A 206 must continue where the last attempt stopped. A server that
         * ignores Range sends everything again, so the part already written is dropped. */
        if (req->status == 206) {
                uint64_t start;

                if (!req->content_range || sscanf(req->content_range, "bytes %" SCNu64 "-", &start) != 1 ||
                    start != req->written)
                        return error_set(-EBADMSG, "resuming %s at byte %" PRIu64 " failed: unexpected Content-Range '%s'",
                                         request_what(req, what, sizeof(what)), req->written,
                                         req->content_range ?: "");
                req->skip = 0;
        } else
                req->skip = req->written;

        return 0;
}

static int request_sink_manifest(Request *req, const char *p, size_t n) {
        RegistryClient *c = req->client;

        if (req->size + n > c->max_manifest_size)
                return error_set(-EFBIG, "manifest '%s' in %s/%s is over the limit of %" PRIu64 " bytes",
                                 req->reference, c->registry, c->repository, c->max_manifest_size);

        if (req->size + n + 1 > req->allocated) {
                size_t a = MAX(req->allocated * 2, req->size + n + 1);
                char *b = realloc(req->body, a);

                if (!b)
                        return -ENOMEM;
                req->body = b;
                req->allocated = a;
        }

        memcpy(req->body + req->size, p, n);
        req->size += n;
        req->body[req->size] = '\0';
        return 0;
}

static int request_sink_blob(Request *req, const char *p, size_t n) {
        char what[128];
        size_t drop;
        int r;

        drop = (size_t) MIN((uint64_t) n, req->skip);
        req->skip -= drop;
        p += drop;
        n -= drop;
        if (n == 0)
                return 0;

        if (req->expected_size != REGISTRY_BLOB_SIZE_UNKNOWN && req->written + n > req->expected_size)
                return error_set(-EBADMSG, "%s is larger than the expected %" PRIu64 " bytes",
                                 request_what(req, what, sizeof(what)), req->expected_size);

        r = digest_update(req->digest, p, n);
        if (r < 0)
                return r;

        r = fd_write_all(req->fd, (const uint8_t *) p, n);
        if (r < 0)
                return error_set(r, "failed to write %s to the output: %s", request_what(req, what, sizeof(what)),
                                 strerror(-r));

        req->written += n;
        if (req->progress)
                req->progress(req->userdata, req->written);

        return 0;
}

static size_t write_callback(char *p, size_t size, size_t nmemb, void *userdata) {
        Request *req = userdata;
        size_t n = size * nmemb;
        int r;

        /* Error bodies are read up to a cap, whatever their Content-Length claims. */
        if (!status_is_success(req->status)) {
                size_t keep = MIN(n, RESPONSE_TEXT_MAX - req->error_size);
                char *b;

                if (keep == 0)
                        return n;
                b = realloc(req->error_body, req->error_size + keep + 1);
                if (!b) {
                        req->sink_error = -ENOMEM;
                        return 0;
                }
                memcpy(b + req->error_size, p, keep);
                req->error_size += keep;
                b[req->error_size] = '\0';
                req->error_body = b;
                return n;
        }

        if (!req->body_started) {
                req->body_started = true;
                r = request_begin_body(req);
                if (r < 0) {
                        req->sink_error = r;
                        return 0;
                }
        }

        r = req->kind == REQUEST_MANIFEST ? request_sink_manifest(req, p, n) : request_sink_blob(req, p, n);
        if (r < 0) {
                req->sink_error = r;
                return 0;
        }

        return n;
}

/* ---- Performing one attempt ---- */

static int easy_setup_common(CURL *e, const RegistryClient *c, bool verify_tls, char *errbuf) {
        bool ok = true;

        ok = ok && curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_MAXREDIRS, REGISTRY_MAX_REDIRECTS) == CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
        ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") == CURLE_OK;
#else
        ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)) == CURLE_OK;
#endif
        ok = ok && curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_sec) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, REGISTRY_LOW_SPEED_LIMIT_BYTES) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, c->low_speed_time_sec) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify_tls ? 1L : 0L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify_tls ? 2L : 0L) == CURLE_OK;
        /* NOTE: verify_tls also applies to redirect targets, so an insecure registry's blob
         * redirect to another host is fetched without TLS verification. */

        /* The registry's Authorization header is set by hand and must stay with the registry:
         * libcurl drops it when a redirect leaves the host, and CURLOPT_UNRESTRICTED_AUTH, which
         * would keep it, is deliberately not set. */

        return ok ? 0 : error_set(-EIO, "failed to configure libcurl");
}

static int header_list_add(struct curl_slist **list, const char *name, const char *value) {
        _cleanup_free_ char *line = NULL;
        struct curl_slist *l;

        if (asprintf(&line, "%s: %s", name, value) < 0)
                return -ENOMEM;

        l = curl_slist_append(*list, line);
        explicit_bzero(line, strlen(line));
        if (!l)
                return -ENOMEM;

        *list = l;
        return 0;
}

static void slist_freep(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

static void easy_cleanupp(CURL **e) {
        if (*e)
                curl_easy_cleanup(*e);
}

static int request_perform(Request *req, const char *url, const char *authorization, bool verify_tls,
                           CURLcode *ret_code) {
        _cleanup_(easy_cleanupp) CURL *e = NULL;
        _cleanup_(slist_freep) struct curl_slist *headers = NULL;
        char range[64];
        int r;

        e = curl_easy_init();
        if (!e)
                return -ENOMEM;

        r = easy_setup_common(e, req->client, verify_tls, req->errbuf);
        if (r < 0)
                return r;

        if (req->kind == REQUEST_MANIFEST)
                r = header_list_add(&headers, "Accept", MANIFEST_ACCEPT);
        if (r >= 0 && authorization)
                r = header_list_add(&headers, "Authorization", authorization);
        if (r >= 0 && req->kind == REQUEST_BLOB && req->written > 0) {
                snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", req->written);
                r = header_list_add(&headers, "Range", range);
        }
        if (r < 0)
                return r;

        if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_callback) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HEADERDATA, req) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_callback) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEDATA, req) != CURLE_OK)
                return error_set(-EIO, "failed to configure libcurl");

        request_reset_response(req);
        req->sink_error = 0;
        req->errbuf[0] = '\0';
        if (req->kind == REQUEST_MANIFEST)
                req->size = 0;

        *ret_code = curl_easy_perform(e);

        req->os_errno = 0;
        req->redirect_host = mfree(req->redirect_host);
        if (*ret_code == CURLE_OK) {
                _cleanup_free_ char *request_host = url_host_port(url), *final_host = NULL;
                const char *effective_url = NULL;

                curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &req->status);
                if (curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &effective_url) == CURLE_OK && effective_url)
                        final_host = url_host_port(effective_url);
                if (request_host && final_host && !streq(request_host, final_host))
                        req->redirect_host = TAKE_PTR(final_host);
        } else {
                curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &req->os_errno);
                if (req->errbuf[0] == '\0')
                        snprintf(req->errbuf, sizeof(req->errbuf), "%s", curl_easy_strerror(*ret_code));
        }

        return 0;
}

/* ---- Classifying failures ---- */

/* Failures that mean the server does not speak TLS on that port. */
static bool curl_code_is_connect_failure(CURLcode code) {
        switch (code) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_OPERATION_TIMEDOUT:
                return true;
        default:
                return false;
        }
}

/* A connection that was dropped after it was made.
 * NOTE: a low-speed timeout is not retried, so one stalled transfer fails the call. */
static bool curl_code_is_transient(CURLcode code) {
        switch (code) {
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return true;
        default:
                return false;
        }
}

static bool status_is_retryable(long status) {
        return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

static int request_curl_error(Request *req, const char *url, CURLcode code, unsigned attempts) {
        _cleanup_free_ char *where = url_host_port(url);
        const char *hp = where ?: req->client->host;
        RegistryClient *c = req->client;
        char what[128];

        request_what(req, what, sizeof(what));

        switch (code) {
        case CURLE_COULDNT_CONNECT:
                if (req->os_errno == ECONNREFUSED)
                        return error_set(-ECONNREFUSED, "failed to connect to %s: connection refused", hp);
                return error_set(-EHOSTUNREACH, "failed to connect to %s: %s", hp, req->errbuf);
        case CURLE_COULDNT_RESOLVE_HOST:
                return error_set(-EHOSTUNREACH, "failed to resolve host of %s: %s", hp, req->errbuf);
        case CURLE_OPERATION_TIMEDOUT:
                if (req->status == 0 && !strstr(req->errbuf, "too slow"))
                        return error_set(-ETIMEDOUT, "connecting to %s timed out after %ld s", hp, c->connect_timeout_sec);
                return error_set(-ETIMEDOUT, "transfer of %s from %s timed out: less than %ld bytes/s for %ld s",
                                 what, hp, REGISTRY_LOW_SPEED_LIMIT_BYTES, c->low_speed_time_sec);
        case CURLE_TOO_MANY_REDIRECTS:
                return error_set(-ELOOP, "too many redirects (more than %ld) fetching %s from %s/%s",
                                 REGISTRY_MAX_REDIRECTS, what, c->registry, c->repository);
        case CURLE_PEER_FAILED_VERIFICATION:
                return error_set(-EPROTO, "TLS certificate of %s could not be verified: %s", hp, req->errbuf);
        case CURLE_SSL_CONNECT_ERROR:
                return error_set(-EPROTO, "TLS handshake with %s failed: %s", hp, req->errbuf);
        default:
                if (curl_code_is_transient(code) && attempts > 1)
                        return error_set(-EIO, "transfer of %s from %s failed after %u attempts: %s",
                                         what, hp, attempts, req->errbuf);
                return error_set(-EIO, "transfer of %s from %s failed: %s", what, hp, req->errbuf);
        }
}

/* The first "code" and "message" of a registry error document ({"errors":[{…}]}). */
static void registry_error_parse(const char *body, size_t size, char **ret_code, char **ret_message) {
        json_t *root, *first;
        const char *code = NULL, *message = NULL;

        *ret_code = *ret_message = NULL;
        if (!body)
                return;

        root = json_loadb(body, size, 0, NULL);
        if (!root)
                return;

        first = json_array_get(json_object_get(root, "errors"), 0);
        code = json_string_value(json_object_get(first, "code"));
        message = json_string_value(json_object_get(first, "message"));
        if (code)
                *ret_code = strdup(code);
        if (message)
                *ret_message = strdup(message);

        json_decref(root);
}

static int request_status_error(Request *req, unsigned attempts) {
        _cleanup_free_ char *code = NULL, *message = NULL, *detail = NULL;
        RegistryClient *c = req->client;
        char what[128];

        request_what(req, what, sizeof(what));
        registry_error_parse(req->error_body, req->error_size, &code, &message);

        if (code && message && asprintf(&detail, ": %s: %s", code, message) < 0)
                return -ENOMEM;

        /* A redirect target (object storage, a CDN) that fails is not the registry. */
        if (req->redirect_host)
                return error_set(-EIO, "%s returned HTTP %ld for %s (redirected from %s)%s",
                                 req->redirect_host, req->status, what, c->registry, detail ?: "");

        switch (req->status) {
        case 404:
                if (code && streq(code, "NAME_UNKNOWN"))
                        return error_set(-ENOENT, "repository '%s' not found in %s", c->repository, c->registry);
                if (req->kind == REQUEST_BLOB)
                        return error_set(-ENOENT, "blob %s not found in %s/%s", req->reference, c->registry, c->repository);
                return error_set(-ENOENT, "manifest unknown: %s '%s' not found in %s/%s",
                                 digest_is_valid(req->reference) ? "digest" : "tag", req->reference, c->registry,
                                 c->repository);
        case 401:
                if (!c->credentials)
                        return error_set(-EACCES,
                                         "authentication required for %s/%s and no credentials found "
                                         "(add them to ~/.docker/config.json)", c->registry, c->repository);
                return error_set(-EACCES, "authentication failed for %s/%s as user '%s'%s",
                                 c->registry, c->repository, c->credentials->username, detail ?: "");
        case 403:
                return error_set(-EACCES, "access to %s/%s denied%s", c->registry, c->repository, detail ?: "");
        default:
                break;
        }

        if (status_is_retryable(req->status))
                return error_set(-EIO, "%s returned HTTP %ld for %s, giving up after %u attempts%s",
                                 c->registry, req->status, what, attempts, detail ?: "");
        return error_set(-EIO, "%s returned HTTP %ld for %s%s", c->registry, req->status, what, detail ?: "");
}

/* Milliseconds to wait before attempt number attempt+1: Retry-After when the server sent
 * seconds, else an exponential backoff. */
static unsigned retry_delay_ms(const Request *req, unsigned attempt) {
        if (req->retry_after) {
                char *end;
                unsigned long s;

                errno = 0;
                s = strtoul(req->retry_after, &end, 10);
                if (errno == 0 && end != req->retry_after && *end == '\0')
                        return (unsigned) MIN(s, (unsigned long) RETRY_AFTER_MAX_SEC) * 1000U;
        }

        return RETRY_DELAY_INITIAL_MS << MIN(attempt, 10U);
}

/* ---- Tokens ---- */

static int token_url(const char *realm, const char *service, const char *scope, char **ret) {
        _cleanup_free_ char *url = NULL, *scopes = NULL;
        char sep = strchr(realm, '?') ? '&' : '?';
        size_t length;
        FILE *f;

        f = open_memstream(&url, &length);
        if (!f)
                return -ENOMEM;

        fputs(realm, f);
        if (service) {
                char *e = curl_easy_escape(NULL, service, 0);

                if (!e) {
                        fclose(f);
                        return -ENOMEM;
                }
                fprintf(f, "%cservice=%s", sep, e);
                curl_free(e);
                sep = '&';
        }

        scopes = strdup(scope);
        if (!scopes) {
                fclose(f);
                return -ENOMEM;
        }

        /* One scope parameter per space-separated scope of the challenge. */
        for (char *save = NULL, *s = strtok_r(scopes, " ", &save); s; s = strtok_r(NULL, " ", &save)) {
                char *e = curl_easy_escape(NULL, s, 0);

                if (!e) {
                        fclose(f);
                        return -ENOMEM;
                }
                fprintf(f, "%cscope=%s", sep, e);
                curl_free(e);
                sep = '&';
        }

        if (fclose(f) != 0)
                return -ENOMEM;

        *ret = TAKE_PTR(url);
        return 0;
}

typedef struct Buffer {
        char *data;
        size_t size;
        size_t max;
        bool overflow;
} Buffer;

static size_t buffer_write_callback(char *p, size_t size, size_t nmemb, void *userdata) {
        Buffer *b = userdata;
        size_t n = size * nmemb;
        char *d;

        if (b->size + n > b->max) {
                b->overflow = true;
                return 0;
        }

        d = realloc(b->data, b->size + n + 1);
        if (!d)
                return 0;
        memcpy(d + b->size, p, n);
        b->size += n;
        d[b->size] = '\0';
        b->data = d;
        return n;
}

static int token_response_parse(const char *realm, const Buffer *b, char **ret_token, long *ret_expires_in) {
        json_t *root, *token, *expires_in;
        json_error_t error;
        char *t;

        root = json_loadb(b->data ?: "", b->size, 0, &error);
        if (!root)
                return error_set(-EBADMSG, "invalid token response from %s: %s", realm, error.text);

        token = json_object_get(root, "token");
        if (!json_is_string(token) || json_string_length(token) == 0)
                token = json_object_get(root, "access_token");
        if (!json_is_string(token) || json_string_length(token) == 0) {
                json_decref(root);
                return error_set(-EBADMSG, "token response from %s has no \"token\" or \"access_token\"", realm);
        }

        expires_in = json_object_get(root, "expires_in");
        t = strdup(json_string_value(token));
        *ret_expires_in = json_is_integer(expires_in) ? (long) json_integer_value(expires_in) : TOKEN_LIFETIME_MIN_SEC;
        json_decref(root);
        if (!t)
                return -ENOMEM;

        *ret_token = t;
        return 0;
}

/* NOTE: the token request is not retried on 429 or 5xx, unlike registry requests. */
static int client_fetch_token(RegistryClient *c, const AuthChallenge *challenge, const char *scope) {
        _cleanup_(easy_cleanupp) CURL *e = NULL;
        _cleanup_(slist_freep) struct curl_slist *headers = NULL;
        _cleanup_free_ char *url = NULL, *realm_host = NULL, *token = NULL;
        char errbuf[CURL_ERROR_SIZE] = "";
        Buffer b = { .max = TOKEN_RESPONSE_MAX };
        long status = 0, os_errno = 0, expires_in = TOKEN_LIFETIME_MIN_SEC;
        CURLcode code;
        int r;

        if (!strneq(challenge->realm, "https://", 8) && !strneq(challenge->realm, "http://", 7))
                return error_set(-EBADMSG, "invalid token realm '%s' in the challenge from %s", challenge->realm, c->host);

        r = token_url(challenge->realm, challenge->service, scope, &url);
        if (r < 0)
                return r;

        realm_host = url_host_port(challenge->realm);
        e = curl_easy_init();
        if (!e)
                return -ENOMEM;

        r = easy_setup_common(e, c, !realm_host || !host_is_insecure(realm_host, c->insecure_registries), errbuf);
        if (r < 0)
                return r;

        if (c->basic_authorization) {
                r = header_list_add(&headers, "Authorization", c->basic_authorization);
                if (r < 0)
                        return r;
        }

        if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, buffer_write_callback) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEDATA, &b) != CURLE_OK)
                return error_set(-EIO, "failed to configure libcurl");

        code = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);

        if (code != CURLE_OK && b.overflow)
                r = error_set(-EFBIG, "failed to get a token from %s: response is over the limit of %u bytes",
                              challenge->realm, TOKEN_RESPONSE_MAX);
        else if (code != CURLE_OK)
                r = error_set(code == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED ? -ECONNREFUSED : -EIO,
                              "failed to get a token from %s: %s", challenge->realm,
                              errbuf[0] ? errbuf : curl_easy_strerror(code));
        else if (status == 401 && !c->credentials)
                r = error_set(-EACCES,
                              "authentication required for %s/%s and no credentials found "
                              "(add them to ~/.docker/config.json)", c->registry, c->repository);
        else if (status == 401 || status == 403)
                r = error_set(-EACCES, "token server %s rejected the credentials of user '%s' (HTTP %ld)",
                              challenge->realm, c->credentials ? c->credentials->username : "", status);
        else if (!status_is_success(status))
                r = error_set(-EIO, "failed to get a token from %s: HTTP %ld", challenge->realm, status);
        else
                r = token_response_parse(challenge->realm, &b, &token, &expires_in);

        free(b.data);
        if (r < 0)
                return r;

        r = client_store_token(c, scope, token, expires_in);
        explicit_bzero(token, strlen(token));
        return r;
}

/* Handle a 401: fetch a token for the challenge's scope, or switch to basic credentials. */
static int request_handle_challenge(Request *req) {
        _cleanup_(auth_challenge_freep) AuthChallenge *challenge = NULL;
        RegistryClient *c = req->client;
        int r;

        if (!req->www_authenticate)
                return request_status_error(req, 1);

        r = auth_challenge_parse(req->www_authenticate, &challenge);
        if (r < 0)
                return error_prefix(r, "%s: ", c->registry);

        if (challenge->scheme == AUTH_SCHEME_BASIC) {
                bool retry;

                pthread_mutex_lock(&c->lock);
                retry = c->credentials && !c->use_basic;
                c->use_basic = true;
                pthread_mutex_unlock(&c->lock);

                /* Without credentials, or with credentials already rejected, the 401 is final. */
                if (!retry)
                        return request_status_error(req, 1);
                return 0;
        }

        if (challenge->scope) {
                char *s = strdup(challenge->scope);

                if (!s)
                        return -ENOMEM;
                free(req->scope);
                req->scope = s;
        }

        return client_fetch_token(c, challenge, req->scope);
}

/* ---- The request loop ---- */

static int request_url(const Request *req, const char *scheme, char **ret) {
        const RegistryClient *c = req->client;

        if (asprintf(ret, "%s://%s/v2/%s/%s/%s", scheme, c->host, c->repository,
                     req->kind == REQUEST_MANIFEST ? "manifests" : "blobs", req->reference) < 0)
                return -ENOMEM;

        return 0;
}

static int request_run(Request *req) {
        RegistryClient *c = req->client;
        unsigned attempt = 1, auth_rounds = 0;
        int r;

        req->scope = strdup(c->default_scope);
        if (!req->scope)
                return -ENOMEM;

        for (;;) {
                _cleanup_free_ char *url = NULL, *authorization = NULL;
                const char *scheme = client_scheme(c);
                bool probing = !scheme;
                CURLcode code = CURLE_OK;

                r = request_url(req, scheme ?: "https", &url);
                if (r < 0)
                        return r;

                r = client_authorization(c, req->scope, &authorization);
                if (r < 0)
                        return r;

                r = request_perform(req, url, authorization, !c->insecure, &code);
                if (authorization)
                        explicit_bzero(authorization, strlen(authorization));
                if (r < 0)
                        return r;

                if (code != CURLE_OK) {
                        if (req->sink_error < 0)
                                return req->sink_error;

                        /* An insecure registry that does not speak TLS is tried again over plain HTTP. */
                        if (probing && curl_code_is_connect_failure(code)) {
                                client_set_scheme(c, "http");
                                continue;
                        }

                        if (curl_code_is_transient(code) && attempt <= c->max_retries) {
                                sleep_ms(retry_delay_ms(req, attempt - 1));
                                attempt++;
                                continue;
                        }

                        return request_curl_error(req, url, code, attempt);
                }

                if (probing)
                        client_set_scheme(c, "https");

                if (status_is_success(req->status))
                        return 0;

                if (req->status == 401 && auth_rounds < 2) {
                        auth_rounds++;
                        r = request_handle_challenge(req);
                        if (r < 0)
                                return r;
                        continue;
                }

                if (status_is_retryable(req->status) && attempt <= c->max_retries) {
                        sleep_ms(retry_delay_ms(req, attempt - 1));
                        attempt++;
                        continue;
                }

                return request_status_error(req, attempt);
        }
}

/* ---- Public API ---- */

int registry_client_new(const Reference *ref, const RegistryOptions *opts, RegistryClient **ret) {
        _cleanup_(registry_client_freep) RegistryClient *c = NULL;
        RegistryOptions o = opts ? *opts : (RegistryOptions) {};
        int r;

        r = curl_setup();
        if (r < 0)
                return r;

        c = calloc(1, sizeof(RegistryClient));
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);

        c->registry = strdup(ref->registry);
        c->host = strdup(reference_api_host(ref));
        c->repository = strdup(ref->repository);
        if (!c->registry || !c->host || !c->repository)
                return -ENOMEM;
        if (asprintf(&c->default_scope, "repository:%s:pull", ref->repository) < 0)
                return -ENOMEM;

        r = strv_copy(o.insecure_registries, &c->insecure_registries);
        if (r < 0)
                return r;

        c->insecure = host_is_insecure(c->host, c->insecure_registries) ||
                host_is_insecure(c->registry, c->insecure_registries);
        c->scheme = c->insecure ? NULL : "https";
        c->connect_timeout_sec = o.connect_timeout_sec > 0 ? o.connect_timeout_sec : REGISTRY_CONNECT_TIMEOUT_SEC_DEFAULT;
        c->low_speed_time_sec = o.low_speed_time_sec > 0 ? o.low_speed_time_sec : REGISTRY_LOW_SPEED_TIME_SEC_DEFAULT;
        c->max_retries = o.max_retries > 0 ? o.max_retries : REGISTRY_MAX_RETRIES_DEFAULT;
        c->max_manifest_size = o.max_manifest_size > 0 ? o.max_manifest_size : MANIFEST_SIZE_MAX_DEFAULT;

        r = auth_credentials_find(c->registry, &c->credentials);
        if (r < 0)
                return r;

        if (c->credentials) {
                r = auth_basic_header_value(c->credentials, &c->basic_authorization);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(c);
        return 0;
}

RegistryClient *registry_client_free(RegistryClient *c) {
        if (!c)
                return NULL;

        for (size_t i = 0; i < c->n_tokens; i++)
                token_done(&c->tokens[i]);
        free(c->tokens);
        if (c->basic_authorization) {
                explicit_bzero(c->basic_authorization, strlen(c->basic_authorization));
                free(c->basic_authorization);
        }
        auth_credentials_free(c->credentials);
        free(c->registry);
        free(c->host);
        free(c->repository);
        free(c->default_scope);
        strv_free(c->insecure_registries);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

static int reference_argument_check(const char *tag_or_digest) {
        static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-:";

        if (isempty(tag_or_digest) || strspn(tag_or_digest, allowed) != strlen(tag_or_digest))
                return error_set(-EINVAL, "invalid tag or digest '%s'", tag_or_digest ?: "");

        if (strchr(tag_or_digest, ':'))
                return digest_validate(tag_or_digest);

        return 0;
}

int registry_get_manifest(RegistryClient *c, const char *tag_or_digest, char **ret_body, size_t *ret_size,
                          char **ret_media_type, char **ret_digest) {
        _cleanup_free_ char *digest = NULL, *media_type = NULL;
        Request req = {
                .client = c,
                .kind = REQUEST_MANIFEST,
                .reference = tag_or_digest,
                .fd = -EBADF,
        };
        int r;

        r = reference_argument_check(tag_or_digest);
        if (r < 0)
                return r;

        r = request_run(&req);
        if (r < 0)
                goto finish;

        r = digest_buffer(req.body ?: "", req.size, &digest);
        if (r < 0)
                goto finish;

        if (digest_is_valid(tag_or_digest) && !streq(digest, tag_or_digest)) {
                r = error_set(-EBADMSG, "digest mismatch for manifest %s from %s/%s: the content hashes to %s",
                              tag_or_digest, c->registry, c->repository, digest);
                goto finish;
        }

        if (req.content_type) {
                media_type = strndup(req.content_type, strcspn(req.content_type, "; \t"));
                if (!media_type) {
                        r = -ENOMEM;
                        goto finish;
                }
        }

        if (!req.body) {
                req.body = strdup("");
                if (!req.body) {
                        r = -ENOMEM;
                        goto finish;
                }
        }

        *ret_body = TAKE_PTR(req.body);
        *ret_size = req.size;
        *ret_media_type = TAKE_PTR(media_type);
        *ret_digest = TAKE_PTR(digest);
        r = 0;

finish:
        request_done(&req);
        return r;
}

static int blob_verify(Request *req, RegistryClient *c) {
        _cleanup_free_ char *digest = NULL;
        int r;

        if (req->expected_size != REGISTRY_BLOB_SIZE_UNKNOWN && req->written != req->expected_size)
                return error_set(-EBADMSG, "blob %s from %s/%s is %" PRIu64 " bytes, expected %" PRIu64,
                                 req->reference, c->registry, c->repository, req->written, req->expected_size);

        r = digest_final(req->digest, &digest);
        if (r < 0)
                return r;

        if (!streq(digest, req->reference))
                return error_set(-EBADMSG, "digest mismatch for blob %s from %s/%s: the content hashes to %s",
                                 req->reference, c->registry, c->repository, digest);

        return 0;
}

int registry_fetch_blob(RegistryClient *c, const char *digest, uint64_t expected_size, int out_fd,
                        void (*progress)(void *userdata, uint64_t done), void *userdata) {
        Request req = {
                .client = c,
                .kind = REQUEST_BLOB,
                .reference = digest,
                .fd = out_fd,
                .expected_size = expected_size,
                .progress = progress,
                .userdata = userdata,
        };
        int r;

        r = digest_validate(digest);
        if (r < 0)
                return r;

        r = digest_new(&req.digest);
        if (r < 0)
                return r;

        r = request_run(&req);
        if (r >= 0)
                r = blob_verify(&req, c);

        request_done(&req);
        return r;
}
