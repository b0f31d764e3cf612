"""The layers are a contract: import-linter checks [tool.importlinter] in pyproject.toml, and a wrong
arrow makes it fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache"], cwd=folder, capture_output=True, text=True, timeout=300)


def test_the_layers_contract_holds():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, arrow, contract", [
    ("core/domain.py", "from meldbot.storage import uow", "Layers"),
    ("dialogs/report.py", "from meldbot.service import bot", "Layers"),
    ("service/desk.py", "import sqlalchemy", "no database, web or platform library"),
    ("storage/uow.py", "from meldbot.service import monitoring", "Storage implements the core's ports"),
    ("adapters/console.py", "from meldbot.storage import uow", "Layers"),
])
def test_a_wrong_arrow_breaks_the_contract(tmp_path, module, arrow, contract):
    shutil.copytree(ROOT / "meldbot", tmp_path / "meldbot", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "meldbot" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{arrow}  # a wrong arrow\n", encoding="utf-8")
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken
