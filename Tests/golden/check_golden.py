"""Reruns every shipped experiment and compares its weights bit for bit with Tests/golden/weights.tsv.

Why: a refactor of the training code must not change a single bit of any training result (issue 12,
"Must hold"). Final losses agree to many digits even when a sum was reordered; a sha256 of every
parameter tensor does not. So this reruns `experiments/*.yaml` into a temporary --out, opens each
run.h5, follows every model it links under /models (final, and seed, expert-<i>, fused, moe, ...
for branch and fusion runs), and hashes the raw bytes of every dataset in each model group.

Sweep specs (a `sweep:` section) cannot run as one run; this runs the trials listed in SWEEP_TRIALS
below through `moe-run sweep SPEC --grid ...` (seed 0, the cases whose code paths differ), not the
whole grid (60+ trials).

The language models (lm-dense, lm-moe, lm-data-parallel, lm-expert-parallel, lm-upcycle,
lm-moefication, lm-switch, lm-btm, lm-btm-average, lm-btx, lm-seed-recipe, and the trials of
sweep-lm-fusion, lm-router-balance and lm-router-shared) train for 2000 steps and evaluate about 1.8M tokens, several minutes each; this runs
them with the overrides in SHORTENED below (100 steps or fewer, and 0.25 % val and test splits for
the end-of-training evaluation, which does not touch the weights; the upcycled and moefied LMs 50
pre-training steps and 50 steps after the split; the branch LMs 20 pre-training steps, 20 steps per
expert and 20 fine-tuning steps, and 0.05 % val and test splits, as their fuse task evaluates the
interpolation curves between the 4 experts on validation, 110 evaluations): every layer of the transformer and of its MoE blocks, the text
data path, the optimizer and every fusion method still run, in seconds. (Sweeps get their
SHORTENED overrides as `--set` of `moe-run sweep`.)

    python check_golden.py --moe-run .build/release/moe-run            # compare; exit 1 if a tensor moved
    python check_golden.py --moe-run ... --update                      # rewrite the golden list
    python check_golden.py --moe-run ... --only btx-mix,upcycle        # a subset (with --update: only its rows)
    python check_golden.py --moe-run ... --keep /tmp/golden-runs       # keep the run directories

The list is machine-specific: the bits depend on the CPU, the OpenBLAS kernel (OPENBLAS_CORETYPE)
and the compiler's target CPU. Its header records where it was generated; compare on that machine
with the Makefile's flags (`make check-golden`). Exit codes: 0 identical, 1 a tensor moved (or is
missing or new), 2 a run failed or bad usage.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(HERE, "weights.tsv")
COLUMNS = ["experiment", "model", "tensor", "dtype", "shape", "sha256"]

# Trials of each sweep spec that are run (each entry = the --grid arguments of one
# `moe-run sweep` call, which may expand to several trials). Chosen to cover the code paths the
# shipped single-run specs do not: top-1 and top-2 with a small and a large expert count, a
# capacity that drops tokens and a dropless router, and every fusion method.
SWEEP_TRIALS = {
    "sweep-router": [["experts=2,16", "router.k=1,2", "seed=0"]],
    "sweep-capacity": [["router.capacity_factor=0.5,null", "seed=0"]],
    "sweep-fusion": [["fusion.method=average,greedy_soup,task_arithmetic,ties,dare,dare_ties,fisher", "seed=0"]],
    # Every score × balance cell (issue 16's router study), and the shared-expert variant.
    "lm-router-balance": [["router.score=softmax,sigmoid", "router.balance=aux_loss,bias", "seed=0"]],
    "lm-router-shared": [["seed=0"]],
    # Every method the spec sweeps: each trial reruns the (shortened) pretrain and expert tasks.
    "sweep-lm-fusion": [["fusion.method=average,greedy_soup,task_arithmetic,ties,dare,dare_ties,fisher,ensemble", "seed=0"]],
}

# `--set` overrides of specs too long to rerun in full. The golden rows are those of the shortened
# runs; the spec's own figures (README) come from the full run.
SHORTENED = {
    "lm-dense": ["train.steps=100", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-moe": ["train.steps=100", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-data-parallel": ["train.steps=100", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-expert-parallel": ["train.steps=100", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-upcycle": ["split.pretrain_steps=50", "train.steps=50", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-moefication": ["split.pretrain_steps=50", "train.steps=50", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-pipeline": ["train.steps=100", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-switch": ["train.steps=50", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-btm": ["split.pretrain_steps=20", "train.steps=20", "data.split={train: 0.999, val: 0.0005, test: 0.0005}"],
    "lm-btm-average": ["split.pretrain_steps=20", "train.steps=20", "fusion.finetune.steps=20",
                       "data.split={train: 0.999, val: 0.0005, test: 0.0005}"],
    "lm-btx": ["split.pretrain_steps=20", "train.steps=20", "fusion.finetune.steps=20",
               "data.split={train: 0.999, val: 0.0005, test: 0.0005}"],
    "lm-seed-recipe": ["train.steps=40", "fusion.finetune.steps=20", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-router-balance": ["train.steps=50", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "lm-router-shared": ["train.steps=50", "data.split={train: 0.995, val: 0.0025, test: 0.0025}"],
    "sweep-lm-fusion": ["split.pretrain_steps=20", "train.steps=20", "data.split={train: 0.999, val: 0.0005, test: 0.0005}"],
}


def fail(message, code=2):
    print(f"check-golden: error: {message}", file=sys.stderr)
    sys.exit(code)


def is_sweep(spec_path):
    with open(spec_path) as f:
        return any(re.match(r"^sweep\s*:", line) for line in f)


def run(cmd, log):
    """Runs one moe-run command; on failure prints its output and stops (exit 2)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(f"$ {' '.join(cmd)}\n{p.stdout}\n")
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-4000:])
        fail(f"`{' '.join(cmd)}` exited with {p.returncode}")
    return p.stdout


def run_single(moe_run, spec, name, out, log):
    """One ordinary run (with its SHORTENED overrides): returns [(experiment label, run directory)]."""
    sets = [a for s in SHORTENED.get(name, []) for a in ("--set", s)]
    run([moe_run, spec, *sets, "--out", out], log)
    root = os.path.join(out, name)
    dirs = [os.path.join(root, d) for d in sorted(os.listdir(root)) if os.path.isfile(os.path.join(root, d, "run.h5"))]
    if len(dirs) != 1:
        fail(f"{spec}: expected one run directory under {root}, found {len(dirs)}")
    return [(name, dirs[0])]


def run_sweep(moe_run, spec, name, out, log):
    """The chosen trials of a sweep: returns [(name[trial label], run directory)] in trial order."""
    if name not in SWEEP_TRIALS:
        fail(f"{spec} is a sweep without an entry in SWEEP_TRIALS of {os.path.relpath(__file__, REPO)}: choose its trials there")
    runs = []
    sets = [a for s in SHORTENED.get(name, []) for a in ("--set", s)]
    for grid in SWEEP_TRIALS[name]:
        args = sets + [a for g in grid for a in ("--grid", g)]
        listing = run([moe_run, "sweep", spec, *args, "--out", out, "--dry-run"], log)
        trials = re.findall(r"^trial \d+/\d+  (.*?)  → (\S+)", listing, re.M)
        if not trials:
            fail(f"{spec}: `moe-run sweep --dry-run` listed no trials:\n{listing}")
        run([moe_run, "sweep", spec, *args, "--out", out, "--quiet"], log)
        runs += [(f"{name}[{label.replace(' ', ',')}]", directory) for label, directory in trials]
    return runs


def walk(group, prefix=""):
    """Every dataset under `group` as (path, dataset), links followed, sorted by path."""
    for key in sorted(group.keys()):
        item = group[key]
        path = f"{prefix}{key}"
        if isinstance(item, h5py.Dataset):
            yield path, item
        elif isinstance(item, h5py.Group):
            yield from walk(item, path + "/")


def tensor_rows(experiment, run_dir):
    """One row per dataset of every model linked under /models of run.h5, except `best`: the
    parameters of the same training at its best validation (issue 17 item 5), a copy of a state
    the final model's bits already pin; listing it would only double the list."""
    rows = []
    with h5py.File(os.path.join(run_dir, "run.h5"), "r") as f:
        if "models" not in f or len(f["models"]) == 0:
            fail(f"{run_dir}/run.h5 links no model under /models")
        for model in sorted(f["models"].keys()):
            if model == "best":
                continue
            for path, ds in walk(f["models"][model]):
                data = np.ascontiguousarray(ds[()])
                dtype = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
                raw = data.astype(dtype, copy=False).tobytes()
                shape = "x".join(str(n) for n in data.shape) or "scalar"
                rows.append((experiment, model, path, dtype.str, shape, hashlib.sha256(raw).hexdigest()))
    return rows


def read_golden(path):
    rows = {}
    if not os.path.exists(path):
        return rows
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cells = line.rstrip("\n").split("\t")
            if cells == COLUMNS:
                continue
            rows[tuple(cells[:3])] = tuple(cells)
    return rows


def machine_header(moe_run):
    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True).stdout.strip() or "unknown"
    return [
        "# Golden weights of the shipped experiments: sha256 of the raw bytes of every tensor of every model",
        "# each run links under /models. Regenerate only for a change that moves bits on purpose, and say so",
        "# in its commit: make check-golden UPDATE=1.",
        f"# generated from commit {commit} on: {cpu}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"target CPU {os.environ.get('MOE_RUN_TARGET_CPU', '(unknown)')}, {os.cpu_count()} cores",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moe-run", required=True, help="the built moe-run binary")
    ap.add_argument("--experiments", default=os.path.join(REPO, "experiments"))
    ap.add_argument("--golden", default=GOLDEN)
    ap.add_argument("--update", action="store_true", help="rewrite the golden list instead of comparing")
    ap.add_argument("--only", default="", help="comma-separated experiment names (file names without .yaml)")
    ap.add_argument("--keep", default="", help="write the runs into this directory and keep them")
    args = ap.parse_args()

    moe_run = os.path.abspath(args.moe_run)
    if not os.access(moe_run, os.X_OK):
        fail(f"{args.moe_run} is not an executable (build first: make build)")
    specs = sorted(f for f in os.listdir(args.experiments) if f.endswith(".yaml"))
    only = [s for s in args.only.split(",") if s]
    unknown = [s for s in only if f"{s}.yaml" not in specs]
    if unknown:
        fail(f"--only: no experiments/{unknown[0]}.yaml")
    if only:
        specs = [s for s in specs if s[:-5] in only]

    out = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="moe-golden-")
    os.makedirs(out, exist_ok=True)
    log_path = os.path.join(out, "check-golden.log")
    started = time.time()
    current = {}
    try:
        with open(log_path, "w") as log:
            for spec_file in specs:
                name = spec_file[:-5]
                spec = os.path.join(args.experiments, spec_file)
                t0 = time.time()
                runs = (run_sweep if is_sweep(spec) else run_single)(moe_run, spec, name, out, log)
                count = 0
                for experiment, run_dir in runs:
                    for row in tensor_rows(experiment, run_dir):
                        current[row[:3]] = row
                        count += 1
                print(f"check-golden: {name}: {len(runs)} run{'s' if len(runs) > 1 else ''}, {count} tensors, {time.time() - t0:.1f} s", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    elapsed = time.time() - started

    golden = read_golden(args.golden)
    in_scope = (lambda key: any(key[0] == s or key[0].startswith(s + "[") for s in only)) if only else (lambda key: True)

    if args.update:
        kept = {k: v for k, v in golden.items() if not in_scope(k)}
        kept.update(current)
        os.makedirs(os.path.dirname(os.path.abspath(args.golden)), exist_ok=True)
        with open(args.golden, "w") as f:
            f.write("\n".join(machine_header(moe_run)) + "\n")
            f.write("\t".join(COLUMNS) + "\n")
            for key in sorted(kept):
                f.write("\t".join(kept[key]) + "\n")
        print(f"check-golden: wrote {len(kept)} tensors to {os.path.relpath(args.golden)} ({elapsed:.0f} s)")
        return 0

    if not golden:
        fail(f"no golden list at {args.golden}; generate it with `make check-golden UPDATE=1`")
    expected = {k: v for k, v in golden.items() if in_scope(k)}
    moved, missing, new = [], [], []
    for key, row in expected.items():
        if key not in current:
            missing.append(key)
        elif current[key][3:] != row[3:]:
            moved.append((key, row, current[key]))
    new = [k for k in current if k not in expected]
    for key, old, now in sorted(moved):
        detail = f"{old[3]} {old[4]} → {now[3]} {now[4]}" if old[3:5] != now[3:5] else f"sha256 {old[5][:12]} → {now[5][:12]}"
        print(f"MOVED    {key[0]}  {key[1]}  {key[2]}  ({detail})")
    for key in sorted(missing):
        print(f"MISSING  {key[0]}  {key[1]}  {key[2]}")
    for key in sorted(new):
        print(f"NEW      {key[0]}  {key[1]}  {key[2]}")
    if moved or missing or new:
        experiments = sorted({k[0] for k, _, _ in moved} | {k[0] for k in missing} | {k[0] for k in new})
        print(f"check-golden: FAILED: {len(moved)} moved, {len(missing)} missing, {len(new)} new of {len(expected)} tensors "
              f"({len(experiments)} experiment(s): {', '.join(experiments)}); {elapsed:.0f} s")
        with open(args.golden) as f:
            generated = next((l.strip("# \n") for l in f if l.startswith("# generated")), "")
        print(f"check-golden: the list was {generated}; this machine: {machine_header(moe_run)[-1].split(' on: ', 1)[1]}")
        return 1
    print(f"check-golden: ok: {len(expected)} tensors of {len({k[0] for k in expected})} runs bit-identical ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
