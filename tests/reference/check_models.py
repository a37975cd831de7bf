#!/usr/bin/python3
"""Compare folio-engine's forward pass against the float64 PyTorch reference.

For every small fixture preset x {F32, F16, BF16} (Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE,
Mixtral, Gemma 2, Gemma 3 text and multimodal layout, Phi-3 with and without LongRoPE), sharded
variants, and the shared real models (stories260K, aidreams260K):
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
it), --keep (keep the temp dir), --ref-only (only the reference-only checks below, no engine),
--bench (also the 135M bench preset). Besides the per-preset checks: batches of 8 sequences at
chunk/block sizes down to 1, 100-400-token contexts, and the text path (--prompt) of the real
models against their known outputs.

Reference-only checks (also the whole of --ref-only): the reference reproduces stories260K's
known output; reductions between independent code paths (a MoE whose experts are all the same
equals the dense MLP: Qwen3-MoE vs Qwen3, Mixtral vs the Llama path's Mistral; Phi-3's fused
qkv / gate_up split into a Mistral checkpoint; Gemma 2 with huge soft-caps and a window past the
length vs none); that each preset's distinguishing feature moves its logits far more than the
tolerance (soft-caps, windows, local RoPE base, LongRoPE factors and the chunked pass decision,
norm_topk_prob, the 16-bit embedding normalizer); and for MoE presets, that the test prompts
route to more than top_k distinct experts per layer with no near-tie at the top-k boundary.

LongRoPE (Phi-3) picks short or long factors from a forward pass's seq_len = largest position
+ 1 (transformers). The engine decides a prompt from its whole length however it chunks the
prefill (== transformers' one-shot prefill), and each decoded token at position p from p + 1;
the reference models that (LONGROPE_PER_CHUNK: the per-chunk alternative).

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
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
    else:
        hdr, _ = R._read_header(os.path.join(model_dir, "model.safetensors"))
        wm = {k: "model.safetensors" for k in hdr if k != "__metadata__"}
    # layer 0's q projection (Phi-3: the fused qkv; multimodal Gemma 3: under language_model.)
    name = next(k for k in sorted(wm) if re.search(r"(^|\.)model\.layers\.0\.self_attn\."
                                                    r"(q|qkv)_proj\.weight$", k))
    header, _ = R._read_header(os.path.join(model_dir, wm[name]))
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
    """device (or --device when None) is passed as --device, and --kv-cache-dtype float32 unless
    args name one; a run on a device other than the
    CPU must say so on stderr ("cuda backend"), or it counts as a failure."""
    dev = device or DEVICE
    # The reference keeps K and V in full precision, so the engine does too: its default for
    # 16-bit weights is a bf16 cache (tested against f32 in tests/unit/test_model.c).
    if "--kv-cache-dtype" not in args:
        args = list(args) + ["--kv-cache-dtype", "float32"]
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


# LongRoPE under chunked prefill. False: a prompt's tokens use the long factors iff the whole
# prompt is longer than original_max_position_embeddings, however the engine chunks it
# (transformers' one-shot prefill; chunking changes nothing). True: per forward pass, from that
# step's largest position + 1 (transformers fed the same chunks with a KV cache). Decode is the
# same either way: a token at position p >= prompt length uses the long factors iff p + 1 > the
# original length. The engine (model.c upload_batch) implements False.
LONGROPE_PER_CHUNK = False


def ref_passes(ref, extra_args, n):
    """The forward passes that decide LongRoPE for an n-token sequence of `folio-engine logits`
    under extra_args (--chunk N: N tokens of each sequence per step; else one step), for the
    reference; None (one pass) for every other model, or without LONGROPE_PER_CHUNK."""
    if not getattr(ref, "longrope", False) or not LONGROPE_PER_CHUNK:
        return None
    args = list(extra_args)
    chunk = int(args[args.index("--chunk") + 1]) if "--chunk" in args else None
    return R.chunk_passes(n, chunk)


def compare_logits(res, engine, name, model_dir, ref, prompts, extra_args, tol, tmp):
    """One engine logits run vs the reference; one check line. Returns the logits (or None)."""
    tol = device_tol(model_dir, extra_args, tol)
    got = run_logits(res, engine, name, model_dir, prompts, ref.vocab, extra_args, tmp)
    if got is None:
        return None
    worst = (0.0, None)
    row = 0
    for si, p in enumerate(prompts):
        want = ref_logits_cached(ref, p, ref_passes(ref, extra_args, len(p)))
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
                       f"{first_bad_desc(got, prompts, ref, tol, extra_args)})")
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


def first_bad_desc(got, prompts, ref, tol, extra_args=()):
    """Where errors start: the first row over tol, per sequence."""
    parts = []
    row = 0
    for si, p in enumerate(prompts):
        want = ref_logits_cached(ref, p, ref_passes(ref, extra_args, len(p)))
        rel = (got[row:row + len(p)] - want).norm(dim=1) / want.norm(dim=1)
        over = (rel > tol).nonzero()
        if over.numel():
            parts.append(f"seq {si}: first bad pos {int(over[0])}, "
                         f"{int(over.numel())}/{len(p)} rows bad")
        row += len(p)
    return "; ".join(parts)


_ref_cache = {}


def ref_logits_cached(ref, ids, passes=None):
    if passes is not None and len(passes) <= 1:
        passes = None  # one pass: the default
    key = (id(ref), tuple(ids), tuple(passes) if passes else None)
    if key not in _ref_cache:
        _ref_cache[key] = R.logits(ref, ids, passes)
    return _ref_cache[key]


def ref_greedy(ref, prompt, n):
    """Greedy ids and the top1-top2 gap at each step (to explain a near-tie mismatch)."""
    seq = list(prompt)
    ids, gaps = [], []
    for _ in range(n):
        # `generate` prefills the prompt in one step, then decodes one token per step
        lg = R.logits(ref, seq, R.decode_passes(len(prompt), len(seq)))[-1]
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
    seq = list(prompt) + got[:-1]
    lg = R.logits(ref, seq, R.decode_passes(len(prompt), len(seq)))[len(prompt) - 1:]
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
    out.append(("qwen3-moe/BF16/2-shards", "gen", ("qwen3-moe", "BF16", 2, 202)))
    out.append(("gemma3-mm/F32/3-shards", "gen", ("gemma3-mm", "F32", 3, 203)))
    for m in ("stories260K", "aidreams260K"):
        out.append((m, "real", os.path.join(models, m)))
    return out


# ---------------------------------------------------------------------------------------------
# reference-only checks

REDUCTION_TOL = 1e-10  # max abs logit diff / max abs logit between two exact float64 paths
SENSITIVE = 1e-2       # a preset's feature must move some logits row by 100 x TOL or more
MOE_MARGIN = 1e-4      # router logit gap at the top-k boundary (fp32 errors are ~1e-6)
MOE_ARCHS = ("Qwen3MoeForCausalLM", "MixtralForCausalLM")


def _ref_model(tmp, preset, dtype="F32", seed=7):
    """(config dict, {name: float64 tensor}, {name: stored dtype}) of a fresh checkpoint."""
    d = os.path.join(tmp, f"ref_{preset}_{dtype}_{seed}")
    G.write_model(d, preset, dtype, seed, 1)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    raw = R.read_checkpoint(d)
    return cfg, {k: t for k, (_, t) in raw.items()}, {k: dt for k, (dt, _) in raw.items()}


def _ids(name, vocab, n=40):
    r = random.Random("ref:" + name)
    return [r.randrange(vocab) for _ in range(n)]


def _max_rel_abs(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _max_row_rel(a, b):
    return ((a - b).norm(dim=1) / b.norm(dim=1)).max().item()


def _same(res, name, got, want):
    d = _max_rel_abs(got, want)
    if d <= REDUCTION_TOL:
        res.ok(name, f"max abs diff / max abs logit {d:.1e}")
    else:
        res.fail(name, f"max abs diff / max abs logit {d:.3e} > {REDUCTION_TOL:g}")


def reduction_moe_vs_dense(res, name, tmp, preset):
    """A MoE whose experts are all expert 0 (renormalized top-k weights: any routing sums to 1)
    against the dense family with expert 0 as the MLP: Qwen3-MoE vs Qwen3 (the same module's
    dense branch), Mixtral vs Mistral (torch_llama.py's own path)."""
    cfg, T, dt = _ref_model(tmp, preset)
    arch = cfg["architectures"][0]
    T1, T2 = dict(T), {}
    for k, t in T.items():
        m = re.match(r"(model\.layers\.\d+\.)(mlp|block_sparse_moe)\.experts\.(\d+)\.(\w+)\.weight$", k)
        if m:
            T1[k] = T[k.replace(f"experts.{m.group(3)}.", "experts.0.")]
            if m.group(3) == "0":
                w = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}.get(m.group(4), m.group(4))
                T2[f"{m.group(1)}mlp.{w}.weight"] = T[k]
        elif not re.search(r"\.(mlp|block_sparse_moe)\.gate\.weight$", k):
            T2[k] = t
    if arch == "MixtralForCausalLM":
        dense_cfg = dict(cfg, architectures=["MistralForCausalLM"], model_type="mistral")
    else:
        dense_cfg = dict(cfg, architectures=["Qwen3ForCausalLM"], model_type="qwen3")
    moe = R.from_config_and_tensors(cfg, T1, dt)
    if getattr(moe, "norm_topk", True) is False:  # (Mixtral always renormalizes)
        raise ValueError(f"{preset}: needs norm_topk_prob true")
    dense = R.from_config_and_tensors(dense_cfg, T2, dt)
    ids = _ids(name, moe.vocab)
    _same(res, name, R.logits(moe, ids), R.logits(dense, ids))


def reduction_phi3_vs_mistral(res, name, tmp):
    """Phi-3 (full rotary, no RoPE scaling, window 8) with qkv_proj / gate_up_proj split into
    q/k/v and gate/up, run as MistralForCausalLM through torch_llama.py's own path."""
    cfg, T, dt = _ref_model(tmp, "phi3")
    c = cfg
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    D = c["hidden_size"] // H
    I = c["intermediate_size"]
    T2 = {}
    for k, t in T.items():
        if k.endswith("self_attn.qkv_proj.weight"):
            p = k[:-len("qkv_proj.weight")]
            T2[p + "q_proj.weight"] = t[:H * D]
            T2[p + "k_proj.weight"] = t[H * D:(H + KV) * D]
            T2[p + "v_proj.weight"] = t[(H + KV) * D:]
        elif k.endswith("mlp.gate_up_proj.weight"):
            p = k[:-len("gate_up_proj.weight")]
            T2[p + "gate_proj.weight"] = t[:I]
            T2[p + "up_proj.weight"] = t[I:]
        else:
            T2[k] = t
    mcfg = {k: c[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                              "num_attention_heads", "num_key_value_heads", "vocab_size",
                              "max_position_embeddings", "rms_norm_eps", "rope_theta",
                              "tie_word_embeddings", "sliding_window")}
    mcfg.update(architectures=["MistralForCausalLM"], model_type="mistral")
    assert c.get("rope_scaling") is None and c.get("partial_rotary_factor", 1.0) == 1.0
    phi = R.from_config_and_tensors(cfg, T, dt)
    mis = R.from_config_and_tensors(mcfg, T2, dt)
    ids = _ids(name, phi.vocab)
    _same(res, name, R.logits(phi, ids), R.logits(mis, ids))


def reduction_gemma2_caps(res, name, tmp):
    """Gemma 2 with soft-caps 1e9 and a window past the length against no caps, no window."""
    cfg, T, dt = _ref_model(tmp, "gemma2")
    big = dict(cfg, attn_logit_softcapping=1e9, final_logit_softcapping=1e9, sliding_window=10 ** 6)
    none = dict(cfg, attn_logit_softcapping=None, final_logit_softcapping=None, sliding_window=None)
    a = R.from_config_and_tensors(big, T, dt)
    b = R.from_config_and_tensors(none, T, dt)
    ids = _ids(name, a.vocab)
    _same(res, name, R.logits(a, ids), R.logits(b, ids))


def sensitivity_checks(res, tmp, want):
    """Each feature a preset exists for must change its logits by far more than TOL, or the
    engine comparison could not tell whether the engine implements it."""
    import copy

    def check(name, preset, change, dtype="F32", passes=(None, None), min_rel=SENSITIVE):
        if not want(name):
            return
        try:
            cfg, T, dt = _ref_model(tmp, preset, dtype)
            m = R.from_config_and_tensors(cfg, T, dt)
            m2 = copy.copy(m)
            m2.layers = [dict(L) for L in m.layers]
            change(m2)
            ids = _ids(name, m.vocab)
            rel = _max_row_rel(R.logits(m2, ids, passes[1]), R.logits(m, ids, passes[0]))
        except Exception as e:  # noqa: BLE001
            res.fail(name, f"{type(e).__name__}: {e}")
            return
        if rel >= min_rel:
            res.ok(name, f"max row rel change {rel:.2e}")
        else:
            res.fail(name, f"max row rel change {rel:.2e} < {min_rel:g}: the preset does not "
                           "exercise it")

    def no_window(m):
        for L in m.layers:
            L["window"] = None
        if hasattr(m, "window"):
            m.window = None

    def set_(attr, value):
        return lambda m: setattr(m, attr, value(m) if callable(value) else value)

    check("reference/sensitivity/gemma2-attn-softcap", "gemma2", set_("attn_cap", None))
    check("reference/sensitivity/gemma2-final-softcap", "gemma2", set_("final_cap", None))
    check("reference/sensitivity/gemma2-window", "gemma2", no_window)
    check("reference/sensitivity/gemma3-window", "gemma3", no_window)
    check("reference/sensitivity/gemma3-mm-window", "gemma3-mm", no_window)
    check("reference/sensitivity/gemma3-local-rope-base", "gemma3",
          set_("inv_freq_local", lambda m: m.inv_freq))
    check("reference/sensitivity/gemma3-global-rope-scaling", "gemma3",
          set_("inv_freq", lambda m: m.inv_freq * 8.0))
    check("reference/sensitivity/gemma3-mm-global-rope-scaling", "gemma3-mm",
          set_("inv_freq", lambda m: m.inv_freq * 8.0))
    # 16-bit embedding normalizer: sqrt(48) = 6.928 vs 6.9375 in bf16 (a 1.3e-3 change)
    check("reference/sensitivity/gemma2-bf16-normalizer", "gemma2",
          set_("normalizer", lambda m: m.hidden ** 0.5), dtype="BF16", min_rel=3 * TOL)
    check("reference/sensitivity/phi3-longrope-long-factors", "phi3-longrope",
          set_("long_inv", lambda m: m.short_inv))
    check("reference/sensitivity/phi3-longrope-attention-factor", "phi3-longrope",
          set_("attention_factor", 1.0))
    # How the passes decide LongRoPE: a 40-token prompt in one pass vs in chunks of 7
    # (LONGROPE_PER_CHUNK), and a 12-token prompt + 28 decoded tokens (keys 0-31 cached with
    # the short factors, 32+ long) vs all 40 in one pass.
    check("reference/sensitivity/phi3-longrope-one-shot-vs-chunk7", "phi3-longrope",
          lambda m: None, passes=(None, R.chunk_passes(40, 7)))
    check("reference/sensitivity/phi3-longrope-decode-passes", "phi3-longrope", lambda m: None,
          passes=(None, R.decode_passes(12, 40)))
    check("reference/sensitivity/phi3-window", "phi3", no_window)
    check("reference/sensitivity/qwen3-moe-step2-norm-topk", "qwen3-moe-step2",
          set_("norm_topk", True))


def reference_checks(res, tmp, only):
    """Reductions and sensitivity, reference only (no engine)."""
    def want(name):
        return (not only or only in name) and mine(name)

    for name, fn in (
            ("reference/reduction/qwen3-moe-identical-experts-vs-qwen3",
             lambda n: reduction_moe_vs_dense(res, n, tmp, "qwen3-moe")),
            ("reference/reduction/mixtral-identical-experts-vs-mistral",
             lambda n: reduction_moe_vs_dense(res, n, tmp, "mixtral")),
            ("reference/reduction/phi3-fused-vs-mistral-split",
             lambda n: reduction_phi3_vs_mistral(res, n, tmp)),
            ("reference/reduction/gemma2-huge-caps-vs-no-caps",
             lambda n: reduction_gemma2_caps(res, n, tmp))):
        if want(name):
            try:
                fn(name)
            except Exception as e:  # noqa: BLE001
                res.fail(name, f"{type(e).__name__}: {e}")
    sensitivity_checks(res, tmp, want)


def routing_check(res, name, ref, prompts, greedy_prompt):
    """MoE presets: over the test prompts and the reference's greedy run, every MoE layer must
    route to more than top_k distinct experts, and the router logits' gap between the k-th and
    (k+1)-th expert must stay above MOE_MARGIN (no fp32-vs-float64 flip)."""
    seqs = [list(p) for p in prompts]
    seqs.append(list(greedy_prompt) + R.greedy(ref, greedy_prompt, N_GREEDY))
    ref.routing = []  # (routing does not depend on passes: one forward per sequence)
    try:
        for p in seqs:
            R.logits(ref, p)
        used, margin = {}, {}
        for li, sel, lg in ref.routing:
            used.setdefault(li, set()).update(sel.flatten().tolist())
            top = torch.topk(lg, ref.top_k + 1, dim=-1).values
            gap = float((top[:, -2] - top[:, -1]).min()) if ref.top_k < lg.shape[1] else math.inf
            margin[li] = min(margin.get(li, math.inf), gap)
    finally:
        ref.routing = None
    desc = ", ".join(f"layer {li}: {len(used[li])} experts, gap {margin[li]:.1e}" for li in sorted(used))
    bad = [li for li in used if len(used[li]) <= ref.top_k or margin[li] < MOE_MARGIN]
    if not used:
        res.fail(name, "no MoE layer routed anything")
    elif bad:
        res.fail(name, f"top_k {ref.top_k}; {desc} (need > top_k experts and gap >= {MOE_MARGIN:g})")
    else:
        res.ok(name, f"top_k {ref.top_k}; {desc}")


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
    # (preset, length, chunk, seed, name). The newer families: windows over many KV blocks,
    # Gemma 3's local/global RoPE far out, MoE dispatch of 64-token chunks, LongRoPE on a prompt
    # prefilled in chunks of 16 that start below original_max_position_embeddings (32) and end
    # past it.
    longs = [(p, min(300, G.PRESETS[p]["max_position_embeddings"]), 128, 300, None)
             for p in ("llama3-rope", "llama-linear-rope", "qwen2-bias")]
    longs += [(p, n, c, 301, f"{p}/F32/long-{n}-chunk{c}")
              for p, n, c in (("gemma3", 200, 64), ("qwen3-moe", 200, 64), ("phi3-longrope", 100, 16),
                              ("phi3", 150, 32))]
    for preset, n, chunk, seed, name in longs:
        name = name or f"{preset}/F32/long-{n}"
        if not want(name):
            continue
        d = os.path.join(tmp, f"long_{preset}")
        G.write_model(d, preset, "F32", seed, 1)
        ref = R.load(d)
        r2 = random.Random(name)
        ids = [r2.randrange(ref.vocab) for _ in range(n)]
        compare_logits(res, engine, name, d, ref, [ids], ["--chunk", str(chunk), "--block-size", "16"],
                       TOL, tmp)
    # Batches of 8 mixed-length sequences, small chunks and blocks: MoE routing over tokens of
    # many sequences per step, windows across block edges.
    for preset in ("mixtral", "gemma2"):
        name = f"{preset}/F32/8-seqs-chunk3-block2"
        if not want(name):
            continue
        d = os.path.join(tmp, f"batch_{preset}")
        G.write_model(d, preset, "F32", 302, 1)
        ref = R.load(d)
        r2 = random.Random(name)
        seqs = [[r2.randrange(ref.vocab) for _ in range(r2.randint(1, 30))] for _ in range(8)]
        compare_logits(res, engine, name, d, ref, seqs, ["--chunk", "3", "--block-size", "2"], TOL, tmp)
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
    if not a.ref_only and not os.access(engine, os.X_OK):
        res.fail("engine", f"{engine} not found or not executable (set FOLIO_ENGINE)")
        print(f"{res.passed} passed, {res.failed} failed")
        return 1

    tmp = tempfile.mkdtemp(prefix="folio-check-")
    try:
        reference_checks(res, tmp, a.only)
        for name, kind, arg in cases(models):
            moe = kind == "gen" and G.PRESETS[arg[0]]["architectures"][0] in MOE_ARCHS
            if a.ref_only and not moe:
                continue
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
            if moe:
                routing_check(res, f"{name}/routing", ref, prompts, prompts[1][:12])
            if a.ref_only:
                continue
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
                                                            "llama-headdim", "qwen3-moe",
                                                            "gemma2"):
                if dt == "F32":
                    for flag, rnd in (("bfloat16", "bf16"), ("float16", "f16")):
                        rref = R.load(d, round_to=rnd)
                        compare_logits(res, engine, f"{name}/dtype-{flag}", d, rref, prompts,
                                       ["--dtype", flag, "--chunk", "7", "--block-size", "4"],
                                       TOL_ROUNDED, tmp)
                        compare_greedy(res, engine, f"{name}/dtype-{flag}/greedy", d, rref,
                                       prompts[1][:12], ["--dtype", flag])
                elif dt == "BF16":
                    compare_logits(res, engine, f"{name}/dtype-float32", d,
                                   R.load(d, round_to="f32"), prompts, ["--dtype", "float32"],
                                   TOL, tmp)
        if not a.ref_only:
            extra_checks(res, engine, models, tmp, a.only)
        if a.bench and not a.ref_only:
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
