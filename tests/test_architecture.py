"""The package's layers point one way, no module cycle exists, and the domain never imports Airflow.

The contracts are in pyproject.toml ([tool.importlinter]); import-linter checks them here so that a
layer reaching up fails the build, not a review.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

LAYERS = ("core", "store", "carriers", "shop", "email", "sim", "reporting", "evaluation", "steps")


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_a_newcomer_reads_the_layers_from_the_folders():
    package = ROOT / "include" / "lastmile"
    folders = {p.name for p in package.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == set(LAYERS)
    loose = {p.name for p in package.glob("*.py")}
    assert loose == {"__init__.py", "__main__.py", "config.py"}, "every module lives in its layer"
    for layer in LAYERS:
        doc = (package / layer / "__init__.py").read_text()
        assert doc.startswith('"""'), f"{layer}/__init__.py says what the layer is"
