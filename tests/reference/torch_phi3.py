"""Float64 reference of Phi3ForCausalLM (see torch_llama.py).

From transformers' modeling_phi3.py and modeling_rope_utils.py:
  - decoder layer as Llama's: x += o_proj(attn(input_layernorm(x)));
    x += down_proj(mlp(post_attention_layernorm(x))), RMSNorm x * rsqrt(mean(x^2) + eps) * w;
  - fused projections: self_attn.qkv_proj [q_dim + 2 kv_dim, H] (rows: q, then k, then v),
    mlp.gate_up_proj [2 I, H] (rows: gate, then up): down(up * silu(gate));
  - partial rotary: rotary dim = int(head_dim * partial_rotary_factor); the first rotary dims
    of each q / k head rotate (rotate_half within them), the rest pass through;
  - LongRoPE (rope_scaling type "longrope", or its old name "su"):
    inv_freq = 1 / (ext * rope_theta^(arange(0, rot, 2) / rot)), ext = long_factor when the
    forward pass's seq_len = max(position_ids) + 1 exceeds original_max_position_embeddings,
    else short_factor; cos and sin are multiplied by the attention factor,
    rope_scaling.attention_factor or else sqrt(1 + ln(f) / ln(original)) for
    f = max_position_embeddings / original_max_position_embeddings > 1 (1 when f <= 1);
    original_max_position_embeddings is Phi3Config's attribute (default 4096), so it always
    exists for Phi-3;
  - attention scale head_dim^-1/2; a sliding window on every layer when sliding_window is set
    (query i sees keys i - window < j <= i).
The factors are decided per forward pass (see `passes` in torch_llama.py): a token computed in a
pass whose last position + 1 exceeds the original length uses the long factors for its q and k.
"""
import math

import torch

import torch_llama as R

PHI3_DEFAULTS = {
    "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": None,
    "hidden_act": "silu", "max_position_embeddings": 4096,
    "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False, "rope_theta": 10000.0, "rope_scaling": None,
    "partial_rotary_factor": 1.0, "sliding_window": None,
}


def build(cfg, T, dtypes):
    c = dict(PHI3_DEFAULTS)
    c.update(cfg)
    if c.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {c['hidden_act']} not modelled")
    m = R.shaped_model(c)
    m.window = c.get("sliding_window")
    m.rot = int(m.head_dim * float(c.get("partial_rotary_factor") or 1.0))
    base = float(c["rope_theta"])
    shape = torch.arange(0, m.rot, 2, dtype=torch.float64) / m.rot
    rs = c.get("rope_scaling")
    kind = (rs.get("rope_type", rs.get("type")) if rs else None) or "default"
    m.longrope = kind in ("longrope", "su")
    if m.longrope:
        orig = int(c["original_max_position_embeddings"])
        factor = c["max_position_embeddings"] / orig
        af = rs.get("attention_factor")
        if af is None:
            af = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
        m.original = orig
        m.attention_factor = float(af)
        m.short_inv = 1.0 / (torch.tensor(rs["short_factor"], dtype=torch.float64) * base ** shape)
        m.long_inv = 1.0 / (torch.tensor(rs["long_factor"], dtype=torch.float64) * base ** shape)
        if m.short_inv.numel() != m.rot // 2 or m.long_inv.numel() != m.rot // 2:
            raise ValueError("longrope factors must number rotary_dim / 2")
    elif kind == "default":
        m.attention_factor = 1.0
        m.inv_freq = 1.0 / base ** shape
    else:
        raise ValueError(f"Phi-3 rope_scaling {kind!r} not modelled")
    m.embed = T["model.embed_tokens.weight"]
    m.norm = T["model.norm.weight"]
    m.lm_head = m.embed if c["tie_word_embeddings"] else T["lm_head.weight"]
    m.layers = []
    for i in range(m.n_layers):
        p = f"model.layers.{i}."
        m.layers.append({
            "in_norm": T[p + "input_layernorm.weight"],
            "post_norm": T[p + "post_attention_layernorm.weight"],
            "qkv": T[p + "self_attn.qkv_proj.weight"],
            "o": T[p + "self_attn.o_proj.weight"],
            "gate_up": T[p + "mlp.gate_up_proj.weight"],
            "down": T[p + "mlp.down_proj.weight"],
        })
    return m


def inv_freq_rows(m, n, passes):
    """[n, rot/2]: each position's inverse frequencies (LongRoPE: per its forward pass)."""
    if not m.longrope:
        return m.inv_freq.expand(n, -1)
    long = R.pass_ends(n, passes) > m.original
    return torch.where(long[:, None], m.long_inv[None, :], m.short_inv[None, :])


def apply_partial_rope(x, cos, sin, rot):
    """Phi-3's apply_rotary_pos_emb: rotate the first `rot` dims of each head."""
    xr, xp = x[..., :rot], x[..., rot:]
    return torch.cat([xr * cos + R.rotate_half(xr) * sin, xp], dim=-1)


def logits(m, ids, passes=None):
    n = ids.numel()
    H, KV, D = m.n_heads, m.n_kv, m.head_dim
    cos, sin = R.rope_cos_sin(torch.arange(n), inv_freq_rows(m, n, passes))
    cos, sin = cos * m.attention_factor, sin * m.attention_factor
    allowed = R.causal_allowed(n, m.window)
    x = m.embed[ids].clone()
    for L in m.layers:
        h = R.rms_norm(x, L["in_norm"], m.eps)
        qkv = h @ L["qkv"].T
        q = qkv[:, :H * D].reshape(n, H, D)
        k = qkv[:, H * D:(H + KV) * D].reshape(n, KV, D)
        v = qkv[:, (H + KV) * D:].reshape(n, KV, D)
        q = apply_partial_rope(q, cos, sin, m.rot)
        k = apply_partial_rope(k, cos, sin, m.rot)
        a = R.attend(q, k, v, allowed, 1.0 / math.sqrt(D))
        x = x + a.reshape(n, H * D) @ L["o"].T
        h = R.rms_norm(x, L["post_norm"], m.eps)
        gate, up = (h @ L["gate_up"].T).chunk(2, dim=-1)
        x = x + (up * R.silu(gate)) @ L["down"].T
    x = R.rms_norm(x, m.norm, m.eps)
    return x @ m.lm_head.T
