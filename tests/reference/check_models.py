#!/usr/bin/python3
"""Compare folio-engine's forward pass against the float64 PyTorch reference.

For every small fixture preset x {F32, F16, BF16}, a sharded F32 variant, and the shared real
models (stories260K, aidreams260K):
  1. generate the checkpoint into a temp dir (tests/fixtures/gen_checkpoint.py),
  2. `folio-engine logits` on 3 deterministic random prompts as one batch, once with
     --chunk 7 --block-size 4 (chunked prefill over several KV blocks) and once unchunked;
     every row must satisfy ||engine - ref||_2 / ||ref||_2 <= TOL,
  3. `folio-engine generate --temperature 0 --ignore-eos --show-ids` for 32 tokens must give
     exactly the reference's greedy ids,
and the --dtype overrides: bfloat16 / float16 on an F32 file against the reference of the
rounded weights, float32 on a BF16 file against the stored weights.

Prints `ok NAME` / `FAIL NAME: detail` per check and ends with `N passed, N failed`; exits 1
on any failure. Env: FOLIO_ENGINE (default build/release/folio-engine), FOLIO_TEST_MODELS
(default ../shared/models). Options: --only SUBSTR (run the checks whose case name contains
it), --keep (keep the temp dir), --ref-only (just check the reference against known outputs),
--bench (also the 135M bench preset). Besides the per-preset checks: batches of 8 sequences at
chunk/block sizes down to 1, 300-400-token contexts, and the text path (--prompt) of the real
models against their known outputs.

--device cuda (tests/gpu/check_models_gpu.sh) passes --device to every engine run, requires the
engine's stderr to name the "cuda backend" (so that a run that fell back to the CPU cannot pass),
and judges each run by its compute dtype (the checkpoint's matrices, or --dtype): the GPU
multiplies 16-bit weights by activations narrowed to 16 bits (fp32 accumulation), so its error
is that rounding's, not the CPU's (fp32 activations): TOL_DEVICE. 16-bit greedy runs are then
checked teacher-forced (the reference on the engine's own tokens: every token must be the
reference's argmax or within GREEDY_SLACK x tol x rms(logits) of it, since near-ties may flip),
fp32 ones exactly as on the CPU; and every case's chunked logits (and the 135M preset's) are
also compared with the same binary's --device cpu logits. --shard K/N runs every Nth unit of
work (the wrapper runs N at once). Without --device (or with --device cpu, which only passes
the flag), the checks and tolerances are the CPU's above.
Run: /usr/bin/python3 tests/reference/check_models.py
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import torch_llama as R  # noqa: E402
import gen_checkpoint as G  # noqa: E402

TOL = 1e-4          # per-row relative L2 error, engine (fp32) vs reference (fp64)
TOL_ROUNDED = 1e-4  # --dtype bfloat16/float16 on an F32 file, vs the rounded-weight reference
N_GREEDY = 32
TIMEOUT = 120

# --device (None: the flag is not passed, and everything above applies unchanged).
DEVICE = None
# Per compute dtype, the same per-row relative L2 error against the float64 reference. The GPU
# narrows activations to the weights' 16-bit type before each GEMM (relative rounding 2^-9 for
# bf16, 2^-12 for f16); a float64 model of exactly that rounding gives 0.7-1.0e-2 (bf16) and
# 0.9-1.4e-3 (f16) on these presets and on smollm2-135m (30 layers), so these are ~3x that.
# fp32 runs pedantic sgemm (no TF32): as tight as the CPU.
TOL_DEVICE = {"float32": 1e-4, "float16": 5e-3, "bfloat16": 3e-2}
# Teacher-forced greedy: allowed (reference max - reference logit of the engine's token), in
# units of tol x rms(reference logits row). The same model of the GPU's rounding stays under
# 0.35 over ~6000 rows of these presets.
GREEDY_SLACK = 2.0
# Every run on a device also gets these: each engine asks only this share of the GPU to be free
# (vLLM's semantics: the default 0.9 would refuse to start beside the other shards' engines).
DEVICE_ARGS = ["--gpu-memory-utilization", "0.1"]
SHARD = None  # (k, n): this process runs units k, k+n, k+2n, ...
_unit = [0]


def mine(name):
    """Whether this shard runs the unit of work `name` (units are counted in the same order in
    every shard, so each runs in exactly one)."""
    if SHARD is None:
        return True
    k = _unit[0]
    _unit[0] += 1
    return k % SHARD[1] == SHARD[0]


def compute_dtype(model_dir, extra_args):
    """float32|float16|bfloat16: --dtype when given, else the stored dtype of the first layer's
    q_proj (what the engine's weights keep)."""
    args = list(extra_args)
    if "--dtype" in args and args[args.index("--dtype") + 1] != "auto":
        return args[args.index("--dtype") + 1]
    idx = os.path.join(model_dir, "model.safetensors.index.json")
    fn = "model.safetensors"
    name = "model.layers.0.self_attn.q_proj.weight"
    if os.path.exists(idx):
        with open(idx) as f:
            fn = json.load(f)["weight_map"][name]
    header, _ = R._read_header(os.path.join(model_dir, fn))
    return {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[header[name]["dtype"]]


def on_device():
    """--device names something other than the CPU (whose tolerances stay as above)."""
    return DEVICE is not None and DEVICE != "cpu"


def device_tol(model_dir, extra_args, tol):
    return TOL_DEVICE[compute_dtype(model_dir, extra_args)] if on_device() else tol

torch.set_num_threads(1)


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, name, extra=""):
        self.passed += 1
        print(f"ok {name}" + (f" ({extra})" if extra else ""), flush=True)

    def fail(self, name, detail):
        self.failed += 1
        print(f"FAIL {name}: {detail}", flush=True)


def run_engine(engine, args, device=None):
    """device (or --device when None) is passed as --device; a run on a device other than the
    CPU must say so on stderr ("cuda backend"), or it counts as a failure."""
    dev = device or DEVICE
    if dev:
        args = list(args) + ["--device", dev] + (DEVICE_ARGS if dev != "cpu" else [])
    t0 = time.time()
    try:
        p = subprocess.run([engine] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {TIMEOUT}s", time.time() - t0
    rc, err = p.returncode, p.stderr.decode("utf-8", "replace")
    if rc == 0 and dev and dev != "cpu" and not re.search(rf"\b{re.escape(dev)} backend\b", err):
        rc = 1
        err += (f"\ncheck_models: asked for --device {dev}, but stderr names no '{dev} backend' "
                f"(did `{args[0]}` run on the CPU?)")
    return rc, p.stdout.decode("utf-8", "replace"), err, time.time() - t0


def stderr_tail(err):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[:400]


def sanitizer_hit(err):
    return "AddressSanitizer" in err or "runtime error:" in err or "LeakSanitizer" in err


def make_prompts(name, vocab, bos=None, n=3):
    rng = random.Random("prompts:" + name)
    prompts = []
    for i in range(n):
        ln = rng.randint(5, 40) if i else 40  # first one spans several chunks and blocks
        ids = [rng.randrange(vocab) for _ in range(ln)]
        if bos is not None:
            ids[0] = bos
        prompts.append(ids)
    return prompts


def run_logits(res, engine, name, model_dir, prompts, V, extra_args, tmp, device=None):
    """One engine logits run: float64 [total, V], or None after a failure line."""
    out = os.path.join(tmp, "logits.bin")
    if os.path.exists(out):
        os.remove(out)
    spec = ";".join(",".join(map(str, p)) for p in prompts)
    rc, _, err, dt = run_engine(engine, ["logits", "--model", model_dir, "--prompt-ids", spec,
                                         "--out", out] + extra_args, device)
    if rc != 0 or sanitizer_hit(err):
        res.fail(name, f"exit {rc}: {stderr_tail(err)}")
        return None
    total = sum(len(p) for p in prompts)
    try:
        got = np.fromfile(out, dtype="<f4")
    except OSError as e:
        res.fail(name, f"no output file: {e}")
        return None
    if got.size != total * V:
        res.fail(name, f"output has {got.size} floats, want {total}x{V}={total * V}")
        return None
    got = torch.from_numpy(got.astype(np.float64).reshape(total, V))
    if not torch.isfinite(got).all():
        bad = int((~torch.isfinite(got)).any(dim=1).nonzero()[0])
        res.fail(name, f"non-finite logits (first in row {bad})")
        return None
    return got


def compare_logits(res, engine, name, model_dir, ref, prompts, extra_args, tol, tmp):
    """One engine logits run vs the reference; one check line. Returns the logits (or None)."""
    tol = device_tol(model_dir, extra_args, tol)
    got = run_logits(res, engine, name, model_dir, prompts, ref.vocab, extra_args, tmp)
    if got is None:
        return None
    worst = (0.0, None)
    row = 0
    for si, p in enumerate(prompts):
        want = ref_logits_cached(ref, p)
        g = got[row:row + len(p)]
        rel = (g - want).norm(dim=1) / want.norm(dim=1)
        j = int(rel.argmax())
        if rel[j].item() > worst[0]:
            absmax = (g[j] - want[j]).abs().max().item()
            worst = (rel[j].item(), (si, j, absmax))
        row += len(p)
    if worst[0] <= tol:
        res.ok(name, f"max rel err {worst[0]:.2e}" + (f", tol {tol:g}" if on_device() else ""))
    else:
        si, j, absmax = worst[1]
        res.fail(name, f"rel err {worst[0]:.3e} > {tol:g} at seq {si} pos {j} "
                       f"(max abs diff {absmax:.3e}; seq lens {[len(p) for p in prompts]}; "
                       f"{first_bad_desc(got, prompts, ref, tol)})")
    return got


def compare_with_cpu(res, engine, name, model_dir, prompts, dev_logits, extra_args, tmp):
    """--device runs: the same binary's --device cpu logits against the device's, per row
    relative L2 (the CPU's own error is ~1e-6, so the device's tolerance applies)."""
    tol = device_tol(model_dir, extra_args, TOL)
    cpu = run_logits(res, engine, name, model_dir, prompts, dev_logits.shape[1], extra_args, tmp,
                     device="cpu")
    if cpu is None:
        return
    rel = (dev_logits - cpu).norm(dim=1) / cpu.norm(dim=1)
    j = int(rel.argmax())
    if rel[j].item() <= tol:
        res.ok(name, f"max rel diff {rel[j].item():.2e}, tol {tol:g}")
    else:
        res.fail(name, f"rel diff {rel[j].item():.3e} > {tol:g} at row {j} of {rel.numel()} "
                       f"({int((rel > tol).sum())} rows over)")


def first_bad_desc(got, prompts, ref, tol):
    """Where errors start: the first row over tol, per sequence."""
    parts = []
    row = 0
    for si, p in enumerate(prompts):
        want = ref_logits_cached(ref, p)
        rel = (got[row:row + len(p)] - want).norm(dim=1) / want.norm(dim=1)
        over = (rel > tol).nonzero()
        if over.numel():
            parts.append(f"seq {si}: first bad pos {int(over[0])}, "
                         f"{int(over.numel())}/{len(p)} rows bad")
        row += len(p)
    return "; ".join(parts)


_ref_cache = {}


def ref_logits_cached(ref, ids):
    key = (id(ref), tuple(ids))
    if key not in _ref_cache:
        _ref_cache[key] = R.logits(ref, ids)
    return _ref_cache[key]


def ref_greedy(ref, prompt, n):
    """Greedy ids and the top1-top2 gap at each step (to explain a near-tie mismatch)."""
    seq = list(prompt)
    ids, gaps = [], []
    for _ in range(n):
        lg = R.logits(ref, seq)[-1]
        top = torch.topk(lg, 2)
        ids.append(int(top.indices[0]))
        gaps.append(float(top.values[0] - top.values[1]))
        seq.append(ids[-1])
    return ids, gaps


def compare_greedy(res, engine, name, model_dir, ref, prompt, extra_args=(), want=None):
    rc, out, err, dt = run_engine(engine, ["generate", "--model", model_dir, "--prompt-ids",
                                           ",".join(map(str, prompt)), "--max-tokens",
                                           str(N_GREEDY), "--temperature", "0", "--ignore-eos",
                                           "--show-ids"] + list(extra_args))
    if rc != 0 or sanitizer_hit(err):
        res.fail(name, f"exit {rc}: {stderr_tail(err)}")
        return
    lines = [ln for ln in out.splitlines() if ln.startswith("ids:")]
    if not lines:
        res.fail(name, f"no 'ids:' line on stdout: {out[-200:]!r}")
        return
    try:
        got = [int(t) for t in lines[-1][4:].replace(" ", "").split(",") if t]
    except ValueError:
        res.fail(name, f"unparsable ids line {lines[-1]!r}")
        return
    if on_device() and want is None and compute_dtype(model_dir, extra_args) != "float32":
        greedy_forced(res, name, ref, prompt, got, TOL_DEVICE[compute_dtype(model_dir, extra_args)])
        return
    ids, gaps = ref_greedy(ref, prompt, N_GREEDY)
    if want is not None and ids[:len(want)] != want[:N_GREEDY]:
        res.fail(name, "REFERENCE disagrees with the known output")
        return
    if got == ids:
        res.ok(name, f"min top-2 gap {min(gaps):.3f}")
        return
    k = next((i for i in range(min(len(got), len(ids))) if got[i] != ids[i]), min(len(got), len(ids)))
    detail = f"first mismatch at step {k} of {len(got)} (want {len(ids)})"
    if k < len(ids):
        detail += f": got {got[k] if k < len(got) else None}, want {ids[k]}" \
                  f" (reference top-2 gap there {gaps[k]:.4f})"
    detail += f"; got {got}, want {ids}"
    res.fail(name, detail)


def greedy_forced(res, name, ref, prompt, got, tol):
    """16-bit greedy on a device: the reference run on the engine's own tokens (one forward);
    each token must be the reference's argmax, or within GREEDY_SLACK x tol x rms(row) of it."""
    if len(got) != N_GREEDY:
        res.fail(name, f"{len(got)} tokens, want {N_GREEDY}: {got}")
        return
    if max(got) >= ref.vocab or min(got) < 0:
        res.fail(name, f"token id out of range: {got}")
        return
    lg = R.logits(ref, list(prompt) + got[:-1])[len(prompt) - 1:]
    worst, ties = 0.0, 0
    for k, tok in enumerate(got):
        row = lg[k]
        rms = (row.norm() / math.sqrt(ref.vocab)).item()
        slack = (row.max() - row[tok]).item() / (tol * rms)
        if slack > 0:
            ties += 1
        worst = max(worst, slack)
        if slack > GREEDY_SLACK:
            top = torch.topk(row, 2)
            res.fail(name, f"step {k}: token {tok} is {slack:.2f} x tol x rms below the "
                           f"reference's argmax {int(top.indices[0])} (allowed {GREEDY_SLACK}; "
                           f"reference top-2 gap {float(top.values[0] - top.values[1]):.4f}); "
                           f"got {got}")
            return
    res.ok(name, f"teacher-forced: {N_GREEDY - ties}/{N_GREEDY} tokens the reference's argmax, "
                 f"worst {worst:.2f} of {GREEDY_SLACK} x tol x rms")


def cases(models):
    """[(name, kind, args)]: kind 'gen' (preset, dtype, shards) or 'real' (dir)."""
    out = []
    for i, p in enumerate(G.SMALL_PRESETS):
        for dt in ("F32", "F16", "BF16"):
            out.append((f"{p}/{dt}", "gen", (p, dt, 1, 100 + i)))
    out.append(("llama-gqa/F32/3-shards", "gen", ("llama-gqa", "F32", 3, 200)))
    out.append(("qwen2-bias/BF16/2-shards", "gen", ("qwen2-bias", "BF16", 2, 201)))
    for m in ("stories260K", "aidreams260K"):
        out.append((m, "real", os.path.join(models, m)))
    return out


KNOWN_TEXT = {
    "stories260K": ("Once upon a time", 40, ", there was a little girl named Lily. She loved to play "
                    "outside in the park. One day, she saw a big, red ball."),
    "aidreams260K": ("I dreamed", 40, ", as I sense the nodes, a gentle hum of probability. "
                     "Contrast emerge, a flower, as"),
}


def extra_checks(res, engine, models, tmp, only):
    """Batch shapes, long contexts and the text path."""
    def want(name):
        return (not only or only in name) and mine(name)

    st_dir = os.path.join(models, "stories260K")
    st = R.load(st_dir)
    if want("stories260K/batch-mixed"):
        # The same prompt twice in one batch with other sequences: rows must agree.
        p = R.STORIES_PROMPT + R.STORIES_40[:20]
        compare_logits(res, engine, "stories260K/batch-mixed", st_dir, st,
                       [p, [1, 5, 6], p, [1] + R.STORIES_40[:30]],
                       ["--chunk", "3", "--block-size", "16"], TOL, tmp)
    rng = random.Random("many")
    many = [[1] + [rng.randrange(3, 512) for _ in range(rng.randint(0, 30))] for _ in range(8)]
    for chunk, bs in (("1", "1"), ("5", "32"), ("64", "2")):
        name = f"stories260K/8-seqs-chunk{chunk}-block{bs}"
        if want(name):
            compare_logits(res, engine, name, st_dir, st, many,
                           ["--chunk", chunk, "--block-size", bs], TOL, tmp)
    # Long contexts: RoPE at large positions, many KV blocks.
    long_st = [1] + [rng.randrange(3, 512) for _ in range(399)]
    if want("stories260K/long-400"):
        compare_logits(res, engine, "stories260K/long-400", st_dir, st, [long_st, long_st[:37]],
                       ["--chunk", "64", "--block-size", "16"], TOL, tmp)
    for preset in ("llama3-rope", "llama-linear-rope", "qwen2-bias"):
        n = min(300, G.PRESETS[preset]["max_position_embeddings"])
        name = f"{preset}/F32/long-{n}"
        if not want(name):
            continue
        d = os.path.join(tmp, f"long_{preset}")
        G.write_model(d, preset, "F32", 300, 1)
        ref = R.load(d)
        r2 = random.Random(name)
        ids = [r2.randrange(ref.vocab) for _ in range(n)]
        compare_logits(res, engine, name, d, ref, [ids], ["--chunk", "128", "--block-size", "16"],
                       TOL, tmp)
    for dt in ("BF16", "F16"):
        name = f"llama-gqa/{dt}/mixed-dtypes-reordered-extra-tensors"
        if want(name):
            d = os.path.join(tmp, f"variant_{dt}")
            G.write_model(d, "llama-gqa", dt, 400, 1)
            ref = R.load(d)
            rewrite_checkpoint(os.path.join(d, "model.safetensors"))
            r3 = random.Random(name)
            prompts = [[r3.randrange(ref.vocab) for _ in range(n)] for n in (17, 9)]
            compare_logits(res, engine, name, d, ref, prompts, ["--chunk", "7", "--block-size", "4"],
                           TOL, tmp)
    # The text path: tokenizer + BOS + greedy + detokenizer, against the known outputs.
    for m, (prompt, n, text) in KNOWN_TEXT.items():
        name = f"{m}/text-prompt"
        if not want(name):
            continue
        rc, out, err, _ = run_engine(engine, ["generate", "--model", os.path.join(models, m),
                                              "--prompt", prompt, "--max-tokens", str(n),
                                              "--temperature", "0"])
        if rc != 0 or sanitizer_hit(err):
            res.fail(name, f"exit {rc}: {stderr_tail(err)}")
        elif out.rstrip("\n") == text:
            res.ok(name)
        else:
            res.fail(name, f"got {out!r}, want {text!r}")


def rewrite_checkpoint(path):
    """Rewrite a single-file checkpoint the way real ones vary, without changing any value:
    1-D tensors (norms, biases) upcast to F32 next to 16-bit matrices, tensors stored in
    reverse order, and extra tensors that older HF Llama checkpoints carry
    (model.layers.N.self_attn.rotary_emb.inv_freq), which an engine must ignore."""
    header, data_start = R._read_header(path)
    with open(path, "rb") as f:
        f.seek(data_start)
        data = f.read()
    names = sorted((k for k in header if k != "__metadata__"),
                   key=lambda k: header[k]["data_offsets"][0], reverse=True)
    items = []
    for n in names:
        info = header[n]
        b, e = info["data_offsets"]
        raw = data[b:e]
        if len(info["shape"]) == 1 and info["dtype"] != "F32":
            t = R._to_f64(raw, info["dtype"], info["shape"])
            items.append((n, "F32", info["shape"], t.numpy().astype("<f4").tobytes()))
        else:
            items.append((n, info["dtype"], info["shape"], raw))
        if n.endswith("self_attn.q_proj.weight"):
            inv = np.arange(4, dtype="<f4")
            items.append((n.replace("q_proj.weight", "rotary_emb.inv_freq"), "F32", [4],
                          inv.tobytes()))
    G.write_safetensors(path, items, {"format": "pt"})


def bench_checks(res, engine, tmp, only):
    """--bench: the 135M bench preset (BF16) on two short prompts, logits only."""
    name = "smollm2-135m/BF16/logits"
    if only and only not in name or not mine(name):
        return
    d = os.path.join(tmp, "smollm2")
    G.write_model(d, "smollm2-135m", "BF16", 5, 1)
    ref = R.load(d)
    r = random.Random(name)
    prompts = [[r.randrange(ref.vocab) for _ in range(n)] for n in (12, 5)]
    got = compare_logits(res, engine, name, d, ref, prompts, ["--chunk", "7", "--block-size", "4"],
                         TOL, tmp)
    if on_device() and got is not None:
        compare_with_cpu(res, engine, f"{name}/{DEVICE}-vs-cpu", d, prompts, got,
                         ["--chunk", "7", "--block-size", "4"], tmp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--ref-only", action="store_true")
    ap.add_argument("--bench", action="store_true",
                    help="also check the smollm2-135m bench preset (~270 MB, slower)")
    ap.add_argument("--device", default=None,
                    help="pass --device to the engine (cuda: per-dtype tolerances, vs-CPU logits)")
    ap.add_argument("--shard", default=None, metavar="K/N",
                    help="run every Nth unit of work, starting at K (0-based)")
    a = ap.parse_args()
    global DEVICE, SHARD
    DEVICE = a.device
    if a.shard:
        k, n = (int(x) for x in a.shard.split("/"))
        if not 0 <= k < n:
            ap.error("--shard K/N needs 0 <= K < N")
        SHARD = (k, n)
    engine = os.environ.get("FOLIO_ENGINE", os.path.join(ROOT, "build", "release", "folio-engine"))
    models = R.models_dir()
    res = Results()
    t_start = time.time()

    # The reference itself must reproduce the known outputs of the real models.
    if (not a.only or "reference" in a.only) and mine("reference/stories260K-known-output"):
        st = R.load(os.path.join(models, "stories260K"))
        g = R.greedy(st, R.STORIES_PROMPT, 40)
        if g == R.STORIES_40:
            res.ok("reference/stories260K-known-output")
        else:
            res.fail("reference/stories260K-known-output", f"got {g}")
    if a.ref_only:
        print(f"{res.passed} passed, {res.failed} failed")
        return 1 if res.failed else 0

    if not os.access(engine, os.X_OK):
        res.fail("engine", f"{engine} not found or not executable (set FOLIO_ENGINE)")
        print(f"{res.passed} passed, {res.failed} failed")
        return 1

    tmp = tempfile.mkdtemp(prefix="folio-check-")
    try:
        for name, kind, arg in cases(models):
            if a.only and a.only not in name:
                continue
            if not mine(name):
                continue
            if kind == "gen":
                preset, dt, shards, seed = arg
                d = os.path.join(tmp, name.replace("/", "_"))
                G.write_model(d, preset, dt, seed, shards)
                bos = None
            else:
                d = arg
                bos = 1
            ref = R.load(d)
            prompts = make_prompts(name, ref.vocab, bos)
            got = compare_logits(res, engine, f"{name}/logits-chunk7-block4", d, ref, prompts,
                                 ["--chunk", "7", "--block-size", "4"], TOL, tmp)
            if on_device() and got is not None:
                compare_with_cpu(res, engine, f"{name}/logits-chunk7-block4/{DEVICE}-vs-cpu", d,
                                 prompts, got, ["--chunk", "7", "--block-size", "4"], tmp)
            compare_logits(res, engine, f"{name}/logits", d, ref, prompts, [], TOL, tmp)
            if kind == "real" and name == "stories260K":
                compare_greedy(res, engine, f"{name}/greedy-known", d, ref, R.STORIES_PROMPT,
                               want=R.STORIES_40)
            elif kind == "real" and name == "aidreams260K":
                compare_greedy(res, engine, f"{name}/greedy-known", d, ref, R.AIDREAMS_PROMPT)
            else:
                compare_greedy(res, engine, f"{name}/greedy", d, ref, prompts[1][:12])
            # --dtype overrides: F32 file computed from rounded weights; BF16 file upcast.
            if kind == "gen" and shards == 1 and preset in ("llama-gqa", "qwen2-bias",
                                                            "llama-headdim"):
                if dt == "F32":
                    for flag, rnd in (("bfloat16", "bf16"), ("float16", "f16")):
                        rref = R.load(d, round_to=rnd)
                        compare_logits(res, engine, f"{name}/dtype-{flag}", d, rref, prompts,
                                       ["--dtype", flag, "--chunk", "7", "--block-size", "4"],
                                       TOL_ROUNDED, tmp)
                        compare_greedy(res, engine, f"{name}/dtype-{flag}/greedy", d, rref,
                                       prompts[1][:12], ["--dtype", flag])
                elif dt == "BF16":
                    compare_logits(res, engine, f"{name}/dtype-float32", d, ref, prompts,
                                   ["--dtype", "float32"], TOL, tmp)
        extra_checks(res, engine, models, tmp, a.only)
        if a.bench:
            bench_checks(res, engine, tmp, a.only)
    finally:
        if a.keep:
            print(f"# kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"# {time.time() - t_start:.1f}s", file=sys.stderr)
    print(f"{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
