"""Benchmark 6: memory and start.

- Start: `meldbot chat` as a new process (real interpreter start, imports, schema check, scheduler),
  "melden" already waiting on its input; time from spawn until the first question is printed.
- Memory: a separate process that loads everything a production process loads (both platform
  adapters' libraries, the app with real encryption on SQLite), RSS when idle and with 1,000 open
  dialogs (each employee halfway through a report).
- Baseline, in the same run: a Python process that only imports the libraries meldbot stands on
  (matrix-nio with its crypto, the Agents SDK with aiohttp, SQLAlchemy with aiosqlite and asyncpg,
  cryptography, APScheduler) and then answers its first input line: its start to that answer and its RSS
  are what any bot on these libraries pays before its own code. (RSS per `meldbot run` process with
  Matrix on PostgreSQL: benchmark 8, takeover.py.)
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, Figure, bench_config, main

FIRST_QUESTION = "Wat zag of hoorde je?"
START_DEADLINE = 60.0   # seconds: a start that takes longer is a failure, not a figure


def _lines(proc: subprocess.Popen, deadline: float):
    """The process's output lines until it ends or `deadline` (perf_counter) passes."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    while (left := deadline - time.perf_counter()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return
        if line is None:
            return
        yield line


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB, from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


async def _child(url: str, dialogs: int) -> None:
    import meldbot.adapters.matrix  # noqa: F401  what `meldbot run` loads for its platforms
    import meldbot.adapters.teams  # noqa: F401
    from benchmarks.burst import CountingNotifier, message, script, wednesday
    import sqlalchemy as sa

    from meldbot.run.app import build_app
    from meldbot.storage.tables import ConversationRow

    app = build_app(bench_config(url), mode="chat", clock=wednesday(), notifiers={"console": CountingNotifier()})
    async with app:
        await app.settled()
        gc.collect()
        idle = rss_mb()
        rng = random.Random(5)
        scripts = [script(n, rng) for n in range(dialogs)]

        async def halfway(n: int) -> None:
            for line in scripts[n][:4]:         # melden, wat, waar, wanneer: the draft stays open
                await app.bot.handle(message(f"medewerker{n:04d}", line))

        for start in range(0, dialogs, 100):
            await asyncio.gather(*(halfway(n) for n in range(start, min(dialogs, start + 100))))
        async with app.uow() as uow:
            open_drafts = (await uow.session.exec(sa.select(sa.func.count()).select_from(ConversationRow))).one()[0]
        gc.collect()
        busy = rss_mb()
    print(json.dumps({"idle": idle, "busy": busy, "open": open_drafts}))


BASELINE_IMPORTS = ("import nio, nio.crypto, aiohttp, sqlalchemy, sqlalchemy.ext.asyncio, aiosqlite, asyncpg, "
                    "cryptography.hazmat.primitives.ciphers.aead, apscheduler, "
                    "microsoft_agents.hosting.core, microsoft_agents.hosting.aiohttp")
BASELINE = (BASELINE_IMPORTS + "\nimport sys\nline = sys.stdin.readline()\n"
            "rss = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmRSS:')][0]\n"
            "print('answer', int(rss) / 1024, flush=True)\n")


def baseline_start() -> tuple[float, float]:
    """(spawn -> first answer in s, RSS in MB) of a process that only imports meldbot's libraries."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", BASELINE], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        proc.stdin.write("melden\n")
        proc.stdin.flush()
        for line in _lines(proc, started + START_DEADLINE):
            if line.startswith("answer"):
                return time.perf_counter() - started, float(line.split()[1])
        raise AssertionError("the baseline process did not answer")
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait(timeout=30)


async def _migrated(url: str) -> None:
    from meldbot.storage.db import Database

    db = Database(url)
    await db.migrate()
    await db.dispose()


def _environment(url: str) -> dict[str, str]:
    config = bench_config(url)
    # meldbot refuses a MELDBOT_ variable it does not know, such as MELDBOT_BENCH_POSTGRES_URL: only its own.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MELDBOT_")}
    return {**inherited, "MELDBOT_STORAGE__URL": url, "MELDBOT_STORAGE__ALLOW_PLAINTEXT": "false",
            "MELDBOT_DATA_KEY": config.data_key.get_secret_value(), "PYTHONPATH": str(ROOT)}


def start_to_first_answer(url: str, workdir: Path) -> float:
    executable = Path(sys.executable).with_name("meldbot")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "meldbot.run.cli"]
    command += ["--config", str(ROOT / "config.example.toml"), "chat"]
    started = time.perf_counter()
    errors = open(workdir / "chat-stderr.log", "w+")
    proc = subprocess.Popen(command, cwd=workdir, env=_environment(url), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        proc.stdin.write("melden\n")
        proc.stdin.flush()
        seen = []
        for line in _lines(proc, started + START_DEADLINE):
            if FIRST_QUESTION in line:
                return time.perf_counter() - started
            seen.append(line)
        raise AssertionError(f"meldbot chat did not ask the first question within {START_DEADLINE:.0f} s "
                             f"(exit code {proc.poll()}); it printed: {''.join(seen)[-1500:]!r}; "
                             f"stderr: {(workdir / 'chat-stderr.log').read_text()[-1500:]!r}")
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=30)
        errors.close()


async def measure(quick: bool) -> list[Figure]:
    dialogs = 100 if quick else 1000
    with tempfile.TemporaryDirectory(prefix="meldbot-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/meldbot.db"
        await _migrated(url)
        runs = 2 if quick else 7
        starts, bases = [], []
        for run in range(runs):                     # interleaved: meldbot, baseline, meldbot, ...
            # Each start on a fresh migrated database: a draft left open by the previous run would make
            # 'melden' an answer instead of the start of a report.
            fresh = f"sqlite+aiosqlite:///{tmp}/start-{run}.db"
            await _migrated(fresh)
            starts.append(start_to_first_answer(fresh, Path(tmp)))
            bases.append(baseline_start())
        child_url = f"sqlite+aiosqlite:///{tmp}/memory.db"
        await _migrated(child_url)
        out = subprocess.run([sys.executable, "-m", "benchmarks.footprint", "--child", child_url, str(dialogs)],
                             cwd=ROOT, env=_environment(child_url), capture_output=True, text=True, timeout=600)
        if out.returncode:
            raise RuntimeError(f"memory child failed: {out.stderr[-2000:]}")
        memory = json.loads(out.stdout.strip().splitlines()[-1])
    idle_rss, idle_peak = memory["idle"]
    busy_rss, busy_peak = memory["busy"]
    base_start = statistics.median(b[0] for b in bases)
    base_rss = statistics.median(b[1] for b in bases)
    return [
        Figure("6 Memory and start", "baseline: RSS of a process with only meldbot's libraries imported", base_rss,
               "MB", detail=BASELINE_IMPORTS.removeprefix("import ") + f"; {runs} runs, median"),
        Figure("6 Memory and start", "RSS idle", idle_rss, "MB", target=200.0,
               detail=f"peak so far {idle_peak:.0f} MB; Matrix and Teams libraries loaded, SQLite, encryption on"),
        Figure("6 Memory and start", f"RSS with {dialogs} open dialogs", busy_rss, "MB", target=200.0,
               detail=f"peak {busy_peak:.0f} MB; {memory['open']} open drafts in the database"),
        Figure("6 Memory and start", "start to first answered message (median)", statistics.median(starts), "s",
               target=3.0, detail=f"`meldbot chat` spawned with 'melden' waiting; {runs} runs: "
               + ", ".join(f"{s:.2f}" for s in starts) + f" s; baseline {base_start:.2f} s"),
        Figure("6 Memory and start", "baseline: spawn -> first answer with only the libraries imported (median)",
               base_start, "s", detail=", ".join(f"{b[0]:.2f}" for b in bases) + " s, interleaved with meldbot's"),
        Figure("6 Memory and start", "start ratio meldbot chat/baseline", statistics.median(starts) / base_start, "x",
               detail=f"{statistics.median(starts):.2f} s / {base_start:.2f} s"),
        Figure("6 Memory and start", "RSS idle ratio meldbot/baseline", idle_rss / base_rss, "x",
               detail=f"{idle_rss:.0f} MB / {base_rss:.0f} MB"),
    ]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        asyncio.run(_child(sys.argv[2], int(sys.argv[3])))
    else:
        main(measure)
