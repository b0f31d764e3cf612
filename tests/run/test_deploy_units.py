"""The systemd units in deploy/ are what docs/beheer.md tells an administrator to install: systemd must
accept them as they are, with only the install folder moved to where this checkout is."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from meldbot.run.cli import _parser
from tests.support import ROOT

UNITS = sorted((ROOT / "deploy").glob("*.service"))


def _verify(unit: Path, tmp_path: Path, name: str) -> str:
    """`systemd-analyze verify` on the unit, with /opt/meldbot pointing at a folder whose
    .venv/bin/meldbot is this checkout's; what systemd complains about, or ""."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed to check the units (Debian: systemd)"
    install = tmp_path / "opt"
    (install / ".venv" / "bin").mkdir(parents=True)
    (install / ".venv" / "bin" / "meldbot").symlink_to(Path(sys.executable).with_name("meldbot"))
    (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/meldbot", str(install)))
    if name != unit.name:
        (tmp_path / name).symlink_to(tmp_path / unit.name)
    done = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / name)], capture_output=True, text=True,
                          timeout=60)
    return (done.stdout + done.stderr).strip()


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_accepts_the_unit(unit, tmp_path):
    name = unit.name.replace("@.service", "@8081.service")
    assert _verify(unit, tmp_path, name) == ""


def test_the_check_catches_a_broken_unit(tmp_path):
    broken = tmp_path / "src" / "meldbot.service"
    broken.parent.mkdir()
    broken.write_text((ROOT / "deploy" / "meldbot.service").read_text().replace("Type=simple", "Type=simpel"))
    assert "service type" in _verify(broken, tmp_path, broken.name)


def test_the_template_gives_every_process_its_own_name_and_port():
    unit = (ROOT / "deploy" / "meldbot@.service").read_text()
    [start] = re.findall(r"^ExecStart=(.*)$", unit, re.M)
    args = start.split()[1:]
    assert args[:1] == ["run"] and "--instance" in args and args[args.index("--instance") + 1] == "%i"
    parsed = _parser().parse_args([a.replace("%i", "8081") for a in args])
    assert parsed.instance == "8081"
    assert "MELDBOT_HTTP__LISTEN=127.0.0.1:%i" in unit
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.M)
