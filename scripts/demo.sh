#!/usr/bin/env bash
# The whole toy workflow, step by step, as a user would type it (called by `make demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=demo  # the example configs read and write demo/ (paths relative to the repository root)
HTT="${VENV:-.venv}/bin/htt-tmva"

"$HTT" toy "$DEMO"
"$HTT" dataset configs/example_dataset.yaml
for engine in keras bdt; do
    "$HTT" train configs/example_training.yaml --all-folds --overwrite --engine "$engine"
done
for fold in 0 1; do
    "$HTT" confusion configs/example_training.yaml configs/example_keras_testing.yaml "$fold" \
        --compare configs/example_bdt_testing.yaml
    "$HTT" confusion configs/example_training.yaml configs/example_bdt_testing.yaml "$fold"
done
# scores of both engines appended to the data file, in place (each event by the model
# that never saw its fold)
for engine in keras bdt; do
    "$HTT" apply configs/example_dataset.yaml configs/example_training.yaml \
        "configs/example_${engine}_application.yaml" "$DEMO/example_data.root" ntuple
done
# the BDTs as TMVA weight files, applied without TMVA (scores equal the bdt_* ones)
"$HTT" export configs/example_training.yaml --all-folds --engine bdt --format tmva --overwrite
"$HTT" apply configs/example_dataset.yaml configs/example_training.yaml \
    configs/example_tmva_application.yaml "$DEMO/example_data.root" ntuple
echo "demo: outputs are in $DEMO/ (models, matrices and figures in $DEMO/models/;"
echo "      $DEMO/example_data.root now holds keras_*, bdt_* and tmva_* score branches)"
