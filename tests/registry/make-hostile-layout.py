#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Make an OCI image layout of hostile images for tests: each tag is a copy of the good image's
"latest" tag with one layer replaced or one field changed.

  dotdot     the upper layer holds the entry "../escaped"
  absolute   the upper layer holds the entry "/etc/cocoon-escaped"
  badtype    the upper layer's media type is tar+bzip2, which Cocoon does not accept
  manylayers 130 copies of the upper layer, over the 128-layer limit

Usage: make-hostile-layout.py GOOD_LAYOUT OUT_LAYOUT
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

TAG = "org.opencontainers.image.ref.name"


def put_blob(out, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def read_blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


def layer_with(name):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        payload = b"written outside the layer\n"
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(raw.getvalue(), mtime=0)


def main():
    good, out = sys.argv[1], sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(good, out)

    with open(os.path.join(good, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    latest = next(d for d in index["manifests"] if d.get("annotations", {}).get(TAG) == "latest")
    manifest = json.loads(read_blob(good, latest["digest"]))

    variants = {}
    for tag, entry in (("dotdot", "../escaped"), ("absolute", "/etc/cocoon-escaped")):
        m = json.loads(json.dumps(manifest))
        digest, size = put_blob(out, layer_with(entry))
        m["layers"][-1] = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                           "digest": digest, "size": size}
        variants[tag] = m

    m = json.loads(json.dumps(manifest))
    m["layers"][-1]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+bzip2"
    variants["badtype"] = m

    m = json.loads(json.dumps(manifest))
    m["layers"] = [manifest["layers"][0]] + [manifest["layers"][-1]] * 129
    variants["manylayers"] = m

    for tag, m in variants.items():
        digest, size = put_blob(out, json.dumps(m).encode())
        index["manifests"].append({"mediaType": m["mediaType"], "digest": digest, "size": size,
                                   "annotations": {TAG: tag}})

    with open(os.path.join(out, "index.json"), "w", encoding="utf-8") as f:
        json.dump(index, f)


if __name__ == "__main__":
    main()
