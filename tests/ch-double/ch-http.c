/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ch-http.h"
#include "ch-util.h"

static const char *reason_phrase(int status) {
        switch (status) {
        case 100: return "Continue";
        case 200: return "OK";
        case 204: return "No Content";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 413: return "Payload Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        default: return "Unknown";
        }
}

static const char *find_crlf(const char *p, const char *end) {
        for (; p + 1 < end; p++)
                if (p[0] == '\r' && p[1] == '\n')
                        return p;
        return NULL;
}

static char *header_value(const char *line, const char *line_end, const char *name) {
        size_t n = strlen(name);
        const char *v;

        if ((size_t) (line_end - line) <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
                return NULL;

        v = line + n + 1;
        while (v < line_end && (*v == ' ' || *v == '\t'))
                v++;
        while (line_end > v && (line_end[-1] == ' ' || line_end[-1] == '\t'))
                line_end--;
        return xstrndup(v, (size_t) (line_end - v));
}

/* Decode a chunked body starting at p. Returns bytes used, 0 when incomplete, < 0 on error. */
static long decode_chunked(const char *p, const char *end, char **ret_body, size_t *ret_len) {
        const char *start = p;
        char *body = NULL;
        size_t len = 0;

        for (;;) {
                const char *eol = find_crlf(p, end);
                char *num_end;
                unsigned long size;

                if (!eol)
                        goto incomplete;
                size = strtoul(p, &num_end, 16);
                if (num_end == p || (*num_end != '\r' && *num_end != ';'))
                        goto bad;
                p = eol + 2;

                if (size == 0) {
                        /* Skip trailer fields up to the empty line. */
                        for (;;) {
                                eol = find_crlf(p, end);
                                if (!eol)
                                        goto incomplete;
                                if (eol == p)
                                        break;
                                p = eol + 2;
                        }
                        *ret_body = body;
                        *ret_len = len;
                        return (long) (eol + 2 - start);
                }

                if (size > CH_HTTP_BODY_MAX || len + size > CH_HTTP_BODY_MAX) {
                        free(body);
                        return -E2BIG;
                }
                if ((size_t) (end - p) < size + 2)
                        goto incomplete;
                if (p[size] != '\r' || p[size + 1] != '\n')
                        goto bad;
                body = xrealloc_array(body, len + size + 1, 1);
                memcpy(body + len, p, size);
                len += size;
                body[len] = '\0';
                p += size + 2;
        }

incomplete:
        free(body);
        return 0;
bad:
        free(body);
        return -EBADMSG;
}

typedef struct Headers {
        long content_length;
        bool chunked, expect_continue, close, keep_alive;
} Headers;

static int parse_headers(const char *p, const char *end, Headers *h) {
        *h = (Headers) { .content_length = -1 };

        while (p < end) {
                const char *eol = find_crlf(p, end + 2);
                _cleanup_free_ char *cl = NULL, *te = NULL, *expect = NULL, *conn = NULL;

                if (!eol)
                        return -EBADMSG;

                cl = header_value(p, eol, "Content-Length");
                te = header_value(p, eol, "Transfer-Encoding");
                expect = header_value(p, eol, "Expect");
                conn = header_value(p, eol, "Connection");

                if (cl) {
                        char *num_end;

                        h->content_length = strtol(cl, &num_end, 10);
                        if (num_end == cl || *num_end != '\0' || h->content_length < 0)
                                return -EBADMSG;
                }
                if (te && strcasestr(te, "chunked"))
                        h->chunked = true;
                if (expect && strcasecmp(expect, "100-continue") == 0)
                        h->expect_continue = true;
                if (conn && strcasecmp(conn, "close") == 0)
                        h->close = true;
                if (conn && strcasecmp(conn, "keep-alive") == 0)
                        h->keep_alive = true;

                p = eol + 2;
        }
        return 0;
}

/* Split "METHOD SP target SP HTTP/1.x" and reduce the target to its path. */
static int parse_request_line(const char *p, const char *eol, ChHttpRequest *r, bool *ret_http10) {
        _cleanup_free_ char *line = xstrndup(p, (size_t) (eol - p));
        char *sp1 = strchr(line, ' '), *sp2, *target, *q;

        if (!sp1)
                return -EBADMSG;
        *sp1 = '\0';
        target = sp1 + 1;
        sp2 = strchr(target, ' ');
        if (!sp2 || !strneq(sp2 + 1, "HTTP/1.", 7))
                return -EBADMSG;
        *sp2 = '\0';
        *ret_http10 = streq(sp2 + 1, "HTTP/1.0");

        if (strneq(target, "http://", 7)) {
                target = strchr(target + 7, '/');
                if (!target)
                        return -EBADMSG;
        }
        q = strpbrk(target, "?#");
        if (q)
                *q = '\0';
        if (target[0] != '/')
                return -EBADMSG;

        r->method = xstrdup(line);
        r->path = xstrdup(target);
        return 0;
}

int ch_http_parse_request(const char *buf, size_t len, ChHttpRequest *ret, bool *ret_expect_continue) {
        const char *end = buf + len, *head_end = NULL, *line_end, *body;
        ChHttpRequest r = {};
        Headers h;
        bool http10;
        int k;

        *ret_expect_continue = false;

        for (const char *p = buf; p + 3 < end; p++)
                if (memcmp(p, "\r\n\r\n", 4) == 0) {
                        head_end = p;
                        break;
                }
        if (!head_end)
                return len > CH_HTTP_HEADERS_MAX ? -E2BIG : 0;

        line_end = find_crlf(buf, end);
        k = parse_request_line(buf, line_end, &r, &http10);
        if (k < 0)
                return k;

        k = parse_headers(line_end + 2, head_end, &h);
        if (k < 0)
                goto fail;
        r.keep_alive = http10 ? h.keep_alive : !h.close;
        body = head_end + 4;

        if (h.chunked) {
                long used = decode_chunked(body, end, &r.body, &r.body_len);

                if (used <= 0) {
                        k = (int) used;
                        *ret_expect_continue = used == 0 && h.expect_continue;
                        goto fail;
                }
                *ret = r;
                return (int) (body + used - buf);
        }

        if (h.content_length > CH_HTTP_BODY_MAX) {
                k = -E2BIG;
                goto fail;
        }
        if (h.content_length > 0) {
                if ((size_t) (end - body) < (size_t) h.content_length) {
                        *ret_expect_continue = h.expect_continue;
                        k = 0;
                        goto fail;
                }
                r.body = xstrndup(body, (size_t) h.content_length);
                r.body_len = (size_t) h.content_length;
        }

        *ret = r;
        return (int) (body + MAX(h.content_length, 0) - buf);

fail:
        ch_http_request_done(&r);
        return k;
}

void ch_http_request_done(ChHttpRequest *r) {
        free(r->method);
        free(r->path);
        free(r->body);
        *r = (ChHttpRequest) {};
}

char *ch_http_format_response(int status, const char *body, bool keep_alive, size_t *ret_len) {
        char *out;
        int n;

        /* The Server header and the JSON content type are what CH's API server sends. */
        if (status == 204 || status < 200)
                n = asprintf(&out,
                             "HTTP/1.1 %d %s\r\nServer: Cloud Hypervisor API\r\nConnection: %s\r\n\r\n",
                             status, reason_phrase(status), keep_alive ? "keep-alive" : "close");
        else
                n = asprintf(&out,
                             "HTTP/1.1 %d %s\r\nServer: Cloud Hypervisor API\r\nConnection: %s\r\n"
                             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                             status, reason_phrase(status), keep_alive ? "keep-alive" : "close",
                             body ? strlen(body) : 0, body ?: "");
        if (n < 0)
                abort();

        *ret_len = (size_t) n;
        return out;
}
