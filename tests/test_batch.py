"""HTCondor submission: job folders parsed by HTCondor's own bindings, and each job's command
run here, locally, giving what the direct command gives; resubmission of failed jobs only;
the dataset step as a DAG (part jobs, then the merge)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, dataset_document, htt_tmva, training_document, write_yaml

htcondor2 = pytest.importorskip("htcondor2", reason="HTCondor's Python bindings not installed")
uproot = pytest.importorskip("uproot")


def condor_jobs(description: Path) -> list[list[str]]:
    """The arguments of every job of a submit description, as HTCondor expands them."""
    submit = htcondor2.Submit(description.read_text())
    jobs = []
    for item in submit.itemdata():
        one = htcondor2.Submit(dict(submit))
        for key, value in item.items():
            one[key] = value
        jobs.append(one.expand("arguments").split())
    return jobs


def run_job(description: Path, arguments: list[str]) -> None:
    """Run a job as the execute node would: the description's executable with its arguments."""
    submit = htcondor2.Submit(description.read_text())
    result = subprocess.run(
        [submit["executable"], *arguments],
        capture_output=True,
        text=True,
        cwd=submit["initialdir"],
        timeout=600,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def bdt_training(fold_dir, tmp_path):
    """Two identical BDT training configs that differ only in their output folder."""

    def make(name: str) -> Path:
        doc = training_document(fold_dir, tmp_path / name, engine="bdt")
        doc["bdt"] = {"NTrees": 20, "MaxDepth": 2}
        return write_yaml(tmp_path / f"{name}.yaml", doc)

    return make


def test_training_jobs_expand_and_reproduce_the_direct_command(bdt_training, tmp_path):
    direct, batch = bdt_training("direct"), bdt_training("batch")
    result = htt_tmva("train", str(direct), "--all-folds", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    jobs_dir = tmp_path / "jobs"
    result = htt_tmva(
        "submit", "train", str(batch), "--job-dir", str(jobs_dir), "--dry-run",
        "--request-cpus", "2", "--request-memory", "3 GB", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    description = jobs_dir / "train.sub"
    assert f"condor_submit {description}" in result.stderr

    submit = htcondor2.Submit(description.read_text())
    assert submit["request_cpus"] == "2" and submit["request_memory"] == "3 GB"
    assert condor_jobs(description) == [["0", "--engine", "bdt"], ["1", "--engine", "bdt"]]
    for arguments in condor_jobs(description):
        run_job(description, arguments)

    from htt_tmva.engines.base import load_model

    x = np.random.default_rng(3).normal(size=(500, 2))
    for fold in (0, 1):
        ours = load_model(tmp_path / "batch" / f"fold{fold}_bdt_model.json").predict(x)
        theirs = load_model(tmp_path / "direct" / f"fold{fold}_bdt_model.json").predict(x)
        np.testing.assert_array_equal(ours, theirs)


def test_training_jobs_per_engine_and_chosen_folds(bdt_training, tmp_path):
    jobs_dir = tmp_path / "jobs"
    result = htt_tmva(
        "submit", "train", str(bdt_training("m")), "1", "--engine", "bdt", "--engine", "keras",
        "--job-dir", str(jobs_dir), "--dry-run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    jobs = condor_jobs(jobs_dir / "train.sub")
    assert jobs == [["1", "--engine", "bdt"], ["1", "--engine", "keras"]]


@pytest.fixture
def application_setup(trained_models, toy_dir, tmp_path):
    """Three small input ntuples and the configs to score them with the fixture's BDTs."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        shutil.copy(toy_dir / "example_data.root", data / f"sample{i}.root")
    info = trained_models["bdt"]
    dataset = write_yaml(tmp_path / "dataset.yaml", dataset_document(toy_dir, tmp_path / "f"))
    application = write_yaml(
        tmp_path / "application.yaml",
        {"classifiers": [p.name for p in info["models"]][::-1], "branch_prefix": "bdt_"},
    )
    return data, [str(dataset), str(info["training_config"]), str(application)]


def test_application_jobs_group_files_and_reproduce_the_direct_command(application_setup, tmp_path):
    data, configs = application_setup
    direct, batch = tmp_path / "direct", tmp_path / "batch"
    direct.mkdir()
    batch.mkdir()
    inputs = [str(data / "sample*.root"), "ntuple"]
    result = htt_tmva("apply", *configs, *inputs, "--output", str(direct), cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    jobs_dir = tmp_path / "jobs"
    result = htt_tmva(
        "submit", "apply", *configs, *inputs, "--output", str(batch), "--files-per-job", "2",
        "--job-dir", str(jobs_dir), "--dry-run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    description = jobs_dir / "apply.sub"
    jobs = condor_jobs(description)
    files = [str(data / f"sample{i}.root") for i in range(3)]
    assert jobs == [[*files[:2], "ntuple"], [files[2], "ntuple"]]  # apply's INPUT... TREE...

    run_job(description, jobs[0])
    # --resubmit finds the job that has not run (its output is missing) and only that one
    result = htt_tmva("submit", "--resubmit", str(jobs_dir), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert condor_jobs(jobs_dir / "apply.resubmit1.sub") == [[files[2], "ntuple"]]

    run_job(description, jobs[1])
    names = [f"bdt_{c}" for c in CLASSES] + ["bdt_max_score", "bdt_max_index"]
    for i in range(3):
        with (
            uproot.open(direct / f"sample{i}.root") as a,
            uproot.open(batch / f"sample{i}.root") as b,
        ):
            left, right = a["ntuple"].arrays(library="np"), b["ntuple"].arrays(library="np")
        assert set(names) <= set(right)
        assert set(left) == set(right)
        for name in left:
            np.testing.assert_array_equal(left[name], right[name])
    result = htt_tmva("submit", "--resubmit", str(jobs_dir), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nothing to resubmit" in result.stderr
    assert not (jobs_dir / "apply.resubmit2.sub").exists()


def test_resubmit_finds_a_damaged_output(application_setup, tmp_path):
    data, configs = application_setup
    jobs_dir, out = tmp_path / "jobs", tmp_path / "out"
    out.mkdir()
    result = htt_tmva(
        "submit", "apply", *configs, str(data / "sample0.root"), "ntuple", "--friend", str(out),
        "--job-dir", str(jobs_dir), "--dry-run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    description = jobs_dir / "apply.sub"
    run_job(description, condor_jobs(description)[0])
    friend = out / "sample0.root"
    friend.write_bytes(friend.read_bytes()[: friend.stat().st_size // 2])
    result = htt_tmva("submit", "--resubmit", str(jobs_dir), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert condor_jobs(jobs_dir / "apply.resubmit1.sub") == [[str(data / "sample0.root"), "ntuple"]]


def test_setup_hook_is_sourced_before_the_command(bdt_training, tmp_path):
    setup = tmp_path / "setup.sh"
    setup.write_text('export HTT_TMVA_TEST_MARK="sourced"\n')
    jobs_dir = tmp_path / "jobs"
    result = htt_tmva(
        "submit", "train", str(bdt_training("m")), "--setup", str(setup),
        "--python", sys.executable, "--job-dir", str(jobs_dir), "--dry-run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    wrapper = (jobs_dir / "train.sh").read_text().splitlines()
    assert wrapper.index(f"source {setup}") < next(
        i for i, line in enumerate(wrapper) if line.startswith("exec ")
    )
    assert os.access(jobs_dir / "train.sh", os.X_OK)


def test_submission_without_a_schedd_says_how_to_submit(bdt_training, tmp_path):
    jobs_dir = tmp_path / "jobs"
    result = htt_tmva(
        "submit", "train", str(bdt_training("m")), "--job-dir", str(jobs_dir), cwd=tmp_path
    )
    assert result.returncode == 1
    assert f"condor_submit {jobs_dir / 'train.sub'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_refused_inputs(bdt_training, application_setup, tmp_path):
    data, configs = application_setup
    result = htt_tmva("submit", "train", str(bdt_training("m")), "5", "--dry-run", cwd=tmp_path)
    assert result.returncode == 1 and "folds [5] do not exist" in result.stderr
    result = htt_tmva(
        "submit", "apply", *configs, str(data / "sample*.root"), "ntuple",
        "--output", str(tmp_path / "nofolder"), "--dry-run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1 and "must be an existing folder" in result.stderr
    jobs_dir = tmp_path / "jobs"
    for _ in range(2):
        result = htt_tmva(
            "submit", "train", str(bdt_training("m")), "--job-dir", str(jobs_dir), "--dry-run",
            cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 1 and "holds a submission already" in result.stderr
    result = htt_tmva("submit", "--resubmit", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and "is not a job folder" in result.stderr


# --- the dataset step: part jobs, then the merge, as a DAG --------------------------------------


def dag_nodes(dag: Path) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """The JOB nodes (name -> submit description) and PARENT/CHILD edges of a DAG file."""
    nodes, edges = {}, []
    for line in dag.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "JOB":
            nodes[words[1]] = Path(words[2])
        elif words[0] == "PARENT":
            child = words.index("CHILD")
            edges += [(p, c) for p in words[1:child] for c in words[child + 1 :]]
        else:
            raise AssertionError(f"unexpected line in {dag}: {line!r}")
    return nodes, edges


def single_job_arguments(description: Path) -> list[str]:
    """The arguments of a description that queues one job."""
    submit = htcondor2.Submit(description.read_text())
    assert submit.getQArgs() == "" and submit.itemdata() is None
    return submit.expand("arguments").split()


@pytest.mark.slow
def test_dataset_dag_runs_parts_then_merge_and_reproduces_the_direct_command(toy_dir, tmp_path):
    from test_dataset_parts import assert_same_fold_files, mixed_document, write_rich_inputs

    rich_inputs = write_rich_inputs(tmp_path)
    write_yaml(tmp_path / "a.yaml", mixed_document(toy_dir, rich_inputs, "a", folds=2))
    batch = write_yaml(tmp_path / "b.yaml", mixed_document(toy_dir, rich_inputs, "b", folds=2))
    result = htt_tmva("dataset", "a.yaml", cwd=tmp_path)  # relative output paths: from cwd
    assert result.returncode == 0, result.stderr

    jobs_dir, parts = tmp_path / "jobs", tmp_path / "jobs" / "parts"
    result = htt_tmva(
        "submit", "dataset", batch.name, "--job-dir", "jobs", "--dry-run",
        "--request-cpus", "2", "--request-memory", "3 GB", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    dag = jobs_dir / "dataset.dag"
    assert f"condor_submit_dag {dag}" in result.stderr
    nodes, edges = dag_nodes(dag)
    description, merge = jobs_dir / "dataset.sub", jobs_dir / "dataset.merge.sub"
    assert nodes == {"dataset": description, "merge": merge}
    assert edges == [("dataset", "merge")]
    # the bindings build the DAGMan job for it (DagmanPath: this machine has no condor_dagman)
    dagman = htcondor2.Submit.from_dag(str(dag), {"DagmanPath": shutil.which("true")})
    assert f"-Dag {dag}" in dagman["arguments"]

    submit = htcondor2.Submit(description.read_text())
    assert submit["request_cpus"] == "2" and submit["request_memory"] == "3 GB"
    processes = ["signal", "background_1", "background_2", "rich_0", "rich_1"]
    expected = [
        ["--process", p, "--fold", str(f), "--partial-output", str(parts)]
        for p in processes
        for f in (0, 1)
    ]
    jobs = condor_jobs(description)
    assert jobs == expected
    assert single_job_arguments(merge) == ["--merge", str(parts)]
    assert htcondor2.Submit(merge.read_text())["executable"] == submit["executable"]

    for arguments in jobs[:3]:
        run_job(description, arguments)
    # --resubmit: a new DAG of the parts not written yet, and the merge after them
    result = htt_tmva("submit", "--resubmit", "jobs", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "condor_submit_dag" in result.stderr
    nodes, edges = dag_nodes(jobs_dir / "dataset.resubmit1.dag")
    assert nodes == {"dataset": jobs_dir / "dataset.resubmit1.sub", "merge": merge}
    assert edges == [("dataset", "merge")]
    assert condor_jobs(jobs_dir / "dataset.resubmit1.sub") == jobs[3:]

    for arguments in jobs[3:]:
        run_job(description, arguments)
    run_job(merge, single_job_arguments(merge))
    finals = [tmp_path / "b" / f"fold{i}_training_dataset.root" for i in (0, 1)]
    assert_same_fold_files([tmp_path / "a" / p.name for p in finals], finals)

    result = htt_tmva("submit", "--resubmit", "jobs", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nothing to resubmit" in result.stderr
    assert not (jobs_dir / "dataset.resubmit2.dag").exists()
    # a lost fold file: only the merge is submitted again
    finals[1].unlink()
    result = htt_tmva("submit", "--resubmit", "jobs", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert dag_nodes(jobs_dir / "dataset.resubmit2.dag") == ({"merge": merge}, [])
    assert not (jobs_dir / "dataset.resubmit2.sub").exists()
    run_job(merge, single_job_arguments(merge))
    assert_same_fold_files([tmp_path / "a" / p.name for p in finals], finals)


def test_dataset_submission_without_a_schedd_says_how_to_submit_the_dag(toy_dir, tmp_path):
    config = write_yaml(tmp_path / "d.yaml", dataset_document(toy_dir, tmp_path / "out"))
    jobs_dir = tmp_path / "jobs"
    result = htt_tmva("submit", "dataset", str(config), "--job-dir", str(jobs_dir), cwd=tmp_path)
    assert result.returncode == 1
    assert f"condor_submit_dag {jobs_dir / 'dataset.dag'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert (jobs_dir / "dataset.merge.sub").exists() and (jobs_dir / "dataset.sh").exists()


def test_dataset_processes_that_cannot_be_job_items_are_refused(toy_dir, tmp_path):
    doc = dataset_document(toy_dir, tmp_path / "out")
    doc["processes"]["two words"] = doc["processes"].pop("signal")
    config = write_yaml(tmp_path / "d.yaml", doc)
    result = htt_tmva(
        "submit", "dataset", str(config), "--job-dir", "jobs", "--dry-run", cwd=tmp_path
    )
    assert result.returncode == 1 and "['two words']" in result.stderr
    assert not (tmp_path / "jobs").exists()


def test_resubmit_does_not_count_old_scores_of_an_overwrite_job_as_done(
    application_setup, tmp_path
):
    """Inputs that hold score branches from an earlier run: the --overwrite jobs that never
    ran are resubmitted (their records name no job of this folder); a job that ran is done."""
    data, configs = application_setup
    files = [str(data / f"sample{i}.root") for i in range(2)]
    result = htt_tmva("apply", *configs, *files, "ntuple", cwd=tmp_path)  # old scores
    assert result.returncode == 0, result.stderr
    jobs_dir = tmp_path / "jobs"
    result = htt_tmva(
        "submit", "apply", *configs, *files, "ntuple", "--overwrite", "--job-dir", str(jobs_dir),
        "--dry-run", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    description = jobs_dir / "apply.sub"
    jobs = condor_jobs(description)
    assert "--overwrite" in (jobs_dir / "apply.sh").read_text()
    result = htt_tmva("submit", "--resubmit", str(jobs_dir), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not written by a job of this folder" in result.stderr
    assert condor_jobs(jobs_dir / "apply.resubmit1.sub") == jobs

    run_job(description, jobs[0])
    result = htt_tmva("submit", "--resubmit", str(jobs_dir), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert condor_jobs(jobs_dir / "apply.resubmit2.sub") == jobs[1:]


@pytest.mark.parametrize("where", ["input", "job folder", "parts folder"])
def test_paths_that_htcondor_would_read_differently_are_refused(
    application_setup, toy_dir, where, tmp_path
):
    """'$(' starts an HTCondor macro, white space splits arguments and DAG fields: such a
    path is refused before anything is written, not expanded into another one."""
    data, configs = application_setup
    jobs_dir, odd = tmp_path / "jobs", "odd $(Cluster)"
    if where == "input":
        (data / odd).mkdir()
        shutil.copy(data / "sample0.root", data / odd / "s.root")
        arguments = ["apply", *configs, str(data / odd / "s.root"), "ntuple"]
    elif where == "job folder":
        jobs_dir = tmp_path / odd
        arguments = ["apply", *configs, str(data / "sample0.root"), "ntuple"]
    else:
        dataset = write_yaml(tmp_path / "d.yaml", dataset_document(toy_dir, tmp_path / "folds"))
        arguments = ["dataset", str(dataset), "--partial-output", str(tmp_path / odd)]
    result = htt_tmva("submit", *arguments, "--job-dir", str(jobs_dir), "--dry-run", cwd=tmp_path)
    assert result.returncode == 1
    assert "holds ' ', '$'" in result.stderr and "'$(' starts a macro" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (jobs_dir / "jobs.json").exists()


def test_a_working_folder_with_spaces_is_read_as_written(application_setup, tmp_path):
    data, configs = application_setup
    here = tmp_path / "my analysis"
    here.mkdir()
    result = htt_tmva(
        "submit", "apply", *configs, str(data / "sample0.root"), "ntuple", "--friend",
        str(tmp_path / "f.root"), "--job-dir", str(tmp_path / "jobs"), "--dry-run", cwd=here,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    submit = htcondor2.Submit((tmp_path / "jobs" / "apply.sub").read_text())
    assert submit.expand("initialdir") == str(here)
    run_job(tmp_path / "jobs" / "apply.sub", condor_jobs(tmp_path / "jobs" / "apply.sub")[0])
    assert (tmp_path / "f.root").is_file()
