"""``python -m htt_tmva``: the same as the ``htt-tmva`` command."""

from __future__ import annotations

from htt_tmva.cli import main

raise SystemExit(main())
