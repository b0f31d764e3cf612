"""`meldbot run` sets the garbage collector for a long-running process once it has started
(meldbot/run/tuning.py): what start-up made is frozen, the youngest generation is collected less often."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal

from meldbot.core.config import load_config
from meldbot.core.i18n import texts
from meldbot.run import cli, tuning
from tests.support import EXAMPLE
from tests.support.chat import migrated


def test_tune_gc_freezes_what_exists_and_raises_the_first_threshold():
    before = gc.get_threshold()
    try:
        tuning.tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (tuning.GEN0_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_meldbot_run_tunes_after_start_up(tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path}/meldbot.db"
    await migrated(url)
    config = load_config(EXAMPLE, {"MELDBOT_STORAGE__URL": url, "MELDBOT_HTTP__LISTEN": "127.0.0.1:0"})
    started: list[bool] = []

    def tuned() -> None:
        # Called inside the started app; then stop the run as an administrator would.
        started.append(True)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(tuning, "tune_gc", tuned)
    args = argparse.Namespace(instance=None, config=str(EXAMPLE))
    async with asyncio.timeout(60):        # without the call the run would wait for a signal that never comes
        assert await cli._run(config, texts("nl"), args) == 0
    assert started == [True]
