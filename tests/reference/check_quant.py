#!/usr/bin/python3
"""Quantized weights: folio-engine against the float64 PyTorch reference, and the lossy modes.

Pre-quantized checkpoints (tests/reference/quantize_ref.py writes them from the formats' specs)
on two fixtures whose in_features are multiples of 128 (q-llama: Llama, F16, untied head;
q-qwen2: Qwen2 with q/k/v biases, BF16, tied head) and on stories260K (FP8 only: its
in_features 64 and 172 are not multiples of a group): AWQ (group 32/64/128), GPTQ (symmetric
and asymmetric, groups 32/64/128 and -1, desc_act with a random g_idx, the v1 zero-point
convention and GPTQModel's gptq_v2), FP8 (per tensor,
dynamic and static) and compressed-tensors FP8 (per channel and per tensor). Also the engine's
own `--quantization int8|int4|fp8` against the reference of the same quantization, emulated
bit for bit in float32 (quantize_ref.emulate_*), on the fixtures and stories260K.

Each: `folio-engine logits` (3 prompts as one batch, --chunk 7 --block-size 4) against the
reference built from the dequantized weights, every row within TOL (1e-4, per-row relative L2,
as check_models); and `generate` (32 tokens, temperature 0, --ignore-eos, --show-ids) must give
the reference's greedy ids.

Integer formats (AWQ, GPTQ, int8, int4) on the CPU multiply by activations quantized to int8
per block of 32 (quant_row_x8: d = amax / 127, q = round-half-even(x * 127 / amax); for GPTQ
act-order, blocks over the columns sorted stably by g_idx). The reference applies exactly that
to the input of every quantized Linear (and of the quantized LM head in --quantization int8 /
int4), in float64. That alone is not enough for fp32 tolerance: an activation whose
x * 127 / amax lies within fp32 noise of a rounding boundary (.5) may round the other way in
the engine (some are exact ties: with 16-bit weights the RMSNorm factor cancels out of
x / amax), and one such flip moves the logits by ~1e-3..1e-2, after which the next layers'
roundings cascade (measured: ~1e-2 on every later row; the activation quantization as a whole
moves them ~2e-2). So the comparison resolves those near-ties (resolve()): an element within
TIE_EPS (5e-4 of a quantum; the engine's fp32 error there is ~1e-5) of a boundary may round
either way. Rows are taken in order; at the first row off by more than TRIGGER (3e-6; clean
rows sit at 2-5e-7) the reference looks for the fewest flips (at most MAX_FLIPS, nearest to
the boundary first, re-detected on each path since a flip moves what follows it) among the
near-ties of that row and the two before it that bring every row so far back to fp32 noise,
or failing that within TOL. Every row must then match within TOL (1e-4). Nothing else is
adjusted, so a wrong flip cannot hide a weight error: a flip is one quantum of one element
that the reference itself found within TIE_EPS of the boundary, and a row further off than
FLIP_MAX (0.05) is not searched at all. Over 1,050 sequences of the integer variants (and 672
with FOLIO_CPU_ISA=avx2 / scalar) every row resolved (to ~1e-6), with ~0.5 flips a sequence.
The check line reports the flips. A greedy run that differs from the reference's greedy ids
(default roundings) is judged teacher-forced: the engine's logits on the prompt plus its own
tokens, resolved as above, must match within TOL, and each token must be the argmax of the
engine's row (batch invariance) and of the resolved reference's row.

Negative controls: checkpoints written with a wrong convention (AWQ without the column
interleave, in qweight or in qzeros; GPTQ zeros without the v1 -1) must NOT match: some row
must be off by more than NEG_MIN (0.05; measured ~1.0-1.7). A quant_method the engine does not
support (bitsandbytes) must make it exit non-zero naming it and the supported methods, and
malformed ones (REFUSE: an unsupported bits / group size / strategy, a tensor of the wrong
shape, a g_idx out of range, desc_act without g_idx, FP8 without weight_scale) must be
refused with an error, not loaded.

Lossy modes (--quantization int8 / int4 on stories260K and aidreams260K) against the
unquantized engine, teacher-forced on the unquantized engine's own greedy continuation (128
tokens for stories260K, 120 for aidreams260K, whose context is 128): top-1 agreement over the
predicted positions and mean KL(P_float || P_quant) (nats). The thresholds hold with a margin
over the measured values and sit well inside what a broken kernel gives (measured with the
reference: halves of a block swapped, KL 5.7-11; int4 zero point 7 instead of 8, KL 0.39-1.9
and top-1 0.35-0.76; int8 scales halved, KL 3.9-4.4):
    int8: top-1 >= 0.95, mean KL <= 0.01   (stories260K 0.984 / 5.8e-4, aidreams260K 0.992 / 1.9e-4)
    int4: top-1 >= 0.70, mean KL <= 0.2    (stories260K 0.828 / 8.5e-2, aidreams260K 0.942 / 1.9e-2)
and the README's greedy outputs of both models (40 tokens) still hold in int8 (they do not
in int4).

Reference-only checks (also --ref-only): pack/unpack round trips of AWQ's and GPTQ's packings,
their exact bit layouts (AWQ nibble k = column [0,2,4,6,1,3,5,7][k]; GPTQ sequential; GPTQ
symmetric zeros stored as 0x77777777), that decoding with the wrong interleave or zero offset
gives different weights, e4m3 encode/decode, and that each written checkpoint decodes by the
spec (quantize_ref.load_dequantized) to exactly the weights it was meant to hold.

Prints `ok NAME` / `FAIL NAME: detail` per check and ends with `N passed, N failed`; exits 1
on any failure. Env: FOLIO_ENGINE (default build/release/folio-engine), FOLIO_TEST_MODELS.
Options: --only SUBSTR, --keep, --ref-only.
Run: /usr/bin/python3 tests/reference/check_quant.py
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import torch_llama as R  # noqa: E402
import gen_checkpoint as G  # noqa: E402
import quantize_ref as Q  # noqa: E402
import check_models as CM  # noqa: E402

TOL = 1e-4          # per-row relative L2 error (engine fp32 vs float64 reference)
TIE_EPS = 5e-4      # activation near-tie: |frac(x * 127 / amax) - 0.5| below this
MAX_FLIPS = 3       # roundings the engine may take the other way within the rows searched at once
SEARCH_BUDGET = 64  # reference forwards per search depth
TRIGGER = 3e-6      # a row error that starts a search for flipped roundings (clean rows: 2-5e-7)
FLIP_MAX = 0.05     # a row further off than this is not a matter of a few roundings
NEG_MIN = 0.05      # a wrong-convention checkpoint must be at least this far off somewhere
N_GREEDY = 32
# Every engine run: an fp32 KV cache (auto would be bf16 for 16-bit and quantized checkpoints,
# whose rounding is --kv-cache-dtype's own test, not this one's).
ENGINE_ARGS = ["--kv-cache-dtype", "float32"]
LOSSY = {"int8": (0.95, 0.01), "int4": (0.70, 0.2)}  # (min top-1 agreement, max mean KL)

# Fixtures: every in_features (hidden 128, heads x head_dim 128, intermediate 256 / 384) is a
# multiple of 128, every out_features of 8.
G.PRESETS["q-llama"] = G._llama(hidden_size=128, intermediate_size=256, num_attention_heads=4,
                                num_key_value_heads=2, tie_word_embeddings=False)
G.PRESETS["q-qwen2"] = {**G.PRESETS["qwen2-bias"], "hidden_size": 128, "intermediate_size": 384}
FIXTURES = {"q-llama": ("F16", 11), "q-qwen2": ("BF16", 12)}

# (name, source, format, options) for the pre-quantized checks.
VARIANTS = [
    ("awq-g128", "q-llama", "awq", {"group_size": 128}),
    ("awq-g32", "q-llama", "awq", {"group_size": 32}),
    ("gptq-sym-g128", "q-llama", "gptq", {"group_size": 128}),
    ("gptq-asym-g64-desc-act", "q-llama", "gptq", {"group_size": 64, "sym": False, "desc_act": True}),
    ("gptq-sym-gall", "q-llama", "gptq", {"group_size": -1}),
    ("fp8-dynamic", "q-llama", "fp8", {}),
    ("ct-fp8-channel", "q-llama", "ct-fp8", {"strategy": "channel"}),
    ("awq-g64", "q-qwen2", "awq", {"group_size": 64}),
    ("gptq-asym-g32", "q-qwen2", "gptq", {"group_size": 32, "sym": False}),
    ("gptq-sym-g128-desc-act", "q-qwen2", "gptq", {"group_size": 128, "desc_act": True}),
    ("gptq-v2-asym-g64", "q-qwen2", "gptq", {"group_size": 64, "sym": False, "checkpoint_format": "gptq_v2"}),
    ("fp8-static", "q-qwen2", "fp8", {"static": True}),
    ("ct-fp8-tensor", "q-qwen2", "ct-fp8", {"strategy": "tensor"}),
    ("fp8-dynamic", "stories260K", "fp8", {}),
    ("ct-fp8-channel", "stories260K", "ct-fp8", {"strategy": "channel"}),
]
# The same checkpoints through the other CPU kernels (this host's default is its best ISA).
ISA_VARIANTS = {("awq-g128", "q-llama"), ("gptq-asym-g64-desc-act", "q-llama")}
NEGATIVE = [
    ("awq-no-interleave", "awq", {"group_size": 128}),
    ("awq-zeros-no-interleave", "awq", {"group_size": 32}),
    ("gptq-zeros-no-offset", "gptq", {"group_size": 64, "sym": False}),
]
# --quantization MODE against the emulated reference.
LOAD_QUANT = [("q-llama", "int8"), ("q-llama", "int4"), ("q-llama", "fp8"), ("q-qwen2", "int8"),
              ("q-qwen2", "int4"), ("stories260K", "int8"), ("stories260K", "int4")]
SITE = {"q": "qkv", "k": "qkv", "v": "qkv", "o": "o", "gate": "gu", "up": "gu", "down": "down"}
KEYS = ("q", "k", "v", "o", "gate", "up", "down")

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# the reference with activation quantization


class Emu:
    """Shared state of a reference model's quantized Linears during one forward. flips {(site,
    row, col): q}: the roundings the engine took the other way (site: the input a Linear
    quantizes: q, k and v share theirs, gate and up theirs, unless act-order gives each weight
    its own column order). ties: when recording, {row: [((call, row, col), key, the other q,
    distance from the boundary)]}."""

    def __init__(self):
        self.flips = {}
        self.ties = None
        self.calls = 0


class QLin:
    """A Linear whose input is quantized as the engine's int8 kernels do; `x @ lin.T` works as
    for a weight tensor (torch defers to __rmatmul__)."""

    def __init__(self, w, perm, site, emu):
        self.w, self.site, self.emu = w, site, emu
        self.perm = None if perm is None else torch.as_tensor(np.asarray(perm), dtype=torch.long)

    @property
    def T(self):
        return self

    def __rmatmul__(self, x):
        emu = self.emu
        call = emu.calls
        emu.calls += 1
        xp = x if self.perm is None else x[:, self.perm]
        n, K = xp.shape
        nb = (K + 31) // 32
        v = torch.zeros(n, nb * 32, dtype=x.dtype)
        v[:, :K] = xp
        v = v.view(n, nb * 32 // 32, 32)
        amax = v.abs().amax(dim=2, keepdim=True)
        u = (v * (127.0 / torch.where(amax > 0, amax, torch.ones_like(amax)))).reshape(n, -1)
        q = torch.round(u)
        dist = (u - torch.floor(u) - 0.5).abs()
        near = (dist < TIE_EPS).nonzero().tolist()
        for r, c in near:
            key = (self.site, r, c)
            lo = math.floor(u[r, c].item())
            other = lo + lo + 1 - int(q[r, c].item())
            if key in emu.flips:
                if emu.flips[key] in (lo, lo + 1):
                    q[r, c] = emu.flips[key]
            elif emu.ties is not None:
                lst = emu.ties.setdefault(r, [])
                if all(t[1] != key for t in lst):
                    lst.append(((call, r, c), key, other, float(dist[r, c])))
        y = (q.view(n, nb, 32) * (amax / 127.0)).reshape(n, nb * 32)[:, :K]
        if self.perm is not None:
            out = torch.empty_like(y)
            out[:, self.perm] = y
            y = out
        return y @ self.w.T


def build_ref(cfg, tensors, quant, act_quant, head=None):
    """The reference: tensors {name: float64 tensor} of the checkpoint, quant {X.weight: (W,
    perm)} the dequantized Linears, act_quant: int8 activations into them (and into head);
    head: quantized LM head weights, or None for the checkpoint's own head."""
    t = dict(tensors)
    for name, (w, _) in quant.items():
        t[name] = w
    m = R.from_config_and_tensors(cfg, t)
    m.emu = Emu() if act_quant else None
    for i, L in enumerate(m.layers):
        for key, ln in zip(KEYS, Q.LINEARS):
            name = f"model.layers.{i}.{ln}.weight"
            if act_quant and name in quant:
                perm = quant[name][1]
                if perm is not None and np.array_equal(np.asarray(perm), np.arange(len(perm))):
                    perm = None  # GPTQ without act-order: q, k and v share their input's blocks
                site = (i, SITE[key]) if perm is None else (i, key)
                L[key] = QLin(L[key], perm, site, m.emu)
    if head is not None:
        m.lm_head = QLin(head, None, ("head",), m.emu) if act_quant else head
    return m


def ref_forward(m, ids, flips=None, record=False):
    """(reference logits [n, V] with the given flipped roundings, the near-ties by row)."""
    if m.emu is None:
        return R.logits(m, ids), {}
    m.emu.flips = flips or {}
    m.emu.ties = {} if record else None
    m.emu.calls = 0
    out = R.logits(m, ids)
    ties, m.emu.ties = m.emu.ties, None
    return out, ties or {}


def row_errors(ref, got):
    return (got - ref).norm(dim=1) / ref.norm(dim=1)


def resolve(m, ids, got):
    """Match the engine's logits got [n, V] for one sequence: (per-row errors, flips, resolved
    reference logits, first row that no rounding choice brings within TOL, or None).

    Rows are taken in order. A row further off than TRIGGER (clean rows sit at fp32 noise,
    2-5e-7, and a flip whose effect on its own row is small, in a K/V, shows there first)
    starts a search for the flips that bring it and every row before it back to TRIGGER (or to
    TOL, for a row accepted above TRIGGER), else to TOL; a row within TOL that no flip explains
    is accepted as it is."""
    flips = {}
    ref, _ = ref_forward(m, ids, flips)
    err = row_errors(ref, got)
    if m.emu is None:
        over = (err > TOL).nonzero()
        return err, flips, ref, None if over.numel() == 0 else int(over[0])
    allow = torch.full_like(err, TRIGGER)
    while True:
        over = (err > allow).nonzero()
        if over.numel() == 0:
            return err, flips, ref, None
        bad = int(over[0])
        if float(err[bad]) > FLIP_MAX:
            return err, flips, ref, bad
        found = None
        for target in (TRIGGER, TOL):
            lim = allow[:bad + 1].clone()
            lim[bad] = target
            for back in (0, 1, 2):
                found = _search(m, ids[:bad + 1], got[:bad + 1], flips, range(max(0, bad - back), bad + 1), lim)
                if found is not None:
                    break
            if found is not None or float(err[bad]) <= TOL:
                break
        if found is None:
            if float(err[bad]) > TOL:
                return err, flips, ref, bad
            allow[bad] = TOL
            continue
        flips = found
        ref, _ = ref_forward(m, ids, flips)
        err = row_errors(ref, got)


def _search(m, ids, got, flips, rows, lim):
    """The fewest further flips, among the near-ties of `rows` (found again on each path,
    since a flip moves what follows it; the nearest to the boundary tried first), that bring
    every row r of ids within lim[r]; or None."""
    budget = [0]

    def limited(f, after, depth, limit):
        budget[0] -= 1
        ref, ties = ref_forward(m, ids, f, record=True)
        if bool((row_errors(ref, got) <= lim).all()):
            return f
        if depth >= limit or budget[0] <= 0:
            return None
        pending = sorted((t for r in rows for t in ties.get(r, []) if t[0] > after and t[1] not in f),
                         key=lambda t: t[3])
        for pos, key, other, _ in pending:
            res = limited({**f, key: other}, pos, depth + 1, limit)
            if res is not None:
                return res
            if budget[0] <= 0:
                return None
        return None

    # breadth in the number of flips: one flip anywhere first, then two, ...
    for limit in range(1, MAX_FLIPS + 1):
        budget[0] = SEARCH_BUDGET
        res = limited(dict(flips), (-1, -1, -1), 0, limit)
        if res is not None:
            return res
    return None


def ref_greedy(m, prompt, n):
    """The reference's greedy ids (default roundings) and the top-1/top-2 gaps."""
    if m.emu is not None:
        m.emu.flips, m.emu.ties = {}, None
    seq, ids, gaps = list(prompt), [], []
    for _ in range(n):
        lg = R.logits(m, seq)[-1]
        top = torch.topk(lg, 2)
        ids.append(int(top.indices[0]))
        gaps.append(float(top.values[0] - top.values[1]))
        seq.append(ids[-1])
    return ids, gaps


# ---------------------------------------------------------------------------------------------
# engine checks


def compare_logits(res, engine, name, d, ref, prompts, extra, tmp):
    """One `logits` run (--chunk 7 --block-size 4) against the reference, roundings resolved."""
    got = CM.run_logits(res, engine, name, d, prompts, ref.vocab,
                        ["--chunk", "7", "--block-size", "4"] + ENGINE_ARGS + list(extra), tmp)
    if got is None:
        return None
    worst, nflips, row = 0.0, 0, 0
    for si, p in enumerate(prompts):
        g = got[row:row + len(p)]
        row += len(p)
        err, flips, _, bad = resolve(ref, p, g)
        nflips += len(flips)
        if bad is not None:
            res.fail(name, f"seq {si} row {bad}: rel err {float(err[bad]):.3e} > {TOL:g}"
                           f" (max {float(err.max()):.3e}; {int((err > TOL).sum())}/{len(p)} rows over"
                           + (f"; {len(flips)} roundings resolved before it" if ref.emu else "") + ")")
            return None
        worst = max(worst, float(err.max()))
    res.ok(name, f"max rel err {worst:.2e}" + (f", {nflips} activation roundings flipped" if ref.emu else ""))
    return got


def compare_greedy(res, engine, name, d, ref, prompt, extra, tmp, want_text=None):
    rc, out, err, _ = CM.run_engine(engine, ["generate", "--model", d, "--prompt-ids", ",".join(map(str, prompt)),
                                             "--max-tokens", str(N_GREEDY), "--temperature", "0",
                                             "--ignore-eos", "--show-ids"] + ENGINE_ARGS + list(extra))
    if rc != 0 or CM.sanitizer_hit(err):
        res.fail(name, f"exit {rc}: {CM.stderr_tail(err)}")
        return
    lines = [ln for ln in out.splitlines() if ln.startswith("ids:")]
    try:
        got = [int(t) for t in lines[-1][4:].replace(" ", "").split(",") if t]
    except (IndexError, ValueError):
        res.fail(name, f"no parsable 'ids:' line: {out[-200:]!r}")
        return
    want, gaps = ref_greedy(ref, prompt, N_GREEDY)
    if got == want:
        res.ok(name, f"min top-2 gap {min(gaps):.3f}")
        return
    k = next(i for i in range(min(len(got), len(want)) + 1) if i >= len(got) or i >= len(want) or got[i] != want[i])
    if len(got) != N_GREEDY or ref.emu is None:
        res.fail(name, f"first mismatch at step {k}: got {got}, want {want} (reference gap there "
                       f"{gaps[k] if k < len(gaps) else float('nan'):.4f})")
        return
    # Teacher-forced: the engine's logits on its own tokens, roundings resolved.
    seq = list(prompt) + got[:-1]
    lg = CM.run_logits(res, engine, name + "/teacher-forced", d, [seq], ref.vocab, ENGINE_ARGS + list(extra), tmp)
    if lg is None:
        return
    e, flips, rref, bad = resolve(ref, seq, lg)
    rows = range(len(prompt) - 1, len(seq))
    eng_arg = [int(lg[r].argmax()) for r in rows]
    ref_arg = [int(rref[r].argmax()) for r in rows]
    if bad is not None:
        res.fail(name, f"greedy differs from the reference at step {k} and teacher-forced row {bad} has rel err "
                       f"{float(e[bad]):.3e}; got {got}, want {want}")
    elif eng_arg != got:
        res.fail(name, f"generate's tokens are not the argmax of the engine's own logits rows (batch "
                       f"invariance): {got} vs {eng_arg}")
    elif ref_arg != got:
        j = next(i for i in range(N_GREEDY) if ref_arg[i] != got[i])
        res.fail(name, f"token {j}: engine {got[j]}, resolved reference {ref_arg[j]}; got {got}")
    else:
        res.ok(name, f"differs from the default-rounding greedy at step {k}; teacher-forced, every token is "
                     f"the reference's argmax with the engine's {len(flips)} flipped activation roundings")


def variant_ref(res, name, src, out, fmt, opts, tmp, wrong=None, decode_check=True):
    """Write the quantized checkpoint; (reference model, or None after a failure line)."""
    qr = Q.quantize_checkpoint(src, out, fmt, seed=zlib.crc32(name.encode()), wrong=wrong, **opts)
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    tensors = {k: t for k, (_, t) in R.read_checkpoint(src).items()}
    quant = {k: (w, qr.perms[k]) for k, w in qr.weights.items()}
    if decode_check:
        _, dt, dp = Q.load_dequantized(out)
        bad = [k for k in qr.weights if not torch.equal(dt[k], qr.weights[k])
               or (dp[k] is None) != (qr.perms[k] is None)
               or (dp[k] is not None and not np.array_equal(dp[k], qr.perms[k]))]
        if bad:
            res.fail(name + "/decode", f"{len(bad)} tensors decode differently, first {bad[0]}")
            return None
        res.ok(name + "/decode", f"{len(qr.weights)} Linears decode by the spec to the weights written")
    return build_ref(cfg, tensors, quant, fmt in ("awq", "gptq"))


def load_quant_ref(src, mode):
    """The reference of `--quantization mode` on the float checkpoint src."""
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    tensors = {k: t for k, (_, t) in R.read_checkpoint(src).items()}
    quant = {k: (torch.from_numpy(Q.EMULATE[mode](t.numpy())), None) for k, t in tensors.items()
             if Q._is_linear(k)}
    head = tensors.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = tensors["model.embed_tokens.weight"]
    head = torch.from_numpy(Q.EMULATE[mode](head.numpy()))
    return build_ref(cfg, tensors, quant, mode != "fp8", head)


def source_dir(models, tmp, src):
    if src in FIXTURES:
        d = os.path.join(tmp, src)
        if not os.path.exists(os.path.join(d, "model.safetensors")):
            dt, seed = FIXTURES[src]
            G.write_model(d, src, dt, seed, 1)
        return d
    return os.path.join(models, src)


def prompts_for(name, vocab, real):
    return CM.make_prompts(name, vocab, 1 if real else None)


def negative_check(res, engine, name, d, ref, prompts, tmp):
    got = CM.run_logits(res, engine, name, d, prompts, ref.vocab, ENGINE_ARGS, tmp)
    if got is None:
        return
    row, errs = 0, []
    for p in prompts:
        want, _ = ref_forward(ref, p)
        errs.append(row_errors(want, got[row:row + len(p)]))
        row += len(p)
    e = torch.cat(errs)
    if float(e.max()) > NEG_MIN:
        res.ok(name, f"wrong convention detected: rel err max {float(e.max()):.2f}, median {float(e.median()):.2f}")
    else:
        res.fail(name, f"a checkpoint with a wrong convention matched the reference (max rel err "
                       f"{float(e.max()):.2e} <= {NEG_MIN}): the comparison is not sensitive to it")


def unsupported_check(res, engine, models, tmp):
    name = "unsupported/bitsandbytes"
    src = source_dir(models, tmp, "q-llama")
    d = os.path.join(tmp, "bnb")
    os.makedirs(d, exist_ok=True)
    for fn in os.listdir(src):
        if fn != "config.json":
            shutil.copyfile(os.path.join(src, fn), os.path.join(d, fn))
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                  "bnb_4bit_quant_type": "nf4"}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    rc, _, err, _ = CM.run_engine(engine, ["logits", "--model", d, "--prompt-ids", "1,2,3",
                                           "--out", os.path.join(tmp, "bnb.bin")])
    low = err.lower()
    missing = [w for w in ("bitsandbytes", "awq", "gptq", "fp8", "compressed-tensors") if w not in low]
    if rc in (None, 0) or CM.sanitizer_hit(err):
        res.fail(name, f"exit {rc}: the engine must refuse quant_method bitsandbytes")
    elif missing:
        res.fail(name, f"the message names no {missing}: {CM.stderr_tail(err)}")
    else:
        res.ok(name, CM.stderr_tail(err)[:160])


def _edit_checkpoint(d, cfg_fn=None, tensors_fn=None):
    if cfg_fn:
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        cfg_fn(cfg["quantization_config"])
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
    if tensors_fn:
        items = [(n,) + tuple(v) for n, v in sorted(Q.read_raw(d).items())]
        Q.write_raw(os.path.join(d, "model.safetensors"), tensors_fn(items))


def _set(key, value):
    return lambda qc: qc.__setitem__(key, value)


def _drop(suffix):
    return lambda items: [it for it in items if not it[0].endswith(suffix)]


def _poke_i32(suffix, index, value):
    def f(items):
        out = []
        for n, dt, shape, data in items:
            if n.endswith(suffix):
                a = np.frombuffer(data, dtype="<i4").copy()
                a[index] = value
                data = a.tobytes()
            out.append((n, dt, shape, data))
        return out
    return f


def _halve_rows(suffix):
    def f(items):
        out = []
        for n, dt, shape, data in items:
            if n.endswith(suffix):
                shape = [shape[0] // 2] + list(shape[1:])
                data = data[:len(data) // 2]
            out.append((n, dt, shape, data))
        return out
    return f


# Malformed or unsupported checkpoints the engine must refuse with a message (not load, not
# crash, and not compute something else): (name, format, options, config edit, tensors edit).
REFUSE = [
    ("awq-bits-8", "awq", {"group_size": 128}, _set("bits", 8), None),
    ("awq-group-96", "awq", {"group_size": 32}, _set("group_size", 96), None),
    ("awq-qweight-rows", "awq", {"group_size": 128}, None, _halve_rows("layers.0.mlp.gate_proj.qweight")),
    ("gptq-g_idx-out-of-range", "gptq", {"group_size": 64}, None,
     _poke_i32("layers.0.self_attn.q_proj.g_idx", 5, 1000)),
    ("gptq-desc-act-without-g_idx", "gptq", {"group_size": 64, "desc_act": True}, None,
     _drop("layers.1.mlp.down_proj.g_idx")),
    ("fp8-without-weight_scale", "fp8", {}, None, _drop("layers.0.mlp.up_proj.weight_scale")),
    ("ct-strategy-group", "ct-fp8", {"strategy": "channel"},
     lambda qc: qc["config_groups"]["group_0"]["weights"].__setitem__("strategy", "group"), None),
]


def refuse_checks(res, engine, models, tmp, want):
    for label, fmt, opts, cfg_fn, tensors_fn in REFUSE:
        name = f"refuse/{label}"
        if not want(name):
            continue
        d = os.path.join(tmp, "refuse-" + label)
        Q.quantize_checkpoint(source_dir(models, tmp, "q-llama"), d, fmt, **opts)
        _edit_checkpoint(d, cfg_fn, tensors_fn)
        rc, _, err, _ = CM.run_engine(engine, ["logits", "--model", d, "--prompt-ids", "1,2,3",
                                               "--out", os.path.join(tmp, "refuse.bin")] + ENGINE_ARGS)
        if CM.sanitizer_hit(err) or rc is None or rc < 0:
            res.fail(name, f"exit {rc}: {CM.stderr_tail(err)}")
        elif rc == 0:
            res.fail(name, "the engine loaded it (and computed with it) instead of refusing it")
        elif "error" not in err:
            res.fail(name, f"exit {rc} without an error message")
        else:
            res.ok(name, CM.stderr_tail(err)[:160])


# ---------------------------------------------------------------------------------------------
# lossy modes


def engine_ids(res, name, engine, d, prompt, n, extra=()):
    rc, out, err, _ = CM.run_engine(engine, ["generate", "--model", d, "--prompt-ids", ",".join(map(str, prompt)),
                                             "--max-tokens", str(n), "--temperature", "0", "--ignore-eos",
                                             "--show-ids"] + ENGINE_ARGS + list(extra))
    if rc != 0 or CM.sanitizer_hit(err):
        res.fail(name, f"exit {rc}: {CM.stderr_tail(err)}")
        return None
    lines = [ln for ln in out.splitlines() if ln.startswith("ids:")]
    if not lines:
        res.fail(name, "no 'ids:' line")
        return None
    return [int(t) for t in lines[-1][4:].replace(" ", "").split(",") if t]


def lossy_checks(res, engine, models, tmp, want):
    for model, prompt in (("stories260K", R.STORIES_PROMPT), ("aidreams260K", R.AIDREAMS_PROMPT)):
        names = [f"{model}/lossy-{mode}" for mode in LOSSY]
        if not any(want(n) for n in names):
            continue
        d = os.path.join(models, model)
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        V = cfg["vocab_size"]
        n = min(128, cfg["max_position_embeddings"] - len(prompt) - 1)
        text = engine_ids(res, names[0], engine, d, prompt, n)
        if text is None:
            continue
        seq = list(prompt) + text
        base = CM.run_logits(res, engine, names[0], d, [seq], V, ENGINE_ARGS, tmp)
        if base is None:
            continue
        rows = slice(len(prompt) - 1, len(seq) - 1)  # the positions that predicted text
        p = torch.log_softmax(base[rows], dim=1)
        for mode, name in zip(LOSSY, names):
            if not want(name):
                continue
            got = CM.run_logits(res, engine, name, d, [seq], V, ENGINE_ARGS + ["--quantization", mode], tmp)
            if got is None:
                continue
            q = torch.log_softmax(got[rows], dim=1)
            top1 = float((q.argmax(dim=1) == p.argmax(dim=1)).double().mean())
            kl = float((p.exp() * (p - q)).sum(dim=1).mean())
            min_top1, max_kl = LOSSY[mode]
            desc = f"top-1 agreement {top1:.3f} over {n} positions (>= {min_top1}), mean KL {kl:.2e} (<= {max_kl})"
            if top1 >= min_top1 and kl <= max_kl:
                res.ok(name, desc)
            else:
                res.fail(name, desc)
    # The README's greedy outputs, as a user runs them (default KV cache).
    for model, (prompt, n, text) in CM.KNOWN_TEXT.items():
        name = f"{model}/int8/readme-text"
        if not want(name):
            continue
        rc, out, err, _ = CM.run_engine(engine, ["generate", "--model", os.path.join(models, model),
                                                 "--prompt", prompt, "--max-tokens", str(n), "--temperature", "0",
                                                 "--quantization", "int8"])
        if rc != 0 or CM.sanitizer_hit(err):
            res.fail(name, f"exit {rc}: {CM.stderr_tail(err)}")
        elif out.rstrip("\n") == text:
            res.ok(name, "the README's greedy output holds in int8")
        else:
            res.fail(name, f"got {out!r}, want {text!r}")


# ---------------------------------------------------------------------------------------------
# reference-only checks


def check(res, name, cond, detail, extra=""):
    if cond:
        res.ok(name, extra)
    else:
        res.fail(name, detail)


def packing_checks(res, tmp, models):
    rng = np.random.default_rng(5)
    q = rng.integers(0, 16, size=(24, 64))
    for order, oname in ((Q.AWQ_ORDER, "awq"), (Q.PLAIN_ORDER, "sequential")):
        check(res, f"pack/{oname}-cols-round-trip", np.array_equal(Q.unpack_cols(Q.pack_cols(q, order), order), q),
              "unpack(pack(q)) != q")
    check(res, "pack/gptq-rows-round-trip", np.array_equal(Q.unpack_rows(Q.pack_rows(q.T)), q.T),
          "unpack(pack(q)) != q")
    cols = np.arange(8)[None, :]
    word = int(Q.pack_cols(cols).view(np.uint32)[0, 0])
    check(res, "pack/awq-interleave-layout", word == 0x75316420,
          f"columns 0..7 pack to {word:#010x}, want 0x75316420 (nibble k = column [0,2,4,6,1,3,5,7][k])")
    nib = [(word >> (4 * k)) & 15 for k in range(8)]
    check(res, "pack/awq-reverse-order", [nib[i] for i in Q.AWQ_REVERSE_ORDER] == list(range(8)),
          f"nibbles {nib} read in [0,4,1,5,2,6,3,7] order are not 0..7")
    word = int(Q.pack_rows(np.arange(8)[:, None]).view(np.uint32)[0, 0])
    check(res, "pack/gptq-rows-layout", word == 0x76543210, f"rows 0..7 pack to {word:#010x}, want 0x76543210")
    # Decoding with the wrong convention must change the weights (the engine checks' negative
    # controls show the same for the engine).
    W = R.read_checkpoint(source_dir(models, tmp, "q-llama"))["model.layers.0.mlp.up_proj.weight"][1].numpy()
    qq, z, s = Q.awq_quantize(W, 32)
    t = Q.awq_pack(qq, z, s)
    right = Q.awq_dequant(t["qweight"], t["qzeros"], t["scales"], 32)
    g = np.arange(W.shape[1]) // 32
    check(res, "pack/awq-decode", np.array_equal(right, (qq - z[g].T) * s[g].T), "decode != (q - z) * s")
    plain_q = Q.unpack_cols(t["qweight"], Q.PLAIN_ORDER).T
    plain_z = Q.unpack_cols(t["qzeros"], Q.PLAIN_ORDER)
    for what, wq, wz in (("qweight", plain_q, Q.unpack_cols(t["qzeros"]).astype(np.int64)),
                         ("qzeros", Q.unpack_cols(t["qweight"]).T, plain_z)):
        wrong = (wq - wz[g].T) * s[g].T
        frac = float((wrong != right).mean())
        check(res, f"pack/awq-no-interleave-in-{what}-differs", frac > 0.1,
              f"decoding {what} without the interleave changes only {frac:.1%} of the weights",
              f"{frac:.0%} of the weights change")
    for sym, gs in ((True, 128), (False, 64)):
        g_idx = Q.gptq_g_idx(W.shape[1], gs, not sym, np.random.default_rng(1))
        qq, z, s = Q.gptq_quantize(W, gs, sym, g_idx)
        t = Q.gptq_pack(qq, z, s, g_idx)
        right = Q.gptq_dequant(t["qweight"], t["qzeros"], t["scales"], g_idx)
        tag = "sym" if sym else "asym-desc-act"
        check(res, f"pack/gptq-{tag}-decode", np.array_equal(right, (qq - z[g_idx].T) * s[g_idx].T),
              "decode != (q - z) * s")
        if sym:
            zw = t["qzeros"].view(np.uint32)
            check(res, "pack/gptq-sym-zeros-0x77777777", bool((zw == 0x77777777).all()),
                  f"symmetric qzeros {zw.flatten()[:2]}, want 0x77777777")
        no_off = (Q.unpack_rows(t["qweight"]).T - Q.unpack_cols(t["qzeros"], Q.PLAIN_ORDER)[g_idx].T) * s[g_idx].T
        d = np.abs(no_off - right)
        check(res, f"pack/gptq-{tag}-no-zero-offset-differs", bool(np.allclose(d, s[g_idx].T)),
              "decoding without the +1 is not off by exactly one scale step")
    # e4m3
    b = np.arange(256, dtype=np.uint8)
    finite = b[~np.isnan(Q.E4M3)]
    check(res, "fp8/e4m3-round-trip", np.array_equal(Q.e4m3_encode(Q.e4m3_decode(finite)), finite),
          "encode(decode(b)) != b")
    cases = [(448.0, 0x7E), (1e6, 0x7E), (-1.0, 0xB8), (1.0, 0x38), (2.0 ** -9, 0x01), (2.0 ** -10, 0x00),
             (3 * 2.0 ** -10, 0x02), (1.0625, 0x38), (1.1875, 0x3A), (0.3, 0x2A)]
    got = [int(Q.e4m3_encode(np.array([v]))[0]) for v, _ in cases]
    check(res, "fp8/e4m3-rounding", got == [c for _, c in cases],
          f"got {[hex(x) for x in got]}, want {[hex(c) for _, c in cases]}")


def act_quant_matters(res, tmp, models):
    """The activation quantization moves the logits far more than TOL (so its emulation is
    what makes the integer formats' comparison tight)."""
    name = "reference/act-quant-emulation-matters"
    src = source_dir(models, tmp, "q-llama")
    out = os.path.join(tmp, "ref-act")
    qr = Q.quantize_checkpoint(src, out, "awq", group_size=128)
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    tensors = {k: t for k, (_, t) in R.read_checkpoint(src).items()}
    quant = {k: (w, None) for k, w in qr.weights.items()}
    a, b = build_ref(cfg, tensors, quant, True), build_ref(cfg, tensors, quant, False)
    p = CM.make_prompts(name, a.vocab)[0]
    e = row_errors(ref_forward(a, p)[0], ref_forward(b, p)[0])
    check(res, name, float(e.min()) > 10 * TOL, f"min rel diff {float(e.min()):.2e}",
          f"rel diff {float(e.min()):.1e}..{float(e.max()):.1e}")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--ref-only", action="store_true")
    a = ap.parse_args()
    engine = os.environ.get("FOLIO_ENGINE", os.path.join(ROOT, "build", "release", "folio-engine"))
    models = R.models_dir()
    res = CM.Results()
    t0 = time.time()

    def want(name):
        return not a.only or a.only in name

    tmp = tempfile.mkdtemp(prefix="folio-quant-")
    try:
        if want("pack/") or want("fp8/"):
            packing_checks(res, tmp, models)
        if want("reference/"):
            act_quant_matters(res, tmp, models)
        if not a.ref_only and not os.access(engine, os.X_OK):
            res.fail("engine", f"{engine} not found or not executable (set FOLIO_ENGINE)")
            a.ref_only = True
        for vname, src, fmt, opts in VARIANTS:
            name = f"{src}/{vname}"
            isa = [f"{name}/{i}" for i in ("avx2", "scalar") if (vname, src) in ISA_VARIANTS]
            if not (want(name) or any(want(n) for n in isa)):
                continue
            real = src not in FIXTURES
            out = os.path.join(tmp, name.replace("/", "_"))
            ref = variant_ref(res, name, source_dir(models, tmp, src), out, fmt, opts, tmp)
            if ref is None or a.ref_only:
                continue
            prompts = prompts_for(name, ref.vocab, real)
            if want(name):
                compare_logits(res, engine, f"{name}/logits", out, ref, prompts, [], tmp)
                gp = R.STORIES_PROMPT if src == "stories260K" else prompts[1][:12]
                compare_greedy(res, engine, f"{name}/greedy", out, ref, gp, [], tmp)
            for n in isa:
                if want(n):
                    os.environ["FOLIO_CPU_ISA"] = n.rsplit("/", 1)[1]
                    try:
                        compare_logits(res, engine, f"{n}/logits", out, ref, prompts, [], tmp)
                    finally:
                        del os.environ["FOLIO_CPU_ISA"]
        if not a.ref_only:
            for vname, fmt, opts in NEGATIVE:
                name = f"q-llama/negative/{vname}"
                if not want(name):
                    continue
                out = os.path.join(tmp, name.replace("/", "_"))
                ref = variant_ref(res, name, source_dir(models, tmp, "q-llama"), out, fmt, opts, tmp,
                                  wrong=vname, decode_check=False)
                negative_check(res, engine, name, out, ref, prompts_for(name, ref.vocab, False), tmp)
            if want("unsupported/"):
                unsupported_check(res, engine, models, tmp)
            refuse_checks(res, engine, models, tmp, want)
            for src, mode in LOAD_QUANT:
                name = f"{src}/--quantization-{mode}"
                if not want(name):
                    continue
                d = source_dir(models, tmp, src)
                ref = load_quant_ref(d, mode)
                real = src not in FIXTURES
                prompts = prompts_for(name, ref.vocab, real)
                compare_logits(res, engine, f"{name}/logits", d, ref, prompts, ["--quantization", mode], tmp)
                gp = R.STORIES_PROMPT if real else prompts[1][:12]
                compare_greedy(res, engine, f"{name}/greedy", d, ref, gp, ["--quantization", mode], tmp)
            lossy_checks(res, engine, models, tmp, want)
    finally:
        if a.keep:
            print(f"# kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    print(f"# {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
    print(f"{res.passed} passed, {res.failed} failed", flush=True)
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
