"""Float64 reference of MixtralForCausalLM (see torch_llama.py).

From transformers' modeling_mixtral.py: Mistral's decoder layer (RMSNorm, rotate-half RoPE,
grouped-query attention with scale head_dim^-1/2, no biases, a sliding window on every layer
when sliding_window is set: query i sees keys i - window < j <= i), and in place of the MLP a
block_sparse_moe (MixtralSparseMoeBlock): router logits = gate(x), softmax over the
num_local_experts (float), topk(num_experts_per_tok), ALWAYS renormalized to sum 1, then
out = sum_k w_k * w2_k(silu(w1_k x) * w3_k x) (w1 gate, w3 up, w2 down). router_jitter_noise
applies in training only. Config defaults are MixtralConfig's.
"""
import math

import torch

import torch_llama as R

MIXTRAL_DEFAULTS = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": None, "hidden_act": "silu", "max_position_embeddings": 4096 * 32,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "rope_theta": 1e6,
    "sliding_window": None, "num_experts_per_tok": 2, "num_local_experts": 8,
}


def build(cfg, T, dtypes):
    c = dict(MIXTRAL_DEFAULTS)
    c.update(cfg)
    if c.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {c['hidden_act']} not modelled")
    m = R.shaped_model(c)
    m.longrope = False
    m.inv_freq = R.rope_inv_freq(c, m.head_dim)
    m.window = c.get("sliding_window")
    m.top_k = c["num_experts_per_tok"]
    m.embed = T["model.embed_tokens.weight"]
    m.norm = T["model.norm.weight"]
    m.lm_head = m.embed if c["tie_word_embeddings"] else T["lm_head.weight"]
    m.layers = []
    for i in range(m.n_layers):
        p = f"model.layers.{i}."
        q = p + "block_sparse_moe."
        L = {"in_norm": T[p + "input_layernorm.weight"],
             "post_norm": T[p + "post_attention_layernorm.weight"],
             "router": T[q + "gate.weight"],
             "experts": [tuple(T[f"{q}experts.{e}.{w}.weight"] for w in ("w1", "w3", "w2"))
                         for e in range(c["num_local_experts"])]}
        for w in ("q", "k", "v", "o"):
            L[w] = T[p + f"self_attn.{w}_proj.weight"]
        m.layers.append(L)
    m.routing = None  # set to [] to record (layer, selected [n, k], router logits [n, E])
    return m


def logits(m, ids, passes=None):
    n = ids.numel()
    H, KV, D = m.n_heads, m.n_kv, m.head_dim
    cos, sin = R.rope_cos_sin(torch.arange(n), m.inv_freq)
    allowed = R.causal_allowed(n, m.window)
    x = m.embed[ids].clone()
    for li, L in enumerate(m.layers):
        h = R.rms_norm(x, L["in_norm"], m.eps)
        q = h @ L["q"].T
        k = h @ L["k"].T
        v = (h @ L["v"].T).view(n, KV, D)
        q = q.view(n, H, D)
        k = k.view(n, KV, D)
        q = q * cos + R.rotate_half(q) * sin
        k = k * cos + R.rotate_half(k) * sin
        a = R.attend(q, k, v, allowed, 1.0 / math.sqrt(D))
        x = x + a.reshape(n, H * D) @ L["o"].T
        x = x + R.sparse_moe(m, li, R.rms_norm(x, L["post_norm"], m.eps), L["router"], L["experts"], R.swiglu, True)
    x = R.rms_norm(x, m.norm, m.eps)
    return x @ m.lm_head.T
