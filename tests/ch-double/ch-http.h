/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A minimal HTTP/1.1 request parser and response writer, enough for the REST API of the Cloud
 * Hypervisor test double: Content-Length and chunked bodies, "Expect: 100-continue" and
 * keep-alive. Pure functions: no I/O. */

#include <stdbool.h>
#include <stddef.h>

#define CH_HTTP_HEADERS_MAX (16 * 1024)
#define CH_HTTP_BODY_MAX (1024 * 1024)

typedef struct ChHttpRequest {
        char *method;
        char *path; /* absolute path, without scheme, host and query */
        char *body; /* NUL-terminated; NULL when the request has no body or an empty one */
        size_t body_len;
        bool keep_alive;
} ChHttpRequest;

/* Parse one request from the start of buf. Returns the number of bytes it used (> 0) when the
 * request is complete, 0 when more bytes are needed, -EBADMSG when the request is malformed
 * and -E2BIG when headers or body exceed the limits above. When 0 is returned and the headers
 * asked for "Expect: 100-continue", *ret_expect_continue is set. */
int ch_http_parse_request(const char *buf, size_t len, ChHttpRequest *ret, bool *ret_expect_continue);

void ch_http_request_done(ChHttpRequest *r);

/* Format a response. body may be NULL. Status 204 and 1xx responses carry no body and no
 * Content-Length. Returns a heap buffer of *ret_len bytes. */
char *ch_http_format_response(int status, const char *body, bool keep_alive, size_t *ret_len);
