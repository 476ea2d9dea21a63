"""Config validation at the boundary: clear errors naming file, key path and choices;
relative paths resolved against the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import dataset_document, training_document, write_yaml

from htt_tmva.config import load_dataset_config, load_training_config
from htt_tmva.errors import ConfigError, HttTmvaError


@pytest.fixture
def write_dataset(tmp_path):
    """Write a dataset document (mutated by ``edit``) to tmp_path/dataset.yaml."""

    def make(edit=lambda doc: None, **overrides) -> Path:
        doc = dataset_document(tmp_path / "toy", tmp_path / "out", **overrides)
        edit(doc)
        return write_yaml(tmp_path / "dataset.yaml", doc)

    return make


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_dataset_config(path)
    return str(info.value)


def test_config_error_is_an_htt_tmva_error_that_the_cli_prints_without_traceback(write_dataset):
    import subprocess
    import sys

    def edit(doc):
        doc["folds"] = 1

    path = write_dataset(edit)
    with pytest.raises(HttTmvaError) as info:
        load_dataset_config(path)
    assert type(info.value) is ConfigError
    assert str(info.value) == f"{path}: key 'folds' must be at least 2, got 1"

    command = [sys.executable, "-m", "htt_tmva", "dataset", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == f"ERROR htt_tmva: {info.value}"


def test_valid_dataset_config_loads_with_defaults(write_dataset, tmp_path):
    config = load_dataset_config(write_dataset())
    assert config.folds == 2
    assert config.tree_path == "ntuple"
    assert config.event_branch == "event"
    assert config.training_weight_branch == "training_weight"
    assert list(config.processes) == ["signal", "background_1", "background_2"]
    assert config.classes == ["signal", "background_1", "background_2"]
    signal = config.processes["signal"]
    assert signal.files == [(tmp_path / "toy" / "example_signal.root").resolve()]
    assert signal.cut_string == "(x > -3.0)"
    assert signal.weight_string == "(weights)"
    assert config.fold_file(1) == (tmp_path / "out" / "fold1_training_dataset.root").resolve()


def test_process_cut_and_weight_default_to_one(write_dataset):
    def edit(doc):
        del doc["processes"]["signal"]["cut_string"]
        del doc["processes"]["signal"]["weight_string"]

    config = load_dataset_config(write_dataset(edit))
    assert config.processes["signal"].cut_string == "1"
    assert config.processes["signal"].weight_string == "1"


def test_plain_numbers_are_accepted_as_cut_and_weight_expressions(write_dataset):
    def edit(doc):
        doc["processes"]["signal"]["cut_string"] = 1
        doc["processes"]["signal"]["weight_string"] = 0.5

    config = load_dataset_config(write_dataset(edit))
    assert config.processes["signal"].cut_string == "1"
    assert config.processes["signal"].weight_string == "0.5"


def test_misspelled_top_level_key_names_file_key_choices_and_suggestion(write_dataset):
    def edit(doc):
        doc["output_pat"] = doc.pop("output_path")

    path = write_dataset(edit)
    message = load_error(path)
    assert str(path) in message
    assert "'output_pat'" in message
    assert "did you mean 'output_path'?" in message
    for key in ("output_filename", "tree_path", "event_branch", "processes"):
        assert f"'{key}'" in message


def test_misspelled_process_key_names_its_full_key_path(write_dataset):
    def edit(doc):
        doc["processes"]["background_1"]["cut_strng"] = "x > 0"

    message = load_error(write_dataset(edit))
    assert "processes.background_1.cut_strng" in message
    assert "did you mean 'cut_string'?" in message
    assert "'weight_string'" in message and "'class'" in message


def test_unknown_key_without_close_match_lists_valid_keys(write_dataset):
    message = load_error(write_dataset(zzz_unrelated=3))
    assert "'zzz_unrelated'" in message
    assert "did you mean" not in message
    assert "'training_weight_branch'" in message


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        ({"folds": "two"}, "folds", "an integer"),
        ({"folds": True}, "folds", "an integer"),
        ({"folds": 2.5}, "folds", "an integer"),
        ({"tree_path": ["ntuple"]}, "tree_path", "a string"),
        ({"processes": ["signal"]}, "processes", "a mapping"),
    ],
)
def test_wrong_type_names_key_and_expected_type(write_dataset, overrides, key, expected):
    message = load_error(write_dataset(**overrides))
    assert f"key '{key}'" in message
    assert expected in message


def test_wrong_type_inside_a_process_names_list_index(write_dataset):
    def edit(doc):
        doc["processes"]["signal"]["files"] = ["example_signal.root", 7]

    message = load_error(write_dataset(edit))
    assert "processes.signal.files[1]" in message
    assert "a string" in message


def test_files_given_as_a_string_instead_of_a_list_is_refused(write_dataset):
    def edit(doc):
        doc["processes"]["signal"]["files"] = "example_signal.root"

    message = load_error(write_dataset(edit))
    assert "processes.signal.files" in message and "a list" in message


@pytest.mark.parametrize(
    "key",
    [
        "output_path",
        "output_filename",
        "tree_path",
        "event_branch",
        "training_weight_branch",
        "processes",
    ],
)
def test_missing_required_top_level_key_is_named(write_dataset, key):
    message = load_error(write_dataset(lambda doc: doc.pop(key)))
    assert f"key '{key}' is required but missing" in message


@pytest.mark.parametrize("key", ["files", "class"])
def test_missing_required_process_key_is_named(write_dataset, key):
    message = load_error(write_dataset(lambda doc: doc["processes"]["signal"].pop(key)))
    assert f"key 'processes.signal.{key}' is required but missing" in message


def test_empty_value_of_required_key_is_refused(write_dataset):
    message = load_error(write_dataset(tree_path=None))
    assert "key 'tree_path' is empty" in message


@pytest.mark.parametrize(
    ("overrides", "text"),
    [
        ({"folds": 1}, "at least 2"),
        ({"processes": {}}, "must not be empty"),
    ],
)
def test_invalid_values_are_refused(write_dataset, overrides, text):
    assert text in load_error(write_dataset(**overrides))


def test_empty_file_list_is_refused(write_dataset):
    message = load_error(write_dataset(lambda doc: doc["processes"]["signal"].update(files=[])))
    assert "processes.signal.files" in message and "must not be empty" in message


def test_missing_config_file_is_a_config_error(tmp_path):
    message = load_error(tmp_path / "nope.yaml")
    assert "nope.yaml" in message and "does not exist" in message


def test_invalid_yaml_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("output_path: [out\ntree_path: ntuple\n")
    message = load_error(path)
    assert "broken.yaml" in message and "not valid YAML" in message


@pytest.mark.parametrize("content", ["", "- a\n- b\n", "just text\n"])
def test_top_level_that_is_not_a_mapping_is_refused(tmp_path, content):
    path = tmp_path / "dataset.yaml"
    path.write_text(content)
    message = load_error(path)
    assert "expected a mapping" in message and "'processes'" in message


def test_relative_paths_resolve_against_the_working_directory_not_the_config_folder(
    tmp_path, monkeypatch
):
    config_dir = tmp_path / "analysis" / "configs"
    config_dir.mkdir(parents=True)
    doc = dataset_document(Path("inputs"), Path("folds"))
    doc["processes"]["signal"]["files"] = ["sub/example_signal.root", "/abs/other.root"]
    write_yaml(config_dir / "dataset.yaml", doc)
    monkeypatch.chdir(tmp_path / "analysis")
    config = load_dataset_config(Path("configs") / "dataset.yaml")
    monkeypatch.chdir("/")  # resolved once, when loaded
    inputs = (tmp_path / "analysis" / "inputs").resolve()
    assert config.base_path == inputs
    assert config.output_path == (tmp_path / "analysis" / "folds").resolve()
    assert config.processes["signal"].files == [
        inputs / "sub" / "example_signal.root",
        Path("/abs/other.root"),
    ]
    assert config.processes["background_1"].files == [inputs / "example_background_1.root"]
    assert (
        config.fold_file(0)
        == (tmp_path / "analysis" / "folds" / "fold0_training_dataset.root").resolve()
    )


def test_base_path_defaults_to_the_working_directory(tmp_path, monkeypatch):
    doc = dataset_document(tmp_path, Path("out"))
    del doc["base_path"]
    path = write_yaml(tmp_path / "configs.yaml", doc)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = load_dataset_config(path)
    assert config.base_path == work.resolve()
    assert config.output_path == (work / "out").resolve()
    assert config.processes["signal"].files == [(work / "example_signal.root").resolve()]


def test_training_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "training").mkdir()
    doc = training_document(Path("."), Path("."))
    doc["datasets"] = ["fold0_example_dataset.root", "fold1_example_dataset.root"]
    path = write_yaml(tmp_path / "training" / "config.yaml", doc)
    monkeypatch.chdir(tmp_path)
    config = load_training_config(Path("training") / "config.yaml")
    assert config.output_path == tmp_path.resolve()
    assert config.datasets[1] == (tmp_path / "fold1_example_dataset.root").resolve()
    assert path.exists()


def test_classic_preprocessing_names_map_to_ours(tmp_path):
    for classic, ours in (("standard_scaler", "standard"), ("min_max_scaler", "minmax")):
        doc = training_document(tmp_path, tmp_path, preprocessing=classic)
        assert load_training_config(write_yaml(tmp_path / "t.yaml", doc)).preprocessing == ours


# --- training config: the same validator, a few stage-specific checks -----------------------


def write_training(tmp_path: Path, **overrides) -> Path:
    return write_yaml(
        tmp_path / "training.yaml",
        training_document(tmp_path / "folds", tmp_path / "models", **overrides),
    )


def test_valid_training_config_loads(tmp_path):
    config = load_training_config(write_training(tmp_path))
    assert config.folds == 2
    assert config.classes == ["signal", "background_1", "background_2"]
    assert config.class_weights["signal"] == 10.0
    assert config.model.batch_size == 256
    assert config.bdt.NTrees == 60 and config.bdt.Shrinkage == pytest.approx(0.10)


def test_misspelled_engine_value_suggests_the_valid_choice(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_training_config(write_training(tmp_path, engine="kears"))
    message = str(info.value)
    assert "key 'engine'" in message and "did you mean 'keras'?" in message
    assert "'bdt'" in message


def test_misspelled_nested_model_key_names_path(tmp_path):
    model = {"name": "example", "batch_size": 256, "epoch": 3}
    with pytest.raises(ConfigError, match=r"model\.epoch.*did you mean 'epochs'"):
        load_training_config(write_training(tmp_path, model=model))


def test_class_weights_must_cover_exactly_the_classes(tmp_path):
    weights = {"signal": 1.0, "background_1": 1.0, "backgrund_2": 1.0}
    with pytest.raises(ConfigError) as info:
        load_training_config(write_training(tmp_path, class_weights=weights))
    assert "backgrund_2" in str(info.value) and "background_2" in str(info.value)


def test_duplicate_classes_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="duplicates"):
        load_training_config(
            write_training(tmp_path, classes=["signal", "signal"], class_weights=None)
        )
