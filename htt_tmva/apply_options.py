"""Options of ``htt-tmva apply`` that every file's run takes, shared by ``apply`` and
``submit apply`` (which passes them on to each job's ``htt-tmva apply``). argparse only.

Not shared: the output modes (``submit`` takes folders for several files), ``--executor``
and ``--workers`` (a Dask cluster per batch job would duplicate the batch system's scale-out).
"""

from __future__ import annotations

import argparse


def add_engine_option(parser) -> None:
    parser.add_argument(
        "--engine",
        choices=("keras", "bdt", "tmva"),
        default=None,
        help="engine (default: from the config, else keras)",
    )


def add_reader_option(parser) -> None:
    parser.add_argument(
        "--reader",
        choices=("tmva",),
        default=None,
        help="evaluate TMVA weight files with TMVA::Reader (needs ROOT with TMVA) instead of "
        "htt-tmva's own reader",
    )


def scoring_options() -> argparse.ArgumentParser:
    """A parent parser (``parents=[...]``) of the per-file options of ``apply``."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("scoring (per file; 'submit apply' gives them to each job)")
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the score branches of the same names (nothing else is removed)",
    )
    group.add_argument(
        "--nonfinite-default",
        type=float,
        default=None,
        metavar="VALUE",
        help="score events with non-finite inputs as VALUE instead of failing",
    )
    group.add_argument("--chunk-size", type=int, default=500_000, help="events per inference batch")
    group.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="score for the writing event loop with the models compiled to C++ (one pass; "
        "the default, where the models export); --no-compile: the Python path (two passes, "
        "batched inference)",
    )
    group.add_argument(
        "--scoring-threads",
        type=int,
        default=None,
        metavar="N",
        help="threads that score ahead of the writing loop (compiled models; default: 2 for "
        "heavy networks, else 1); 0: the loop scores each entry itself (one read of the input)",
    )
    add_engine_option(group)
    add_reader_option(group)
    return parser


def scoring_arguments(args: argparse.Namespace) -> list[str]:
    """The ``apply`` command-line words of the options of :func:`scoring_options` that
    ``args`` sets to other than their defaults (what a batch job is given)."""
    words: list[str] = []
    for action in scoring_options()._actions:
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:  # store_true
            words.append(flag)
        else:
            words += [flag, str(value)]
    return words
