"""The typed turn path. The type check is part of the test command: mypy, configured by [tool.mypy] in
pyproject.toml, passes on the core, the dialogs and the service layer, and a wrong annotation makes it fail.
The types that replaced dictionaries and f-strings read and write exactly what was stored before them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from meldbot.core import keys
from meldbot.core.domain import Content, Context, Form, Reference
from meldbot.dialogs.conversation import ConversationState
from meldbot.dialogs.report import Draft, Submission
from tests.support import ROOT


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    # Outside the tree (the suite leaves no caches behind), shared: the standard library is read once.
    return tmp_path_factory.mktemp("mypy-cache")


def mypy(folder: Path, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache)], cwd=folder,
                          capture_output=True, text=True, timeout=600)


def test_the_core_the_dialogs_and_the_service_type_check(cache):
    result = mypy(ROOT, cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


@pytest.mark.parametrize("module, wrong, code", [
    ("core/keys.py", 'def _wrong() -> int:\n    return "seven"\n', "return-value"),
    ("dialogs/report.py", "_WRONG: Draft = Draft().step\n", "assignment"),
    ("service/services.py", "def _untyped(meldpunt):\n    return meldpunt\n", "no-untyped-def"),
])
def test_a_wrong_annotation_fails_the_type_check(tmp_path, cache, module, wrong, code):
    for folder in ("meldbot", "tests/support"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tests" / "__init__.py").write_text("")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "meldbot" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n\n{wrong}", encoding="utf-8")
    result = mypy(tmp_path, cache)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and module in errors[0] and f"[{code}]" in errors[0], result.stdout


def test_the_real_and_the_fake_unit_of_work_must_keep_fitting_the_ports(tmp_path, cache):
    """tests/support/conformance.py: a member the ports gain and the implementations lack fails the check,
    for SqlUnitOfWork and the fake alike."""
    for folder in ("meldbot", "tests/support"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "tests" / "__init__.py").write_text("")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    ports = tmp_path / "meldbot" / "core" / "ports.py"
    text = ports.read_text(encoding="utf-8")
    anchor = "    async def commit(self) -> None: ...\n"
    assert text.count(anchor) == 1
    ports.write_text(text.replace(anchor, anchor + "    async def vanish(self) -> None: ...\n"), encoding="utf-8")
    result = mypy(tmp_path, cache)
    assert result.returncode == 1, result.stdout + result.stderr
    failing = {line.split(":")[1] for line in result.stdout.splitlines()
               if line.startswith("tests/support/conformance.py") and ": error:" in line}
    assert len(failing) == 4, result.stdout      # the real unit and factory, the fake unit and factory


# --- what stored rows hold ------------------------------------------------------------------------------

REF = Reference(2026, 7)
AT = datetime(2026, 11, 30, 9, 15, tzinfo=timezone.utc)


def test_the_outbox_keys_are_the_strings_stored_rows_carry():
    """Written out as the f-strings that made them before: a row queued before an upgrade keeps its key."""
    moment = "2026-11-30T09:15:00+00:00"
    assert keys.new_signal(REF).for_af("anna", "matrix") == "new-signal:MH-2026-0007:anna:matrix"
    assert keys.supplemented(REF, AT).for_af("anna", "teams") == f"supplement:MH-2026-0007:{moment}:anna:teams"
    assert keys.supplement_refused(REF, date(2026, 11, 30)).for_af("anna", "teams") == \
        "supplement-refused:MH-2026-0007:2026-11-30:anna:teams"
    assert keys.released(REF, "piet").for_af("anna", "matrix") == "released:MH-2026-0007:piet:anna:matrix"
    assert keys.told("taken-over", REF, AT).for_af("anna", "matrix") == f"taken-over:MH-2026-0007:anna:matrix:{moment}"
    claim = keys.reminder_claim("oppakken", REF, 2)
    assert claim == "oppakken:MH-2026-0007:2"
    assert keys.reminder(claim, REF).for_af("anna", "console") == "reminder:oppakken:MH-2026-0007:2:anna:console"
    week = keys.overview_claim("bergeijk", "anna", 2026, 9)
    assert week == "overzicht:bergeijk:anna:2026-W09"
    assert keys.overview(week).for_af("anna", "matrix") == "reminder:overzicht:bergeijk:anna:2026-W09:matrix"
    prefix = keys.notice_prefix(41, "MH-2026-0007", parked=True)
    assert prefix == "undelivered:41:MH-2026-0007:parked:"
    assert keys.notice(prefix, 2, "MH-2026-0007").for_af("anna", "teams") == \
        "undelivered:41:MH-2026-0007:parked:2:anna:teams"
    assert keys.notice_prefix(41, None, parked=False) == "undelivered:41:late:"
    assert keys.inform(REF, "anna", AT) == f"inform:MH-2026-0007:anna:{moment}"


@pytest.mark.parametrize("key, reference, sender", [
    ("inform:MH-2026-0007:anna:2026-11-30T09:15:00+00:00", "MH-2026-0007", "anna"),
    ("inform:MH-2026-0007:2026-11-23T10:00:00+00:00", "MH-2026-0007", "2026-11-23T10"),   # before keys named the AF
    ("reminder:overzicht:bergeijk:anna:2026-W09:matrix", None, "bergeijk"),
    ("matrix-trust:device", None, None),
])
def test_a_key_is_read_back_as_before(key, reference, sender):
    assert keys.reference_in(key) == reference
    assert keys.sender_in(key) == sender


@pytest.mark.parametrize("stored", [
    {},
    {"draft": None},
    {"choose_meldpunt": True},
    {"draft": None, "draft_expired": True},
    {"draft": {"step": "waar", "answers": {"wat": "busje"}, "when_iso": None, "when_precision": "none",
               "urgent": True, "editing": False}, "choose_meldpunt": True},
    {"draft": {"step": "summary", "answers": {"wat": "busje"}}},          # a draft stored with fewer fields
])
def test_every_stored_conversation_state_loads_and_is_written_back_the_same(stored):
    state = ConversationState.from_dict(stored)
    again = ConversationState.from_dict(state.to_dict())
    assert again == state
    assert state.choose_meldpunt == bool(stored.get("choose_meldpunt"))
    assert state.draft_expired == bool(stored.get("draft_expired"))
    assert state.draft == Draft.from_dict(stored.get("draft"))
    assert state.empty == (not any(stored.values()))


@pytest.mark.parametrize("stored, written", [
    ({}, {"draft": None}),
    ({"choose_meldpunt": True}, {"draft": None, "choose_meldpunt": True}),
    ({"draft": None, "draft_expired": True}, {"draft": None, "draft_expired": True}),
])
def test_the_state_is_written_as_the_json_stored_before(stored, written):
    """The exact JSON, not only a round trip: rows written by this version are read by the one before it
    (a rollback) and compared by tests that seal them."""
    assert ConversationState.from_dict(stored).to_dict() == written


def test_a_submission_is_the_answers_as_the_domain_reads_them():
    draft = Draft(step="summary", answers={"wat": "busje", "waar": "Molenweg 8", "wanneer": "gisteren", "wie": "-",
                                           "soort": "arbeid", "context": "huisbezoek", "anoniem": "ja"},
                  when_iso="2026-11-29T00:00:00+01:00", when_precision="day", urgent=True)
    assert Submission.of(draft) == Submission(
        content=Content(wat="busje", waar="Molenweg 8", wanneer="gisteren", wanneer_iso="2026-11-29T00:00:00+01:00",
                        wie="-"),
        form=Form.LABOUR, context=Context.HOME_VISIT, urgent=True, anonymous=True)
    assert Submission.of(Draft(step="summary")).form is Form.UNKNOWN
