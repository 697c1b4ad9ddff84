"""An independent implementation of the text data contract (docs/formats.md "Text corpora",
ARCHITECTURE section 5.4), in numpy + h5py, checked against a tasks/data.h5 moe-run wrote.

From the corpus file alone (/domains, /text/<name> uint8) it splits each domain's bytes into
contiguous train / val / test blocks: train = round(train_fraction * n), val =
min(n - train, round(val_fraction * n)), halves rounded away from zero, test the rest; then
checks that DATA.h5 holds exactly

  /data/<split>/tokens  uint16 [n]  the domains' streams concatenated in domain order
  /data/<split>/domain  int64  [n]  the domain id of every token
  /data/domains         strings     the names, in id order

and prints, for each split and domain, the number of evaluation windows of context + 1 tokens
at offsets 0, context, 2*context, ... (an incomplete last window dropped) and the first token of
the last window, as "<split> <domain> <windows> <last-window-first-token>".

Usage: python check_text_data.py CORPUS.h5 DATA.h5 TRAIN VAL CONTEXT   (exit 0, last line "ok")
"""
import math
import sys

import h5py
import numpy as np


def round_half_away(x):
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def main(corpus_path, data_path, train, val, context):
    with h5py.File(corpus_path, "r") as f:
        names = list(f["domains"].asstr()[:])
        texts = [f["text/" + name][:] for name in names]
    parts = {"train": [], "val": [], "test": []}
    for text in texts:
        n = len(text)
        a = min(n, round_half_away(train * n))
        b = min(n - a, round_half_away(val * n))
        parts["train"].append(text[:a])
        parts["val"].append(text[a:a + b])
        parts["test"].append(text[a + b:])
    with h5py.File(data_path, "r") as f:
        assert list(f["data/domains"].asstr()[:]) == names, list(f["data/domains"].asstr()[:])
        for split, streams in parts.items():
            tokens, domain = f[f"data/{split}/tokens"], f[f"data/{split}/domain"]
            assert tokens.dtype == np.uint16 and tokens.ndim == 1, (split, tokens.dtype)
            assert domain.dtype == np.int64 and domain.ndim == 1, (split, domain.dtype)
            expected = np.concatenate(streams).astype(np.uint16)
            assert np.array_equal(tokens[:], expected), f"{split} tokens differ"
            ids = np.concatenate([np.full(len(s), d, dtype=np.int64) for d, s in enumerate(streams)])
            assert np.array_equal(domain[:], ids), f"{split} domain ids differ"
            for d, stream in enumerate(streams):
                offsets = list(range(0, len(stream) - context, context))  # start + context + 1 <= n
                windows = [stream[o:o + context + 1] for o in offsets]
                assert all(len(w) == context + 1 for w in windows)
                last = int(windows[-1][0]) if windows else -1
                print(split, names[d], len(windows), last)
    print("ok")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
