#!/usr/bin/env bash
# The generate command on the real shared models must print exactly the known-good greedy
# continuations of ../shared/models/README.md, ids and text, and honour the EOS list.
set -uo pipefail
ENGINE=${FOLIO_ENGINE:-build/release/folio-engine}
MODELS=${FOLIO_TEST_MODELS:-../shared/models}
pass=0
fail=0
check() { # name, condition-result, detail
  if [ "$2" = 0 ]; then pass=$((pass + 1)); echo "ok $1"; else fail=$((fail + 1)); echo "FAIL $1: $3"; fi
}

stories_ids="432,383,286,261,376,298,315,421,395,317,426,338,401,396,267,337,410,408,419,292,411,322,265,282,295,433,426,385,328,432,358,394,261,370,432,352,266,268,388,426"
stories_text=", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."
out=$("$ENGINE" generate --model "$MODELS/stories260K" --prompt "Once upon a time" --max-tokens 40 \
      --temperature 0 --ignore-eos --show-ids 2>/dev/null)
ids=$(printf '%s\n' "$out" | sed -n 's/^ids: //p')
[ "$ids" = "$stories_ids" ]; check "stories260K greedy ids" $? "got $ids"
text=$(printf '%s\n' "$out" | head -1)
[[ "$text" == "$stories_text"* ]]; check "stories260K greedy text" $? "got '$text'"

# Without --ignore-eos the model stops at an id of the eos list [2, 1]; the text before it
# must still start with the known continuation.
out=$("$ENGINE" generate --model "$MODELS/stories260K" --prompt "Once upon a time" --max-tokens 400 \
      --temperature 0 --show-ids 2>/dev/null)
ids=$(printf '%s\n' "$out" | sed -n 's/^ids: //p')
last=${ids##*,}
[ "$last" = 1 ] || [ "$last" = 2 ]; check "stories260K stops at an eos id" $? "last id $last"
[[ "$ids" == "$stories_ids"* ]]; check "stories260K eos run keeps the greedy prefix" $? "got $ids"

# The same greedy ids from every kernel variant the CPU has (AVX-512, AVX2, portable C).
for isa in avx2 scalar; do
  out=$(FOLIO_CPU_ISA=$isa "$ENGINE" generate --model "$MODELS/stories260K" --prompt "Once upon a time" \
        --max-tokens 40 --temperature 0 --ignore-eos --show-ids --threads 2 2>&1)
  ids=$(printf '%s\n' "$out" | sed -n 's/^ids: //p')
  [ "$ids" = "$stories_ids" ] && grep -q "cpu backend $isa" <<<"$out"; check "stories260K greedy ids with $isa kernels" $? "got $ids"
done

aid_text=", as I sense the nodes, a gentle hum of probability. Contrast emerge, a flower, as"
out=$("$ENGINE" generate --model "$MODELS/aidreams260K" --prompt "I dreamed" --max-tokens 40 \
      --temperature 0 --ignore-eos --show-ids 2>/dev/null)
text=$(printf '%s\n' "$out" | head -1)
[[ "$text" == "$aid_text"* ]]; check "aidreams260K greedy text" $? "got '$text'"

# The prompt ids the tokenizer gives (BOS added) must be the README's.
out=$("$ENGINE" generate --model "$MODELS/aidreams260K" --prompt-ids 1,303,281,269,435,447,328 --max-tokens 20 \
      --temperature 0 --ignore-eos 2>/dev/null | head -1)
[[ "$aid_text" == "$out"* ]] && [ -n "$out" ]; check "aidreams260K from prompt ids" $? "got '$out'"

# Stats line on stderr.
err=$("$ENGINE" generate --model "$MODELS/stories260K" --prompt "Once upon a time" --max-tokens 8 \
      --temperature 0 2>&1 >/dev/null | tail -1)
[[ "$err" =~ prefill:\ 5\ tokens.*tok/s.*decode:\ 7\ tokens.*tok/s ]]; check "speed report" $? "got '$err'"

# Seeded sampling is reproducible, and another seed gives another story.
sample() {
  "$ENGINE" generate --model "$MODELS/stories260K" --prompt "Once upon a time" --max-tokens 30 \
    --temperature 1 --seed "$1" --ignore-eos --show-ids 2>/dev/null | tail -1
}
a=$(sample 7); b=$(sample 7); c=$(sample 8)
[ "$a" = "$b" ] && [ "$a" != "$c" ] && [ -n "$a" ]; check "seeded sampling reproducible" $? "$a / $b / $c"

# The engine's options through the CLI: a stop string cuts the known text before it; n = 3
# greedy samples all give the known ids; a fractional --kv-cache-space works; prefix caching
# off changes nothing.
out=$("$ENGINE" generate --model "$MODELS/stories260K" --prompt "Once upon a time" --max-tokens 60 \
      --temperature 0 --stop "Lily. She" 2>/dev/null | head -1)
[ "$out" = ", there was a little girl named " ]; check "stop string" $? "got '$out'"
out=$("$ENGINE" generate --model "$MODELS/stories260K" --prompt "Once upon a time" --max-tokens 40 \
      --temperature 0 --ignore-eos --n 3 --show-ids 2>/dev/null)
n_ok=$(grep -c "^ids\[[0-2]\]: $stories_ids\$" <<<"$out")
[ "$n_ok" = 3 ]; check "n=3 greedy samples" $? "got $out"
out=$("$ENGINE" generate --model "$MODELS/stories260K" --prompt "Once upon a time" --max-tokens 40 \
      --temperature 0 --ignore-eos --show-ids --kv-cache-space 0.0005 --no-enable-prefix-caching 2>&1)
ids=$(printf '%s\n' "$out" | sed -n 's/^ids: //p')
[ "$ids" = "$stories_ids" ] && grep -q "max_model_len lowered from 512 to 416" <<<"$out"
check "small --kv-cache-space lowers max_model_len" $? "got $out"

# Bad engine options: one clear error line, non-zero exit.
bad() { # name, regex, args...
  local name=$1 re=$2
  shift 2
  local err rc
  err=$("$ENGINE" generate --model "$MODELS/stories260K" --prompt "${PROMPT:-Once}" "$@" 2>&1 >/dev/null)
  rc=$?
  [ "$rc" = 1 ] && [ "$(wc -l <<<"$err")" = 1 ] && grep -qiE -e "$re" <<<"$err"; check "rejects $name" $? "rc=$rc: $err"
}
bad "top_p 2" "top_p" --top-p 2
bad "negative temperature" "temperature" --temperature -1
bad "n 0" "--n|\bn\b" --n 0
bad "kv space 0" "kv-cache-space" --kv-cache-space 0
bad "max-model-len beyond the model" "max_position_embeddings" --max-model-len 100000
bad "explicit max-model-len beyond the cache" "largest max_model_len that fits is 416" --max-model-len 512 --kv-cache-space 0.0005
PROMPT="Once upon a time" bad "prompt beyond the context" "maximum context length is 4 tokens.*prompt contains 5" --max-model-len 4

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
