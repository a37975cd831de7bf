#!/usr/bin/python3
"""The PyTorch baseline of tests/gpu/bench_e2e.sh: greedy generation the way Hugging Face
transformers runs a Llama in eager mode, written in plain torch (no transformers needed).

What it does, as LlamaForCausalLM + generate() with the default DynamicCache and
attn_implementation="sdpa" do:
  - weights loaded from the checkpoint's safetensors (single file or sharded) in the compute
    dtype (bf16 by default on the GPU), nothing fused;
  - RMSNorm in fp32 then cast back (LlamaRMSNorm), RoPE cos/sin recomputed in fp32 every
    forward from the positions (LlamaRotaryEmbedding, llama3 / linear scaling), rotate-half;
  - one KV cache tensor pair per layer, [batch, kv_heads, len, head_dim], grown each step with
    torch.cat (DynamicCache.update); K/V repeated to the query heads (repeat_kv), then
    torch.nn.functional.scaled_dot_product_attention, causal for the prefill;
  - SwiGLU MLP, final norm, the LM head on the last position only (logits_to_keep=1), logits
    in fp32, argmax;
  - batch prefill of equal-length prompts (no padding), then one token per step for every
    sequence, ignoring EOS, with one host sync per step (generate's stopping-criteria check).
No CUDA graphs, no torch.compile, no static cache.

Usage:
  hf_generate.py --model DIR | --preset NAME [--dtype F32|F16|BF16]   (NAME: gen_checkpoint.py)
      [--device cuda|cpu] [--compute-dtype auto|float32|bfloat16|float16]
      [--batch 1,32,256] [--input-len 128] [--output-len 128] [--seed 0] [--no-warmup]
      [--prompt-ids "1,2,3;4,5,6"] [--check-tokens N]
Benchmark mode (no --prompt-ids): for each batch size, batch random prompts (ids uniform in
[min(300, V/2), V), as bench_serve), a warm-up of the same shape, then one timed generation:
    hf_generate: batch=B input_len=I output_len=O prefill_s=.. total_s=.. out_tps=.. device=..
--prompt-ids (equal-length prompts, one batch): prints `ids: a,b,...` per prompt, the greedy
continuation of --check-tokens (or --output-len) tokens, like `folio-engine generate --show-ids`.
Both may be given: the benchmark first, then the ids.
Run with /usr/bin/python3.
"""
import argparse
import json
import mmap
import os
import random
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
from torch_llama import rope_inv_freq  # noqa: E402  (llama3 / linear scaling, float64)

ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------
# checkpoint


def _read_file(path, device, dtype, out):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        # Copy-on-write map: torch.frombuffer wants a writable buffer; nothing is written back.
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    try:
        for name, info in header.items():
            if name == "__metadata__":
                continue
            st = ST_DTYPES.get(info["dtype"])
            if st is None:
                raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
            b, e = info["data_offsets"]
            count = 1
            for s in info["shape"]:
                count *= s
            t = torch.frombuffer(mm, dtype=st, count=count, offset=8 + n + b) if count else \
                torch.empty(0, dtype=st)
            out[name] = t.reshape(info["shape"]).to(device=device, dtype=dtype, copy=True)
            del t
    finally:
        try:
            mm.close()
        except BufferError:  # a view still alive; the map goes with the last reference
            pass


def load_tensors(d, device, dtype):
    out = {}
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for fn in files:
        _read_file(os.path.join(d, fn), device, dtype, out)
    return out


def stored_dtype(d):
    with open(os.path.join(d, "config.json")) as f:
        td = json.load(f).get("torch_dtype", "float32")
    return NAMES.get(td, torch.float32)


# ---------------------------------------------------------------------------------------------
# model


def rms_norm(x, w, eps):
    """LlamaRMSNorm: in fp32, cast back, then the weight."""
    dt = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def repeat_kv(x, n_rep):
    """[B, KV, L, D] -> [B, KV * n_rep, L, D], as transformers' repeat_kv (a copy)."""
    if n_rep == 1:
        return x
    B, KV, L, D = x.shape
    return x[:, :, None, :, :].expand(B, KV, n_rep, L, D).reshape(B, KV * n_rep, L, D)


_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def sdpa(q, k, v, causal, scale):
    """scale must be 1/sqrt(head_dim), SDPA's default (torch 2.0 has no scale argument)."""
    if _HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    # torch < 2.0 (e.g. Debian's 1.13 on a CPU test machine): SDPA's math path.
    s = (q @ k.transpose(-1, -2)).float() * scale
    if causal:
        Lq, Lk = q.shape[-2], k.shape[-2]
        s = s.masked_fill(torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).tril(Lk - Lq)
                          .logical_not(), float("-inf"))
    return (torch.softmax(s, dim=-1).to(q.dtype)) @ v


class Llama:
    def __init__(self, d, device, dtype):
        with open(os.path.join(d, "config.json")) as f:
            cfg = json.load(f)
        arch = (cfg.get("architectures") or ["?"])[0]
        if arch not in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"):
            raise ValueError(f"unsupported architecture {arch}")
        use_window = cfg.get("use_sliding_window", arch == "MistralForCausalLM")
        if use_window and cfg.get("sliding_window"):
            raise ValueError("sliding-window attention is not implemented here")
        self.cfg, self.device, self.dtype = cfg, device, dtype
        self.H = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads") or self.H
        self.D = cfg.get("head_dim") or cfg["hidden_size"] // self.H
        self.V = cfg["vocab_size"]
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.n_layers = cfg["num_hidden_layers"]
        T = load_tensors(d, device, dtype)
        self.embed = T["model.embed_tokens.weight"]
        self.norm = T["model.norm.weight"]
        tied = cfg.get("tie_word_embeddings", False) or "lm_head.weight" not in T
        self.lm_head = self.embed if tied else T["lm_head.weight"]
        self.layers = []
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            L = {"in_norm": T[p + "input_layernorm.weight"],
                 "post_norm": T[p + "post_attention_layernorm.weight"]}
            for w in ("q", "k", "v", "o"):
                L[w] = T[p + f"self_attn.{w}_proj.weight"]
                L[w + "_b"] = T.get(p + f"self_attn.{w}_proj.bias")
            for w in ("gate", "up", "down"):
                L[w] = T[p + f"mlp.{w}_proj.weight"]
            self.layers.append(L)
        # HF keeps inv_freq in fp32 (its llama3 scaling too); computed in float64 here, rounded.
        self.inv_freq = rope_inv_freq(cfg, self.D).to(torch.float32).to(device)
        self.weight_bytes = sum(t.numel() * t.element_size() for t in T.values())

    def rope(self, pos, dtype):
        """cos, sin [B, S, D] in dtype, from fp32 angles (LlamaRotaryEmbedding.forward)."""
        B = pos.shape[0]
        inv = self.inv_freq[None, :, None].float().expand(B, -1, 1)
        freqs = (inv @ pos[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward(self, ids, pos0, cache):
        """ids [B, S] at positions pos0.. (S > 1 only from an empty cache); cache: list of
        (k, v) or None per layer, updated in place. Returns fp32 logits [B, V] of the last
        position."""
        B, S = ids.shape
        if S > 1 and pos0 != 0:
            raise ValueError("prefill only from an empty cache")
        H, KV, D = self.H, self.KV, self.D
        x = F.embedding(ids, self.embed)
        pos = torch.arange(pos0, pos0 + S, device=ids.device)[None, :].expand(B, S)
        cos, sin = self.rope(pos, x.dtype)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, S, D]
        scale = D ** -0.5
        for i, L in enumerate(self.layers):
            residual = x
            h = rms_norm(x, L["in_norm"], self.eps)
            q = F.linear(h, L["q"], L["q_b"]).view(B, S, H, D).transpose(1, 2)
            k = F.linear(h, L["k"], L["k_b"]).view(B, S, KV, D).transpose(1, 2)
            v = F.linear(h, L["v"], L["v_b"]).view(B, S, KV, D).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache[i] is not None:  # DynamicCache.update
                k = torch.cat([cache[i][0], k], dim=-2)
                v = torch.cat([cache[i][1], v], dim=-2)
            cache[i] = (k, v)
            o = sdpa(q, repeat_kv(k, H // KV), repeat_kv(v, H // KV), S > 1, scale)
            o = o.transpose(1, 2).reshape(B, S, H * D)
            x = residual + F.linear(o, L["o"], L["o_b"])
            residual = x
            h = rms_norm(x, L["post_norm"], self.eps)
            x = residual + F.linear(F.silu(F.linear(h, L["gate"])) * F.linear(h, L["up"]), L["down"])
        x = rms_norm(x, self.norm, self.eps)
        return F.linear(x[:, -1, :], self.lm_head).float()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def generate(model, prompts, n_out):
    """Greedy: prompts [B, S] long on the model's device -> ids [B, n_out], and the seconds to
    the first token and in all (synchronized)."""
    dev = prompts.device
    B, S = prompts.shape
    cache = [None] * model.n_layers
    unfinished = torch.ones(B, dtype=torch.bool, device=dev)
    sync(dev)
    t0 = time.perf_counter()
    tok = model.forward(prompts, 0, cache).argmax(dim=-1)
    out = [tok]
    done = not bool(unfinished.any())  # generate()'s per-step check: one host sync
    t_first = time.perf_counter() - t0
    for step in range(1, n_out):
        if done:
            break
        tok = model.forward(tok[:, None], S + step - 1, cache).argmax(dim=-1)
        out.append(tok)
        done = not bool(unfinished.any())  # ignore_eos: never finishes before n_out
    ids = torch.stack(out, dim=1)
    sync(dev)
    return ids, t_first, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------


def random_prompts(batch, length, vocab, seed):
    r = random.Random(seed)
    lo = min(300, vocab // 2)
    return [[r.randrange(lo, vocab) for _ in range(length)] for _ in range(batch)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint dir")
    src.add_argument("--preset", help="gen_checkpoint.py preset, written to a temp dir")
    ap.add_argument("--dtype", default=None, help="--preset's stored dtype (F32|F16|BF16)")
    ap.add_argument("--gen-seed", type=int, default=1, help="--preset's weight seed")
    ap.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    ap.add_argument("--compute-dtype", default="auto",
                    help="auto (bfloat16 on cuda, the stored dtype on cpu)|float32|float16|bfloat16")
    ap.add_argument("--batch", default=None, help="batch sizes to time (1,32,256 without "
                    "--prompt-ids)")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--prompt-ids", default=None, help='"1,2,3;4,5,6": print their greedy ids')
    ap.add_argument("--check-tokens", type=int, default=0,
                    help="tokens to generate for --prompt-ids (default --output-len)")
    a = ap.parse_args()

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    tmp = None
    d = a.model
    if a.preset:
        import gen_checkpoint as G
        tmp = tempfile.mkdtemp(prefix="hf-generate-")
        d = os.path.join(tmp, a.preset)
        G.write_model(d, a.preset, a.dtype, a.gen_seed, 1)
    if a.compute_dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else stored_dtype(d)
    else:
        dtype = NAMES[a.compute_dtype]
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    t = time.perf_counter()
    model = Llama(d, device, dtype)
    sync(device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"hf_generate: {d}: {model.n_layers} layers, {model.weight_bytes / 2**20:.1f} MiB of "
          f"{str(dtype).replace('torch.', '')} weights on {device} ({dev_name}), loaded in "
          f"{time.perf_counter() - t:.1f} s; torch {torch.__version__}, attention "
          f"{'scaled_dot_product_attention' if _HAS_SDPA else 'math (no SDPA in this torch)'}",
          file=sys.stderr, flush=True)

    batches = a.batch if a.batch is not None else ("" if a.prompt_ids else "1,32,256")
    if batches:
        for B in [int(x) for x in batches.split(",") if x]:
            prompts = torch.tensor(random_prompts(B, a.input_len, model.V, a.seed + B),
                                   dtype=torch.long, device=device)
            if not a.no_warmup:
                generate(model, prompts, min(4, a.output_len))
            ids, t_first, total = generate(model, prompts, a.output_len)
            n = ids.numel()
            print(f"hf_generate: batch={B} input_len={a.input_len} output_len={a.output_len} "
                  f"out_tokens={n} prefill_s={t_first:.4f} total_s={total:.4f} "
                  f"out_tps={n / total:.1f} device={device.type} "
                  f"dtype={str(dtype).replace('torch.', '')}", flush=True)
            del ids, prompts
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if a.prompt_ids:
        rows = [[int(t) for t in s.split(",") if t.strip()] for s in a.prompt_ids.split(";")]
        if len({len(r) for r in rows}) != 1 or not rows[0]:
            ap.error("--prompt-ids: non-empty prompts of equal length (no padding here)")
        prompts = torch.tensor(rows, dtype=torch.long, device=device)
        ids, _, _ = generate(model, prompts, a.check_tokens or a.output_len)
        for r in ids.tolist():
            print("ids: " + ",".join(map(str, r)), flush=True)
    if tmp:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
