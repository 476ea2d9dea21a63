"""Models as ONNX files, for CMSSW's ONNXRuntime, CROWN and ROOT's SOFIE.

One file per fold, ``<model stem>.onnx`` next to the model: input ``variables`` (float32
``[N, n_variables]``, the raw variables in the config's order), output ``probabilities``
(float32 ``[N, n_classes]``; ``response`` for a two-class TMVA job, TMVA's EvaluateMVA
value). The metadata (``metadata_props``, strings) name the variables and classes (JSON lists),
the engine, the folds and the source model with its sha256; the opsets are stated in the
file. ``onnx`` is imported only here, lazily, and the model passes ``onnx.checker`` before it
is written. The graph is built by :mod:`htt_tmva.export.onnx_graph`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from htt_tmva.errors import EngineError

log = logging.getLogger(__name__)

OUTPUT, TWO_CLASS_OUTPUT = "probabilities", "response"


def import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise EngineError(
            "--format onnx needs the onnx package: pip install onnx (or htt_tmva[onnx])"
        ) from exc
    return onnx


def output_name(spec: dict[str, Any]) -> str:
    return TWO_CLASS_OUTPUT if spec["classes"] == [TWO_CLASS_OUTPUT] else OUTPUT


def onnx_metadata(spec: dict[str, Any], manifest, source: Path) -> dict[str, str]:
    """What a user of the file needs to feed it and read it, as strings."""
    from htt_tmva.engines.manifest import file_digest

    meta = {
        "producer": "htt-tmva",
        "input": "variables",
        "output": output_name(spec),
        "variables": json.dumps(list(spec["variables"])),
        "classes": json.dumps(list(spec["classes"])),
        "engine": manifest.engine,
        "fold": str(manifest.fold),
        "n_folds": str(manifest.n_folds),
        "trained_on": json.dumps(list(manifest.trained_on)),
        "scores_fold": str(manifest.scores_fold),
        "scores_events": f"event % {manifest.n_folds} == {manifest.scores_fold}",
        "source_model": Path(source).name,
        "source_sha256": file_digest(source),
        "training_config": str(manifest.training_config),
        "config_hash": str(manifest.config_hash),
    }
    tmva = spec.get("tmva")
    if tmva:
        meta.update(
            tmva_method=str(tmva["method"]),
            tmva_title=str(tmva["title"]),
            tmva_classes=json.dumps(list(tmva["classes"])),
            tmva_internal_names=json.dumps(list(tmva["internal_names"])),
            tmva_transformations=str(tmva["transformations"]),
        )
    return meta


def onnx_model(spec: dict[str, Any], metadata: dict[str, str], title: str):
    """The checked ``ModelProto`` of ``spec``."""
    from htt_tmva._version import __version__
    from htt_tmva.export.onnx_graph import ML_OPSET, OPSET, onnx_graph

    onnx = import_onnx()
    helper = onnx.helper
    graph = onnx_graph(spec, output_name(spec), "htt_tmva_model")
    opsets = [helper.make_opsetid("", OPSET)]
    if any(node.domain == "ai.onnx.ml" for node in graph.node):
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="htt-tmva",
        producer_version=__version__,
        doc_string=title,
        ir_version=8,  # ONNX 1.10+ and onnxruntime 1.10+ read it (CMSSW, LCG views)
    )
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def onnx_path(model_path: Path) -> Path:
    """``fold0_keras_model_example.keras`` -> ``fold0_keras_model_example.onnx``;
    ``fold0_TMVAClassification_BDT.weights.xml`` -> ``fold0_TMVAClassification_BDT.onnx``."""
    return Path(model_path).with_name(f"{Path(model_path).name.split('.')[0]}.onnx")


def write_onnx(model, path: Path) -> Path:
    Path(path).write_bytes(model.SerializeToString())
    return Path(path)


def onnx_models(config, specs: list, paths: list, models: list) -> list:
    """The checked ONNX model of each fold's spec (nothing written yet)."""
    out = []
    for spec, path, model in zip(specs, paths, models):
        what = f"fold {model.manifest.fold}" if model.manifest.fold >= 0 else Path(path).name
        title = f"htt-tmva {model.manifest.engine} model ({what}) of {config.source}"
        out.append(onnx_model(spec, onnx_metadata(spec, model.manifest, path), title))
    return out


def write_onnx_files(paths: list, models: list) -> list[Path]:
    """``<model stem>.onnx`` next to each model and its sha256 recorded in the model's
    manifest (``files.onnx``; a TMVA weight file without a manifest gets none), all or
    nothing: the manifests are renamed last."""
    from htt_tmva._files import atomic_outputs
    from htt_tmva.engines.manifest import file_digest, manifest_path

    finals = [onnx_path(p) for p in paths]
    manifests = [manifest_path(p) for p in paths if manifest_path(p).is_file()]
    documents = {m: json.loads(m.read_text()) for m in manifests}
    with atomic_outputs([*finals, *manifests]) as temps:
        for temp, final, path, model in zip(temps, finals, paths, models):
            write_onnx(model, temp)
            document = documents.get(manifest_path(path))
            if document is None:
                log.info("'%s' has no manifest: the digest of '%s' is not recorded", path, final)
                continue
            document.setdefault("files", {})["onnx"] = {
                "file": final.name,
                "sha256": file_digest(temp),
                "opset": ", ".join(
                    f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import
                ),
            }
        for temp, manifest in zip(temps[len(finals) :], manifests):
            temp.write_text(json.dumps(documents[manifest], indent=2))
    return finals
