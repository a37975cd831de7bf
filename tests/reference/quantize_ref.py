#!/usr/bin/python3
"""Reference quantizer: pre-quantized Hugging Face checkpoints (AWQ, GPTQ, FP8,
compressed-tensors FP8) written from a float checkpoint, from the formats' specs as AutoAWQ,
AutoGPTQ, llm-compressor and vLLM read them; and the matching decoders.

The formats (a quantized Linear `X` of weight W[out, in]; every other tensor, the embeddings,
lm_head, norms and biases, is copied byte for byte; tokenizer and generation files too):

AWQ (AutoAWQ GEMM, quant_method "awq", version "gemm", 4 bits, zero points):
    X.qweight int32 [in, out/8]        q[o, i] of column block o//8 in word [i, o//8]
    X.qzeros  int32 [in/gs, out/8]     z[g, o], packed the same way
    X.scales  f16   [in/gs, out]
    Each int32 packs 8 output columns, nibble k (bits 4k..4k+3) holding column AWQ_ORDER[k]
    of its 8 (so column c is in nibble AWQ_REVERSE_ORDER[c]): the interleave.
    W[o, i] = (q[o, i] - z[i // gs, o]) * s[i // gs, o].
GPTQ (AutoGPTQ, quant_method "gptq", 4 bits, checkpoint_format "gptq" = v1):
    X.qweight int32 [in/8, out]        nibble k of word [r, o] holds q[o, 8r + k] (along in)
    X.qzeros  int32 [groups, out/8]    nibble k of word [g, j] holds (z[g, 8j + k] - 1) & 15
    X.scales  f16   [groups, out]
    X.g_idx   int32 [in]               the group of each input column
    W[o, i] = (q[o, i] - (stored_z[g_idx[i], o] + 1)) * s[g_idx[i], o]: v1 stores zero - 1
    (symmetric checkpoints: z = 8, stored 7 = 0x77777777 per word); checkpoint_format
    "gptq_v2" (GPTQModel) stores the zero itself. group_size -1 is one group over all of
    `in`. desc_act (act-order): GPTQ quantizes the columns in a permuted order, so g_idx[c] =
    rank of c in that permutation // gs (here a random permutation).
    Since v1 cannot store a zero of 0 (it would wrap to 15 and read back as 16), the
    asymmetric quantizer keeps zeros in 1..15.
FP8 (quant_method "fp8", activation_scheme dynamic|static):
    X.weight F8_E4M3 [out, in], X.weight_scale f32 [] (per tensor); static adds
    X.input_scale f32 []. W = e4m3(byte) * weight_scale.
compressed-tensors (quant_method "compressed-tensors", format "float-quantized"):
    X.weight F8_E4M3 [out, in], X.weight_scale f32 [out, 1] (strategy channel) or [1]
    (tensor); "ignore": ["lm_head"].

Quantization is round-to-nearest (the format, not GPTQ's or AWQ's search, is under test):
asymmetric groups s = (max - min) / 15 rounded to f16, z = round(-min / s) clamped, q =
clamp(round(w / s) + z, 0, 15); symmetric GPTQ s = absmax / 7.5 (f16), z = 8; FP8 scale =
absmax / 448, bytes = e4m3(w / scale), round to nearest even, saturating.

`wrong` writes a deliberately broken checkpoint for negative controls (the intended weights
returned are the correct ones): "awq-no-interleave" (qweight nibbles in plain column order),
"awq-zeros-no-interleave" (qzeros likewise), "gptq-zeros-no-offset" (GPTQ zeros stored
in the other format's convention: without v1's -1, or with it in gptq_v2).

Also the emulations of folio-engine's own `--quantization int8|int4|fp8` weights (base/quant.c:
per-32-block Q8 and Q4 with f16 scales, FP8 with per-row absmax / 448), computed in float32
exactly as the C code does (check_quant.py's QLin emulates its int8 activations).

API:
    quantize_checkpoint(src, out, fmt, **opts) -> QuantResult (intended dequantized weights)
    load_dequantized(dir) -> (cfg, {name: float64 tensor}, {linear weight name: perm or None})
    pack_cols / unpack_cols / pack_rows / unpack_rows, e4m3_encode / e4m3_decode,
    emulate_q8 / emulate_q4 / emulate_fp8 (engine --quantization)
Command line:
    quantize_ref.py --src DIR --out DIR --format awq|gptq|fp8|ct-fp8 [--group-size N]
                    [--asym] [--desc-act] [--v2] [--strategy tensor|channel] [--static] [--seed N]
Always run with /usr/bin/python3 (Debian's interpreter has torch and numpy).
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_llama as R  # noqa: E402

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]          # nibble k holds column AWQ_ORDER[k] of its 8
AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]  # column c sits in nibble AWQ_REVERSE_ORDER[c]
PLAIN_ORDER = list(range(8))
LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
           "self_attn.qkv_proj", "mlp.gate_up_proj")  # Phi-3 fuses them
DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "F8_E4M3": 1, "F64": 8}
E4M3_MAX = 448.0

# ---------------------------------------------------------------------------------------------
# packing


def pack_cols(q, order=AWQ_ORDER):
    """int [R, C] of 4-bit values (C % 8 == 0) -> int32 [R, C/8]: nibble k of word [r, j]
    holds q[r, 8j + order[k]]."""
    q = np.asarray(q, dtype=np.int64)
    assert q.ndim == 2 and q.shape[1] % 8 == 0 and q.min() >= 0 and q.max() <= 15
    g = q.reshape(q.shape[0], -1, 8).astype(np.uint32)
    w = np.zeros(g.shape[:2], dtype=np.uint32)
    for k in range(8):
        w |= g[:, :, order[k]] << np.uint32(4 * k)
    return w.view(np.int32)


def unpack_cols(p, order=AWQ_ORDER):
    """The inverse of pack_cols: int32 [R, C/8] -> int64 [R, C]."""
    u = np.asarray(p, dtype=np.int32).view(np.uint32)
    out = np.zeros((u.shape[0], u.shape[1], 8), dtype=np.int64)
    for k in range(8):
        out[:, :, order[k]] = (u >> np.uint32(4 * k)) & np.uint32(15)
    return out.reshape(u.shape[0], -1)


def pack_rows(q):
    """int [R, C] of 4-bit values (R % 8 == 0) -> int32 [R/8, C]: nibble k of word [r, c]
    holds q[8r + k, c] (GPTQ's qweight, packed along in_features)."""
    q = np.asarray(q, dtype=np.int64)
    assert q.ndim == 2 and q.shape[0] % 8 == 0 and q.min() >= 0 and q.max() <= 15
    g = q.reshape(-1, 8, q.shape[1]).astype(np.uint32)
    w = np.zeros((g.shape[0], g.shape[2]), dtype=np.uint32)
    for k in range(8):
        w |= g[:, k, :] << np.uint32(4 * k)
    return w.view(np.int32)


def unpack_rows(p):
    u = np.asarray(p, dtype=np.int32).view(np.uint32)
    out = np.zeros((u.shape[0], 8, u.shape[1]), dtype=np.int64)
    for k in range(8):
        out[:, k, :] = (u >> np.uint32(4 * k)) & np.uint32(15)
    return out.reshape(-1, u.shape[1])


# ---------------------------------------------------------------------------------------------
# e4m3fn


def _e4m3_values():
    v = np.zeros(256, dtype=np.float64)
    for b in range(256):
        e, m = (b >> 3) & 15, b & 7
        if e == 15 and m == 7:
            v[b] = np.nan
        elif e == 0:
            v[b] = m * 2.0 ** -9
        else:
            v[b] = (1 + m / 8) * 2.0 ** (e - 7)
        if b & 0x80:
            v[b] = -v[b]
    return v


E4M3 = _e4m3_values()
_E4M3_POS = E4M3[:0x7F]  # bytes 0x00..0x7E: the finite non-negative values, increasing


def e4m3_decode(b):
    return E4M3[np.asarray(b, dtype=np.uint8)]


def e4m3_encode(x):
    """float array -> uint8 e4m3fn bytes: round to nearest, ties to the even byte, saturate at
    +-448 (as quant_f32_to_e4m3 and torch's float8_e4m3fn conversion with clamping)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.minimum(np.abs(x), E4M3_MAX)
    hi = np.clip(np.searchsorted(_E4M3_POS, a), 0, 0x7E)  # first value >= a
    lo = np.maximum(hi - 1, 0)
    dlo, dhi = a - _E4M3_POS[lo], _E4M3_POS[hi] - a
    pick = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    return (pick | np.where(np.signbit(x), 0x80, 0)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# safetensors with the quantized dtypes


def read_raw(d):
    """{name: (dtype, shape, bytes)} of a model dir (single file or sharded)."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        path = os.path.join(d, fn)
        header, start = R._read_header(path)
        with open(path, "rb") as f:
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                b, e = info["data_offsets"]
                f.seek(start + b)
                out[name] = (info["dtype"], list(info["shape"]), f.read(e - b))
    return out


def write_raw(path, items):
    """items: [(name, dtype, shape, bytes)] -> one safetensors file."""
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, dt, shape, data in items:
        n = DTYPE_BYTES[dt] * int(np.prod(shape, dtype=np.int64))
        assert n == len(data), (name, dt, shape, len(data))
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for _, _, _, data in items:
            f.write(data)


def raw_to_f64(dt, shape, data):
    return R._to_f64(data, dt, shape)


def raw_to_np(dt, shape, data):
    if dt == "I32":
        return np.frombuffer(data, dtype="<i4").reshape(shape).copy()
    if dt == "F8_E4M3":
        return np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()
    if dt == "F32":
        return np.frombuffer(data, dtype="<f4").reshape(shape).copy()
    if dt == "F16":
        return np.frombuffer(data, dtype="<f2").reshape(shape).copy()
    return raw_to_f64(dt, shape, data).numpy()


def _i32(a):
    return ("I32", list(a.shape), np.ascontiguousarray(a, dtype="<i4").tobytes())


def _f16(a):
    return ("F16", list(a.shape), np.ascontiguousarray(a, dtype="<f2").tobytes())


def _f32(a, shape=None):
    a = np.asarray(a, dtype="<f4")
    return ("F32", list(a.shape) if shape is None else list(shape), a.tobytes())


# ---------------------------------------------------------------------------------------------
# quantizers (weights W [out, in] float64 numpy)


def _asym_group(w, zmin=0):
    """w [out, n] of one group -> (q [out, n], z [out], s [out] f16-exact float64)."""
    mx = np.maximum(w.max(axis=1), 0.0)
    mn = np.minimum(w.min(axis=1), 0.0)
    s = ((mx - mn) / 15.0).clip(min=1e-5).astype(np.float16).astype(np.float64)
    z = np.clip(np.round(-mn / s), zmin, 15)
    q = np.clip(np.round(w / s[:, None]) + z[:, None], 0, 15)
    return q.astype(np.int64), z.astype(np.int64), s


def _sym_group(w):
    s = (np.abs(w).max(axis=1) / 7.5).clip(min=1e-5).astype(np.float16).astype(np.float64)
    z = np.full(w.shape[0], 8, dtype=np.int64)
    q = np.clip(np.round(w / s[:, None]) + 8, 0, 15)
    return q.astype(np.int64), z, s


def awq_quantize(W, gs):
    """-> (q [out, in], z [in/gs, out], s [in/gs, out]) integers and f16-exact scales."""
    out_f, in_f = W.shape
    assert in_f % gs == 0 and out_f % 8 == 0, (W.shape, gs)
    G = in_f // gs
    q = np.zeros(W.shape, dtype=np.int64)
    z = np.zeros((G, out_f), dtype=np.int64)
    s = np.zeros((G, out_f))
    for g in range(G):
        q[:, g * gs:(g + 1) * gs], z[g], s[g] = _asym_group(W[:, g * gs:(g + 1) * gs])
    return q, z, s


def awq_pack(q, z, s, order=AWQ_ORDER, zorder=AWQ_ORDER):
    return {"qweight": pack_cols(q.T, order), "qzeros": pack_cols(z, zorder),
            "scales": s.astype(np.float16)}


def awq_dequant(qweight, qzeros, scales, gs):
    """The spec's decode: W [out, in] float64."""
    q = unpack_cols(qweight).T                       # [out, in]
    z = unpack_cols(qzeros)                          # [G, out]
    s = np.asarray(scales, dtype=np.float64)         # [G, out]
    g = np.arange(q.shape[1]) // gs
    return (q - z[g].T) * s[g].T


def gptq_quantize(W, gs, sym, g_idx):
    """-> (q [out, in], z [G, out], s [G, out]); group g is the columns with g_idx == g."""
    out_f, in_f = W.shape
    G = int(g_idx.max()) + 1
    q = np.zeros(W.shape, dtype=np.int64)
    z = np.zeros((G, out_f), dtype=np.int64)
    s = np.zeros((G, out_f))
    for g in range(G):
        cols = np.nonzero(g_idx == g)[0]
        qq, z[g], s[g] = _sym_group(W[:, cols]) if sym else _asym_group(W[:, cols], zmin=1)
        q[:, cols] = qq
    return q, z, s


def gptq_g_idx(in_f, gs, desc_act, rng):
    gsz = in_f if gs == -1 else gs
    if not desc_act:
        return (np.arange(in_f) // gsz).astype(np.int32)
    rank = np.empty(in_f, dtype=np.int64)
    rank[rng.permutation(in_f)] = np.arange(in_f)
    return (rank // gsz).astype(np.int32)


def gptq_pack(q, z, s, g_idx, zero_offset=1):
    return {"qweight": pack_rows(q.T), "qzeros": pack_cols((z - zero_offset) & 15, PLAIN_ORDER),
            "scales": s.astype(np.float16), "g_idx": np.asarray(g_idx, dtype=np.int32)}


def gptq_dequant(qweight, qzeros, scales, g_idx, v2=False):
    """The spec's decode (v1: stored zero + 1; v2: the zero itself): W [out, in] float64."""
    q = unpack_rows(qweight).T                       # [out, in]
    z = unpack_cols(qzeros, PLAIN_ORDER) + (0 if v2 else 1)  # [G, out]
    s = np.asarray(scales, dtype=np.float64)
    g = np.asarray(g_idx, dtype=np.int64)
    return (q - z[g].T) * s[g].T


def gptq_perm(g_idx):
    """The engine's column order for act-order: the columns sorted by group, stably."""
    return np.argsort(np.asarray(g_idx), kind="stable")


def fp8_quantize(W, per_channel):
    """-> (bytes uint8 [out, in], scale float32 [out] or scalar)."""
    amax = np.abs(W).max(axis=1) if per_channel else np.abs(W).max()
    scale = np.maximum(amax / E4M3_MAX, 1e-12).astype(np.float32)
    b = e4m3_encode(W / (scale[:, None] if per_channel else scale).astype(np.float64))
    return b, scale


def fp8_dequant(b, scale):
    scale = np.asarray(scale, dtype=np.float64)
    v = e4m3_decode(b)
    return v * (scale.reshape(-1, 1) if scale.size > 1 else scale.reshape(()))


# ---------------------------------------------------------------------------------------------
# engine --quantization emulation (float32 throughout, as base/quant.c)


def _blocks(W32):
    rows, K = W32.shape
    nb = (K + 31) // 32
    pad = np.zeros((rows, nb * 32), dtype=np.float32)
    pad[:, :K] = W32
    return pad.reshape(rows, nb, 32)


def emulate_q8(W):
    """--quantization int8 of W [rows, K] -> the engine's dequantized weights, float64."""
    W32 = np.asarray(W, dtype=np.float32)
    v = _blocks(W32)
    amax = np.abs(v).max(axis=2, keepdims=True)
    d = (amax / np.float32(127.0)).astype(np.float16).astype(np.float32)
    inv = np.where(d > 0, np.float32(1.0) / np.where(d > 0, d, np.float32(1)), np.float32(0))
    q = np.clip(np.rint(v * inv), -127, 127)
    return (d.astype(np.float64) * q).reshape(W32.shape[0], -1)[:, :W32.shape[1]]


def emulate_q4(W):
    """--quantization int4: d = (signed extreme) / -8 in f16, q = round(w / d) + 8 in 0..15."""
    W32 = np.asarray(W, dtype=np.float32)
    v = _blocks(W32)
    idx = np.abs(v).argmax(axis=2)[..., None]       # the first of equal magnitudes, as the C loop
    ext = np.take_along_axis(v, idx, axis=2)
    d = (ext / np.float32(-8.0)).astype(np.float16).astype(np.float32)
    inv = np.where(d != 0, np.float32(1.0) / np.where(d != 0, d, np.float32(1)), np.float32(0))
    q = np.clip(np.rint(v * inv) + np.float32(8), 0, 15)
    return (d.astype(np.float64) * (q - 8)).reshape(W32.shape[0], -1)[:, :W32.shape[1]]


def emulate_fp8(W):
    """--quantization fp8: per row scale = absmax / 448 (1 for a zero row), byte = e4m3(w / s)."""
    W32 = np.asarray(W, dtype=np.float32)
    amax = np.abs(W32).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(E4M3_MAX), np.float32(1.0)).astype(np.float32)
    b = e4m3_encode((W32 / scale[:, None]).astype(np.float32))
    return e4m3_decode(b) * scale.astype(np.float64)[:, None]


EMULATE = {"int8": emulate_q8, "int4": emulate_q4, "fp8": emulate_fp8}


# ---------------------------------------------------------------------------------------------
# checkpoints


class QuantResult:
    """What a quantized checkpoint is meant to hold: weights {X.weight: float64 [out, in]}
    (the dequantized values), perms {X.weight: engine column order or None}."""

    def __init__(self):
        self.weights = {}
        self.perms = {}


def _is_linear(name):
    return name.endswith(".weight") and any(name.endswith(f".{ln}.weight") for ln in LINEARS)


def _copy_side_files(src, out):
    for fn in os.listdir(src):
        if fn in ("config.json", "model.safetensors.index.json") or fn.endswith(".safetensors"):
            continue
        p = os.path.join(src, fn)
        if os.path.isfile(p):
            shutil.copyfile(p, os.path.join(out, fn))


def quant_config(fmt, group_size=128, sym=True, desc_act=False, strategy="tensor", static=False,
                 checkpoint_format="gptq"):
    if fmt == "awq":
        return {"quant_method": "awq", "bits": 4, "group_size": group_size, "zero_point": True,
                "version": "gemm", "modules_to_not_convert": None}
    if fmt == "gptq":
        return {"quant_method": "gptq", "bits": 4, "group_size": group_size, "desc_act": desc_act,
                "sym": sym, "damp_percent": 0.01, "true_sequential": True, "static_groups": False,
                "checkpoint_format": checkpoint_format, "model_name_or_path": None,
                "model_file_base_name": None}
    if fmt == "fp8":
        return {"quant_method": "fp8", "activation_scheme": "static" if static else "dynamic"}
    if fmt == "ct-fp8":
        acts = None
        if strategy == "channel":
            acts = {"num_bits": 8, "type": "float", "strategy": "token", "symmetric": True,
                    "dynamic": True, "group_size": None, "observer": None}
        return {"quant_method": "compressed-tensors", "format": "float-quantized",
                "quantization_status": "compressed", "global_compression_ratio": None,
                "kv_cache_scheme": None, "ignore": ["lm_head"],
                "config_groups": {"group_0": {
                    "targets": ["Linear"],
                    "weights": {"num_bits": 8, "type": "float", "strategy": strategy,
                                "symmetric": True, "dynamic": False, "group_size": None,
                                "observer": "minmax"},
                    "input_activations": acts, "output_activations": None}}}
    raise ValueError(f"unknown format {fmt}")


def quantize_checkpoint(src, out, fmt, group_size=128, sym=True, desc_act=False, strategy="tensor",
                        static=False, seed=0, wrong=None, checkpoint_format="gptq"):
    """Write the quantized checkpoint of float model dir `src` into `out`; returns QuantResult.
    fmt: awq (group_size), gptq (group_size or -1, sym, desc_act, checkpoint_format gptq or
    gptq_v2), fp8 (static), ct-fp8
    (strategy tensor|channel). wrong: a negative control's broken convention (see the top)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = quant_config(fmt, group_size, sym, desc_act, strategy, static,
                                              checkpoint_format)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    _copy_side_files(src, out)
    for fn in os.listdir(out):
        if fn.endswith(".safetensors") or fn == "model.safetensors.index.json":
            os.remove(os.path.join(out, fn))
    rng = np.random.Generator(np.random.PCG64(seed))
    res = QuantResult()
    items = []
    for name, (dt, shape, data) in sorted(read_raw(src).items()):
        if not _is_linear(name):
            items.append((name, dt, shape, data))
            continue
        base = name[:-len(".weight")]
        W = raw_to_f64(dt, shape, data).numpy()
        perm = None
        if fmt == "awq":
            q, z, s = awq_quantize(W, group_size)
            t = awq_pack(q, z, s, PLAIN_ORDER if wrong == "awq-no-interleave" else AWQ_ORDER,
                         PLAIN_ORDER if wrong == "awq-zeros-no-interleave" else AWQ_ORDER)
            g = np.arange(W.shape[1]) // group_size
            deq = (q - z[g].T) * s[g].T
            items += [(base + ".qweight",) + _i32(t["qweight"]), (base + ".qzeros",) + _i32(t["qzeros"]),
                      (base + ".scales",) + _f16(t["scales"])]
        elif fmt == "gptq":
            g_idx = gptq_g_idx(W.shape[1], group_size, desc_act, rng)
            q, z, s = gptq_quantize(W, group_size, sym, g_idx)
            v2 = checkpoint_format == "gptq_v2"
            t = gptq_pack(q, z, s, g_idx, 0 if (wrong == "gptq-zeros-no-offset") != v2 else 1)
            deq = (q - z[g_idx].T) * s[g_idx].T
            perm = gptq_perm(g_idx)
            items += [(base + ".qweight",) + _i32(t["qweight"]), (base + ".qzeros",) + _i32(t["qzeros"]),
                      (base + ".scales",) + _f16(t["scales"]), (base + ".g_idx",) + _i32(t["g_idx"])]
        elif fmt in ("fp8", "ct-fp8"):
            chan = fmt == "ct-fp8" and strategy == "channel"
            b, scale = fp8_quantize(W, chan)
            deq = fp8_dequant(b, scale)
            items.append((name, "F8_E4M3", list(W.shape), b.tobytes()))
            if fmt == "fp8":
                items.append((base + ".weight_scale",) + _f32(scale, []))
                if static:  # folio ignores it (fp32 activations); a plausible value
                    items.append((base + ".input_scale",) + _f32(np.float32(0.05), []))
            else:
                items.append((base + ".weight_scale",) + _f32(scale, [W.shape[0], 1] if chan else [1]))
        else:
            raise ValueError(f"unknown format {fmt}")
        res.weights[name] = torch.from_numpy(np.ascontiguousarray(deq, dtype=np.float64))
        res.perms[name] = perm
    write_raw(os.path.join(out, "model.safetensors"), items)
    return res


def load_dequantized(d):
    """Decode a quantized model dir by the spec: (cfg, {name: float64 tensor} with every
    quantized Linear as X.weight, {X.weight: engine column order or None})."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    qc = cfg.get("quantization_config") or {}
    method = qc.get("quant_method")
    raw = read_raw(d)
    tensors, perms = {}, {}

    def arr(n):
        return raw_to_np(*raw[n])

    for name, (dt, shape, data) in raw.items():
        base, _, leaf = name.rpartition(".")
        wname = base + ".weight"
        if method == "awq" and leaf == "qweight":
            tensors[wname] = torch.from_numpy(awq_dequant(arr(name), arr(base + ".qzeros"),
                                                          arr(base + ".scales"), qc["group_size"]))
            perms[wname] = None
        elif method == "gptq" and leaf == "qweight":
            g_idx = arr(base + ".g_idx")
            v2 = qc.get("checkpoint_format", "gptq") == "gptq_v2"
            tensors[wname] = torch.from_numpy(gptq_dequant(arr(name), arr(base + ".qzeros"),
                                                           arr(base + ".scales"), g_idx, v2))
            perms[wname] = gptq_perm(g_idx)
        elif dt == "F8_E4M3":
            tensors[name] = torch.from_numpy(fp8_dequant(arr(name), arr(base + ".weight_scale")))
            perms[name] = None
        elif leaf in ("qzeros", "scales", "g_idx", "weight_scale", "input_scale"):
            continue
        else:
            tensors[name] = raw_to_f64(dt, shape, data)
    return cfg, tensors, perms


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--format", required=True, choices=("awq", "gptq", "fp8", "ct-fp8"))
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--asym", action="store_true", help="GPTQ: asymmetric (zero points)")
    ap.add_argument("--desc-act", action="store_true", help="GPTQ: act-order g_idx")
    ap.add_argument("--strategy", default="tensor", choices=("tensor", "channel"))
    ap.add_argument("--static", action="store_true", help="fp8: activation_scheme static")
    ap.add_argument("--v2", action="store_true", help="GPTQ: checkpoint_format gptq_v2")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    quantize_checkpoint(a.src, a.out, a.format, a.group_size, not a.asym, a.desc_act, a.strategy,
                        a.static, a.seed, checkpoint_format="gptq_v2" if a.v2 else "gptq")
    return 0


if __name__ == "__main__":
    sys.exit(main())
