"""Checks /data/<split>/index of a run's tasks/data.h5 against the source it came from, with
h5py and numpy alone (issue 17 item 4; docs/formats.md).

    check_data_index.py features DATA_H5 SOURCE_H5   # feature data file: /x, /y[, /domain]
    check_data_index.py text DATA_H5 CORPUS          # text corpus file (/domains, /text/<name>),
                                                     # or a folder of NAME.txt files

features: every split's `index` is int64 [n], ascending, the three together a partition of the
source's rows, and x[index], y[index] (and domain[index]) of the source are the split's raw rows
bit for bit.
text: every split's `index` is int64 [D, 2], per domain the block [start, end) of that domain's
byte stream; the blocks of train, val and test tile the stream in that order, and the domain's
bytes[start:end] are the split's tokens of that domain.

Prints "index: ok: ..." and exits 0, or prints what differs and exits 1.
"""
import os
import sys

import h5py
import numpy as np

SPLITS = ("train", "val", "test")


def fail(message):
    print("index: FAIL: " + message)
    sys.exit(1)


def check_features(data, source):
    x, y = source["x"][...], source["y"][...]
    domain = source["domain"][...] if "domain" in source else None
    seen = []
    for split in SPLITS:
        group = data["data"][split]
        index = group["index"]
        if index.dtype != np.int64 or index.ndim != 1:
            fail(f"{split}/index is {index.dtype} {index.shape}, expected int64 [n]")
        rows = index[...]
        if np.any(np.diff(rows) <= 0):
            fail(f"{split}/index is not strictly ascending")
        if not np.array_equal(x[rows].view(np.uint32), group["x"][...].view(np.uint32)):
            fail(f"{split}/x differs from the source's x[index]")
        if not np.array_equal(y[rows], group["y"][...]):
            fail(f"{split}/y differs from the source's y[index]")
        if domain is not None and not np.array_equal(domain[rows], group["domain"][...]):
            fail(f"{split}/domain differs from the source's domain[index]")
        seen.append(rows)
    if not np.array_equal(np.sort(np.concatenate(seen)), np.arange(len(x))):
        fail("the splits' indices are not a partition of the source's rows")
    sizes = "/".join(str(len(r)) for r in seen)
    print(f"index: ok: {len(x)} source rows, split {sizes}")


def corpus_texts(path):
    """The domains' names and byte streams of a corpus HDF5 file or a folder of NAME.txt files."""
    if os.path.isdir(path):
        names = sorted(n[:-4] for n in os.listdir(path) if n.endswith(".txt") and not n.startswith("."))
        return names, {n: np.fromfile(os.path.join(path, n + ".txt"), dtype=np.uint8) for n in names}
    with h5py.File(path, "r") as corpus:
        names = [n.decode() if isinstance(n, bytes) else n for n in corpus["domains"][...]]
        return names, {n: corpus["text"][n][...] for n in names}


def check_text(data, corpus_path):
    names, texts = corpus_texts(corpus_path)
    stored = [n.decode() if isinstance(n, bytes) else n for n in data["data"]["domains"][...]]
    if names != stored:
        fail(f"domains {stored} differ from the corpus's {names}")
    ends = [0] * len(names)
    for split in SPLITS:
        group = data["data"][split]
        index = group["index"]
        if index.dtype != np.int64 or index.shape != (len(names), 2):
            fail(f"{split}/index is {index.dtype} {index.shape}, expected int64 [{len(names)}, 2]")
        blocks = index[...]
        tokens, ids = group["tokens"][...], group["domain"][...]
        for d, name in enumerate(names):
            start, end = (int(v) for v in blocks[d])
            if start != ends[d]:
                fail(f"{split} of {name} starts at {start}, the previous split ended at {ends[d]}")
            text = texts[name]
            if not np.array_equal(text[start:end].astype(np.uint16), tokens[ids == d]):
                fail(f"{split} tokens of {name} differ from the corpus bytes [{start}:{end}]")
            ends[d] = end
    for d, name in enumerate(names):
        if ends[d] != len(texts[name]):
            fail(f"the splits of {name} end at {ends[d]}, its text has {len(texts[name])} bytes")
    print(f"index: ok: {len(names)} domains, {sum(ends)} bytes")


def main():
    kind, data_path, source_path = sys.argv[1:4]
    with h5py.File(data_path, "r") as data:
        if kind == "features":
            with h5py.File(source_path, "r") as source:
                check_features(data, source)
        elif kind == "text":
            check_text(data, source_path)
        else:
            fail(f"unknown kind {kind!r}; use features or text")


if __name__ == "__main__":
    main()
