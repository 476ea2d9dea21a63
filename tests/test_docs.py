"""The README and docs/: its commands exist, every page is in the nav, its links resolve."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

from htt_tmva.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
STEPS = {"toy", "dataset", "train", "confusion", "apply", "export", "submit"}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def code_lines(text: str) -> list[str]:
    """Lines inside fenced code blocks, backslash continuations joined."""
    lines, inside, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        pending += line
        if pending.rstrip().endswith("\\"):
            pending = pending.rstrip()[:-1] + " "
            continue
        lines.append(pending)
        pending = ""
    return lines


def readme_commands() -> list[list[str]]:
    """The arguments of every `htt-tmva ...` line of the README's code blocks."""
    commands = []
    for line in code_lines(README.read_text()):
        first = line.split(maxsplit=1)[:1]
        if first and Path(first[0]).name == "htt-tmva":
            commands.append(shlex.split(line, comments=True)[1:])
    return commands


def step_of(argv: list[str]) -> list[str]:
    """The subcommand (and for submit its step) of a command line."""
    words = [w for w in argv if not w.startswith("-")]
    return words[:2] if words[:1] == ["submit"] else words[:1]


def test_readme_gives_a_command_for_every_step():
    assert {step_of(argv)[0] for argv in readme_commands()} >= STEPS


@pytest.mark.parametrize("step", sorted({" ".join(step_of(a)) for a in readme_commands()}), ids=str)
def test_every_step_the_readme_names_answers_help(step, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*step.split(), "--help"])
    assert exit_.value.code == 0
    assert "usage: htt-tmva " + step in capsys.readouterr().out


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_parses_with_its_options(argv):
    """Options and positional arguments as the CLI declares them (parsed, not run)."""
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]


def nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [p for value in node.values() for p in nav_pages(value)]
    return [p for item in node for p in nav_pages(item)]


def test_every_docs_page_is_in_the_mkdocs_nav_and_every_nav_entry_exists():
    config = yaml.safe_load(MKDOCS_YML.read_text())
    listed = nav_pages(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(listed) == pages
    assert len(listed) == len(set(listed)), "a page listed twice in the nav"


def slugify(heading: str) -> str:
    """The anchor of a heading as MkDocs (Python-Markdown's toc) makes it."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = unicodedata.normalize("NFKD", text.replace("`", "").replace("*", ""))
    text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    found, inside = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and (m := re.match(r"#{1,6} (.+)", line)):
            found.add(slugify(m.group(1)))
    return found


def test_slugify_matches_mkdocs_anchors():
    assert slugify("Several trees (systematic-shift folders)") == (
        "several-trees-systematic-shift-folders"
    )
    assert slugify("The TMVA engine (`--engine tmva`)") == "the-tmva-engine-engine-tmva"


def test_readme_relative_links_point_to_existing_files_and_headings():
    links = LINK.findall(README.read_text())
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (ROOT / path) if path else README
        assert target.exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in anchors(target), f"README links to {link}: no such heading"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_docs_build_strict_without_warnings(tmp_path):
    """Broken links and anchors, pages missing from the nav: errors (as `make docs` in CI)."""
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"]
        + ["--config-file", str(MKDOCS_YML), "--site-dir", str(tmp_path / "site")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr


def test_readme_stays_short():
    """Options, tables and caveats belong in docs/; the README keeps one command per step."""
    assert len(README.read_text().splitlines()) <= 120
