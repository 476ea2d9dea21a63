#!/usr/bin/env bash
# The whole toy workflow, step by step, as a user would type it (called by `make demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=demo  # the example configs read and write ../demo
HTT="${VENV:-.venv}/bin/htt-tmva"

"$HTT" toy "$DEMO"
"$HTT" dataset configs/example_dataset.yaml
"$HTT" train configs/example_training.yaml --all-folds --overwrite
"$HTT" train configs/example_training.yaml --all-folds --overwrite --engine bdt
echo "demo: outputs are in $DEMO/"
