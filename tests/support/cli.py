"""The `meldbot` command as people run it: a real process with its own environment, stdin and exit code."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import EXAMPLE, ROOT

SCRIPT = [
    "melden",
    "In een kamer staan drie stapelbedden, er wonen negen mensen.",
    "Molenweg 8, Bergeijk",
    "vanochtend",
    "twee mannen, busje met Pools kenteken",
    "arbeid",
    "toezicht",
    "nee",
    "versturen",
]


def env_for(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MELDBOT_")}
    env.update(
        MELDBOT_CONFIG=str(EXAMPLE),
        MELDBOT_STORAGE__URL=f"sqlite+aiosqlite:///{tmp_path}/meldbot.db",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def meldbot(tmp_path, *args, stdin: str = "", env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meldbot", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env or env_for(tmp_path),
    )
