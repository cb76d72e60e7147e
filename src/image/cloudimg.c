/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cloudimg.h"
#include "cocoon-build.h"
#include "digest.h"
#include "error.h"
#include "fileio.h"
#include "format.h"
#include "qcow2.h"
#include "strv.h"

#define USER_AGENT "cocoon/" PROJECT_VERSION
#define CONNECT_TIMEOUT_SEC 30L
/* A transfer that moves no byte for this long counts as cut, and is resumed. */
#define STALL_TIMEOUT_SEC 60L
#define SHA256SUMS_MAX (1024U * 1024U)
/* Enough for every signature cloudimg_sniff_reject() checks (tar's is at offset 257). */
#define SNIFF_SIZE 512U
/* The qcow2 header and its extensions sit in the first cluster, at most 2 MiB. */
#define QCOW2_HEAD_MAX (2U * 1024U * 1024U)
#define QEMU_IMG_OUTPUT_MAX (64U * 1024U)
#define URL_MAX 4096U

static atomic_bool cancelled;

static void *mfree(void *p) {
        free(p);
        return NULL;
}

void cloudimg_pull_cancel_all(void) {
        atomic_store(&cancelled, true);
}

static int check_cancelled(void) {
        return atomic_load(&cancelled) ? error_set(-ECANCELED, "interrupted") : 0;
}

/* Sleep for ms milliseconds in short steps, so that a cancel is noticed soon. */
static int sleep_cancellable(unsigned ms) {
        for (unsigned slept = 0; slept < ms; slept += 50) {
                struct timespec ts = { .tv_nsec = 50 * 1000000L };

                if (atomic_load(&cancelled))
                        return error_set(-ECANCELED, "interrupted");
                nanosleep(&ts, NULL);
        }
        return check_cancelled();
}

static const char *const format_names[_CLOUDIMG_FORMAT_MAX] = {
        [CLOUDIMG_FORMAT_QCOW2] = "qcow2",
        [CLOUDIMG_FORMAT_RAW] = "raw",
};

const char *cloudimg_format_to_string(CloudImgFormat f) {
        if (f < 0 || f >= _CLOUDIMG_FORMAT_MAX)
                return NULL;
        return format_names[f];
}

bool cloudimg_is_url(const char *s) {
        return s && (strncasecmp(s, "http://", 7) == 0 || strncasecmp(s, "https://", 8) == 0);
}

char *cloudimg_blob_path(const Store *s, const char *content_sum) {
        const char *hex = startswith(content_sum, DIGEST_SHA256_PREFIX) ?
                content_sum + strlen(DIGEST_SHA256_PREFIX) : content_sum;
        _cleanup_free_ char *name = strjoin(hex, ".qcow2", NULL);

        return name ? store_path(s, "blobs", "sha256", name, NULL) : NULL;
}

/* ---- Sniffing the content ---- */

typedef struct Signature {
        size_t offset;
        const char *magic;
        size_t length;
        const char *reason;
} Signature;

#define COMPRESSED(what) \
        "received " what ", not a disk image: decompress it first or use the uncompressed image URL"
#define ARCHIVE(what) \
        "received " what ", not a disk image: extract it first or use the uncompressed image URL"
#define DISK_FORMAT(what) \
        "received " what ", which is not supported: convert it to qcow2 or raw first"

static const Signature signatures[] = {
        { 0, "\x1f\x8b", 2, COMPRESSED("a gzip file") },
        { 0, "\xfd" "7zXZ\x00", 6, COMPRESSED("an xz file") },
        { 0, "BZh", 3, COMPRESSED("a bzip2 file") },
        { 0, "\x28\xb5\x2f\xfd", 4, COMPRESSED("a zstd file") },
        { 0, "PK\x03\x04", 4, ARCHIVE("a zip archive") },
        { 0, "PK\x05\x06", 4, ARCHIVE("a zip archive") },
        { 0, "7z\xbc\xaf\x27\x1c", 6, ARCHIVE("a 7z archive") },
        { 257, "ustar", 5, ARCHIVE("a tar archive") },
        { 0, "KDMV", 4, DISK_FORMAT("a VMDK image") },
        { 0, "# Disk DescriptorFile", 21, DISK_FORMAT("a VMDK descriptor") },
        { 0, "vhdxfile", 8, DISK_FORMAT("a VHDX image") },
        { 0, "conectix", 8, DISK_FORMAT("a dynamic VHD image") },
        { 64, "\x7f\x10\xda\xbe", 4, DISK_FORMAT("a VDI image") },
        { 0, "QED\x00", 4, DISK_FORMAT("a QED image") },
        { 0, "LUKS\xba\xbe", 6, DISK_FORMAT("a LUKS encrypted volume") },
};

static bool prefix_matches(const char *p, size_t size, const char *prefix) {
        size_t n = strlen(prefix);

        return size >= n && strncasecmp(p, prefix, n) == 0;
}

/* Markup that starts a web page or an XML error document, which S3 and compatible stores return
 * for errors. */
static int sniff_markup(const uint8_t *head, size_t size) {
        static const char *const html[] = { "<!doctype", "<html", "<head", "<body", "<!--" };
        const char *p = (const char *) head;

        if (size >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
                p += 3;
                size -= 3;
        }
        while (size > 0 && isspace((unsigned char) *p)) {
                p++;
                size--;
        }

        for (size_t i = 0; i < ELEMENTSOF(html); i++)
                if (prefix_matches(p, size, html[i]))
                        return error_set(-EMEDIUMTYPE, "received an HTML page, not a disk image: "
                                                       "check the URL, it may point to a download "
                                                       "page or an error page");
        if (prefix_matches(p, size, "<?xml"))
                return error_set(-EMEDIUMTYPE, "received an XML document, not a disk image: "
                                               "check the URL, it may point to an error page");
        return 0;
}

int cloudimg_sniff_reject(const void *head, size_t size) {
        const uint8_t *p = head;

        for (size_t i = 0; i < ELEMENTSOF(signatures); i++) {
                const Signature *sig = &signatures[i];

                if (size >= sig->offset + sig->length &&
                    memcmp(p + sig->offset, sig->magic, sig->length) == 0)
                        return error_set(-EMEDIUMTYPE, "%s", sig->reason);
        }
        return sniff_markup(p, size);
}

int cloudimg_sniff(const void *head, size_t size, uint64_t file_size, CloudImgFormat *ret) {
        int r;

        r = cloudimg_sniff_reject(head, size);
        if (r < 0)
                return r;

        if (size >= 4 && memcmp(head, QCOW2_MAGIC, 4) == 0) {
                *ret = CLOUDIMG_FORMAT_QCOW2;
                return 0;
        }

        /* Anything else is taken as a raw disk, which is made of whole 512-byte sectors. This
         * also catches short text responses such as a bare "Not Found". */
        if (file_size == 0)
                return error_set(-EMEDIUMTYPE, "received an empty file, not a disk image");
        if (file_size % 512 != 0)
                return error_set(-EMEDIUMTYPE, "received %" PRIu64 " bytes that are neither a qcow2 "
                                               "image nor a raw disk image (a raw image is a "
                                               "multiple of 512 bytes)", file_size);
        *ret = CLOUDIMG_FORMAT_RAW;
        return 0;
}

/* ---- SHA256SUMS ---- */

static bool is_hex_digest(const char *p, size_t n) {
        if (n != DIGEST_SHA256_HEX_LENGTH)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!isxdigit((unsigned char) p[i]))
                        return false;
        return true;
}

/* Split one line into its hex checksum and file name; false for a line of another kind. */
static bool sha256sums_parse_line(const char *line, size_t n, const char **ret_hex,
                                  const char **ret_name, size_t *ret_name_length) {
        /* BSD style, as written by "sha256sum --tag": SHA256 (<file>) = <hex> */
        if (n > 8 && strneq(line, "SHA256 (", 8)) {
                const char *close = NULL;

                for (size_t i = n; i > 8; i--)
                        if (i + 3 + DIGEST_SHA256_HEX_LENGTH <= n + 1 &&
                            strneq(line + i - 1, ") = ", 4)) {
                                close = line + i - 1;
                                break;
                        }
                if (!close || !is_hex_digest(close + 4, n - (size_t) (close + 4 - line)))
                        return false;
                *ret_hex = close + 4;
                *ret_name = line + 8;
                *ret_name_length = (size_t) (close - (line + 8));
                return true;
        }

        /* GNU style: <hex>, a space, ' ' (text mode) or '*' (binary mode), the file name. */
        if (n < DIGEST_SHA256_HEX_LENGTH + 3 || !is_hex_digest(line, DIGEST_SHA256_HEX_LENGTH) ||
            line[DIGEST_SHA256_HEX_LENGTH] != ' ' ||
            !strchr(" *", line[DIGEST_SHA256_HEX_LENGTH + 1]))
                return false;
        *ret_hex = line;
        *ret_name = line + DIGEST_SHA256_HEX_LENGTH + 2;
        *ret_name_length = n - DIGEST_SHA256_HEX_LENGTH - 2;
        return true;
}

int cloudimg_sha256sums_find(const char *text, size_t size, const char *filename, char **ret) {
        char found[DIGEST_SHA256_HEX_LENGTH + 1] = "";
        size_t filename_length = strlen(filename);

        for (size_t start = 0; start < size;) {
                const char *line = text + start, *nl = memchr(line, '\n', size - start);
                size_t n = nl ? (size_t) (nl - line) : size - start;
                const char *hex, *name;
                size_t name_length;
                char lower[DIGEST_SHA256_HEX_LENGTH + 1];

                start += n + 1;
                if (n > 0 && line[n - 1] == '\r')
                        n--;

                if (!sha256sums_parse_line(line, n, &hex, &name, &name_length))
                        continue;
                if (name_length >= 2 && strneq(name, "./", 2)) {
                        name += 2;
                        name_length -= 2;
                }
                if (name_length != filename_length || !strneq(name, filename, name_length))
                        continue;

                for (size_t i = 0; i < DIGEST_SHA256_HEX_LENGTH; i++)
                        lower[i] = (char) tolower((unsigned char) hex[i]);
                lower[DIGEST_SHA256_HEX_LENGTH] = '\0';

                if (found[0] && !streq(found, lower))
                        return error_set(-EBADMSG, "SHA256SUMS lists '%s' twice with different "
                                                   "checksums", filename);
                memcpy(found, lower, sizeof(found));
        }

        if (!found[0])
                return -ENOENT;

        *ret = strjoin(DIGEST_SHA256_PREFIX, found, NULL);
        return *ret ? 0 : -ENOMEM;
}

static void curl_url_cleanupp(CURLU **u) {
        if (*u)
                curl_url_cleanup(*u);
}

static void curl_freep(char **p) {
        if (*p)
                curl_free(*p);
}

int cloudimg_sha256sums_url(const char *url, char **ret_url, char **ret_filename) {
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *path = NULL, *decoded = NULL, *sums = NULL;
        _cleanup_free_ char *filename = NULL, *dir = NULL, *result = NULL;
        const char *slash;

        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
                return error_set(-EINVAL, "invalid URL '%s'", url);
        if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PATH, &decoded, CURLU_URLDECODE) != CURLUE_OK)
                return error_set(-EINVAL, "invalid path in URL '%s'", url);

        slash = strrchr(decoded, '/');
        filename = strdup(slash ? slash + 1 : decoded);
        if (!filename)
                return -ENOMEM;
        if (isempty(filename) || strchr(filename, '\n'))
                return -ENOENT;

        /* The raw path keeps its percent-encoding, so the directory is sent as it was given. */
        slash = strrchr(path, '/');
        dir = strndup(path, slash ? (size_t) (slash - path) + 1 : 0);
        if (!dir)
                return -ENOMEM;
        result = strjoin(isempty(dir) ? "/" : dir, "SHA256SUMS", NULL);
        if (!result)
                return -ENOMEM;

        if (curl_url_set(u, CURLUPART_PATH, result, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_QUERY, NULL, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_URL, &sums, 0) != CURLUE_OK)
                return error_set(-EINVAL, "cannot build the SHA256SUMS URL for '%s'", url);

        free(result);
        result = strdup(sums);
        if (!result)
                return -ENOMEM;

        *ret_url = TAKE_PTR(result);
        *ret_filename = TAKE_PTR(filename);
        return 0;
}

int cloudimg_parse_content_range(const char *value, uint64_t *ret_first, uint64_t *ret_last,
                                 uint64_t *ret_total) {
        static const char separators[3] = { '-', '/', '\0' };
        uint64_t v[3] = {};
        const char *p = value;

        if (!p || strncasecmp(p, "bytes ", 6) != 0)
                goto invalid;
        p += 6;

        for (size_t i = 0; i < 3; i++) {
                if (i == 2 && *p == '*' && p[1] == '\0') {
                        p++;
                        break;
                }
                if (!isdigit((unsigned char) *p))
                        goto invalid;
                for (; isdigit((unsigned char) *p); p++) {
                        if (v[i] > (UINT64_MAX - 9) / 10)
                                goto invalid;
                        v[i] = v[i] * 10 + (uint64_t) (*p - '0');
                }
                if (*p != separators[i])
                        goto invalid;
                if (i < 2)
                        p++;
        }
        if (*p != '\0' || v[1] < v[0] || (v[2] > 0 && v[1] >= v[2]))
                goto invalid;

        *ret_first = v[0];
        *ret_last = v[1];
        *ret_total = v[2];
        return 0;

invalid:
        return error_set(-EBADMSG, "invalid Content-Range '%s'", value ?: "");
}

/* ---- HTTP ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init_once(void) {
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

typedef struct HttpRequest HttpRequest;

/* One GET, with the redirects it goes through. The hooks see only the final response, and only
 * when its status is 200 or 206. A hook that fails records a reason and stops the transfer. */
struct HttpRequest {
        const char *url;
        uint64_t range_first;          /* > 0: ask for the bytes from here on */
        const char *if_range;          /* validator sent with a range request, or NULL */
        int (*on_response)(HttpRequest *req);
        int (*on_body)(HttpRequest *req, const void *data, size_t size);
        void *userdata;

        /* The current response */
        long status;
        bool have_length;
        uint64_t content_length;
        char *content_range;
        char *etag;
        char *last_modified;
        char *location_url;            /* the URL that gave the final response */

        /* The outcome of the transfer */
        int hook_error;
        CURLcode code;
        long os_errno;
        char errbuf[CURL_ERROR_SIZE];
};

static void http_request_reset_response(HttpRequest *req) {
        req->status = 0;
        req->have_length = false;
        req->content_length = 0;
        req->content_range = mfree(req->content_range);
        req->etag = mfree(req->etag);
        req->last_modified = mfree(req->last_modified);
}

static void http_request_done(HttpRequest *req) {
        http_request_reset_response(req);
        free(req->location_url);
        req->location_url = NULL;
}

static bool status_is_content(long status) {
        return status == 200 || status == 206;
}

static bool status_is_redirect(long status) {
        return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static char *header_value(const char *line, size_t n, const char *name) {
        size_t k = strlen(name);
        const char *v, *e;

        if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
                return NULL;
        v = line + k + 1;
        e = line + n;
        while (v < e && (*v == ' ' || *v == '\t'))
                v++;
        while (e > v && isspace((unsigned char) e[-1]))
                e--;
        return strndup(v, (size_t) (e - v));
}

static size_t header_callback(char *p, size_t size, size_t nmemb, void *userdata) {
        HttpRequest *req = userdata;
        size_t n = size * nmemb;
        char *v;

        /* Every response of the exchange (1xx, redirects, the final one) starts with a status
         * line, so whatever was collected before belongs to an earlier response. */
        if (n > 5 && strneq(p, "HTTP/", 5)) {
                const char *sp = memchr(p, ' ', n);

                http_request_reset_response(req);
                if (sp)
                        req->status = strtol(sp + 1, NULL, 10);
                return n;
        }

        if (n <= 2 && (p[0] == '\r' || p[0] == '\n')) {
                /* The end of the headers: the hook decides whether the body is wanted. */
                if (status_is_content(req->status) && req->on_response) {
                        req->hook_error = req->on_response(req);
                        if (req->hook_error < 0)
                                return 0;
                }
                return n;
        }

        if ((v = header_value(p, n, "Content-Length"))) {
                char *end;

                errno = 0;
                req->content_length = strtoull(v, &end, 10);
                req->have_length = errno == 0 && end != v && *end == '\0' && v[0] != '-';
                free(v);
        } else if ((v = header_value(p, n, "Content-Range"))) {
                free(req->content_range);
                req->content_range = v;
        } else if ((v = header_value(p, n, "ETag"))) {
                free(req->etag);
                req->etag = v;
        } else if ((v = header_value(p, n, "Last-Modified"))) {
                free(req->last_modified);
                req->last_modified = v;
        }
        return n;
}

static size_t write_callback(char *p, size_t size, size_t nmemb, void *userdata) {
        HttpRequest *req = userdata;
        size_t n = size * nmemb;

        /* The bodies of redirects and error responses are not wanted. */
        if (!status_is_content(req->status))
                return n;

        req->hook_error = req->on_body(req, p, n);
        return req->hook_error < 0 ? 0 : n;
}

static int xferinfo_callback(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                             curl_off_t ulnow) {
        return atomic_load(&cancelled) ? 1 : 0;
}

static void easy_cleanupp(CURL **e) {
        if (*e)
                curl_easy_cleanup(*e);
}

static void slist_freep(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

static int easy_setup(CURL *e, HttpRequest *req) {
        bool ok = true;

        ok = ok && curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_ERRORBUFFER, req->errbuf) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT) == CURLE_OK;
        /* Redirects are followed by hand, to detect loops and refuse a downgrade to plain HTTP. */
        ok = ok && curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
        ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
#else
        ok = ok && curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)) == CURLE_OK;
#endif
        ok = ok && curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_SEC) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, STALL_TIMEOUT_SEC) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_callback) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_HEADERDATA, req) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_callback) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_WRITEDATA, req) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, xferinfo_callback) == CURLE_OK;
        ok = ok && curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L) == CURLE_OK;
        return ok ? 0 : error_set(-EIO, "failed to configure libcurl");
}

static bool url_is_https(const char *url) {
        return strncasecmp(url, "https://", 8) == 0;
}

/* Decide whether to follow a redirect from url to target, given the URLs visited so far. */
static int check_redirect(const char *url, const char *target, char **visited) {
        if (!target)
                return error_set(-EPROTO, "%s answered with a redirect but no Location", url);
        if (!cloudimg_is_url(target))
                return error_set(-EPROTO, "%s redirects to '%s', which is not an HTTP or HTTPS URL",
                                 url, target);
        if (url_is_https(url) && !url_is_https(target))
                return error_set(-EPROTO, "%s redirects to plain HTTP (%s), which is refused: use "
                                          "the HTTP URL itself if that is intended", url, target);
        if (strv_contains(visited, target))
                return error_set(-ELOOP, "redirect loop: %s redirects to %s, which was already "
                                         "requested", url, target);
        if (strv_length(visited) > CLOUDIMG_MAX_REDIRECTS)
                return error_set(-ELOOP, "too many redirects: more than %u, starting at %s",
                                 CLOUDIMG_MAX_REDIRECTS, visited[0]);
        return 0;
}

/* Run one GET of req->url, following redirects. Returns < 0 only for failures that are not
 * worth retrying (a hook failed, a redirect was refused, a cancel); the outcome of the transfer
 * is in req->code and req->status. */
static int http_get(HttpRequest *req) {
        _cleanup_(easy_cleanupp) CURL *e = NULL;
        _cleanup_(slist_freep) struct curl_slist *headers = NULL;
        _cleanup_strv_free_ char **visited = NULL;
        char range[32];
        int r;

        pthread_once(&curl_once, curl_init_once);
        if (curl_init_result != CURLE_OK)
                return error_set(-EIO, "failed to initialise libcurl: %s",
                                 curl_easy_strerror(curl_init_result));

        e = curl_easy_init();
        if (!e)
                return -ENOMEM;
        r = easy_setup(e, req);
        if (r < 0)
                return r;

        if (req->range_first > 0) {
                snprintf(range, sizeof(range), "%" PRIu64 "-", req->range_first);
                if (curl_easy_setopt(e, CURLOPT_RANGE, range) != CURLE_OK)
                        return error_set(-EIO, "failed to configure libcurl");

                /* The server then sends the rest only if the file did not change meanwhile. */
                if (req->if_range) {
                        _cleanup_free_ char *line = strjoin("If-Range: ", req->if_range, NULL);
                        struct curl_slist *l;

                        if (!line)
                                return -ENOMEM;
                        l = curl_slist_append(headers, line);
                        if (!l)
                                return -ENOMEM;
                        headers = l;
                        if (curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers) != CURLE_OK)
                                return error_set(-EIO, "failed to configure libcurl");
                }
        }

        r = strv_extend(&visited, req->url);
        if (r < 0)
                return r;

        for (;;) {
                const char *url = visited[strv_length(visited) - 1];
                char *target = NULL;

                if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK)
                        return error_set(-EIO, "failed to configure libcurl");

                http_request_reset_response(req);
                req->hook_error = 0;
                req->errbuf[0] = '\0';
                req->os_errno = 0;
                req->code = curl_easy_perform(e);

                free(req->location_url);
                req->location_url = strdup(url);
                if (!req->location_url)
                        return -ENOMEM;

                if (req->hook_error < 0)
                        return req->hook_error;
                if (req->code == CURLE_ABORTED_BY_CALLBACK)
                        return error_set(-ECANCELED, "interrupted");
                if (req->code != CURLE_OK) {
                        curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &req->os_errno);
                        if (req->errbuf[0] == '\0')
                                snprintf(req->errbuf, sizeof(req->errbuf), "%s",
                                         curl_easy_strerror(req->code));
                        return 0;
                }
                if (!status_is_redirect(req->status))
                        return 0;

                (void) curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &target);
                r = check_redirect(url, target, visited);
                if (r < 0)
                        return r;
                r = strv_extend(&visited, target);
                if (r < 0)
                        return r;
        }
}

/* The host and port of url, for messages. */
static char *url_host(const char *url) {
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *host = NULL, *port = NULL;

        if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                return strdup(url);
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
                return strjoin(host, ":", port, NULL);
        return strdup(host);
}

static bool curl_code_is_transient(CURLcode code) {
        switch (code) {
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return true;
        default:
                return false;
        }
}

static bool status_is_transient(long status) {
        return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

/* A one-line reason for a transfer that ended with a curl error, after done of total bytes. */
static int transfer_error(const HttpRequest *req, uint64_t done, uint64_t total) {
        _cleanup_free_ char *host = url_host(req->location_url ?: req->url);
        const char *where = host ?: req->url;

        switch (req->code) {
        case CURLE_COULDNT_CONNECT:
                if (req->os_errno == ECONNREFUSED)
                        return error_set(-ECONNREFUSED, "cannot connect to %s: connection refused",
                                         where);
                return error_set(-EHOSTUNREACH, "cannot connect to %s: %s", where, req->errbuf);
        case CURLE_COULDNT_RESOLVE_HOST:
                return error_set(-EHOSTUNREACH, "cannot resolve the host of %s: %s", where,
                                 req->errbuf);
        case CURLE_OPERATION_TIMEDOUT:
                return error_set(-ETIMEDOUT, "transfer from %s timed out after %" PRIu64 " bytes: %s",
                                 where, done, req->errbuf);
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                if (total > 0)
                        return error_set(-EPIPE, "connection to %s closed after %" PRIu64 " of %"
                                                 PRIu64 " bytes", where, done, total);
                return error_set(-EPIPE, "connection to %s closed after %" PRIu64 " bytes", where,
                                 done);
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
                return error_set(-EPROTO, "TLS with %s failed: %s", where, req->errbuf);
        default:
                return error_set(-EIO, "transfer from %s failed: %s", where, req->errbuf);
        }
}

static int status_error(const HttpRequest *req) {
        return error_set(req->status == 404 || req->status == 410 ? -ENOENT : -EIO,
                         "server returned HTTP status %ld for %s", req->status,
                         req->location_url ?: req->url);
}

/* ---- Downloading the image ---- */

typedef struct Download {
        const char *url;
        int fd;
        Digest *digest;
        uint64_t max_size;
        const CloudImgProgress *progress;

        uint64_t written;
        uint64_t total;                  /* 0 when the server did not say */
        char *validator;                 /* strong ETag or Last-Modified of the first response */
        bool range_ignored;              /* the server sent the whole file to a range request */
        uint8_t head[SNIFF_SIZE];
        size_t head_size;
        bool head_checked;
} Download;

static int download_restart(Download *d) {
        if (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0)
                return error_set(-errno, "cannot truncate the download: %m");
        d->total = 0;
        d->validator = mfree(d->validator);
        digest_free(d->digest);
        d->digest = NULL;
        d->written = 0;
        d->head_size = 0;
        d->head_checked = false;
        return digest_new(&d->digest);
}

/* size is 0 when the server did not announce one and the download outgrew the limit. */
static int size_limit_error(const Download *d, uint64_t size) {
        char limit[FORMAT_SIZE_MAX];

        format_size_binary(limit, sizeof(limit), d->max_size);
        if (size == 0)
                return error_set(-EFBIG, "%s is over the size limit of %s; raise it with "
                                         "--max-size or [Images] CloudImageMaxSize=", d->url, limit);
        return error_set(-EFBIG, "%s is %" PRIu64 " bytes, over the size limit of %s; raise it "
                                 "with --max-size or [Images] CloudImageMaxSize=", d->url, size,
                         limit);
}

static int download_on_response(HttpRequest *req) {
        Download *d = req->userdata;
        uint64_t first = 0, last = 0, total = 0;
        int r;

        if (req->status == 206) {
                r = cloudimg_parse_content_range(req->content_range, &first, &last, &total);
                if (r < 0)
                        return r;
        } else if (req->have_length)
                total = req->content_length;

        if (req->status == 200 && req->range_first > 0)
                d->range_ignored = true;

        /* A 206 must continue exactly where the file ends, and for the same file; otherwise
         * start over (download_retry() sends no Range then). */
        if (req->status == 206 && (first != d->written || (d->total > 0 && total != d->total)))
                return error_set(-ERANGE, "server answered the request for bytes %" PRIu64
                                          "- with %s", d->written, req->content_range);

        if (req->status == 200 && d->written > 0) {
                r = download_restart(d);
                if (r < 0)
                        return r;
        }

        if (total > d->max_size)
                return size_limit_error(d, total);
        d->total = total;

        /* Only a strong validator can make a later range request safe. */
        if (!d->validator) {
                if (req->etag && !startswith(req->etag, "W/"))
                        d->validator = strdup(req->etag);
                else if (req->last_modified)
                        d->validator = strdup(req->last_modified);
        }

        if (d->progress && d->progress->download_started)
                d->progress->download_started(d->progress->userdata, d->url, d->written, d->total);
        return 0;
}

static int write_all(int fd, const void *data, size_t size) {
        const uint8_t *p = data;

        while (size > 0) {
                ssize_t n = write(fd, p, size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return error_set(-errno, "cannot write the download: %m");
                }
                p += n;
                size -= (size_t) n;
        }
        return 0;
}

static int download_on_body(HttpRequest *req, const void *data, size_t size) {
        Download *d = req->userdata;
        int r;

        if (size > d->max_size - d->written)
                return size_limit_error(d, 0);

        /* Refuse an HTML page or a compressed file as soon as its first bytes are in. */
        if (d->head_size < SNIFF_SIZE) {
                size_t n = MIN(size, SNIFF_SIZE - d->head_size);

                memcpy(d->head + d->head_size, data, n);
                d->head_size += n;
        }
        if (!d->head_checked && d->head_size == SNIFF_SIZE) {
                d->head_checked = true;
                r = cloudimg_sniff_reject(d->head, d->head_size);
                if (r < 0)
                        return r;
        }

        r = write_all(d->fd, data, size);
        if (r < 0)
                return r;
        r = digest_update(d->digest, data, size);
        if (r < 0)
                return r;
        d->written += size;

        if (d->progress && d->progress->download_bytes)
                d->progress->download_bytes(d->progress->userdata, d->written, d->total);
        return 0;
}

/* Download d->url into d->fd, resuming or restarting a cut transfer up to CLOUDIMG_MAX_ATTEMPTS
 * times in all. */
static int download_run(Download *d) {
        _cleanup_free_ char *last_reason = NULL;
        int r;

        for (unsigned attempt = 1;; attempt++) {
                _cleanup_(http_request_done) HttpRequest req = {
                        .url = d->url,
                        .range_first = d->written,
                        .if_range = d->validator,
                        .on_response = download_on_response,
                        .on_body = download_on_body,
                        .userdata = d,
                };
                bool retry = false;

                r = http_get(&req);
                if (r == -ERANGE) {
                        /* The server cannot continue this file: start from the beginning. */
                        retry = true;
                        r = download_restart(d);
                        if (r < 0)
                                return r;
                        r = -ERANGE;
                } else if (r < 0)
                        return r;
                else if (req.code != CURLE_OK) {
                        r = transfer_error(&req, d->written, d->total);
                        retry = curl_code_is_transient(req.code);
                } else if (req.status == 416 && d->total > 0 && d->written == d->total) {
                        break;  /* the cut came after the last byte */
                } else if (!status_is_content(req.status)) {
                        r = status_error(&req);
                        retry = status_is_transient(req.status);
                } else
                        break;

                if (!retry)
                        return r;

                free(last_reason);
                last_reason = strdup(error_message(r));
                if (!last_reason)
                        return -ENOMEM;

                if (attempt >= CLOUDIMG_MAX_ATTEMPTS)
                        return error_set(r, "download of %s failed after %u attempts: %s%s", d->url,
                                         attempt, last_reason, d->range_ignored ?
                                         " (the server does not support resuming: it ignored the "
                                         "Range request)" : "");

                if (d->progress && d->progress->download_retry)
                        d->progress->download_retry(d->progress->userdata, attempt + 1,
                                                    CLOUDIMG_MAX_ATTEMPTS, last_reason);
                error_clear();

                /* Back off 0.5 s, 1 s, 2 s, 4 s. */
                r = sleep_cancellable(500U << (attempt - 1));
                if (r < 0)
                        return r;
        }

        if (!d->head_checked) {
                d->head_checked = true;
                r = cloudimg_sniff_reject(d->head, d->head_size);
                if (r < 0)
                        return r;
        }

        if (d->total > 0 && d->written != d->total)
                return error_set(-EPIPE, "download of %s ended after %" PRIu64 " of %" PRIu64 " bytes",
                                 d->url, d->written, d->total);

        if (d->progress && d->progress->download_done)
                d->progress->download_done(d->progress->userdata, d->written);
        return 0;
}

/* ---- Fetching SHA256SUMS ---- */

typedef struct Buffer {
        char *data;
        size_t size;
} Buffer;

static int buffer_on_response(HttpRequest *req) {
        Buffer *b = req->userdata;

        if (req->have_length && req->content_length > SHA256SUMS_MAX)
                return error_set(-EFBIG, "%s is %" PRIu64 " bytes, over the limit of %u",
                                 req->url, req->content_length, SHA256SUMS_MAX);
        b->size = 0;
        return 0;
}

static int buffer_on_body(HttpRequest *req, const void *data, size_t size) {
        Buffer *b = req->userdata;
        char *p;

        if (size > SHA256SUMS_MAX - b->size)
                return error_set(-EFBIG, "%s is over the limit of %u bytes", req->url,
                                 SHA256SUMS_MAX);
        p = realloc(b->data, b->size + size + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p + b->size, data, size);
        b->data = p;
        b->size += size;
        b->data[b->size] = '\0';
        return 0;
}

/* Look up the checksum that the SHA256SUMS file next to url publishes for it. Returns -ENOENT
 * when there is none: no such file (404, 403 or 410), or the file does not list the image. */
static int fetch_published_checksum(const char *url, char **ret_sums_url, char **ret) {
        _cleanup_free_ char *sums_url = NULL, *filename = NULL;
        Buffer b = {};
        int r;

        r = cloudimg_sha256sums_url(url, &sums_url, &filename);
        if (r < 0)
                return r;

        for (unsigned attempt = 1;; attempt++) {
                _cleanup_(http_request_done) HttpRequest req = {
                        .url = sums_url,
                        .on_response = buffer_on_response,
                        .on_body = buffer_on_body,
                        .userdata = &b,
                };
                bool retry = false;

                r = http_get(&req);
                if (r < 0)
                        break;
                if (req.code != CURLE_OK) {
                        r = transfer_error(&req, b.size, 0);
                        retry = curl_code_is_transient(req.code);
                } else if (req.status == 404 || req.status == 403 || req.status == 410) {
                        r = -ENOENT;
                        break;
                } else if (!status_is_content(req.status)) {
                        r = status_error(&req);
                        retry = status_is_transient(req.status);
                } else
                        break;

                if (!retry)
                        break;
                if (attempt >= CLOUDIMG_MAX_ATTEMPTS) {
                        r = error_prefix(r, "download of %s failed after %u attempts: ", sums_url,
                                         attempt);
                        break;
                }
                error_clear();
                r = sleep_cancellable(500U << (attempt - 1));
                if (r < 0)
                        break;
        }

        if (r >= 0)
                r = cloudimg_sha256sums_find(b.data ?: "", b.size, filename, ret);
        free(b.data);
        if (r < 0)
                return r;

        *ret_sums_url = TAKE_PTR(sums_url);
        return 0;
}

/* ---- Running qemu-img ---- */

/* The first executable qemu-img in $PATH, or in the usual directories when $PATH is unset. */
static int find_qemu_img(char **ret) {
        _cleanup_strv_free_ char **dirs = NULL;
        const char *path = getenv("PATH");
        int r;

        r = strv_split(isempty(path) ? "/usr/local/bin:/usr/bin:/bin" : path, ":", &dirs);
        if (r < 0)
                return r;

        STRV_FOREACH(dir, dirs) {
                _cleanup_free_ char *p = NULL;

                if ((*dir)[0] != '/')
                        continue;  /* a relative entry would depend on the working directory */
                p = strjoin(*dir, "/qemu-img", NULL);
                if (!p)
                        return -ENOMEM;
                if (access(p, X_OK) == 0) {
                        *ret = TAKE_PTR(p);
                        return 0;
                }
        }
        return error_set(-ENOENT, "qemu-img not found in $PATH: install qemu-utils (or your "
                                  "distribution's qemu-img package)");
}

typedef struct Output {
        char *data;
        size_t size;
} Output;

static void output_done(Output *o) {
        free(o->data);
}

/* Read what is available on fd into o, keeping at most max bytes. Returns false at end of file. */
static bool output_read(int fd, Output *o, size_t max) {
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n < 0)
                return errno == EINTR || errno == EAGAIN;
        if (n == 0)
                return false;

        if (o->size < max) {
                size_t keep = MIN((size_t) n, max - o->size);
                char *p = realloc(o->data, o->size + keep + 1);

                if (p) {
                        memcpy(p + o->size, buf, keep);
                        o->size += keep;
                        p[o->size] = '\0';
                        o->data = p;
                }
        }
        return true;
}

/* The last non-empty line of qemu-img's error output, for a one-line reason. */
static char *last_line(const Output *o) {
        const char *s = o->data ?: "", *e = s + o->size, *b;

        while (e > s && isspace((unsigned char) e[-1]))
                e--;
        b = e;
        while (b > s && b[-1] != '\n')
                b--;
        return b < e ? strndup(b, (size_t) (e - b)) : strdup("no error message");
}

static long monotonic_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Start binary with stdin from /dev/null and stdout, stderr into the given pipes. The child gets
 * a clean environment and the default signal mask and handlers, whatever this thread blocks, so
 * that Ctrl-C reaches it too. */
static int spawn_qemu_img(const char *binary, char **argv, int out_fd, int err_fd, pid_t *ret_pid) {
        static char *const envp[] = { (char *) "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                      (char *) "LC_ALL=C", NULL };
        posix_spawn_file_actions_t actions;
        posix_spawnattr_t attr;
        sigset_t empty, defaults;
        int r = -ENOMEM;

        sigemptyset(&empty);
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGINT);
        sigaddset(&defaults, SIGTERM);
        sigaddset(&defaults, SIGPIPE);
        sigaddset(&defaults, SIGUSR1);

        if (posix_spawn_file_actions_init(&actions) != 0)
                return -ENOMEM;
        if (posix_spawnattr_init(&attr) != 0)
                goto finish_actions;

        if (posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0) != 0 ||
            posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO) != 0 ||
            posix_spawn_file_actions_adddup2(&actions, err_fd, STDERR_FILENO) != 0 ||
            posix_spawnattr_setsigmask(&attr, &empty) != 0 ||
            posix_spawnattr_setsigdefault(&attr, &defaults) != 0 ||
            posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) != 0)
                goto finish;

        r = -posix_spawn(ret_pid, binary, &actions, &attr, argv, envp);
        if (r < 0)
                error_set(r, "cannot run %s: %s", binary, strerror(-r));

finish:
        posix_spawnattr_destroy(&attr);
finish_actions:
        posix_spawn_file_actions_destroy(&actions);
        return r;
}

static bool past_deadline_or_cancelled(long deadline) {
        return atomic_load(&cancelled) || monotonic_ms() >= deadline;
}

/* Run qemu-img with argv (argv[0] is replaced by its path), killing it after timeout_sec or on
 * cancel. Returns its exit status, with stdout in *ret_stdout (if given) and the last line of
 * stderr in *ret_error. */
static int qemu_img_run(char **argv, unsigned timeout_sec, char **ret_stdout, char **ret_error) {
        _cleanup_free_ char *binary = NULL;
        _cleanup_close_ int out_r = -EBADF, out_w = -EBADF, err_r = -EBADF, err_w = -EBADF;
        _cleanup_(output_done) Output out = {}, err = {};
        long deadline = monotonic_ms() + (long) timeout_sec * 1000L;
        bool out_open = true, err_open = true, killed = false;
        int fds[2], status, r;
        pid_t pid;

        r = find_qemu_img(&binary);
        if (r < 0)
                return r;
        argv[0] = binary;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        out_r = fds[0];
        out_w = fds[1];
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        err_r = fds[0];
        err_w = fds[1];

        r = spawn_qemu_img(binary, argv, out_w, err_w, &pid);
        if (r < 0)
                return r;
        out_w = safe_close(out_w);
        err_w = safe_close(err_w);

        while (out_open || err_open) {
                struct pollfd p[2] = {
                        { .fd = out_open ? out_r : -1, .events = POLLIN },
                        { .fd = err_open ? err_r : -1, .events = POLLIN },
                };

                if (!killed && past_deadline_or_cancelled(deadline)) {
                        kill(pid, SIGKILL);
                        killed = true;
                }
                if (poll(p, 2, 100) < 0 && errno != EINTR)
                        break;
                if (p[0].revents)
                        out_open = output_read(out_r, &out, QEMU_IMG_OUTPUT_MAX);
                if (p[1].revents)
                        err_open = output_read(err_r, &err, QEMU_IMG_OUTPUT_MAX);
        }

        /* qemu-img has closed its output, so it is about to exit; wait for that, still bounded
         * by the deadline. */
        for (;;) {
                pid_t w = waitpid(pid, &status, killed ? 0 : WNOHANG);

                if (w == pid)
                        break;
                if (w < 0 && errno != EINTR)
                        return error_set(-errno, "cannot wait for qemu-img: %m");
                if (w == 0 && past_deadline_or_cancelled(deadline)) {
                        kill(pid, SIGKILL);
                        killed = true;
                } else if (w == 0)
                        (void) poll(NULL, 0, 50);
        }

        if (atomic_load(&cancelled))
                return error_set(-ECANCELED, "interrupted");
        if (killed)
                return error_set(-ETIMEDOUT, "qemu-img %s timed out after %u seconds", argv[1],
                                 timeout_sec);
        if (!WIFEXITED(status))
                return error_set(-EIO, "qemu-img %s was killed by signal %d", argv[1],
                                 WTERMSIG(status));

        *ret_error = last_line(&err);
        if (!*ret_error)
                return -ENOMEM;
        if (ret_stdout) {
                *ret_stdout = TAKE_PTR(out.data);
                if (!*ret_stdout)
                        *ret_stdout = strdup("");
        }
        return WEXITSTATUS(status);
}

/* Ask qemu-img check whether the qcow2 metadata is consistent; a truncated download usually
 * leaves clusters pointing past the end of the file. Leaked clusters are harmless here. */
static int qemu_img_check(const char *path, unsigned timeout_sec) {
        char *argv[] = { NULL, (char *) "check", (char *) "-f", (char *) "qcow2",
                         (char *) "--output=json", (char *) path, NULL };
        _cleanup_free_ char *out = NULL, *err = NULL;
        json_t *j;
        json_int_t corruptions = 0, errors = 0;
        int status;

        status = qemu_img_run(argv, timeout_sec, &out, &err);
        if (status < 0)
                return status;
        if (status == 0 || status == 3)
                return 0;

        j = json_loads(out ?: "", 0, NULL);
        if (j) {
                corruptions = json_integer_value(json_object_get(j, "corruptions"));
                errors = json_integer_value(json_object_get(j, "check-errors"));
                json_decref(j);
        }
        if (status == 2)
                return error_set(-EBADMSG, "qcow2 image is corrupt: qemu-img check found %jd "
                                           "corruptions; is the download truncated?",
                                 (intmax_t) corruptions);
        return error_set(-EBADMSG, "qemu-img check failed on the qcow2 image (exit status %d, %jd "
                                   "errors): %s", status, (intmax_t) errors, err);
}

static int qemu_img_convert(const char *src, CloudImgFormat format, const char *dst,
                            unsigned timeout_sec) {
        /* -f is always given: qemu-img must never probe the format of untrusted data. */
        char *argv[] = { NULL, (char *) "convert", (char *) "-f", (char *) cloudimg_format_to_string(format),
                         (char *) "-O", (char *) "qcow2", (char *) "-o", (char *) "compat=1.1",
                         (char *) src, (char *) dst, NULL };
        _cleanup_free_ char *err = NULL;
        int status;

        status = qemu_img_run(argv, timeout_sec, NULL, &err);
        if (status < 0)
                return status;
        if (status != 0)
                return error_set(-EIO, "qemu-img convert failed: %s", err);
        return 0;
}

/* ---- Checking and converting the download ---- */

static int read_head(int fd, size_t max, uint8_t **ret, size_t *ret_size) {
        _cleanup_free_ uint8_t *buf = malloc(max);
        size_t size = 0;

        if (!buf)
                return -ENOMEM;
        while (size < max) {
                ssize_t n = pread(fd, buf + size, max - size, (off_t) size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return error_set(-errno, "cannot read the download: %m");
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

/* Decide the format of the download and make sure that qemu-img can read it without opening
 * any other file. */
static int inspect_download(int fd, uint64_t file_size, unsigned timeout_sec, const char *path,
                            CloudImgFormat *ret) {
        _cleanup_free_ uint8_t *head = NULL;
        CloudImgFormat format;
        Qcow2Header h;
        size_t size;
        int r;

        r = read_head(fd, QCOW2_HEAD_MAX, &head, &size);
        if (r < 0)
                return r;

        r = cloudimg_sniff(head, size, file_size, &format);
        if (r < 0)
                return r;

        if (format == CLOUDIMG_FORMAT_QCOW2) {
                r = qcow2_header_parse(head, size, &h);
                if (r < 0)
                        return r;
                r = qcow2_header_check_self_contained(&h);
                if (r < 0)
                        return r;
                r = qcow2_header_check_file_size(&h, file_size);
                if (r < 0)
                        return r;
                r = qemu_img_check(path, timeout_sec);
                if (r < 0)
                        return r;
        }

        *ret = format;
        return 0;
}

/* The converted image must be what we asked qemu-img for. */
static int check_converted(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        _cleanup_free_ uint8_t *head = NULL;
        Qcow2Header h;
        size_t size;
        int r;

        if (fd < 0)
                return error_set(-errno, "cannot open the converted image: %m");
        r = read_head(fd, QCOW2_HEAD_MAX, &head, &size);
        if (r < 0)
                return r;
        r = qcow2_header_parse(head, size, &h);
        if (r < 0)
                return error_prefix(r, "qemu-img wrote an unreadable image: ");
        if (h.version != 3 || qcow2_header_has_backing_file(&h) || qcow2_header_has_data_file(&h))
                return error_set(-EBADMSG, "qemu-img wrote a qcow2 version %" PRIu32 " image%s, "
                                           "expected version 3 without a backing file", h.version,
                                 qcow2_header_has_backing_file(&h) ? " with a backing file" : "");
        return 0;
}

/* ---- The pull ---- */

typedef struct CloudPull {
        const Store *store;
        const char *url;
        const CloudImgOptions *opts;
        char *workdir;
        char *content_sum;
        int blob_lock;
} CloudPull;

static void cloud_pull_done(CloudPull *p) {
        safe_close(p->blob_lock);
        free(p->content_sum);
        if (p->workdir) {
                (void) rm_rf(p->workdir);
                free(p->workdir);
        }
}

static bool blob_exists(const Store *s, const char *content_sum) {
        _cleanup_free_ char *p = cloudimg_blob_path(s, content_sum);
        struct stat st;

        return p && stat(p, &st) >= 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

/* store_lock() that gives up on cancel: the holder may be converting for minutes. */
static int lock_cancellable(const Store *s, const char *name, int operation, int *ret_fd) {
        for (;;) {
                int r = store_lock(s, name, operation | LOCK_NB, ret_fd);

                if (r != -EWOULDBLOCK)
                        return r;
                r = sleep_cancellable(100);
                if (r < 0)
                        return r;
        }
}

/* Lock the blob, and return whether it is stored. The lock is shared when the blob is already
 * stored, so that gc leaves it alone until our record names it. It is exclusive when we are to
 * create the blob, so that a concurrent pull of the same content waits for ours instead of
 * converting it a second time. */
static int lock_blob(CloudPull *p) {
        _cleanup_free_ char *name = strjoin("blobs/", digest_hex(p->content_sum), NULL);
        int r;

        if (!name)
                return -ENOMEM;

        if (blob_exists(p->store, p->content_sum)) {
                r = lock_cancellable(p->store, name, LOCK_SH, &p->blob_lock);
                if (r < 0)
                        return r;
                if (blob_exists(p->store, p->content_sum))
                        return true;
                p->blob_lock = safe_close(p->blob_lock);
        }

        r = lock_cancellable(p->store, name, LOCK_EX, &p->blob_lock);
        if (r < 0)
                return r;
        /* Another pull may have stored it while we waited. */
        return blob_exists(p->store, p->content_sum);
}

static int convert_and_store(CloudPull *p, const char *download, CloudImgFormat format) {
        const CloudImgProgress *progress = p->opts->progress;
        unsigned timeout = p->opts->convert_timeout_sec ?: CLOUDIMG_CONVERT_TIMEOUT_SEC_DEFAULT;
        _cleanup_free_ char *converted = strjoin(p->workdir, "/converted.qcow2", NULL);
        _cleanup_free_ char *blob = cloudimg_blob_path(p->store, p->content_sum);
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (!converted || !blob)
                return -ENOMEM;

        if (progress && progress->convert_started)
                progress->convert_started(progress->userdata, format);

        r = qemu_img_convert(download, format, converted, timeout);
        if (r < 0)
                return r;
        r = check_converted(converted);
        if (r < 0)
                return r;

        fd = open(converted, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fsync(fd) < 0 || fchmod(fd, 0444) < 0)
                return error_set(-errno, "cannot finish the converted image: %m");

        if (rename(converted, blob) < 0)
                return error_set(-errno, "cannot move the image to '%s': %m", blob);
        return fsync_directory_of(blob);
}

static int write_record(CloudPull *p, ImageRecord **ret) {
        _cleanup_(image_record_freep) ImageRecord *rec = calloc(1, sizeof(ImageRecord));
        _cleanup_free_ char *blob = cloudimg_blob_path(p->store, p->content_sum);
        char created[FORMAT_TIMESTAMP_MAX];
        struct timespec now;
        struct stat st;
        int r;

        if (!rec || !blob)
                return -ENOMEM;
        if (stat(blob, &st) < 0)
                return error_set(-errno, "image '%s' vanished: %m", blob);

        clock_gettime(CLOCK_REALTIME, &now);
        rec->type = IMAGE_CLOUD;
        rec->name = strdup(p->url);
        rec->content_sum = strdup(p->content_sum);
        rec->created_at = strdup(format_timestamp_rfc3339(created, sizeof(created), &now));
        rec->size = (uint64_t) st.st_size;
        if (!rec->name || !rec->content_sum || !rec->created_at)
                return -ENOMEM;

        r = image_index_put(p->store, rec);
        if (r < 0)
                return error_set(r, "cannot write the image record: %s", strerror(-r));

        *ret = TAKE_PTR(rec);
        return 0;
}

static int validate_url(const char *url) {
        if (!cloudimg_is_url(url))
                return error_set(-EINVAL, "'%s' is not an http:// or https:// URL", url);
        if (strlen(url) > URL_MAX)
                return error_set(-EINVAL, "URL is longer than %u bytes", URL_MAX);
        for (const char *c = url; *c; c++)
                if ((unsigned char) *c <= ' ' || *c == 0x7f)
                        return error_set(-EINVAL, "invalid URL '%s': it contains a space or a "
                                                  "control character", url);
        return 0;
}

static int validate_checksum(const char *checksum) {
        if (!checksum)
                return 0;
        if (!digest_is_valid(checksum))
                return error_set(-EINVAL, "invalid checksum '%s': expected sha256: followed by 64 "
                                          "lowercase hex digits", checksum);
        return 0;
}

/* The URL's record and blob are there, and match the requested checksum if one was given. */
static int check_up_to_date(CloudPull *p, ImageRecord **ret) {
        _cleanup_(image_record_freep) ImageRecord *rec = NULL;
        int r;

        if (p->opts->force || image_index_get(p->store, IMAGE_CLOUD, p->url, &rec) < 0) {
                error_clear();
                return false;
        }
        if (!digest_is_valid(rec->content_sum) ||
            (p->opts->checksum && !streq(p->opts->checksum, rec->content_sum)))
                return false;

        p->content_sum = strdup(rec->content_sum);
        if (!p->content_sum)
                return -ENOMEM;
        r = lock_blob(p);
        if (r <= 0) {
                p->blob_lock = safe_close(p->blob_lock);
                p->content_sum = mfree(p->content_sum);
                return r;
        }

        *ret = TAKE_PTR(rec);
        return true;
}

/* Find the checksum to compare the download with: the one given, or the published one. */
static int expected_checksum(const CloudPull *p, char **ret, CloudImgVerification *ret_by,
                             char **ret_source) {
        _cleanup_free_ char *sums_url = NULL, *sum = NULL;
        int r;

        if (p->opts->checksum) {
                *ret = strdup(p->opts->checksum);
                *ret_source = strdup("--checksum");
                *ret_by = CLOUDIMG_VERIFIED_BY_CHECKSUM;
                return *ret && *ret_source ? 0 : -ENOMEM;
        }

        r = fetch_published_checksum(p->url, &sums_url, &sum);
        if (r == -ENOENT) {
                error_clear();
                *ret = NULL;
                *ret_source = NULL;
                *ret_by = CLOUDIMG_NOT_VERIFIED;
                return 0;
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(sum);
        *ret_source = TAKE_PTR(sums_url);
        *ret_by = CLOUDIMG_VERIFIED_BY_SHA256SUMS;
        return 0;
}

static int download(CloudPull *p, const char *path) {
        _cleanup_(digest_freep) Digest *digest = NULL;
        _cleanup_close_ int fd = -EBADF;
        Download d = {
                .url = p->url,
                .max_size = p->opts->max_size ?: CLOUDIMG_MAX_SIZE_DEFAULT,
                .progress = p->opts->progress,
        };
        int r;

        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return error_set(-errno, "cannot create '%s': %m", path);
        r = digest_new(&digest);
        if (r < 0)
                return r;

        d.fd = fd;
        d.digest = TAKE_PTR(digest);
        r = download_run(&d);
        if (r >= 0)
                r = digest_final(d.digest, &p->content_sum);
        digest_free(d.digest);
        free(d.validator);
        return r;
}

int cloudimg_pull(const Store *s, const char *url, const CloudImgOptions *opts, ImageRecord **ret,
                  CloudImgVerification *ret_verification, bool *ret_up_to_date) {
        _cleanup_free_ char *expected = NULL, *source = NULL, *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        CloudPull p = { .store = s, .url = url, .opts = opts, .blob_lock = -EBADF };
        CloudImgVerification by = CLOUDIMG_NOT_VERIFIED;
        CloudImgFormat format;
        struct stat st;
        int r;

        r = validate_url(url);
        if (r < 0)
                return r;
        r = validate_checksum(opts->checksum);
        if (r < 0)
                return r;

        r = check_up_to_date(&p, ret);
        if (r != 0) {
                cloud_pull_done(&p);
                if (r < 0)
                        return r;
                *ret_verification = CLOUDIMG_NOT_VERIFIED;
                *ret_up_to_date = true;
                return 0;
        }

        r = expected_checksum(&p, &expected, &by, &source);
        if (r < 0)
                goto finish;

        r = store_mkdtemp(s, "pull", &p.workdir);
        if (r < 0)
                goto finish;
        path = strjoin(p.workdir, "/download.img", NULL);
        if (!path) {
                r = -ENOMEM;
                goto finish;
        }

        r = download(&p, path);
        if (r < 0)
                goto finish;

        if (expected && !streq(expected, p.content_sum)) {
                r = error_set(-EBADMSG, "checksum mismatch for %s: %s expects %s, the download is %s",
                              url, source, expected, p.content_sum);
                goto finish;
        }

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = error_set(-errno, "cannot open the download: %m");
                goto finish;
        }
        r = inspect_download(fd, (uint64_t) st.st_size,
                             opts->convert_timeout_sec ?: CLOUDIMG_CONVERT_TIMEOUT_SEC_DEFAULT, path,
                             &format);
        if (r < 0)
                goto finish;

        r = check_cancelled();
        if (r < 0)
                goto finish;

        r = lock_blob(&p);
        if (r == 0)
                r = convert_and_store(&p, path, format);
        if (r < 0)
                goto finish;

        r = write_record(&p, ret);
        if (r < 0)
                goto finish;

        *ret_verification = by;
        *ret_up_to_date = false;

finish:
        cloud_pull_done(&p);
        return r;
}
