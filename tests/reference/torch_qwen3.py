"""Float64 reference of Qwen3ForCausalLM and Qwen3MoeForCausalLM (see torch_llama.py).

From transformers' modeling_qwen3.py / modeling_qwen3_moe.py:
  - decoder layer: x += o_proj(attn(input_layernorm(x))); x += mlp(post_attention_layernorm(x)),
    RMSNorm x * rsqrt(mean(x^2) + eps) * w;
  - attention: q/k/v/o projections (biases iff attention_bias), then per head RMSNorm over
    head_dim (self_attn.q_norm / k_norm, the same eps) BEFORE RoPE, rotate-half RoPE, scale
    head_dim^-1/2; a layer uses a sliding window iff use_sliding_window and sliding_window are
    set and layer_types calls it "sliding_attention" (by default: layer >= max_window_layers);
  - Qwen3-MoE: layer l is sparse iff l not in mlp_only_layers and num_experts > 0 and
    (l + 1) % decoder_sparse_step == 0, else a dense MLP of intermediate_size. The sparse block
    (Qwen3MoeSparseMoeBlock): router logits = mlp.gate(x), softmax over all experts (float),
    topk(num_experts_per_tok), divided by their sum iff norm_topk_prob, then
    out = sum_k w_k * down_k(silu(gate_k x) * up_k x) over the chosen experts.
Config defaults are Qwen3Config's / Qwen3MoeConfig's.
"""
import math

import torch

import torch_llama as R

QWEN3_DEFAULTS = {
    "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
    "head_dim": 128, "hidden_act": "silu", "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "rope_theta": 10000.0,
    "rope_scaling": None, "attention_bias": False, "use_sliding_window": False,
    "sliding_window": 4096, "max_window_layers": 28,
}
QWEN3_MOE_DEFAULTS = dict(QWEN3_DEFAULTS, **{
    "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 24,
    "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": None,
    "decoder_sparse_step": 1, "moe_intermediate_size": 768, "num_experts_per_tok": 8,
    "num_experts": 128, "norm_topk_prob": False, "mlp_only_layers": None,
})


def build(cfg, T, dtypes):
    moe = cfg["architectures"][0] == "Qwen3MoeForCausalLM"
    c = dict(QWEN3_MOE_DEFAULTS if moe else QWEN3_DEFAULTS)
    c.update({k: v for k, v in cfg.items()})
    if c.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {c['hidden_act']} not modelled")
    m = R.shaped_model(c)
    m.longrope = False
    m.inv_freq = R.rope_inv_freq(c, m.head_dim)
    window = c["sliding_window"] if c["use_sliding_window"] else None
    types = c.get("layer_types") or ["sliding_attention" if window is not None
                                     and i >= c["max_window_layers"] else "full_attention"
                                     for i in range(m.n_layers)]
    m.top_k = c.get("num_experts_per_tok")
    m.norm_topk = bool(c.get("norm_topk_prob"))
    m.embed = T["model.embed_tokens.weight"]
    m.norm = T["model.norm.weight"]
    m.lm_head = m.embed if c["tie_word_embeddings"] else T["lm_head.weight"]
    mlp_only = c.get("mlp_only_layers") or []
    m.layers = []
    for i in range(m.n_layers):
        p = f"model.layers.{i}."
        L = {"in_norm": T[p + "input_layernorm.weight"],
             "post_norm": T[p + "post_attention_layernorm.weight"],
             "q_norm": T[p + "self_attn.q_norm.weight"],
             "k_norm": T[p + "self_attn.k_norm.weight"],
             "window": window if types[i] == "sliding_attention" else None}
        for w in ("q", "k", "v", "o"):
            L[w] = T[p + f"self_attn.{w}_proj.weight"]
            L[w + "_b"] = T.get(p + f"self_attn.{w}_proj.bias") if c["attention_bias"] else None
        sparse = moe and (i not in mlp_only and c["num_experts"] > 0
                          and (i + 1) % c["decoder_sparse_step"] == 0)
        if sparse:
            L["router"] = T[p + "mlp.gate.weight"]
            L["experts"] = [tuple(T[f"{p}mlp.experts.{e}.{w}_proj.weight"]
                                  for w in ("gate", "up", "down"))
                            for e in range(c["num_experts"])]
        else:
            L["mlp"] = tuple(T[p + f"mlp.{w}_proj.weight"] for w in ("gate", "up", "down"))
        m.layers.append(L)
    m.routing = None  # set to [] to record (layer, selected [n, k], router logits [n, E])
    return m


def logits(m, ids, passes=None):
    n = ids.numel()
    H, KV, D = m.n_heads, m.n_kv, m.head_dim
    cos, sin = R.rope_cos_sin(torch.arange(n), m.inv_freq)
    x = m.embed[ids].clone()
    for li, L in enumerate(m.layers):
        h = R.rms_norm(x, L["in_norm"], m.eps)
        q, k, v = h @ L["q"].T, h @ L["k"].T, h @ L["v"].T
        if L["q_b"] is not None:
            q, k, v = q + L["q_b"], k + L["k_b"], v + L["v_b"]
        q = R.rms_norm(q.view(n, H, D), L["q_norm"], m.eps)
        k = R.rms_norm(k.view(n, KV, D), L["k_norm"], m.eps)
        v = v.view(n, KV, D)
        q = q * cos + R.rotate_half(q) * sin
        k = k * cos + R.rotate_half(k) * sin
        a = R.attend(q, k, v, R.causal_allowed(n, L["window"]), 1.0 / math.sqrt(D))
        a = a.reshape(n, H * D) @ L["o"].T
        if L["o_b"] is not None:  # Qwen3Attention: o_proj too has bias=attention_bias
            a = a + L["o_b"]
        x = x + a
        h = R.rms_norm(x, L["post_norm"], m.eps)
        x = x + (R.sparse_moe(m, li, h, L["router"], L["experts"], R.swiglu, m.norm_topk) if "router" in L else R.swiglu(h, L["mlp"]))
    x = R.rms_norm(x, m.norm, m.eps)
    return x @ m.lm_head.T
