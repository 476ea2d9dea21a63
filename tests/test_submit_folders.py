"""``htt-tmva submit apply`` with several trees, tree patterns and the classic friend layout:
job folders written with --dry-run, each job run here as the execute node would run it, the
outputs compared with the direct ``htt-tmva apply``, and ``--resubmit`` on them."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import test_application
import yaml
from conftest import htt_tmva
from test_apply_folders import DOWN, NOMINAL, UP, branches, write_folders
from test_batch import condor_jobs, run_job

uproot = pytest.importorskip("uproot")

setup = test_application.setup  # the fixture: (dataset, training, application) configs
SHIFTS = "mt_*Up/ntuple"


@pytest.fixture
def artus(tmp_path) -> list[Path]:
    """Two samples in the Artus layout <nick>/<nick>.root: a simulated one with shift folders,
    a data one with the nominal folder only."""
    files = []
    for nick, trees, n in (("DYJets", (NOMINAL, UP, DOWN), 300), ("SingleMuon", (NOMINAL,), 200)):
        (tmp_path / "ntuples" / nick).mkdir(parents=True)
        files.append(write_folders(tmp_path / "ntuples" / nick / f"{nick}.root", n, trees))
    return files


def submit(*arguments: str, cwd: Path):
    return htt_tmva("submit", "apply", *arguments, "--dry-run", cwd=cwd)


def resubmitted(jobs_dir: Path, cwd: Path) -> list[list[str]]:
    """The jobs ``--resubmit --dry-run`` writes now ([] when there is nothing to resubmit)."""
    before = set(jobs_dir.glob("apply.resubmit*.sub"))
    result = htt_tmva("submit", "--resubmit", str(jobs_dir), "--dry-run", cwd=cwd)
    assert result.returncode == 0, result.stderr
    (new,) = set(jobs_dir.glob("apply.resubmit*.sub")) - before or [None]
    if new is None:
        assert "nothing to resubmit" in result.stderr
        return []
    return condor_jobs(new)


def trees_of(path: Path) -> set[str]:
    with uproot.open(path) as f:
        return {k.split(";")[0] for k, c in f.classnames().items() if c == "TTree"}


def test_patterns_and_friend_dir_reproduce_the_direct_command(setup, artus, tmp_path):
    """Each job gets the patterns that match in its file (the data file has no shift folder:
    its job gets the nominal tree only, as the direct command over both files scores it);
    one friend file per input collects its folders; --resubmit counts a job as done only
    when its friend file holds every folder and the record names this folder's job."""
    configs = [str(c) for c in setup("bdt")]
    inputs = [str(tmp_path / "ntuples" / "*" / "*.root"), NOMINAL, SHIFTS]
    result = htt_tmva("apply", *configs, *inputs, "--friend-dir", "direct", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    jobs_dir = tmp_path / "jobs"
    result = submit(*configs, *inputs, "--friend-dir", "batch", "--job-dir", "jobs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    description = jobs_dir / "apply.sub"
    jobs = condor_jobs(description)
    simulated, data = (str(f) for f in artus)
    assert jobs == [[simulated, NOMINAL, SHIFTS], [data, NOMINAL]]
    assert f"--friend-dir {tmp_path / 'batch'}" in (jobs_dir / "apply.sh").read_text()
    assert resubmitted(jobs_dir, tmp_path) == jobs

    run_job(description, jobs[0])
    assert resubmitted(jobs_dir, tmp_path) == jobs[1:]
    run_job(description, jobs[1])
    assert resubmitted(jobs_dir, tmp_path) == []

    for nick, trees in (("DYJets", {NOMINAL, UP}), ("SingleMuon", {NOMINAL})):
        direct = tmp_path / "direct" / nick / f"{nick}.root"
        batch = tmp_path / "batch" / nick / f"{nick}.root"
        assert trees_of(batch) == trees_of(direct) == trees
        for tree in trees:
            with uproot.open(direct) as a, uproot.open(batch) as b:
                left, right = a[tree].arrays(library="np"), b[tree].arrays(library="np")
            assert set(left) == set(right) and "bdt_max_score" in right
            for name in left:
                np.testing.assert_array_equal(left[name], right[name])
        record = batch.with_name(f"{nick}.bdt_application.yaml")
        (run,) = yaml.safe_load(record.read_text())["runs"]
        assert set(run["trees"]) == trees and run["job"]

    # a record that does not name every folder of the job: the job is not done
    record = tmp_path / "batch" / "DYJets" / "DYJets.bdt_application.yaml"
    document = yaml.safe_load(record.read_text())
    document["runs"][0]["trees"] = [NOMINAL]
    record.write_text(yaml.safe_dump(document))
    assert resubmitted(jobs_dir, tmp_path) == jobs[:1]


def test_in_place_jobs_score_every_folder_and_resubmit_checks_each(setup, artus, tmp_path):
    """In place, with all folders ('*/ntuple') and two files per job: one job, both files
    rewritten once each; a folder whose scores are missing makes the job count as failed."""
    configs = [str(c) for c in setup("bdt")]
    jobs_dir = tmp_path / "jobs"
    result = submit(
        *configs, *map(str, artus), "*/ntuple", "--files-per-job", "2", "--job-dir", "jobs",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    jobs = condor_jobs(jobs_dir / "apply.sub")
    assert jobs == [[*map(str, artus), "*/ntuple"]]
    run_job(jobs_dir / "apply.sub", jobs[0])
    assert {NOMINAL, UP, DOWN} <= trees_of(artus[0])
    for tree in (NOMINAL, UP, DOWN):
        assert "bdt_max_score" in branches(artus[0], tree)
    assert "bdt_max_score" in branches(artus[1], NOMINAL)
    assert resubmitted(jobs_dir, tmp_path) == []
    # submitted again without --overwrite: refused at submission, as each job would refuse
    arguments = [*configs, *map(str, artus), "*/ntuple", "--job-dir", "again"]
    result = submit(*arguments, cwd=tmp_path)
    assert result.returncode == 1 and "give --overwrite" in result.stderr
    assert f"of '{artus[0]}' has the score branches" in result.stderr
    assert not (tmp_path / "again").exists()
    assert submit(*arguments, "--overwrite", cwd=tmp_path).returncode == 0

    # a folder that appears in an input later matches the job's pattern without scores
    from htt_tmva._root import root

    ROOT = root()
    tfile = ROOT.TFile.Open(str(artus[1]), "UPDATE")
    tfile.mkdir("mt_newShiftUp").cd()
    tree = ROOT.TTree("ntuple", "a new shift")
    x = np.zeros(1, np.float32)
    tree.Branch("x", x, "x/F")
    tree.Fill()
    tree.Write()
    tfile.Close()
    result = htt_tmva("submit", "--resubmit", str(jobs_dir), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "tree 'mt_newShiftUp/ntuple'" in result.stderr and "lacks the score" in result.stderr
    assert condor_jobs(jobs_dir / "apply.resubmit1.sub") == jobs


def test_submit_time_checks_name_the_file_and_the_tree(setup, artus, tmp_path):
    configs = [str(c) for c in setup("bdt")]
    simulated, data = map(str, artus)
    cases = [
        ([simulated, data, "et_*/ntuple"], f"input '{simulated}' has no tree matching"),
        ([simulated, data, UP], f"input '{data}' has no tree ['{UP}']"),
        ([simulated, data, NOMINAL, "et_*/ntuple"], "['et_*/ntuple'] match no tree in any"),
        ([simulated, NOMINAL, NOMINAL], "given twice"),
    ]
    for arguments, message in cases:
        result = submit(*configs, *arguments, "--job-dir", "jobs", cwd=tmp_path)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "jobs" / "jobs.json").exists()
    # a file that cannot be opened here: its job is given every tree and says why itself
    broken = tmp_path / "broken.root"
    broken.write_bytes(b"not a ROOT file")
    result = submit(
        *configs, str(broken), simulated, NOMINAL, SHIFTS, "--job-dir", "jobs", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"the trees of '{broken}' are not checked here" in result.stderr
    assert condor_jobs(tmp_path / "jobs" / "apply.sub") == [
        [str(broken), NOMINAL, SHIFTS],
        [simulated, NOMINAL, SHIFTS],
    ]


def test_two_inputs_with_one_friend_file_are_refused(setup, tmp_path):
    """The classic nick of a/x.root and b/x.root is 'x': two jobs would write one file."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_folders(tmp_path / folder / "x.root", 50, (NOMINAL,))
    result = submit(
        *map(str, setup("bdt")), str(tmp_path / "a" / "x.root"), str(tmp_path / "b" / "x.root"),
        NOMINAL, "--friend-dir", "friends", "--job-dir", "jobs", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "would both be written to" in result.stderr and "x/x.root" in result.stderr
    assert not (tmp_path / "jobs").exists()


def test_output_directory_of_the_config_is_where_jobs_write(setup, artus, tmp_path):
    """The classic key output_directory (apply writes friends there when no mode is given):
    the jobs' outputs and records are looked for there, not in place."""
    configs = [str(c) for c in setup("bdt", output_directory="classic")]
    jobs_dir = tmp_path / "jobs"
    result = submit(*configs, str(artus[1]), NOMINAL, "--job-dir", "jobs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"--friend-dir {tmp_path / 'classic'}" in (jobs_dir / "apply.sh").read_text()
    run_job(jobs_dir / "apply.sub", condor_jobs(jobs_dir / "apply.sub")[0])
    friend = tmp_path / "classic" / "SingleMuon" / "SingleMuon.root"
    assert "bdt_max_score" in branches(friend, NOMINAL)
    assert "bdt_max_score" not in branches(artus[1], NOMINAL)
    assert resubmitted(jobs_dir, tmp_path) == []


def test_every_per_file_option_of_apply_is_passed_to_the_jobs(setup, artus, tmp_path):
    """Parity: what 'apply' takes per file, 'submit apply' takes and gives every job (left
    out: --executor and --workers, a Dask cluster inside a batch job)."""
    from htt_tmva.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    steps = commands["submit"]._subparsers._group_actions[0].choices

    def options(p) -> set[str]:
        return {s for a in p._actions for s in a.option_strings}

    assert options(commands["apply"]) - options(steps["apply"]) == {"--executor", "--workers"}

    configs = [str(c) for c in setup("bdt")]
    chosen = [
        "--overwrite", "--nonfinite-default", "-1.5", "--chunk-size", "100", "--no-compile",
        "--scoring-threads", "0", "--engine", "bdt",
    ]  # fmt: skip
    jobs_dir = tmp_path / "jobs"
    result = submit(*configs, str(artus[1]), NOMINAL, *chosen, "--job-dir", "jobs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    wrapper = (jobs_dir / "apply.sh").read_text()
    tail = shlex.split(wrapper.splitlines()[-1].split('"$@"', 1)[1])
    given = parser.parse_args(["apply", *configs, str(artus[1]), NOMINAL, *tail])
    wanted = parser.parse_args(["apply", *configs, str(artus[1]), NOMINAL, *chosen])
    assert vars(given) == vars(wanted)
    # the job runs with them: the Python path (--no-compile), scores of the direct command
    run_job(jobs_dir / "apply.sub", condor_jobs(jobs_dir / "apply.sub")[0])
    assert "bdt_max_score" in branches(artus[1], NOMINAL)
    assert resubmitted(jobs_dir, tmp_path) == []


def test_remote_inputs_are_queued_as_urls_and_never_in_place(setup, tmp_path):
    """root:// inputs are not opened at submission (their jobs match the patterns) and keep
    their URL; in place they are refused at submission, as 'apply' refuses them."""
    configs = [str(c) for c in setup("bdt")]
    url = "root://localhost//store/DYJets/DYJets.root"
    result = submit(*configs, url, NOMINAL, SHIFTS, "--job-dir", "jobs", cwd=tmp_path)
    assert result.returncode == 1 and "cannot be rewritten in place" in result.stderr
    assert not (tmp_path / "jobs").exists()
    result = submit(
        *configs, url, NOMINAL, SHIFTS, "--friend-dir", "friends", "--job-dir", "jobs",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert condor_jobs(tmp_path / "jobs" / "apply.sub") == [[url, NOMINAL, SHIFTS]]
    record = json.loads((tmp_path / "jobs" / "jobs.json").read_text())
    (job,) = record["jobs"]["jobs"]
    assert job["outputs"]["files"] == [str(tmp_path / "friends" / "DYJets" / "DYJets.root")]


def test_a_linked_input_scored_in_place_counts_as_done(setup, artus, tmp_path):
    """In place, apply rewrites the file behind a link and writes its record there: the
    job's outputs and record are looked for there too."""
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "SingleMuon.root"
    link.symlink_to(artus[1])
    jobs_dir = tmp_path / "jobs"
    configs = [str(c) for c in setup("bdt")]
    result = submit(*configs, str(link), NOMINAL, "--job-dir", "jobs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_job(jobs_dir / "apply.sub", condor_jobs(jobs_dir / "apply.sub")[0])
    assert link.is_symlink() and "bdt_max_score" in branches(artus[1], NOMINAL)
    assert resubmitted(jobs_dir, tmp_path) == []
