#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A registry for tests only: it serves an OCI image layout over the pull side of the OCI
distribution API, and misbehaves on request so that the client's error paths can be tested.

It is not a registry to run for real: tokens are fixed strings, nothing is persisted, and it
binds only to 127.0.0.1. It prints its port on stdout once it accepts connections and exits on
SIGTERM.

The content is an OCI image layout directory (--root): blobs/sha256/<hex> and an index.json whose
entries name tags with the "org.opencontainers.image.ref.name" annotation. Every repository name
serves the same content, except that a repository whose name contains "missing" is unknown.
"""

import argparse
import base64
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TAG_ANNOTATION = "org.opencontainers.image.ref.name"
TOKEN = "test-token-for-cocoon"
TLS_HANDSHAKE_RECORD = 0x16


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="OCI image layout directory to serve")
    p.add_argument("--auth", choices=["none", "bearer", "basic"], default="none",
                   help="authentication the registry requires")
    p.add_argument("--user", default="alice", help="username accepted by basic auth and the token endpoint")
    p.add_argument("--password", default="secret", help="password accepted with --user")
    p.add_argument("--token-needs-credentials", action="store_true",
                   help="the token endpoint returns 401 unless it gets the basic credentials")
    p.add_argument("--token-key", choices=["token", "access_token"], default="token",
                   help="JSON key of the token in the token response")
    p.add_argument("--token-fail", action="store_true", help="the token endpoint returns 500")
    p.add_argument("--extra-scope", default=None,
                   help="another scope the challenge requests, before the repository's own")

    p.add_argument("--redirect-blobs", action="store_true",
                   help="respond to blob requests with 307 to a second port, which rejects Authorization headers")
    p.add_argument("--redirect-loop", action="store_true", help="respond to blob requests with a redirect to themselves")
    p.add_argument("--corrupt-blobs", action="store_true", help="flip the last byte of every blob served")
    p.add_argument("--truncate-blobs", action="store_true",
                   help="send the full Content-Length but close after half of each blob")
    p.add_argument("--truncate-first-blob", action="store_true",
                   help="like --truncate-blobs for the first blob response only")
    p.add_argument("--ignore-range", action="store_true",
                   help="respond to Range requests for blobs with the whole blob and status 200")

    p.add_argument("--fail-status", type=int, default=0, help="HTTP status of the injected failures")
    p.add_argument("--fail-count", type=int, default=0,
                   help="number of manifest and blob requests that get --fail-status before the real response")
    p.add_argument("--retry-after", default=None, help="Retry-After value sent with the injected failures")

    p.add_argument("--slow-blobs", action="store_true", help="send blobs at 20 bytes per second")
    p.add_argument("--oversized-manifest", type=int, default=0, metavar="BYTES",
                   help="respond to manifest requests with a body of this many bytes and no Content-Length")
    return p.parse_args()


class Layout:
    def __init__(self, root):
        self.root = root
        with open(os.path.join(root, "index.json"), encoding="utf-8") as f:
            index = json.load(f)
        self.tags = {}
        self.media_types = {}
        for d in index.get("manifests", []):
            self.media_types[d["digest"]] = d["mediaType"]
            tag = d.get("annotations", {}).get(TAG_ANNOTATION)
            if tag:
                self.tags[tag] = d

    def blob_path(self, digest):
        algorithm, _, hex_digest = digest.partition(":")
        if algorithm != "sha256" or len(hex_digest) != 64 or not all(c in "0123456789abcdef" for c in hex_digest):
            return None
        path = os.path.join(self.root, "blobs", "sha256", hex_digest)
        return path if os.path.isfile(path) else None

    def read_blob(self, digest):
        path = self.blob_path(digest)
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    def manifest(self, reference):
        """Return (body, media type) of a manifest by tag or digest, or None."""
        if reference in self.tags:
            d = self.tags[reference]
            return self.read_blob(d["digest"]), d["mediaType"]
        body = self.read_blob(reference)
        if body is None:
            return None
        media_type = self.media_types.get(reference)
        if not media_type:
            try:
                media_type = json.loads(body).get("mediaType")
            except ValueError:
                media_type = None
        return body, media_type or "application/vnd.oci.image.manifest.v1+json"


class State:
    def __init__(self, args):
        self.args = args
        self.layout = Layout(args.root)
        self.lock = threading.Lock()
        self.failures_left = args.fail_count
        self.truncations_left = 1 if args.truncate_first_blob else 0
        self.port = 0
        self.redirect_port = 0

    def take_truncation(self):
        with self.lock:
            if self.args.truncate_blobs:
                return True
            if self.truncations_left > 0:
                self.truncations_left -= 1
                return True
            return False

    def take_failure(self):
        with self.lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                return True
            return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state = None
    redirect_target = False

    def log_message(self, fmt, *args):
        sys.stderr.write("test-registry: " + (fmt % args) + "\n")

    def handle(self):
        # A client that tries TLS first sends a handshake record. Closing the connection at once
        # makes it fall back to plain HTTP, instead of waiting for a reply that never comes.
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if not first or first[0] == TLS_HANDSHAKE_RECORD:
            return
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def send_body(self, status, body, content_type="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error_json(self, status, code, message, headers=None):
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        self.send_body(status, body, headers=headers)

    # ---- authentication ----

    def basic_ok(self):
        value = self.headers.get("Authorization", "")
        if not value.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(value[6:], validate=True).decode()
        except ValueError:
            return False
        return decoded == f"{self.state.args.user}:{self.state.args.password}"

    def scopes(self, repository):
        own = f"repository:{repository}:pull"
        extra = self.state.args.extra_scope
        return [extra, own] if extra else [own]

    def authorized(self, repository):
        args = self.state.args
        if args.auth == "none":
            return True
        if args.auth == "basic":
            if self.basic_ok():
                return True
            self.send_error_json(401, "UNAUTHORIZED", "authentication required",
                                 {"WWW-Authenticate": 'Basic realm="test-registry"'})
            return False
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        challenge = (f'Bearer realm="http://127.0.0.1:{self.state.port}/token",'
                     f'service="test-registry",scope="{" ".join(self.scopes(repository))}"')
        self.send_error_json(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
        return False

    def serve_token(self, query):
        args = self.state.args
        if args.token_fail:
            self.send_body(500, b"token service broken\n", "text/plain")
            return
        if args.token_needs_credentials and not self.basic_ok():
            self.send_body(401, b'{"details":"credentials required"}\n')
            return
        scopes = query.get("scope", [])
        if query.get("service") != ["test-registry"] or not scopes:
            self.send_body(400, b'{"details":"missing service or scope"}\n')
            return
        repository = scopes[-1].split(":")[1]
        if scopes != self.scopes(repository):
            self.send_body(400, json.dumps({"details": f"unexpected scopes {scopes}"}).encode())
            return
        self.send_body(200, json.dumps({args.token_key: TOKEN, "expires_in": 300}).encode())

    # ---- content ----

    def serve_manifest(self, repository, reference):
        size = self.state.args.oversized_manifest
        if size:
            # No Content-Length, so the client can only notice the size while receiving.
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b" " * 65536
            sent = 0
            while sent < size:
                self.wfile.write(chunk[:size - sent])
                sent += min(len(chunk), size - sent)
            self.close_connection = True
            return
        found = self.state.layout.manifest(reference)
        if not found:
            self.send_error_json(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return
        body, media_type = found
        self.send_body(200, body, media_type)

    def requested_range_start(self):
        """Return N of "Range: bytes=N-", or None when there is no such header or it is ignored."""
        value = self.headers.get("Range", "")
        if self.state.args.ignore_range or not value.startswith("bytes=") or not value.endswith("-"):
            return None
        try:
            return int(value[len("bytes="):-1])
        except ValueError:
            return None

    def serve_blob_bytes(self, body):
        args = self.state.args
        if args.corrupt_blobs and body:
            body = body[:-1] + bytes([body[-1] ^ 0xff])
        total = len(body)
        start = self.requested_range_start()
        truncate = self.state.take_truncation()
        if start is not None and start < total:
            body = body[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        if truncate:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if args.slow_blobs:
            for i in range(0, len(body), 10):
                self.wfile.write(body[i:i + 10])
                self.wfile.flush()
                time.sleep(0.5)
            return
        self.wfile.write(body)

    def serve_blob(self, repository, digest, query):
        args = self.state.args
        if args.redirect_loop:
            n = int(query.get("n", ["0"])[0]) + 1
            self.send_body(302, b"", headers={"Location": f"/v2/{repository}/blobs/{digest}?n={n}"})
            return
        body = self.state.layout.read_blob(digest)
        if body is None:
            self.send_error_json(404, "BLOB_UNKNOWN", "blob unknown to registry")
            return
        if args.redirect_blobs:
            location = f"http://127.0.0.1:{self.state.redirect_port}/storage/{digest}"
            self.send_body(307, b"", headers={"Location": location})
            return
        self.serve_blob_bytes(body)

    def serve_storage(self, path):
        # The redirect target stands for object storage with presigned URLs, which rejects a
        # request that also carries the registry's credentials.
        if "Authorization" in self.headers:
            self.send_body(400, b"<Error>registry Authorization header forwarded to storage</Error>",
                           "application/xml")
            return
        body = self.state.layout.read_blob(path.rsplit("/", 1)[-1])
        if body is None:
            self.send_body(404, b"<Error>NoSuchKey</Error>", "application/xml")
            return
        self.serve_blob_bytes(body)

    def do_GET(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path

        if self.redirect_target:
            self.serve_storage(path)
            return
        if path == "/token":
            self.serve_token(query)
            return
        if path in ("/v2/", "/v2"):
            # The version check carries no scope, as in distribution 2.8.
            if self.state.args.auth == "bearer" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                challenge = f'Bearer realm="http://127.0.0.1:{self.state.port}/token",service="test-registry"'
                self.send_error_json(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
            elif self.state.args.auth == "basic" and not self.basic_ok():
                self.send_error_json(401, "UNAUTHORIZED", "authentication required",
                                     {"WWW-Authenticate": 'Basic realm="test-registry"'})
            else:
                self.send_body(200, b"{}")
            return
        if not path.startswith("/v2/"):
            self.send_body(404, b"not found\n", "text/plain")
            return

        rest = path[len("/v2/"):]
        for kind in ("/manifests/", "/blobs/"):
            repository, sep, reference = rest.rpartition(kind)
            if sep:
                break
        else:
            self.send_error_json(404, "NAME_UNKNOWN", "unknown API path")
            return

        if not self.authorized(repository):
            return
        if self.state.take_failure():
            headers = {"Retry-After": self.state.args.retry_after} if self.state.args.retry_after else None
            self.send_error_json(self.state.args.fail_status, "UNAVAILABLE", "injected failure", headers)
            return
        if "missing" in repository:
            self.send_error_json(404, "NAME_UNKNOWN", "repository name not known to registry")
            return
        if kind == "/manifests/":
            self.serve_manifest(repository, reference)
        else:
            self.serve_blob(repository, reference, query)

    do_HEAD = do_GET


def make_server(state, redirect_target):
    handler = type("BoundHandler", (Handler,), {"state": state, "redirect_target": redirect_target})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    return server


def main():
    args = parse_args()
    state = State(args)

    server = make_server(state, False)
    state.port = server.server_address[1]

    if args.redirect_blobs:
        storage = make_server(state, True)
        state.redirect_port = storage.server_address[1]
        threading.Thread(target=storage.serve_forever, daemon=True).start()

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    print(state.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
