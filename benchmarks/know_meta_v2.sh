#!/usr/bin/env bash
# Meta-dataset v2 (the faithful protocol) and the KNOWN trained on it:
#   bash benchmarks/know_meta_v2.sh DATA_ROOT WORK_DIR [COLLECT_SECONDS]
# DATA_ROOT holds MNIST/, FashionMNIST/ and cifar10-jpeg (../shared/data, or the subset that
# scripts/device_data.py writes for a machine that cannot see it). Training-distribution runs:
# small CNNs, ResNet-8, MobileNet-style nets and MLPs on digits / MNIST / CIFAR-10; held out for
# testing: the DenseNet-style net and the norm-free small CNN on Fashion-MNIST. Each collection stops
# starting runs after its time budget (a fifth of it for the held-out runs); rerunning resumes.
# Environment: DEVICE (cpu), WORKERS (2), BACKEND (auto: Ray when installed, else worker processes),
# TRAIN_SIZE / PRETRAIN_EPOCHS / EVAL_SIZE (the protocol's 4000 / 30 / 1000 unless set).
# Writes WORK_DIR/v2 (shards + manifest) and WORK_DIR/v2-known (hypermodels, training.json,
# MODEL_CARD.md, mini_test.safetensors, loss.png); then: python benchmarks/know_meta.py --data
# WORK_DIR/v2 --trained WORK_DIR/v2-known [--ship].
set -euo pipefail
DATA=${1:?data root}
WORK=${2:?work folder}
BUDGET=${3:-3600}
WL=(python -c 'import sys; from weightlab.cli import main; sys.exit(main())')
COMMON=(--protocol faithful --backend "${BACKEND:-auto}" --workers "${WORKERS:-2}" --device "${DEVICE:-cpu}"
  --data-root "$DATA" --out "$WORK/v2" --no-progress)
[[ -n "${TRAIN_SIZE:-}" ]] && COMMON+=(--train-size "$TRAIN_SIZE")
[[ -n "${PRETRAIN_EPOCHS:-}" ]] && COMMON+=(--pretrain-epochs "$PRETRAIN_EPOCHS")
[[ -n "${EVAL_SIZE:-}" ]] && COMMON+=(--eval-size "$EVAL_SIZE")
"${WL[@]}" know meta collect --runs 2000 --archs smallcnn,smallcnn-narrow,resnet8,mobilenet-tiny,mlp \
  --datasets digits,mnist,cifar10 --seed 0 --time-budget "$BUDGET" "${COMMON[@]}"
"${WL[@]}" know meta collect --runs 400 --start-id 10000 --archs densenet-tiny,smallcnn-nonorm \
  --datasets fashion_mnist --seed 1 --time-budget $((BUDGET / 5)) "${COMMON[@]}"
"${WL[@]}" know meta train --data "$WORK/v2" --test-archs densenet-tiny,smallcnn-nonorm \
  --test-datasets fashion_mnist --epochs 30 --patience 5 --device "${DEVICE:-cpu}" --out "$WORK/v2-known" --no-progress
