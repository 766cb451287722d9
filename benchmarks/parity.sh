#!/usr/bin/env bash
# Behaviour parity for refactors: run a fixed set of weightlab commands with the code of a checkout,
# so that two checkouts' outputs can be compared bit for bit with benchmarks/parity_compare.py.
#
#   bash benchmarks/parity.sh /path/to/old-checkout /tmp/parity/old
#   bash benchmarks/parity.sh .                     /tmp/parity/new
#   .venv/bin/python benchmarks/parity_compare.py /tmp/parity/old /tmp/parity/new
#
# Uses this checkout's .venv (PY=... to change); needs the shared folder (WEIGHTLAB_SHARED) for mimic on
# the shared ResNet-20 and the authors' KNOWN. About 10 minutes on 2 cores.
set -uo pipefail
SRC=$(cd "$1" && pwd); OUT=$2
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
export PYTHONPATH=$SRC/src MPLBACKEND=Agg
rm -rf "$OUT"; mkdir -p "$OUT"; cd "$OUT"
run() { echo "== $*" >> log.txt; "$PY" -c 'import sys; from weightlab.cli import main; sys.exit(main())' "$@" >> log.txt 2>&1; echo "rc=$?" >> log.txt; }
"$PY" -c "import weightlab; print(weightlab.__file__)" >> log.txt
run recast bench --suite smoke --out smoke --no-progress
run quickstart --out qs --no-progress
run recast adapt --model resnet20 --no-pretrained --tasks digits:0-4,digits:5-9 --method recast+lora:r=2 --epochs 2 \
    --train-size 200 --val-size 50 --test-size 100 --out adapt --no-progress
run recast evaluate --base adapt/base
run recast adapt --model resnet20 --no-pretrained --tasks digits:0-4,digits:5-9 --method piggyback --epochs 1 \
    --train-size 200 --val-size 50 --test-size 100 --out adapt_pb --no-progress
run recast mimic --model resnet20 --templates 2 --coef-sets 2 --layers-per-group 2 --iterations 60 --lr-step 20 \
    --eval-limit 300 --out mimic --no-progress
run recast mimic --model resnet20 --method closed_form --eval-limit 300 --out mimic_cf --no-progress
run know forget --model smallcnn --no-pretrained --data digits --stages 5 --epochs 1 --out traj --no-progress
for m in known known_authors task_vector log_fit exp_fit magmax consensus_ta tsv linear_fit; do
  run know predict --trajectory traj --method $m --steps 3 --out pred --no-progress
done
run know transfer --trajectory traj --predictions pred/known_x2.safetensors pred/task_vector_x4.safetensors \
    --task digits --warmup-epochs 1 --epochs 2 --seeds 1,2 --out transfer --no-progress
run know meta collect --runs 4 --archs smallcnn,mlp --datasets digits --train-size 300 --backend serial --out meta \
    --no-progress
run know meta train --data meta --epochs 3 --batch-size 512 --max-rows 20000 --out known --no-progress
grep -c "^rc=0" log.txt | xargs echo "commands that succeeded:"
