"""Writes the data files of the data-file fuzzer (Tests/EndToEndTests/DataFileFuzzTests.swift).

Usage: bad_data_files.py OUTDIR

Every file is a small (x, y) classification set of 60 samples, 4 features and 3 classes, and
each breaks the data contract (docs: x float [n, features], y integer [n], optional domain
integer [n]; CSV with a header) in one way. `good.h5` and `good.csv` break nothing: the test
trains on good.h5 and evaluates the others with that model. Deterministic: no random numbers.
"""
import os
import sys

import h5py
import numpy as np

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

n, f = 60, 4
x = (np.arange(n * f, dtype=np.float32).reshape(n, f) % 17) / 4.0 - 2.0
y = np.arange(n, dtype=np.int64) % 3


def h5(name, **datasets):
    attrs = datasets.pop("attrs", {})
    with h5py.File(os.path.join(out, name), "w") as file:
        for key, value in datasets.items():
            if isinstance(value, str) and value == "group":
                file.create_group(key)
            else:
                file[key] = value
        for key, value in attrs.items():
            file.attrs[key] = value


def with_cell(row, column, value, dtype=np.float32):
    bad = x.astype(dtype)
    bad[row, column] = value
    return bad


def with_label(row, value):
    bad = y.copy()
    bad[row] = value
    return bad


h5("good.h5", x=x, y=y)
h5("nan.h5", x=with_cell(12, 3, np.nan), y=y)
h5("inf.h5", x=with_cell(7, 2, np.inf), y=y)
h5("neginf.h5", x=with_cell(0, 0, -np.inf), y=y)
h5("nan-float64.h5", x=with_cell(59, 1, np.nan, np.float64), y=y)
h5("x-int.h5", x=x.astype(np.int64), y=y)
h5("x-rank1.h5", x=x.ravel(), y=y)
h5("x-rank3.h5", x=x.reshape(n, f, 1), y=y)
h5("x-no-features.h5", x=np.zeros((n, 0), np.float32), y=y)
h5("x-group.h5", x="group", y=y)
h5("y-float.h5", x=x, y=y.astype(np.float64))
h5("y-rank2.h5", x=x, y=y.reshape(n, 1))
h5("y-short.h5", x=x, y=y[:-1])
h5("y-negative.h5", x=x, y=with_label(5, -1))
h5("y-over-classes.h5", x=x, y=y, attrs={"classes": 2})
h5("domain-float.h5", x=x, y=y, domain=np.zeros(n))
h5("domain-negative.h5", x=x, y=y, domain=np.where(np.arange(n) == 9, -2, 0).astype(np.int64))
h5("no-x.h5", y=y)
h5("no-y.h5", x=x)
h5("empty.h5", x=np.zeros((0, f), np.float32), y=np.zeros(0, np.int64))
h5("no-datasets.h5")
# Declared shapes far beyond memory, stored sparsely (chunked, never written: the file is tiny).
with h5py.File(os.path.join(out, "huge.h5"), "w") as file:
    file.create_dataset("x", shape=(10**9, 10**6), dtype="f4", chunks=(1, 1024))
    file.create_dataset("y", shape=(10**9,), dtype="i8", chunks=(1024,))
# An HDF5 file named .csv.
h5("binary.csv", x=x, y=y)


def csv(name, text):
    with open(os.path.join(out, name), "w") as file:
        file.write(text)


rows = ["%g,%g,%g,%g,%d" % (*x[i], y[i]) for i in range(n)]
header = "a,b,c,d,y\n"
csv("good.csv", header + "\n".join(rows) + "\n")
csv("ragged.csv", header + "\n".join(rows[:9] + ["1,2,3,0"] + rows[10:]) + "\n")
csv("csv-nan.csv", header + "\n".join(rows[:3] + ["1,nan,3,4,0"] + rows[4:]) + "\n")
csv("csv-text-cell.csv", header + "\n".join(rows[:3] + ["1,2,oops,4,0"] + rows[4:]) + "\n")
csv("csv-float-label.csv", header + "\n".join(rows[:4] + ["1,2,3,4,1.5"] + rows[5:]) + "\n")
csv("csv-negative-label.csv", header + "\n".join(rows[:4] + ["1,2,3,4,-1"] + rows[5:]) + "\n")
csv("csv-no-header.csv", "\n".join(rows) + "\n")
csv("csv-header-only.csv", header)
csv("csv-empty.csv", "")
