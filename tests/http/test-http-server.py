#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""An HTTP server for tests only: it serves the files under --root and misbehaves on request,
so that the cloud image download can be tested against cut connections, servers without range
support, redirect chains and loops.

It binds only to 127.0.0.1, prints its port on stdout once it accepts connections, and exits on
SIGTERM. Every request is appended to --log as one line: "<method> <path> <Range header or ->".

The first path component picks the behaviour, the rest names a file under --root:

  /files/<path>             the file, with Range support (206), ETag and Last-Modified
  /norange/<path>           the file, always whole with status 200, whatever Range requests
  /cut/<path>               the first request for the path sends the full Content-Length but
                            closes the connection after half the body; later ones act as /files
  /cut-norange/<path>       like /cut, but every response ignores Range
  /always-cut/<path>        every response ignores Range and closes after half the body
  /slow/<path>              like /files, at about 640 KiB/s
  /redirect/<n>/<path>      n redirects (302, relative Location) before /files/<path>
  /loop/<a|b>/<path>        a redirects to b and b to a, forever
  /status/<code>/<path>     an empty response with that status
  /sums-status/<code>/<path>  the file as by /files, but SHA256SUMS next to it gets that status

A file named SHA256SUMS is otherwise always served as by /files (or 404 when there is none), so
that the behaviours apply to the image only.
"""

import argparse
import email.utils
import hashlib
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="directory whose files are served")
    p.add_argument("--log", required=True, help="file that gets one line per request")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    return p.parse_args()


class State:
    def __init__(self, root, log):
        self.root = os.path.realpath(root)
        self.log = log
        self.lock = threading.Lock()
        self.requests_per_path = {}

    def count(self, path):
        """Count a request for path and return how many came before it."""
        with self.lock:
            n = self.requests_per_path.get(path, 0)
            self.requests_per_path[path] = n + 1
            return n

    def record(self, line):
        with self.lock, open(self.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def parse_range(value, size):
    """Return the first byte of a "bytes=N-" range request, or None for anything else."""
    if not value or not value.startswith("bytes="):
        return None
    first, sep, last = value[len("bytes="):].partition("-")
    if not sep or last or not first.isdigit():
        return None
    return int(first)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cocoon-test-http/1"

    def log_message(self, fmt, *args):
        pass

    @property
    def state(self):
        return self.server.state

    def send_empty(self, status, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def resolve(self, relative):
        path = os.path.realpath(os.path.join(self.state.root, relative))
        if not path.startswith(self.state.root + os.sep) or not os.path.isfile(path):
            return None
        return path

    def do_GET(self):
        url_path = unquote(urlsplit(self.path).path)
        self.state.record(f"GET {url_path} {self.headers.get('Range') or '-'}")
        parts = url_path.lstrip("/").split("/")
        mode, rest = parts[0], parts[1:]

        if parts[-1] == "SHA256SUMS":
            if mode == "sums-status" and rest and rest[0].isdigit():
                return self.send_empty(int(rest[0]))
            skip = 2 if mode in ("redirect", "loop", "status", "sums-status") else 1
            path = self.resolve("/".join(parts[skip:]))
            return self.send_file(path, ranges=True) if path else self.send_empty(404)
        if mode == "sums-status" and rest:
            mode, rest = "files", rest[1:]

        if mode == "redirect" and rest and rest[0].isdigit():
            n = int(rest[0])
            target = "/".join(rest[1:])
            location = f"/redirect/{n - 1}/{target}" if n > 1 else f"/files/{target}"
            return self.send_empty(302, [("Location", location)])
        if mode == "loop" and len(rest) > 1 and rest[0] in ("a", "b"):
            other = "b" if rest[0] == "a" else "a"
            return self.send_empty(302, [("Location", f"/loop/{other}/{'/'.join(rest[1:])}")])
        if mode == "status" and rest and rest[0].isdigit():
            return self.send_empty(int(rest[0]))

        path = self.resolve("/".join(rest))
        if path is None:
            return self.send_empty(404)

        earlier = self.state.count(url_path)
        if mode == "files":
            return self.send_file(path, ranges=True)
        if mode == "norange":
            return self.send_file(path, ranges=False)
        if mode == "cut":
            return self.send_file(path, ranges=True, cut=earlier == 0)
        if mode == "cut-norange":
            return self.send_file(path, ranges=False, cut=earlier == 0)
        if mode == "always-cut":
            return self.send_file(path, ranges=False, cut=True)
        if mode == "slow":
            return self.send_file(path, ranges=True, delay=0.1)
        return self.send_empty(404)

    def send_file(self, path, ranges, cut=False, delay=0.0):
        with open(path, "rb") as f:
            data = f.read()
        size = len(data)
        st = os.stat(path)
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        first = parse_range(self.headers.get("Range"), size) if ranges else None

        if first is not None and first >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if first is not None and self.headers.get("If-Range") not in (None, etag):
            first = None

        if first is None:
            self.send_response(200)
            body = data
        else:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{size - 1}/{size}")
            body = data[first:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

        # A cut sends half of the whole file at most, so that a resumed request gets the rest.
        end = len(body) if not cut else max(1, size // 2 - (size - len(body)))
        try:
            for offset in range(0, end, CHUNK):
                self.wfile.write(body[offset:min(offset + CHUNK, end)])
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return

        if cut:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gives up mid-transfer (the tests interrupt pulls) is not an error here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    args = parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args.root, args.log)

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
