#!/usr/bin/env bash
# End-to-end offline generation throughput on the GPU: folio against a Hugging Face-style
# PyTorch loop, on the same GPU in the same run.
#
# Model: the generated bf16 checkpoint with Llama-3.2-1B's shape (random weights; the same
# dir and seed as make bench, generated once into $FOLIO_BENCH_DIR and reused).
# Workload, at each batch size B in BATCHES: B prompts of INPUT random tokens, OUTPUT tokens
# each, greedy, EOS ignored, all submitted at once.
#   folio:   bench_serve --offline (the CUDA engine in this process, max_num_seqs = B; one
#            warm-up request first); output tokens / wall time from the first submission to
#            the last token (prefill included).
#   pytorch: tests/gpu/hf_generate.py: LlamaForCausalLM + generate() as transformers runs it
#            eagerly (bf16 weights, SDPA, a per-layer KV cache grown by torch.cat, batch
#            prefill then one token per step, no CUDA graphs, no torch.compile), warm-up of
#            the same shape, timed with torch.cuda.synchronize; the same token count / time.
# Then CHECK greedy tokens of one prompt from `folio-engine generate --device cuda` and from
# the PyTorch loop, as information (both bf16, rounded differently, so a near-tie may split
# them). Prints a table (batch, folio tok/s, pytorch tok/s, ratio); the target is 10x or more
# under load. MIN_RATIO=R makes batches >= 32 below R fail the script.
# Env: FOLIO_ENGINE, FOLIO_BENCH_SERVE (the CUDA=1 builds), FOLIO_BENCH_DIR (build/bench-models),
# BATCHES ("1 32 256"), INPUT (128), OUTPUT (128), KV (--kv-cache-space GiB, for DEVICE=cpu; 16), CHECK (32),
# DEVICE (cuda; cpu runs the same script on a CPU build, for testing it), PRESET (llama3.2-1b).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then
  ENGINE=${FOLIO_ENGINE:-build/release-cuda/folio-engine}
  SERVE=${FOLIO_BENCH_SERVE:-build/release-cuda/bench_serve}
else
  ENGINE=${FOLIO_ENGINE:-build/release/folio-engine}
  SERVE=${FOLIO_BENCH_SERVE:-build/release/bench_serve}
fi
PY=${PYTHON:-/usr/bin/python3}
CACHE=${FOLIO_BENCH_DIR:-build/bench-models}
PRESET=${PRESET:-llama3.2-1b}
BATCHES=${BATCHES:-"1 32 256"}
INPUT=${INPUT:-128}
OUTPUT=${OUTPUT:-128}
KV=${KV:-16}
CHECK=${CHECK:-32}
LIMIT=${LIMIT:-150} # seconds for any one process
MIN_RATIO=${MIN_RATIO:-}
for f in "$ENGINE" "$SERVE"; do
  if [ ! -x "$f" ]; then
    echo "bench_e2e.sh: $f not found; build it with: make CUDA=1 $f (or set FOLIO_ENGINE / FOLIO_BENCH_SERVE)" >&2
    exit 1
  fi
done
t_start=$(date +%s)

dir=$CACHE/$PRESET-bf16
if [ ! -f "$dir/config.json" ] || [ ! -f "$dir/model.safetensors" ]; then
  echo "generating $PRESET (bf16) in $dir ..." >&2
  mkdir -p "$CACHE"
  rm -rf "$dir.tmp.$$"
  "$PY" tests/fixtures/gen_checkpoint.py --out "$dir.tmp.$$" --preset "$PRESET" --dtype BF16 --seed 1 >/dev/null
  rm -rf "$dir"
  mv "$dir.tmp.$$" "$dir"
fi
gpu=cpu
if [ "$DEVICE" = cuda ]; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1 || true)
  gpu=${gpu:-"a CUDA GPU"}
fi
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# bench_serve takes --device when its usage names it; otherwise the CUDA build's engine picks
# the GPU by itself (--device auto). Either way the engine's description must say where it ran.
dev=()
if "$SERVE" --help 2>&1 | grep -q -- '--device'; then dev=(--device "$DEVICE"); fi

# One bench_serve --offline run at batch $1 (extra flags after it); sets $tps and $line.
run_folio() {
  local b=$1 out desc
  shift
  if ! out=$(timeout -k 5 "$LIMIT" "$SERVE" --offline "$dir" ${dev[@]+"${dev[@]}"} --kv-cache-space "$KV" \
      --num-prompts "$b" --max-concurrency "$b" --request-rate inf --random-input-len "$INPUT" \
      --random-output-len "$OUTPUT" --random-range-ratio 0 --seed "$b" "$@" 2>&1); then
    echo "$out" | tail -n 30 >&2
    echo "bench_e2e.sh: bench_serve --offline $* failed at batch $b" >&2
    exit 1
  fi
  desc=$(grep '^offline engine:' <<<"$out" || true)
  if ! grep -q "$DEVICE backend" <<<"$desc"; then
    echo "bench_e2e.sh: the offline engine did not run on $DEVICE: ${desc:-no 'offline engine:' line}" >&2
    exit 1
  fi
  line=$(grep '^bench_serve: ' <<<"$out" | tail -n1)
  if [ "$(field failed "$line")" != 0 ] || [ "$(field out_tokens "$line")" != $((b * OUTPUT)) ]; then
    echo "bench_e2e.sh: bench_serve at batch $b: $line" >&2
    exit 1
  fi
  tps=$(field out_tps "$line")
  echo "folio batch $b $*: $tps tok/s ($desc)" >&2
}

# On the GPU each batch runs twice: with CUDA graphs (the default) and --enforce-eager.
declare -A folio_tps folio_line eager_tps
for b in $BATCHES; do
  run_folio "$b"
  folio_tps[$b]=$tps
  folio_line[$b]=$line
  eager_tps[$b]=
  if [ "$DEVICE" = cuda ]; then
    run_folio "$b" --enforce-eager
    eager_tps[$b]=$tps
  fi
done

check_ids=$("$PY" -c "
import json, random, sys
v = json.load(open(sys.argv[1] + '/config.json'))['vocab_size']
r = random.Random(7)
print(','.join(str(r.randrange(min(300, v // 2), v)) for _ in range($INPUT)))" "$dir")
hf_args=(--model "$dir" --device "$DEVICE" --batch "$(tr ' ' , <<<"$BATCHES")" --input-len "$INPUT" --output-len "$OUTPUT")
if [ "$CHECK" -gt 0 ]; then hf_args+=(--prompt-ids "$check_ids" --check-tokens "$CHECK"); fi
if ! hf=$(timeout -k 5 "$LIMIT" "$PY" tests/gpu/hf_generate.py "${hf_args[@]}" 2>&1); then
  echo "$hf" | tail -n 30 >&2
  echo "bench_e2e.sh: hf_generate.py failed" >&2
  exit 1
fi
grep '^hf_generate: .* loaded in ' <<<"$hf" >&2 || true
declare -A torch_tps
for b in $BATCHES; do
  line=$(grep "^hf_generate: batch=$b " <<<"$hf" | tail -n1)
  torch_tps[$b]=$(field out_tps "$line")
  if [ -z "${torch_tps[$b]}" ]; then
    echo "$hf" | tail -n 30 >&2
    echo "bench_e2e.sh: no hf_generate result for batch $b" >&2
    exit 1
  fi
done

agree=
if [ "$CHECK" -gt 0 ]; then
  t_ids=$(sed -n 's/^ids: //p' <<<"$hf" | tail -n1)
  f_ids=$(timeout -k 5 "$LIMIT" "$ENGINE" generate --device "$DEVICE" --model "$dir" --prompt-ids "$check_ids" \
          --max-tokens "$CHECK" --temperature 0 --ignore-eos --show-ids 2>/dev/null | sed -n 's/^ids: //p' | tail -n1 || true)
  agree=$("$PY" -c "
import sys
a = [t for t in sys.argv[1].split(',') if t]; b = [t for t in sys.argv[2].split(',') if t]
k = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
print(f'{k} of {len(b)}' if a and len(a) == len(b) else f'n/a (folio gave {len(a)} ids, pytorch {len(b)})')
" "$f_ids" "$t_ids")
fi

echo
echo "Offline greedy generation, $PRESET-shaped bf16 checkpoint (random weights), $gpu: input $INPUT and" \
     "output $OUTPUT tokens per sequence, ignore_eos, all sequences at once"
echo "folio: bench_serve --offline ($DEVICE engine in-process, max_num_seqs = batch); pytorch: tests/gpu/hf_generate.py" \
     "(transformers-style eager loop: SDPA, torch.cat KV cache, no CUDA graphs or torch.compile)"
echo "| batch | folio tok/s | folio eager tok/s | graphs/eager | pytorch tok/s | folio/pytorch |"
echo "|------:|------------:|------------------:|-------------:|--------------:|--------------:|"
below=0
for b in $BATCHES; do
  awk -v b="$b" -v f="${folio_tps[$b]}" -v e="${eager_tps[$b]}" -v t="${torch_tps[$b]}" \
    'BEGIN{ if (e == "") printf "| %5d | %11.1f | %17s | %12s | %13.1f | %12.2fx |\n", b, f, "-", "-", t, f / t;
            else printf "| %5d | %11.1f | %17.1f | %11.2fx | %13.1f | %12.2fx |\n", b, f, e, f / e, t, f / t }'
  if [ -n "$MIN_RATIO" ] && [ "$b" -ge 32 ] &&
     awk -v f="${folio_tps[$b]}" -v t="${torch_tps[$b]}" -v m="$MIN_RATIO" 'BEGIN{ exit !(f / t < m) }'; then
    below=1
  fi
done
echo "target: folio/pytorch >= 10x under load (batch >= 32)"
if [ -n "$agree" ]; then
  echo "greedy tokens of one $INPUT-token prompt, folio generate --device $DEVICE vs pytorch: the first $agree agree" \
       "(information: both bf16, rounded differently)"
fi
for b in $BATCHES; do echo "# folio  b=$b: ${folio_line[$b]}"; done
grep '^hf_generate: batch=' <<<"$hf" | sed 's/^/# torch  /'
echo "# $(($(date +%s) - t_start)) s in all"
if [ "$below" = 1 ]; then
  echo "bench_e2e.sh: folio/pytorch below MIN_RATIO=$MIN_RATIO at batch >= 32" >&2
  exit 1
fi
