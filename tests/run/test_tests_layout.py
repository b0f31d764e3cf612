"""The tests mirror the package: one folder per layer of meldbot (core, dialogs, service, storage, adapters, run)
plus integration/ for real servers, and what several test modules use lives in tests/support/. No module
imports a test module or a conftest: a test module imported by another runs twice under two names, and ties
one feature's tests to another's insides."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support import ROOT

TESTS = ROOT / "tests"
LAYERS = ["core", "dialogs", "service", "storage", "adapters", "run"]
FOLDERS = [*LAYERS, "integration", "support"]
# A module named test_* or conftest, by its dotted name or as the name imported from a package.
FORBIDDEN = re.compile(r"(^|\.)(test_\w+|conftest)$")
# The same in any text, such as the code a test hands to `python -c` (this file's examples excepted).
IN_TEXT = re.compile(r"\b(?:from|import) +(tests\.(?:\w+\.)*(?:test_\w+|conftest))\b")


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if not {"node_modules", "__pycache__"} & set(p.parts))


def forbidden_imports(source: str, package: str = "tests") -> list[str]:
    """The imports in `source` that name a test module or a conftest (relative ones resolved from `package`)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if FORBIDDEN.search(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            found += [name for name in names if FORBIDDEN.search(name)]
    return found


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parent.parts)


@pytest.mark.parametrize("source", [
    "from tests.test_pipeline import migrated",
    "import tests.test_cli",
    "from tests.integration.test_teams import db_url",
    "from tests.core import test_domain",
    "from .test_af_desk import Chat",
    "from tests.conftest import make_config",
    "def f():\n    from tests.test_matrix import World",
], ids=["from a test module", "import a test module", "from one in a folder", "a test module from its folder",
        "relative", "from a conftest", "inside a function"])
def test_the_check_finds_an_import_of_a_test_module(source):
    assert forbidden_imports(source, "tests.service")


def test_no_module_imports_a_test_module_or_a_conftest():
    found = {}
    for path in python_files(TESTS) + python_files(ROOT / "benchmarks"):
        source = path.read_text(encoding="utf-8")
        imports = set(forbidden_imports(source, package_of(path)))
        if path != Path(__file__).resolve():
            imports |= set(IN_TEXT.findall(source))
        if imports:
            found[str(path.relative_to(ROOT))] = sorted(imports)
    assert not found, f"move what they share into tests/support/: {found}"


def test_every_test_module_lives_in_the_folder_of_its_layer():
    assert (ROOT / "meldbot").is_dir() and all((ROOT / "meldbot" / layer).is_dir() for layer in LAYERS)
    misplaced = [str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py")
                 if "node_modules" not in p.parts and p.relative_to(TESTS).parts[0] not in FOLDERS]
    assert not misplaced, misplaced
    assert not list((TESTS / "support").rglob("test_*.py")), "tests/support/ holds helpers, not tests"
    # Packages all the way down: every test module has one dotted name (tests.core.test_domain, ...).
    missing = [folder for folder in ["", *FOLDERS] if not (TESTS / folder / "__init__.py").is_file()]
    assert not missing, missing
