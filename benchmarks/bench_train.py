"""Training throughput on about 1 M events: input loading, then the same work timed on both sides.

Builds a toy (default 666,667 events per process, so one fold holds about 1 M events),
its fold datasets, then for the models `example` and `smhtt` times
  - loading the fold into arrays (RDataFrame AsNumpy, checks, weights),
  - `htt_tmva` training of EPOCHS epochs: model build, preprocessing (fit and transform, one-hot
    labels, weights), weighted fit with validation, numpy weights and manifest,
  - the reference, timed with the same boundaries: a bare `build_model`, bare preprocessing
    (standard scaling, one-hot labels, weights scaled to mean 1) and a bare `model.fit` of the
    same network on the same arrays (same validation split), after TensorFlow's one-off start-up;
    its build, preprocessing and fit are also printed separately,
and prints events per second per epoch of both totals and their ratio.

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
            f"{'model':8} {'events':>9} {'load s':>7} {'ours s':>7} {'ours ev/s/ep':>12} "
            f"{'bare s':>7} {'bare ev/s/ep':>12} {'ours/bare':>9}  bare: build, prep, fit s"
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
            ours_s = time.perf_counter() - start

            start = time.perf_counter()
            network = build_model(name, 2, 3, 1e-3, None)
            build_s = time.perf_counter() - start

            start = time.perf_counter()
            mean, std = train.x.mean(0), train.x.std(0)
            fit_data = [
                (
                    ((d.x - mean) / std).astype(np.float32),
                    keras.utils.to_categorical(d.y, 3),
                    normalised(d.w),
                )
                for d in (train, validation)
            ]
            prep_s = time.perf_counter() - start

            start = time.perf_counter()
            x, y, w = fit_data[0]
            network.fit(
                x,
                y,
                sample_weight=w,
                batch_size=args.batch_size,
                epochs=args.epochs,
                verbose=0,
                validation_data=fit_data[1],
            )
            fit_s = time.perf_counter() - start
            bare_s = build_s + prep_s + fit_s

            n = len(train)
            print(
                f"{name:8} {n:>9} {load_s:>7.2f} {ours_s:>7.2f} {n * args.epochs / ours_s:>12.0f} "
                f"{bare_s:>7.2f} {n * args.epochs / bare_s:>12.0f} {ours_s / bare_s:>9.2f}  "
                f"{build_s:.2f}, {prep_s:.2f}, {fit_s:.2f}"
            )
        print(
            f"(fold 0 holds {len(data)} events; training split {len(train)}, "
            f"batch size {args.batch_size}, {args.epochs} epochs; both totals: model build, "
            "preprocessing and fit with its validation pass per epoch; ours also its logging "
            "callback, the numpy weights and the manifest; nothing is saved)"
        )


if __name__ == "__main__":
    main()
