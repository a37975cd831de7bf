# Sourced by the GPU shell suites and tests/packaging: pass/fail counting and the shared models' known answers
# (../shared/models/README.md).
pass=0
fail=0
check() { # name, status, detail
  if [ "$2" -eq 0 ]; then echo "ok $1"; pass=$((pass + 1)); else echo "FAIL $1: $3"; fail=$((fail + 1)); fi
}
ids_of() { sed -n 's/^ids: //p'; }
# stories260K's 40 greedy tokens after "Once upon a time".
story_ids=432,383,286,261,376,298,315,421,395,317,426,338,401,396,267,337,410,408,419,292,411,322,265,282,295,433,426,385,328,432,358,394,261,370,432,352,266,268,388,426
