#!/usr/bin/env python3
"""Convert the UCI handwritten digits CSV into experiments/data/digits.h5.

Input: ``digits.csv.gz`` (or an uncompressed ``digits.csv``) as shipped inside scikit-learn's
wheel at ``sklearn/datasets/data/digits.csv.gz``: 1797 rows, no header, each row 64 pixel
values (integers 0..16, an 8x8 image in row-major order) followed by the class label 0..9.

Output (moe-run data file, ARCHITECTURE section 5.4):
  x  float32 [1797, 64]  raw pixel counts 0..16, NOT scaled; the loader/model normalises
  y  int64   [1797]      digit class 0..9
  root attributes: source, licence, description, citation, doi, pixel_range, scaling,
                   source_file, source_sha256, sklearn_version

Uses only numpy and h5py. The output is byte-for-byte reproducible (no timestamps, fixed
chunking, fixed library version bounds), so its sha256 can be recorded in README.md.

Usage:
  python make_digits.py DIGITS_CSV[.gz] OUT.h5 [--sklearn-version VERSION]
"""

import argparse
import gzip
import hashlib
import os
import sys

import h5py
import numpy as np

N_SAMPLES = 1797
N_FEATURES = 64
N_CLASSES = 10


def read_csv(path):
    """Parse the CSV strictly: every row has 65 integer fields, pixels 0..16, labels 0..9."""
    opener = gzip.open if path.endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="ascii") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            fields = line.split(",")
            if len(fields) != N_FEATURES + 1:
                sys.exit(f"{path}:{line_number}: expected {N_FEATURES + 1} fields, found {len(fields)}")
            try:
                values = [int(float(field)) for field in fields]
            except ValueError as error:
                sys.exit(f"{path}:{line_number}: {error}")
            rows.append(values)
    data = np.asarray(rows, dtype=np.int64)
    if data.shape != (N_SAMPLES, N_FEATURES + 1):
        sys.exit(f"{path}: expected {N_SAMPLES} rows, found {data.shape[0]}")
    pixels, labels = data[:, :N_FEATURES], data[:, N_FEATURES]
    if pixels.min() < 0 or pixels.max() > 16:
        sys.exit(f"{path}: pixel values outside 0..16")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        sys.exit(f"{path}: labels outside 0..{N_CLASSES - 1}")
    return pixels.astype(np.float32), labels.astype(np.int64)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_h5(out_path, x, y, source_path, sklearn_version):
    """Write atomically (tmp + rename), like moe-run does for its own files."""
    tmp_path = out_path + ".tmp"
    compression = dict(compression="gzip", compression_opts=4, shuffle=True, track_times=False)
    with h5py.File(tmp_path, "w", libver=("earliest", "v110"), track_order=False) as f:
        f.create_dataset("x", data=x, chunks=(512, N_FEATURES), **compression)
        f.create_dataset("y", data=y, chunks=(N_SAMPLES,), **compression)
        f.attrs["source"] = (
            "UCI Machine Learning Repository, 'Optical Recognition of Handwritten Digits' "
            "(test set optdigits.tes, 1797 samples), via the copy packaged in scikit-learn "
            f"{sklearn_version} (sklearn/datasets/data/digits.csv.gz)"
        )
        f.attrs["licence"] = "CC BY 4.0"
        f.attrs["description"] = (
            "8x8 images of handwritten digits: 32x32 bitmaps divided into 4x4 blocks, each pixel the "
            "count of on pixels in its block (integer 0..16). x: float32 [1797, 64] raw counts, "
            "row-major 8x8, not scaled; y: int64 [1797] digit 0..9."
        )
        f.attrs["citation"] = (
            "E. Alpaydin, C. Kaynak (1998). Optical Recognition of Handwritten Digits. "
            "UCI Machine Learning Repository."
        )
        f.attrs["doi"] = "10.24432/C50P49"
        f.attrs["pixel_range"] = np.array([0.0, 16.0])
        f.attrs["scaling"] = "none (raw counts 0..16; divide by 16 for [0, 1])"
        f.attrs["source_file"] = os.path.basename(source_path)
        f.attrs["source_sha256"] = sha256(source_path)
        f.attrs["sklearn_version"] = sklearn_version
    os.replace(tmp_path, out_path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", help="digits.csv.gz from scikit-learn's wheel")
    parser.add_argument("out", help="output HDF5 file, e.g. experiments/data/digits.h5")
    parser.add_argument("--sklearn-version", required=True,
                        help="version of the scikit-learn wheel the CSV came from")
    args = parser.parse_args()
    x, y = read_csv(args.csv)
    write_h5(args.out, x, y, args.csv, args.sklearn_version)
    counts = np.bincount(y, minlength=N_CLASSES)
    print(f"wrote {args.out}: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}, class counts {counts.tolist()}")


if __name__ == "__main__":
    main()
