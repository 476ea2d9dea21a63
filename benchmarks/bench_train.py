"""Training throughput on about 1 M events: input loading beside pure fit time.

Builds a toy (default 666,667 events per process, so one fold holds about 1 M events),
its fold datasets, then for the models `example` and `smhtt` times
  - loading the fold into arrays (RDataFrame AsNumpy, checks, weights),
  - `htt_tmva` training of EPOCHS epochs (preprocessing, weighted fit, validation),
  - the reference: a bare `model.fit` of the same network on the same arrays (with the same
    validation split), after TensorFlow's one-off start-up,
and prints events per second per epoch.

    python benchmarks/bench_train.py [--events N] [--epochs E] [--batch-size B]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=666_667, help="toy events per process")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    from htt_tmva.config import load_dataset_config, load_training_config
    from htt_tmva.data.dataset import create_training_dataset
    from htt_tmva.data.toy import write_toy_dataset
    from htt_tmva.engines import get_engine
    from htt_tmva.engines.keras import import_keras, normalised
    from htt_tmva.engines.models import build_model
    from htt_tmva.training import load_training_data, split

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_toy_dataset(tmp, events=args.events)
        classes = ["signal", "background_1", "background_2"]
        dataset = {
            "base_path": str(tmp),
            "output_path": str(tmp),
            "output_filename": "ds.root",
            "tree_path": "ntuple",
            "event_branch": "event",
            "training_weight_branch": "w",
            "processes": {
                c: {"files": [f"example_{c}.root"], "class": c, "weight_string": "weights"}
                for c in classes
            },
        }
        (tmp / "dataset.yaml").write_text(yaml.safe_dump(dataset))
        create_training_dataset(load_dataset_config(tmp / "dataset.yaml"))

        keras = import_keras()
        warm = build_model("example", 2, 3, 1e-3, None)  # TensorFlow's one-off start-up, not timed
        warm.fit(np.zeros((10, 2)), np.eye(3)[np.arange(10) % 3], verbose=0)

        print(
            f"{'model':8} {'events':>9} {'load s':>7} {'fit s':>7} {'ev/s/epoch':>11} "
            f"{'bare fit s':>10} {'bare ev/s/epoch':>15}"
        )
        for name in ("example", "smhtt"):
            training = {
                "datasets": [str(tmp / "fold0_ds.root"), str(tmp / "fold1_ds.root")],
                "output_path": str(tmp / name),
                "classes": classes,
                "event_weights": "w",
                "variables": ["x", "y"],
                "model": {
                    "name": name,
                    "batch_size": args.batch_size,
                    "epochs": args.epochs,
                    "save_best_only": False,
                },
            }
            (tmp / f"{name}.yaml").write_text(yaml.safe_dump(training))
            config = load_training_config(tmp / f"{name}.yaml")

            start = time.perf_counter()
            data = load_training_data(config, 0)
            train, validation = split(data, config.train_test_split, config.model.seed)
            load_s = time.perf_counter() - start

            start = time.perf_counter()
            get_engine("keras").train(train, validation, config, 0)
            fit_s = time.perf_counter() - start

            network = build_model(name, 2, 3, 1e-3, None)

            mean, std = train.x.mean(0), train.x.std(0)

            def scaled(d, mean=mean, std=std):
                return ((d.x - mean) / std).astype(np.float32)

            start = time.perf_counter()
            network.fit(
                scaled(train),
                keras.utils.to_categorical(train.y, 3),
                sample_weight=normalised(train.w),
                batch_size=args.batch_size,
                epochs=args.epochs,
                verbose=0,
                validation_data=(
                    scaled(validation),
                    keras.utils.to_categorical(validation.y, 3),
                    normalised(validation.w),
                ),
            )
            bare_s = time.perf_counter() - start

            n = len(train)
            print(
                f"{name:8} {n:>9} {load_s:>7.2f} {fit_s:>7.2f} {n * args.epochs / fit_s:>11.0f} "
                f"{bare_s:>10.2f} {n * args.epochs / bare_s:>15.0f}"
            )
        print(
            f"(fold 0 holds {len(data)} events; training split {len(train)}, "
            f"batch size {args.batch_size}, {args.epochs} epochs; both fits include the "
            "validation pass per epoch, ours also preprocessing and callbacks)"
        )


if __name__ == "__main__":
    main()
