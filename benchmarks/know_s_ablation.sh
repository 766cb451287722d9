#!/usr/bin/env bash
# The KNOWN hypermodels of the paper's Table 6 ablation (history length S = 3, 4, 5) and the suite that
# compares them:
#   bash benchmarks/know_s_ablation.sh DATA_ROOT WORK_DIR [COLLECT_SECONDS]
# One faithful-protocol meta-dataset (the training distribution of meta-dataset v2: small CNNs, ResNet-8,
# MobileNet-style nets and MLPs on digits / MNIST / CIFAR-10; seed 0, so its runs are the first runs of v2),
# then one KNOWN set per S trained on the same rows (the rows hold the five stages before their target; a
# set with S < 5 reads the last S of them), whole runs held out for early stopping. The sets are copied to
# benchmarks/weights/known_s<S>/ (weights, training.json, MODEL_CARD.md), where the suite
# cifar5-smallcnn-ablation reads them; run from the repository root.
# Environment: DEVICE (cpu), WORKERS (2), BACKEND (auto).
set -euo pipefail
DATA=${1:?data root}
WORK=${2:?work folder}
BUDGET=${3:-1800}
WL=(python -c 'import sys; from weightlab.cli import main; sys.exit(main())')
"${WL[@]}" know meta collect --runs 2000 --archs smallcnn,smallcnn-narrow,resnet8,mobilenet-tiny,mlp \
  --datasets digits,mnist,cifar10 --seed 0 --time-budget "$BUDGET" --protocol faithful \
  --backend "${BACKEND:-auto}" --workers "${WORKERS:-2}" --device "${DEVICE:-cpu}" --data-root "$DATA" \
  --out "$WORK/s-ablation" --no-progress --train-size 1000 --pretrain-epochs 15 --eval-size 500
for S in 3 4 5; do
  "${WL[@]}" know meta train --data "$WORK/s-ablation" --seq-len "$S" --epochs 30 --patience 5 \
    --device "${DEVICE:-cpu}" --out "$WORK/known_s$S" --no-progress
  mkdir -p "benchmarks/weights/known_s$S"
  cp "$WORK/known_s$S"/KNOWN_{Conv,FC,Bias}.safetensors "$WORK/known_s$S"/{training.json,MODEL_CARD.md} \
    "benchmarks/weights/known_s$S/"
done
"${WL[@]}" know bench --suite cifar5-smallcnn-ablation --data-root "$DATA" --backend processes \
  --workers "${WORKERS:-2}" --device "${DEVICE:-cpu}" --no-progress \
  --out benchmarks/results/know/cifar5-smallcnn-ablation
