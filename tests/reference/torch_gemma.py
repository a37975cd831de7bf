"""Float64 reference of Gemma2ForCausalLM, Gemma3ForCausalLM and the text model of
Gemma3ForConditionalGeneration (see torch_llama.py).

From transformers' modeling_gemma2.py / modeling_gemma3.py:
  - embeddings times sqrt(hidden_size), that normalizer a tensor of the embedding weight's dtype
    (Gemma2: torch.tensor(hidden**0.5, dtype=hidden_states.dtype); Gemma3:
    Gemma3TextScaledWordEmbedding's float32 buffer .to(weight.dtype)): rounded to bf16/f16 for
    a 16-bit checkpoint (the product is float64 here);
  - RMSNorm computed in float, scaled by (1 + w) (Gemma2RMSNorm / Gemma3RMSNorm), eps
    rms_norm_eps;
  - decoder layer ("sandwich"): r = x; h = input_layernorm(x); h = attn(h);
    h = post_attention_layernorm(h); x = r + h; r = x; h = pre_feedforward_layernorm(x);
    h = mlp(h); h = post_feedforward_layernorm(h); x = r + h;
  - MLP down(act(gate x) * up x), act = hidden_activation (gelu_pytorch_tanh);
  - attention: Gemma 3 applies q_norm / k_norm (the (1 + w) RMSNorm over head_dim) after the
    projections, before RoPE; scores = q.k * query_pre_attn_scalar^-1/2, then
    attn_logit_softcapping (cap * tanh(scores / cap)) when set, then the mask, softmax;
  - sliding layers: layer_types when the config lists them; else Gemma 2 every even layer,
    Gemma 3 layer i iff (i + 1) % sliding_window_pattern != 0; a sliding layer's query i sees
    keys i - sliding_window < j <= i;
  - RoPE: Gemma 2 rope_theta; Gemma 3 global layers rope_theta with rope_scaling, sliding
    layers rope_local_base_freq with no scaling (rotary_emb_local);
  - final model.norm ((1 + w)), LM head (tied by default), then final_logit_softcapping
    (cap * tanh(logits / cap)) when set.
Config defaults: Gemma2Config (soft-caps 50 / 30) and Gemma3TextConfig (no soft-caps, rope_theta
1e6, rope_local_base_freq 1e4, sliding_window_pattern 6). The multimodal checkpoint keeps its
text fields in text_config and its tensors under language_model.model.*; the vision tower and
projector are not read.
"""
import math

import torch

import torch_llama as R

GEMMA2_DEFAULTS = {
    "vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216,
    "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False,
    "query_pre_attn_scalar": 256, "sliding_window": 4096, "final_logit_softcapping": 30.0,
    "attn_logit_softcapping": 50.0, "tie_word_embeddings": True, "layer_types": None,
}
GEMMA3_DEFAULTS = {
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
    "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
    "rope_scaling": None, "attention_bias": False, "query_pre_attn_scalar": 256,
    "sliding_window": 4096, "sliding_window_pattern": 6, "final_logit_softcapping": None,
    "attn_logit_softcapping": None, "tie_word_embeddings": True, "layer_types": None,
}
ROUND = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def text_config(cfg):
    """(resolved text config, tensor-name prefix) for any of the three architectures."""
    arch = cfg["architectures"][0]
    if arch == "Gemma3ForConditionalGeneration":
        c = dict(GEMMA3_DEFAULTS)
        c.update(cfg.get("text_config") or {})
        if "tie_word_embeddings" not in (cfg.get("text_config") or {}):
            c["tie_word_embeddings"] = cfg.get("tie_word_embeddings", True)
        return c, "language_model."
    c = dict(GEMMA2_DEFAULTS if arch == "Gemma2ForCausalLM" else GEMMA3_DEFAULTS)
    c.update(cfg)
    return c, ""


def sliding_layers(c, gemma3):
    n = c["num_hidden_layers"]
    if c.get("layer_types"):
        if len(c["layer_types"]) != n:
            raise ValueError("layer_types must list every layer")
        return [t == "sliding_attention" for t in c["layer_types"]]
    if gemma3:
        return [(i + 1) % c["sliding_window_pattern"] != 0 for i in range(n)]
    return [i % 2 == 0 for i in range(n)]


def build(cfg, T, dtypes):
    arch = cfg["architectures"][0]
    gemma3 = arch != "Gemma2ForCausalLM"
    c, pre = text_config(cfg)
    if c["hidden_activation"] not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise ValueError(f"hidden_activation {c['hidden_activation']} not modelled")
    m = R.shaped_model(c)
    m.longrope = False
    m.gemma3 = gemma3
    m.text_cfg = c
    m.scale = float(c["query_pre_attn_scalar"]) ** -0.5
    m.attn_cap = c.get("attn_logit_softcapping")
    m.final_cap = c.get("final_logit_softcapping")
    m.inv_freq = R.rope_inv_freq(c, m.head_dim)  # Gemma 2, and Gemma 3's global layers
    D = m.head_dim
    m.inv_freq_local = 1.0 / (float(c.get("rope_local_base_freq") or 10000.0)
                              ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    en = pre + "model.embed_tokens.weight"
    m.embed = T[en]
    emb_dtype = ROUND[dtypes.get(en, "F32")]
    m.normalizer = torch.tensor(m.hidden ** 0.5, dtype=torch.float32).to(emb_dtype).to(torch.float64)
    m.norm = T[pre + "model.norm.weight"]
    m.lm_head = m.embed if c["tie_word_embeddings"] else T[pre + "lm_head.weight"]
    sliding = sliding_layers(c, gemma3)
    m.layers = []
    for i in range(m.n_layers):
        p = f"{pre}model.layers.{i}."
        L = {k: T[p + k + ".weight"] for k in ("input_layernorm", "post_attention_layernorm",
                                               "pre_feedforward_layernorm",
                                               "post_feedforward_layernorm")}
        for w in ("q", "k", "v", "o"):
            L[w] = T[p + f"self_attn.{w}_proj.weight"]
        for w in ("gate", "up", "down"):
            L[w] = T[p + f"mlp.{w}_proj.weight"]
        if gemma3:
            L["q_norm"] = T[p + "self_attn.q_norm.weight"]
            L["k_norm"] = T[p + "self_attn.k_norm.weight"]
        L["sliding"] = sliding[i]
        L["window"] = c.get("sliding_window") if sliding[i] else None
        m.layers.append(L)
    return m


def gemma_norm(x, w, eps):
    """Gemma2RMSNorm / Gemma3RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w)."""
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * (1.0 + w)


def gelu_tanh(x):
    """gelu_pytorch_tanh."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def logits(m, ids, passes=None):
    n = ids.numel()
    H, KV, D = m.n_heads, m.n_kv, m.head_dim
    pos = torch.arange(n)
    rope_global = R.rope_cos_sin(pos, m.inv_freq)
    rope_local = R.rope_cos_sin(pos, m.inv_freq_local) if m.gemma3 else rope_global
    x = m.embed[ids] * m.normalizer
    for L in m.layers:
        r = x
        h = gemma_norm(x, L["input_layernorm"], m.eps)
        q = (h @ L["q"].T).view(n, H, D)
        k = (h @ L["k"].T).view(n, KV, D)
        v = (h @ L["v"].T).view(n, KV, D)
        if m.gemma3:
            q = gemma_norm(q, L["q_norm"], m.eps)
            k = gemma_norm(k, L["k_norm"], m.eps)
        cos, sin = rope_local if L["sliding"] else rope_global
        q = q * cos + R.rotate_half(q) * sin
        k = k * cos + R.rotate_half(k) * sin
        a = R.attend(q, k, v, R.causal_allowed(n, L["window"]), m.scale, m.attn_cap)
        h = a.reshape(n, H * D) @ L["o"].T
        x = r + gemma_norm(h, L["post_attention_layernorm"], m.eps)
        r = x
        h = gemma_norm(x, L["pre_feedforward_layernorm"], m.eps)
        h = (gelu_tanh(h @ L["gate"].T) * (h @ L["up"].T)) @ L["down"].T
        x = r + gemma_norm(h, L["post_feedforward_layernorm"], m.eps)
    x = gemma_norm(x, m.norm, m.eps)
    out = x @ m.lm_head.T
    if m.final_cap:
        out = torch.tanh(out / m.final_cap) * m.final_cap
    return out
