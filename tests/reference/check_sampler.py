#!/usr/bin/python3
"""Check the sampler's distribution and logprobs against an independent PyTorch reference.

The reference follows vLLM v1's code (vllm/v1/sample/sampler.py and the functions it calls):
raw logprobs by log_softmax; MinTokensLogitsProcessor (EOS and stop_token_ids to -inf while
the output is shorter than min_tokens); LogitBiasLogitsProcessor; apply_penalties (bin counts,
repetition penalty by the logits' sign on prompt|output tokens, then frequency and presence);
greedy argmax below temperature 1e-5; else logits / temperature, MinPLogitsProcessor
(softmax, probs < max * min_p -> -inf), apply_top_k_only / apply_top_k_top_p (ascending sort,
top-k threshold, softmax + cumsum, drop cumsum <= 1 - p but never the last), and softmax. All in
float32, as vLLM.

About 200 random cases (vocab 50-2000; random temperature, top_k, top_p, min_p, penalties,
logit_bias, min_tokens with EOS/stop ids, logprobs; random prompt/output histories, alone and
in combination) go through $FOLIO_BUILD/sampler_probs in one process. Per case: the
distribution (max abs diff <= 1e-5), the sampled token (inside the reference's support; the
argmax when greedy), the sampled token's raw logprob and rank, and the top logprobs (ids and
values, most likely first). Logits are continuous random floats, so the two places where
Folio settles ties differently from vLLM (top_k keeps exactly k; rank counts only strictly
greater) do not arise here; the unit tests cover ties.

A keep set can differ when a token sits within float32 rounding of a min_p or top_p boundary
(vLLM's float32 cumsum from the low end against Folio's double sums): such a case passes only
if the same reference computed in float64 agrees, and says so.

Also a few invalid parameter sets, which must be rejected with a message naming the parameter.

Prints `ok NAME` / `FAIL NAME: detail` per case, then `N passed, N failed`; exits 1 on any
failure. Env: FOLIO_BUILD (default build/release). Options: --cases N, --seed S.
Run: FOLIO_BUILD=build/release /usr/bin/python3 tests/reference/check_sampler.py
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
EPS = 1e-5  # vLLM's _SAMPLING_EPS
TOL = 1e-5


def f32(x):
    return float(np.float32(x))


# ---- the reference (vLLM v1 semantics) ----

def bin_counts_and_mask(tokens, vocab):
    # vllm/model_executor/layers/utils.py get_token_bin_counts_and_mask: pad id = vocab
    counts = torch.zeros(vocab + 1, dtype=torch.long)
    if tokens:
        t = torch.tensor(tokens, dtype=torch.long)
        counts.scatter_add_(0, t, torch.ones_like(t))
    counts = counts[:vocab]
    return counts, counts > 0


def apply_penalties(logits, prompt, output, pres, freq, rep):
    vocab = logits.shape[-1]
    _, prompt_mask = bin_counts_and_mask(prompt, vocab)
    out_counts, out_mask = bin_counts_and_mask(output, vocab)
    # apply_repetition_penalties (the torch fallback of the custom op)
    penalties = torch.where(prompt_mask | out_mask, torch.tensor(rep, dtype=logits.dtype),
                            torch.tensor(1.0, dtype=logits.dtype))
    scaling = torch.where(logits > 0, 1.0 / penalties, penalties)
    logits = logits * scaling
    logits = logits - torch.tensor(freq, dtype=logits.dtype) * out_counts.to(logits.dtype)
    logits = logits - torch.tensor(pres, dtype=logits.dtype) * out_mask.to(logits.dtype)
    return logits


def apply_top_k_only(logits, k):
    # logits: [1, V]; k: [1]
    top = logits.topk(int(k.max()), dim=1).values.gather(1, (k - 1).long().unsqueeze(1))
    return logits.masked_fill(logits < top, -float("inf"))


def apply_top_k_top_p(logits, k, p):
    if p is None:
        return logits if k is None else apply_top_k_only(logits, k)
    logits_sort, logits_idx = logits.sort(dim=-1, descending=False)
    if k is not None:
        top_k_mask = logits_sort.size(1) - k.to(torch.long)
        top_k_mask = logits_sort.gather(1, top_k_mask.unsqueeze(dim=1))
        top_k_mask = logits_sort < top_k_mask
        logits_sort = logits_sort.masked_fill(top_k_mask, -float("inf"))
    probs_sort = logits_sort.softmax(dim=-1)
    probs_sum = torch.cumsum(probs_sort, dim=-1)
    top_p_mask = probs_sum <= 1 - p.unsqueeze(dim=1)
    top_p_mask[:, -1] = False
    logits_sort = logits_sort.masked_fill(top_p_mask, -float("inf"))
    return logits_sort.scatter(dim=-1, index=logits_idx, src=logits_sort)


def reference(c, dtype=torch.float32):
    """Returns (probs[V] as float64 numpy, greedy argmax or None, raw logprobs[V])."""
    vocab = c["vocab"]
    x = torch.tensor(c["logits"], dtype=torch.float32).to(dtype).unsqueeze(0)
    raw_lp = x.log_softmax(dim=-1)[0]
    if len(c["output"]) < c["min_tokens"]:
        ids = sorted(set(c["eos"]) | set(c["stop_token_ids"]))
        if ids:
            x[0, torch.tensor(ids)] = -float("inf")
    if c["logit_bias"]:
        toks = torch.tensor([t for t, _ in c["logit_bias"]])
        x[0, toks] += torch.tensor([b for _, b in c["logit_bias"]], dtype=dtype)
    rep, pres, freq = c["repetition_penalty"], c["presence_penalty"], c["frequency_penalty"]
    if rep != 1.0 or pres != 0.0 or freq != 0.0:
        x = apply_penalties(x, c["prompt"], c["output"], pres, freq, rep)
    temp = c["temperature"]
    if temp < EPS:
        g = int(torch.argmax(x[0]))  # first index of the max
        probs = np.zeros(vocab)
        probs[g] = 1.0
        return probs, g, raw_lp.double().numpy()
    x = x / torch.tensor(temp, dtype=dtype)
    if c["min_p"] > 0:
        pv = x.softmax(dim=-1)
        maxp = pv.amax(dim=-1, keepdim=True)
        x = x.masked_fill(pv < maxp * torch.tensor(c["min_p"], dtype=dtype), -float("inf"))
    k = c["top_k"]
    kt = torch.tensor([k]) if 0 < k < vocab else None
    pt = torch.tensor([c["top_p"]], dtype=dtype) if c["top_p"] < 1.0 else None
    x = apply_top_k_top_p(x, kt, pt)
    probs = x.softmax(dim=-1)[0]
    return probs.double().numpy(), None, raw_lp.double().numpy()


# ---- cases ----

def random_case(rng, i):
    vocab = int(rng.integers(50, 2001))
    scale = float(rng.choice([1.0, 3.0, 8.0]))
    logits = (rng.standard_normal(vocab) * scale).astype(np.float32)
    if rng.random() < 0.3:  # a few dominant tokens, as real models have
        spikes = rng.choice(vocab, size=int(rng.integers(1, 4)), replace=False)
        logits[spikes] += np.float32(rng.uniform(5, 15))
    u = rng.random()
    temperature = 0.0 if u < 0.15 else (1.0 if u < 0.3 else f32(rng.uniform(0.1, 2.0)))
    top_p = 1.0 if rng.random() < 0.4 else f32(rng.uniform(0.05, 1.0))
    u = rng.random()
    top_k = int(rng.choice([0, -1])) if u < 0.4 else (
        int(rng.integers(1, 51)) if u < 0.75 else int(rng.integers(1, vocab + 20)))
    min_p = 0.0 if rng.random() < 0.6 else f32(rng.uniform(0.0, 0.5))
    rep = 1.0 if rng.random() < 0.5 else f32(rng.uniform(0.5, 2.0))
    pres = 0.0 if rng.random() < 0.5 else f32(rng.uniform(-2, 2))
    freq = 0.0 if rng.random() < 0.5 else f32(rng.uniform(-2, 2))
    # histories: sometimes drawn from a small pool, so tokens repeat
    pool = rng.choice(vocab, size=int(rng.integers(1, 40)), replace=True)
    def hist(n):
        src = pool if rng.random() < 0.5 else np.arange(vocab)
        return [int(t) for t in rng.choice(src, size=n)]
    prompt = hist(int(rng.integers(0, 300)))
    output = hist(int(rng.integers(0, 100)))
    logit_bias = []
    if rng.random() < 0.4:
        toks = rng.choice(vocab, size=int(rng.integers(1, 6)), replace=False)
        big = rng.random() < 0.3
        logit_bias = [(int(t), f32(rng.uniform(-100, 100) if big else rng.uniform(-5, 5)))
                      for t in toks]
    eos = [int(t) for t in rng.choice(vocab, size=int(rng.integers(1, 3)), replace=False)]
    stop_ids = [int(t) for t in rng.choice(vocab, size=int(rng.integers(0, 4)), replace=False)]
    u = rng.random()  # the boundary (masked until len(output) reaches min_tokens) included
    min_tokens = 0 if u < 0.5 else (len(output) + int(rng.integers(0, 2)) if u < 0.75
                                    else int(rng.integers(0, 2 * len(output) + 2)))
    if min_tokens and rng.random() < 0.5:  # make the masked ones matter
        logits[eos] += np.float32(10)
    logprobs = -1 if rng.random() < 0.3 else int(rng.integers(0, 21))
    return {
        "name": f"random_{i:03d}_v{vocab}", "vocab": vocab, "logits": logits.tolist(),
        "temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p,
        "repetition_penalty": rep, "presence_penalty": pres, "frequency_penalty": freq,
        "prompt": prompt, "output": output, "logit_bias": logit_bias, "eos": eos,
        "stop_token_ids": stop_ids, "min_tokens": min_tokens, "logprobs": logprobs,
        "seed": int(rng.integers(0, 2**63)), "sample_index": int(rng.integers(0, 5)),
    }


def invalid_cases(rng):
    base = random_case(rng, 0)
    v = base["vocab"]
    bad = [
        ("temperature", {"temperature": -0.5}), ("top_p", {"top_p": 0.0}),
        ("top_p", {"top_p": 1.5}), ("top_k", {"top_k": -3}), ("min_p", {"min_p": 1.5}),
        ("repetition_penalty", {"repetition_penalty": 0.0}),
        ("presence_penalty", {"presence_penalty": 2.5}),
        ("frequency_penalty", {"frequency_penalty": -2.5}),
        ("logit_bias", {"logit_bias": [(v, 1.0)]}), ("logit_bias", {"logit_bias": [(0, 101.0)]}),
        ("stop_token_ids", {"stop_token_ids": [v]}), ("logprobs", {"logprobs": 21}),
        ("min_tokens", {"min_tokens": -1}),
    ]
    out = []
    for i, (param, change) in enumerate(bad):
        c = dict(base, **change)
        c["name"] = f"invalid_{i:02d}_{param}"
        c["expect_error"] = param
        out.append(c)
    return out


def encode(c):
    def ids(xs):
        return f"{len(xs)} " + " ".join(str(t) for t in xs)
    parts = [
        f"vocab {c['vocab']}",
        "logits " + " ".join(format(v, ".9g") for v in c["logits"]),
        f"temperature {c['temperature']!r}", f"top_p {c['top_p']!r}", f"top_k {c['top_k']}",
        f"min_p {c['min_p']!r}", f"repetition_penalty {c['repetition_penalty']!r}",
        f"presence_penalty {c['presence_penalty']!r}",
        f"frequency_penalty {c['frequency_penalty']!r}", f"min_tokens {c['min_tokens']}",
        f"logprobs {c['logprobs']}", f"seed {c['seed']}", f"sample_index {c['sample_index']}",
        "logit_bias " + f"{len(c['logit_bias'])} "
        + " ".join(f"{t} {b!r}" for t, b in c["logit_bias"]),
        "stop_token_ids " + ids(c["stop_token_ids"]), "eos " + ids(c["eos"]),
        "prompt " + ids(c["prompt"]), "output " + ids(c["output"]), "end",
    ]
    return "\n".join(parts) + "\n"


def parse_results(text):
    blocks, cur = [], {}
    for line in text.splitlines():
        w = line.split()
        if not w:
            continue
        if w[0] == "end":
            blocks.append(cur)
            cur = {}
        elif w[0] == "error":
            cur["error"] = line[6:]
        elif w[0] == "probs":
            cur["probs"] = np.array([float(v) for v in w[1:]])
        elif w[0] == "token":
            cur["token"] = int(w[1])
        elif w[0] == "logprob":
            cur["logprob"], cur["rank"] = float(w[1]), int(w[3])
        elif w[0] == "top":
            n = int(w[1])
            cur["top_ids"] = [int(w[2 + 2 * i]) for i in range(n)]
            cur["top_lps"] = [float(w[3 + 2 * i]) for i in range(n)]
    return blocks


def compare_probs(c, got):
    want, greedy, raw_lp = reference(c)
    diff = float(np.max(np.abs(got["probs"] - want)))
    note = ""
    if diff > TOL:
        want64, greedy, raw_lp = reference(c, torch.float64)
        diff64 = float(np.max(np.abs(got["probs"] - want64)))
        if diff64 > TOL:
            i = int(np.argmax(np.abs(got["probs"] - want)))
            return (f"probs differ by {diff:.3g} at token {i} (folio {got['probs'][i]:.9g}, "
                    f"ref {want[i]:.9g}); kept folio {(got['probs'] > 0).sum()}, ref "
                    f"{(want > 0).sum()}"), ""
        note = " (a token within float32 rounding of a min_p/top_p boundary; float64 agrees)"
        want = want64
    return None, (want, greedy, raw_lp, note)


def check_case(c, got):
    if "expect_error" in c:
        err = got.get("error")
        if err is None:
            return "accepted an invalid " + c["expect_error"], ""
        if c["expect_error"] not in err:
            return f"message does not name {c['expect_error']}: {err}", ""
        return None, ""
    if "error" in got:
        return "rejected: " + got["error"], ""
    err, res = compare_probs(c, got)
    if err:
        return err, ""
    want, greedy, raw_lp, note = res
    tok = got["token"]
    if not 0 <= tok < c["vocab"] or want[tok] <= 0:
        return f"sampled token {tok} is outside the reference's support", ""
    if greedy is not None and tok != greedy:
        return f"greedy token {tok}, reference argmax {greedy}", ""
    if c["logprobs"] >= 0:
        if abs(got["logprob"] - raw_lp[tok]) > TOL:
            return f"logprob {got['logprob']} vs {raw_lp[tok]}", ""
        # vLLM's batched_count_greater_than counts x >= value; no ties here, so the same as
        # Folio's 1 + strictly greater
        rank = int((raw_lp >= raw_lp[tok]).sum())
        if got["rank"] != rank:
            return f"rank {got['rank']} vs {rank}", ""
        n = min(c["logprobs"], c["vocab"])
        order = np.lexsort((np.arange(c["vocab"]), -raw_lp))[:n]
        if got["top_ids"] != [int(t) for t in order]:
            return f"top ids {got['top_ids'][:5]}... vs {order[:5].tolist()}...", ""
        d = max((abs(a - raw_lp[t]) for a, t in zip(got["top_lps"], order)), default=0.0)
        if d > TOL:
            return f"top logprobs differ by {d:.3g}", ""
    return None, note


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args()
    build = os.environ.get("FOLIO_BUILD", "build/release")
    tool = os.path.join(build if os.path.isabs(build) else os.path.join(ROOT, build),
                        "sampler_probs")
    if not os.access(tool, os.X_OK):
        print(f"FAIL setup: {tool} not found (build it: make O={build} {build}/sampler_probs)")
        print("0 passed, 1 failed")
        return 1
    rng = np.random.default_rng(args.seed)
    cases = [random_case(rng, i) for i in range(args.cases)] + invalid_cases(rng)
    proc = subprocess.run([tool], input="".join(encode(c) for c in cases), text=True,
                          capture_output=True)
    results = parse_results(proc.stdout)
    passed = failed = 0
    if proc.returncode != 0 or len(results) != len(cases):
        print(f"FAIL tool: exit {proc.returncode}, {len(results)} results for {len(cases)} "
              f"cases: {proc.stderr.strip()[:300]}")
        failed += 1
    for c, got in zip(cases, results):
        err, note = check_case(c, got)
        if err:
            print(f"FAIL {c['name']}: {err}")
            failed += 1
        else:
            print(f"ok {c['name']}{note}")
            passed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
