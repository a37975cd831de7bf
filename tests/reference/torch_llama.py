#!/usr/bin/python3
"""Independent float64 reference forward pass for the checkpoint families Folio serves.

The ground truth that tests/reference/check_models.py compares folio-engine against. Written
from the math, not from Hugging Face transformers: RMSNorm, RoPE in the rotate-half layout
(first half / second half of head_dim) with llama3 and linear frequency scaling, grouped-query
causal attention, SwiGLU MLP, optional q/k/v biases (Qwen2), tied or untied output head.
Every weight is upcast exactly from its stored dtype (F32/F16/BF16) to float64, and all the
arithmetic happens in float64.

This file holds the Llama / Mistral / Qwen2 forward pass, the loader and the dispatch; the other
families live beside it, each written from the semantics of transformers' modeling_<family>.py
(module by module, defaults from its config class): torch_qwen3.py (Qwen3, Qwen3-MoE),
torch_mixtral.py, torch_gemma.py (Gemma 2, Gemma 3 text and the multimodal checkpoint's text
model), torch_phi3.py (fused projections, partial rotary, LongRoPE).

LongRoPE (Phi-3) picks its factors per forward pass from that pass's largest position, so a
sequence's result depends on how it was split into passes (a KV cache keeps the keys of earlier
passes). logits() takes `passes`, the lengths of the consecutive forward passes the sequence
was run in (default: one pass, a plain transformers forward); greedy() runs the prompt as one
pass and then one pass per generated token, as a KV-cache decode does. Every other family
ignores `passes` (its result does not depend on them).

It also carries a dependency-free safetensors reader (single file or sharded index), since
Debian's python3-torch has no safetensors package.

API:
    model = load(dir)                       # dir holds config.json + *.safetensors
    logits(model, ids, passes=None) -> torch.float64 [len(ids), vocab]
    greedy(model, ids, n) -> list of n generated ids (argmax, full recompute per step)
    chunk_passes(n, chunk) -> the passes of a prefill in chunks of `chunk` tokens

Command line (self-check against the known outputs of the shared models):
    /usr/bin/python3 tests/reference/torch_llama.py            # validates stories260K, aidreams260K
    /usr/bin/python3 tests/reference/torch_llama.py DIR 1,2,3 N # prints N greedy ids
Always run with /usr/bin/python3 (Debian's interpreter has torch and numpy).
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

LLAMA_ARCHS = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
# architecture -> module (imported when first used) with build(cfg, tensors, dtypes) -> Model
# and logits(model, ids, passes) -> float64 [n, vocab].
FAMILY_MODULES = {
    "Qwen3ForCausalLM": "torch_qwen3",
    "Qwen3MoeForCausalLM": "torch_qwen3",
    "MixtralForCausalLM": "torch_mixtral",
    "Gemma2ForCausalLM": "torch_gemma",
    "Gemma3ForCausalLM": "torch_gemma",
    "Gemma3ForConditionalGeneration": "torch_gemma",
    "Phi3ForCausalLM": "torch_phi3",
}
SUPPORTED_ARCHS = LLAMA_ARCHS + tuple(FAMILY_MODULES)

# ---------------------------------------------------------------------------------------------
# safetensors


def _read_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: truncated (no header length)")
        (n,) = struct.unpack("<Q", raw)
        hdr = f.read(n)
        if len(hdr) != n:
            raise ValueError(f"{path}: header length {n} past the end of the file")
    return json.loads(hdr.decode("utf-8")), 8 + n


def _to_f64(buf, dtype, shape):
    """bytes -> float64 torch tensor, converting exactly from the stored dtype."""
    if dtype == "F32":
        a = np.frombuffer(buf, dtype="<f4").astype(np.float64)
    elif dtype == "F16":
        a = np.frombuffer(buf, dtype="<f2").astype(np.float64)
    elif dtype == "BF16":
        u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
        a = u.view(np.float32).astype(np.float64)
    elif dtype == "F64":
        a = np.frombuffer(buf, dtype="<f8").astype(np.float64)
    else:
        raise ValueError(f"unsupported dtype {dtype}")
    return torch.from_numpy(a.reshape(shape).copy())


def read_safetensors(path, want=None):
    """Return {name: (dtype, float64 tensor)} for the tensors in one file (all, or `want`)."""
    header, data_start = _read_header(path)
    out = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            if want is not None and name not in want:
                continue
            b, e = info["data_offsets"]
            f.seek(data_start + b)
            buf = f.read(e - b)
            if len(buf) != e - b:
                raise ValueError(f"{path}: tensor {name} past the end of the file")
            out[name] = (info["dtype"], _to_f64(buf, info["dtype"], info["shape"]))
    return out


def read_checkpoint(d):
    """All tensors of a model dir (model.safetensors, or the shards of the index)."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        files = {}
        for name, fn in wm.items():
            files.setdefault(fn, set()).add(name)
        out = {}
        for fn, names in files.items():
            out.update(read_safetensors(os.path.join(d, fn), names))
        return out
    return read_safetensors(os.path.join(d, "model.safetensors"))


def bf16_round(t):
    """Round a float tensor to bfloat16 (nearest even), returned as float64."""
    return t.to(torch.float32).to(torch.bfloat16).to(torch.float64)


def fp16_round(t):
    return t.to(torch.float32).to(torch.float16).to(torch.float64)


# ---------------------------------------------------------------------------------------------
# model


class Model:
    pass


def rope_inv_freq(cfg, head_dim):
    """inv_freq[i] = 1/theta^(2i/d), i < d/2, then the configured scaling. float64 [d/2]."""
    theta = float(cfg.get("rope_theta", 10000.0))
    d = head_dim
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return inv
    if kind == "linear":
        # positions / factor  ==  inv_freq / factor
        return inv / float(rs["factor"])
    if kind == "llama3":
        factor = float(rs["factor"])
        lo = float(rs.get("low_freq_factor", 1.0))
        hi = float(rs.get("high_freq_factor", 4.0))
        old = float(rs["original_max_position_embeddings"])
        lo_wavelen = old / lo  # wavelengths longer than this: fully scaled by 1/factor
        hi_wavelen = old / hi  # wavelengths shorter than this: unchanged
        out = torch.empty_like(inv)
        for i in range(inv.numel()):
            f = inv[i].item()
            wavelen = 2.0 * math.pi / f
            if wavelen < hi_wavelen:
                out[i] = f
            elif wavelen > lo_wavelen:
                out[i] = f / factor
            else:
                # interpolate between the scaled and the unscaled frequency
                s = (old / wavelen - lo) / (hi - lo)
                out[i] = (1.0 - s) * f / factor + s * f
        return out
    raise ValueError(f"unsupported rope scaling {kind!r}")


def family_module(arch):
    import importlib
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(FAMILY_MODULES[arch])


def from_config_and_tensors(cfg, tensors, dtypes=None):
    """Build a Model from a config dict and {name: float64 tensor}; dtypes ({name: stored dtype,
    "F32"|"F16"|"BF16"}) matters to Gemma only (its embedding scale is rounded to the
    embedding's dtype); missing means F32."""
    arch = (cfg.get("architectures") or ["?"])[0]
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"unsupported architecture {arch}")
    if arch in FAMILY_MODULES:
        mod = family_module(arch)
        m = mod.build(cfg, tensors, dtypes or {})
        m.family = mod
        m.cfg = cfg
        m.arch = arch
        return m
    m = Model()
    m.family = None
    m.longrope = False
    m.cfg = cfg
    m.arch = arch
    m.hidden = cfg["hidden_size"]
    m.n_layers = cfg["num_hidden_layers"]
    m.n_heads = cfg["num_attention_heads"]
    m.n_kv = cfg.get("num_key_value_heads") or m.n_heads
    m.head_dim = cfg.get("head_dim") or m.hidden // m.n_heads
    m.vocab = cfg["vocab_size"]
    m.eps = float(cfg.get("rms_norm_eps", 1e-6))
    m.tied = bool(cfg.get("tie_word_embeddings", False))
    m.inv_freq = rope_inv_freq(cfg, m.head_dim)
    # Mistral applies sliding_window whenever it is set; Qwen2 only with use_sliding_window.
    use_window = cfg.get("use_sliding_window", arch == "MistralForCausalLM")
    m.window = cfg.get("sliding_window") if use_window else None
    T = tensors
    m.embed = T["model.embed_tokens.weight"]
    m.norm = T["model.norm.weight"]
    if "lm_head.weight" in T and not m.tied:
        m.lm_head = T["lm_head.weight"]
    else:
        m.lm_head = m.embed
    m.layers = []
    for i in range(m.n_layers):
        p = f"model.layers.{i}."
        L = {
            "in_norm": T[p + "input_layernorm.weight"],
            "post_norm": T[p + "post_attention_layernorm.weight"],
        }
        for w in ("q", "k", "v", "o"):
            L[w] = T[p + f"self_attn.{w}_proj.weight"]
            bname = p + f"self_attn.{w}_proj.bias"
            L[w + "_b"] = T.get(bname)
        for w in ("gate", "up", "down"):
            L[w] = T[p + f"mlp.{w}_proj.weight"]
        m.layers.append(L)
    return m


def load(d, round_to=None):
    """Load a model dir. round_to='bf16'|'f16' rounds every matrix (2-D weight) to that dtype
    first: the reference for `--dtype bfloat16|float16` on a float32 checkpoint. Vectors (norm
    weights, biases) keep their stored precision, as in folio-engine, where they always live
    in fp32. round_to='f32' (`--dtype float32` on a 16-bit checkpoint) changes no value but
    counts the matrices as float32, which Gemma's embedding normalizer follows (transformers
    rounds it to the dtype the weights are loaded in)."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    raw = read_checkpoint(d)
    tensors, dtypes = {}, {}
    for name, (dt, t) in raw.items():
        if round_to == "bf16" and t.dim() >= 2:
            t, dt = bf16_round(t), "BF16"
        elif round_to == "f16" and t.dim() >= 2:
            t, dt = fp16_round(t), "F16"
        elif round_to == "f32" and t.dim() >= 2:
            dt = "F32"
        tensors[name] = t
        dtypes[name] = dt
    m = from_config_and_tensors(cfg, tensors, dtypes)
    m.dir = d
    return m


def rms_norm(x, w, eps):
    # x: [n, hidden] float64
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def apply_rope(x, pos, inv_freq):
    """x: [n, heads, head_dim]; rotate-half layout: pairs (j, j + d/2)."""
    ang = pos.to(torch.float64)[:, None] * inv_freq[None, :]  # [n, d/2]
    cos = torch.cos(ang)[:, None, :].to(x.dtype)
    sin = torch.sin(ang)[:, None, :].to(x.dtype)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def silu(x):
    return x / (1.0 + torch.exp(-x))


def shaped_model(c):
    """A Model with the shape every family shares, from a config dict with its class's
    defaults filled in."""
    m = Model()
    m.hidden = c["hidden_size"]
    m.n_layers = c["num_hidden_layers"]
    m.n_heads = c["num_attention_heads"]
    m.n_kv = c.get("num_key_value_heads") or m.n_heads
    m.head_dim = c.get("head_dim") or m.hidden // m.n_heads
    m.vocab = c["vocab_size"]
    m.eps = float(c["rms_norm_eps"])
    return m


def swiglu(x, w):
    """The gated SiLU MLP: w = (gate, up, down) weights."""
    gate, up, down = w
    return (silu(x @ gate.T) * (x @ up.T)) @ down.T


def sparse_moe(m, li, x, router, experts, expert_fn, renormalize):
    """A softmax router's top-k experts (MixtralSparseMoeBlock, Qwen3MoeSparseMoeBlock):
    out[t] = sum of w[t, j] * expert_fn(x[t], experts[sel[t, j]]), the top-k softmax weights
    divided by their sum when renormalize. Records (layer, sel, router logits) in m.routing."""
    router_logits = x @ router.T                              # [n, E]
    probs = torch.softmax(router_logits, dim=-1)
    w, sel = torch.topk(probs, m.top_k, dim=-1)               # [n, k]
    if renormalize:
        w = w / w.sum(dim=-1, keepdim=True)
    if m.routing is not None:
        m.routing.append((li, sel.clone(), router_logits.clone()))
    out = torch.zeros_like(x)
    for e, ew in enumerate(experts):
        rows, slot = (sel == e).nonzero(as_tuple=True)
        if rows.numel():
            out[rows] += w[rows, slot][:, None] * expert_fn(x[rows], ew)
    return out


def causal_allowed(n, window=None):
    """[n, n] bool: query i sees key j iff j <= i, and i - window < j with a window (the sliding
    window of Mistral, Gemma, Phi-3: the last `window` positions, the query's own included)."""
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    ok = j <= i
    if window:
        ok &= j > i - window
    return ok


def attend(q, k, v, allowed, scale, softcap=None):
    """Eager grouped-query attention as transformers' eager_attention_forward, in float64:
    q [n, H, D], k and v [n, KV, D] (query head h reads KV head h // (H / KV), repeat_kv),
    scores q.k * scale, then softcap * tanh(scores / softcap) when softcap is set (Gemma),
    then the mask, softmax over the keys. Returns [n, H, D]."""
    H, KV = q.shape[1], k.shape[1]
    k = k.repeat_interleave(H // KV, dim=1)
    v = v.repeat_interleave(H // KV, dim=1)
    s = torch.einsum("ihd,jhd->hij", q, k) * scale
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    s = s.masked_fill(~allowed[None], float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("hij,jhd->ihd", p, v)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rope_cos_sin(pos, inv_freq):
    """cos, sin [n, 1, d] as transformers builds them: emb = cat(freqs, freqs); inv_freq is
    [d/2] or one row per position [n, d/2]."""
    freqs = pos.to(torch.float64)[:, None] * inv_freq  # [n, d/2] either way
    emb = torch.cat([freqs, freqs], dim=-1)
    return torch.cos(emb)[:, None, :], torch.sin(emb)[:, None, :]


def chunk_passes(n, chunk):
    """The forward passes of an n-token prefill in chunks of `chunk` tokens (None: one pass)."""
    if not chunk or chunk >= n:
        return [n] if n else []
    return [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])


def pass_ends(n, passes):
    """For each position, 1 + the largest position of the forward pass that computed it."""
    if passes is None:
        return torch.full((n,), n, dtype=torch.long)
    if sum(passes) != n or min(passes) < 1:
        raise ValueError(f"passes {passes} do not split {n} tokens")
    out, at = [], 0
    for p in passes:
        at += p
        out += [at] * p
    return torch.tensor(out, dtype=torch.long)


def logits(m, ids, passes=None):
    """float64 logits [len(ids), vocab] for one sequence starting at position 0, computed in
    the forward passes `passes` (token counts; default one pass), which only LongRoPE heeds."""
    ids = torch.tensor(list(ids), dtype=torch.long)
    n = ids.numel()
    if n == 0:
        return torch.zeros(0, m.vocab, dtype=torch.float64)
    if int(ids.max()) >= m.vocab or int(ids.min()) < 0:
        raise ValueError("token id out of range")
    if m.family is not None:  # the family's logits(m, ids, passes) takes the checked ids
        return m.family.logits(m, ids, passes)
    pos = torch.arange(n)
    H, KV, D = m.n_heads, m.n_kv, m.head_dim
    group = H // KV
    x = m.embed[ids].clone()  # [n, hidden]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    if m.window:
        # query i sees keys j with i - window < j <= i
        causal &= torch.ones(n, n, dtype=torch.bool).triu(-(m.window - 1))
    scale = 1.0 / math.sqrt(D)
    for L in m.layers:
        h = rms_norm(x, L["in_norm"], m.eps)
        q = h @ L["q"].T
        k = h @ L["k"].T
        v = h @ L["v"].T
        if L["q_b"] is not None:
            q = q + L["q_b"]
        if L["k_b"] is not None:
            k = k + L["k_b"]
        if L["v_b"] is not None:
            v = v + L["v_b"]
        q = apply_rope(q.view(n, H, D), pos, m.inv_freq)
        k = apply_rope(k.view(n, KV, D), pos, m.inv_freq)
        v = v.view(n, KV, D)
        out = torch.empty(n, H, D, dtype=q.dtype)
        for hh in range(H):
            kvh = hh // group
            s = (q[:, hh, :] @ k[:, kvh, :].T) * scale  # [n, n]
            s = s.masked_fill(~causal, float("-inf"))
            s = s - s.max(dim=-1, keepdim=True).values
            p = torch.exp(s)
            p = p / p.sum(dim=-1, keepdim=True)
            out[:, hh, :] = p @ v[:, kvh, :]
        attn = out.reshape(n, H * D) @ L["o"].T
        if L["o_b"] is not None:
            attn = attn + L["o_b"]
        x = x + attn
        h = rms_norm(x, L["post_norm"], m.eps)
        x = x + (silu(h @ L["gate"].T) * (h @ L["up"].T)) @ L["down"].T
    x = rms_norm(x, m.norm, m.eps)
    return x @ m.lm_head.T


def decode_passes(prompt_len, total):
    """The passes of a greedy run: the prompt in one, then one per generated token."""
    return [prompt_len] + [1] * (total - prompt_len)


def greedy(m, ids, n):
    seq = list(ids)
    out = []
    for _ in range(n):
        nxt = int(torch.argmax(logits(m, seq, decode_passes(len(ids), len(seq)))[-1]).item())
        out.append(nxt)
        seq.append(nxt)
    return out


# ---------------------------------------------------------------------------------------------
# self-check

STORIES_PROMPT = [1, 403, 407, 261, 378]
STORIES_40 = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
              410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394,
              261, 370, 432, 352, 266, 268, 388, 426]
AIDREAMS_PROMPT = [1, 303, 281, 269, 435, 447, 328]


def models_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "models"))
    if not os.path.isdir(default):
        default = "/work/shared/models"
    return os.environ.get("FOLIO_TEST_MODELS", default)


def self_check():
    md = models_dir()
    m = load(os.path.join(md, "stories260K"))
    got = greedy(m, STORIES_PROMPT, 40)
    ok = got == STORIES_40
    print(("ok" if ok else "FAIL") + " stories260K greedy 40" + ("" if ok else f": got {got}"))
    a = load(os.path.join(md, "aidreams260K"))
    aid = greedy(a, AIDREAMS_PROMPT, 40)
    print("aidreams260K greedy 40:", ",".join(map(str, aid)))
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 1:
        sys.exit(self_check())
    mdl = load(sys.argv[1])
    prompt = [int(t) for t in sys.argv[2].split(",")]
    print(",".join(map(str, greedy(mdl, prompt, int(sys.argv[3]) if len(sys.argv) > 3 else 32))))
