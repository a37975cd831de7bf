#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c with clang's libFuzzer + ASan/UBSan against the engine
# sources it needs, seeds a corpus, and runs each target for FUZZ_SECONDS (make test: a short
# smoke run; make fuzz: longer). A crash, leak or sanitizer report fails the target.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-15}
OUT=build/fuzz
mkdir -p "$OUT"
CFLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iengine $(pkg-config --cflags libcjson libpcre2-8 libutf8proc)"
LIBS="$(pkg-config --libs libcjson libpcre2-8 libutf8proc) -lm -pthread"
MODELS=$(cd "${FOLIO_TEST_MODELS:-../shared/models}" && pwd)
ENGINE_SRC=$(ls engine/*.c | grep -v engine/main.c)
pass=0
fail=0

seed_corpus() { # target dir
  local t=$1 d=$2
  mkdir -p "$d"
  case $t in
    fuzz_safetensors)
      local h='{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]}}'
      /usr/bin/python3 -c "import struct,sys; h=sys.argv[1].encode(); sys.stdout.buffer.write(struct.pack('<Q',len(h))+h+bytes(range(22)))" "$h" >"$d/seed1"
      ;;
    fuzz_config)
      cp "$MODELS/stories260K/config.json" "$d/seed1" 2>/dev/null
      cp "$MODELS/stories260K/generation_config.json" "$d/seed2" 2>/dev/null
      printf '%s' '{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64}}' >"$d/seed3"
      ;;
    fuzz_tokenizer)
      printf 'Once upon a time <s> \xe2\x96\x81 \xf0\x9f\x98\x80 \xff\xfe' >"$d/seed1"
      ;;
    fuzz_stop) # byte 0: stop count | include << 3 | delta seed << 4; NUL-ended stops; text
      printf '\x03</s>\0\n\n\0abcd\0Hello</s> world\n\nabcabcd' >"$d/seed1"
      printf '\x2a\xe3\x80\x82\0\xf0\x9f\x98\x80!\0\xe4\xbd\xa0\xf0\x9f\x98\x81\xf0\x9f\x98\x80!\xe3\x80\x82' >"$d/seed2"
      ;;
  esac
}

for src in tests/fuzz/fuzz_*.c; do
  t=$(basename "$src" .c)
  # shellcheck disable=SC2086
  if ! clang $CFLAGS -o "$OUT/$t" "$src" $ENGINE_SRC $LIBS 2>"$OUT/$t.build.log"; then
    echo "FAIL $t: build failed"; cat "$OUT/$t.build.log"; fail=$((fail + 1)); continue
  fi
  corpus=$OUT/corpus-$t
  seed_corpus "$t" "$corpus"
  extra=()
  [ -f "tests/fuzz/$t.dict" ] && extra+=("-dict=$PWD/tests/fuzz/$t.dict")
  if (cd "$OUT" && FOLIO_FUZZ_TOKENIZER=$MODELS/tokenizers/llama2 ./"$t" -max_total_time="$SECONDS_EACH" -max_len=4096 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" "corpus-$t" \
        >"$t.log" 2>&1); then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/$t.log")
    echo "ok $t: $runs inputs in ${SECONDS_EACH}s, no crash"
    pass=$((pass + 1))
  else
    echo "FAIL $t:"; tail -40 "$OUT/$t.log"; fail=$((fail + 1))
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
