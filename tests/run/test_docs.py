"""The docs quote commands, configuration and output: each quote must stay true."""

from __future__ import annotations

import subprocess
import json
import time
import re
import tomllib

from meldbot.run.cli import _parser
from meldbot.run.doctor import _matrix_status
from meldbot.core.i18n import texts
from tests.support import EXAMPLE, ROOT, make_config

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _subcommands() -> set[str]:
    parser = _parser()
    [action] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(action.choices)


def test_every_meldbot_command_the_docs_name_exists():
    known = _subcommands()
    named = set()
    for doc in DOCS:
        text = doc.read_text()
        code = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
        for part in code:
            for line in part.splitlines():
                line = line.split(" #")[0]  # a shell comment is prose
                # `sudo -u meldbot ...` names the system user, not the command.
                named |= {(doc.name, m) for m in re.findall(r"(?:^|\s|bin/|')(?<!-u )meldbot ([a-z][a-z-]+)", line)}
    assert named, "the docs name no commands at all"
    missing = sorted((doc, cmd) for doc, cmd in named if cmd not in known)
    assert not missing, missing


def test_the_matrix_section_in_docs_matrix_is_a_valid_configuration(tmp_path):
    text = (ROOT / "docs" / "matrix.md").read_text()
    [snippet] = re.findall(r"```toml\n(\[matrix\].*?)```", text, re.S)
    values = tomllib.loads(snippet)["matrix"]
    env = {f"MELDBOT_MATRIX__{key.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
           for key, value in values.items()}
    config = make_config(f"sqlite+aiosqlite:///{tmp_path}/x.db", MELDBOT_MATRIX__PASSWORD="geheim", **env)
    assert config.matrix.enabled and config.matrix.af_device_policy == values["af_device_policy"]


def test_the_doctor_lines_in_docs_matrix_are_what_doctor_prints(tmp_path):
    config = make_config(f"sqlite+aiosqlite:///{tmp_path}/x.db", MELDBOT_MATRIX__STORE_PATH=str(tmp_path))
    (tmp_path / "status.json").write_text(json.dumps({"identity": "present", "undecryptable": 0}))
    t = texts("nl")
    printed = [(t("doctor.ok_mark") if f.ok else t("doctor.bad_mark")) + f.text for f in _matrix_status(config, t)]
    doc = (ROOT / "docs" / "matrix.md").read_text()
    assert all(f.startswith("[ok]") for f in printed)
    for line in printed:
        assert line in doc, line
    # And a lost identity is a problem doctor names, with the command that mends it.
    (tmp_path / "status.json").write_text(json.dumps({"identity": "mismatch", "undecryptable": 5,
                                                      "undecryptable_times": [time.time() - 30 * 86400] * 2
                                                      + [time.time() - 60] * 3}))
    findings = _matrix_status(config, t)
    assert [f.ok for f in findings] == [False, False]
    assert "meldbot matrix-reset-identity" in findings[0].text and "3 Matrix" in findings[1].text
    # Failures older than a week are history, not a problem now; a failed set-up is one.
    (tmp_path / "status.json").write_text(json.dumps({"identity": "error", "undecryptable": 2,
                                                      "undecryptable_times": [time.time() - 30 * 86400] * 2}))
    assert [f.ok for f in _matrix_status(config, t)] == [False, True]


def test_every_af_device_policy_is_explained_in_the_example_configuration():
    from typing import get_args

    from meldbot.core.config import MatrixConfig

    example = EXAMPLE.read_text()
    for policy in get_args(MatrixConfig.model_fields["af_device_policy"].annotation):
        assert f'"{policy}"' in example, policy


def test_make_chat_installs_only_what_the_chat_needs_and_make_test_the_test_tools(tmp_path):
    """The README's first command must reach a prompt quickly: no Synapse, pytest or hypothesis."""
    def planned(target: str) -> str:  # -B: the whole plan, also what this checkout has installed already
        return subprocess.run(["make", "-B", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    chat = planned("chat")
    assert "pip install --quiet -e ." in chat and "[test]" not in chat and "meldbot" in chat
    test = planned("test")
    assert "pip install --quiet -e '.[test]'" in test
    # Everything the README's test command needs comes with it: Element's crypto stack, the Teams
    # Playground and the Chromium that drives its page.
    assert "npm ci --prefix tests/element" in test and "npm ci --prefix tests/playground" in test
    assert "apt-get install -y -qq chromium" in test


def test_the_messages_the_af_manual_quotes_are_what_the_bot_says():
    """docs/handleiding-af.md quotes the bot's own words; the catalogue must still say them."""
    from meldbot.core.i18n import texts

    manual = (ROOT / "docs" / "handleiding-af.md").read_text(encoding="utf-8")
    t = texts("nl")
    quoted = {
        "`De melder heeft je vraag over MH-2026-0007 beantwoord.`":
            t("notify.answered", reference="MH-2026-0007", number=7),
        '"Bedoel je: lijst?"': t("af.suggest.read_only", command="lijst"),
        '"Bedoel je mijn meldingen?"': t("answer.typo", command="mijn meldingen", number=7),
    }
    for quote, said in quoted.items():
        assert quote in manual, quote
        assert quote.strip('`"') in said, (quote, said)
