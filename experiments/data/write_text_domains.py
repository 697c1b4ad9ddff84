#!/usr/bin/env python3
"""Write experiments/data/text-domains.h5 from the domain texts build_text_domains.sh extracted.

Input: a manifest (JSON) listing, in domain order, each domain's name, text file and metadata
(package, version, licence, source, genre, description, files, expected sha256).

Output (moe-run text corpus layout, docs/formats.md "Text corpus files"):
  /domains             variable-length UTF-8 strings [D], the domain names in id order
  /text/<name>         uint8 [n_bytes], the domain's text (raw bytes, no terminator)
                       attrs: sha256 (of the bytes), bytes, package, version, licence, source,
                              genre, description, files
  root attrs           format "moe-run/1", kind "text-corpus", description

Every text's sha256 is checked against the manifest's expected value before anything is
written (refused on mismatch), and the file is written atomically (tmp, fsync, rename). The
byte datasets are chunked (64 KiB) and deflate-compressed (level 9, shuffle off: bytes do not
benefit); no timestamps are stored, so the same texts give the same file bytes.

Uses only numpy and h5py.

Usage:
  python write_text_domains.py MANIFEST.json OUT.h5
"""

import hashlib
import json
import os
import sys

import h5py
import numpy as np

CHUNK = 64 * 1024


def fail(message):
    print(f"write_text_domains: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) != 3:
        fail("usage: write_text_domains.py MANIFEST.json OUT.h5")
    manifest_path, out_path = argv[1], argv[2]
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    domains = manifest["domains"]
    if not domains:
        fail("the manifest lists no domains")
    texts = []
    for d in domains:
        with open(d["text"], "rb") as f:
            data = f.read()
        if not data:
            fail(f"domain '{d['name']}': the text is empty")
        digest = hashlib.sha256(data).hexdigest()
        if digest != d["sha256"]:
            fail(f"domain '{d['name']}': text sha256 {digest} differs from the pinned {d['sha256']} "
                 f"({len(data)} bytes); the sources changed: check the package versions and file lists")
        texts.append(data)

    tmp = out_path + ".tmp"
    with h5py.File(tmp, "w", libver=("earliest", "v110")) as h5:
        h5.attrs["format"] = "moe-run/1"
        h5.attrs["kind"] = "text-corpus"
        h5.attrs["description"] = manifest["description"]
        h5.create_dataset("domains", data=[d["name"] for d in domains], dtype=h5py.string_dtype("utf-8"))
        group = h5.create_group("text")
        for d, data in zip(domains, texts):
            array = np.frombuffer(data, dtype=np.uint8)
            ds = group.create_dataset(d["name"], data=array, chunks=(min(CHUNK, len(data)),),
                                      compression="gzip", compression_opts=9)
            ds.attrs["sha256"] = d["sha256"]
            ds.attrs["bytes"] = np.int64(len(data))
            for key in ("package", "version", "licence", "source", "genre", "description"):
                ds.attrs[key] = d[key]
            ds.attrs["files"] = "\n".join(d["files"])
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out_path)
    for d, data in zip(domains, texts):
        print(f"{d['name']:8s} {len(data):>9d} bytes  sha256 {d['sha256']}")


if __name__ == "__main__":
    main(sys.argv)
