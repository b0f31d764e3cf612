"""Benchmark 7: turns per second with 1, 2 and 3 `meldbot run` processes on one PostgreSQL (issue 17).

Each process is a real `meldbot run` with Teams on (tests/support/replicas.py), with a data key (real
sealing) and its own engine and pool, on one fresh PostgreSQL database per measurement. This process plays
the load balancer and Microsoft: it posts signed activities to /api/messages and runs the loopback Bot
Connector (tests/support/teams_fakes.py) that takes the replies and the AF's notifications.

N employees (150) each complete a full report (9 turns) as fast as replies come (closed loop, all at once);
employee i's k-th message goes to process (i + k) mod P, so every conversation moves between the processes
on every turn and every turn takes the conversation's advisory lock against the others. A turn is timed
from the POST until its HTTP answer (the replies are posted to the connector before that). After one
untimed warm-up report per process. Checked: N signals with N distinct references, every employee told
a reference that exists.

Where it departs from production: the client, the connector and all processes share this machine's cores
(on 2 cores a second process adds no CPU, only a second event loop and pool), and loopback HTTP has no
network latency. So the figure shows what the cross-process lock costs and that nothing serialises on
it, not the ceiling of a deployment with a core per process.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, main, summary_ms

import asyncpg  # noqa: E402  (benchmarks.common puts the repo root on sys.path first)

from benchmarks.burst import Store  # noqa: E402
from meldbot.storage.sealing import new_key  # noqa: E402
from tests.support.cli import SCRIPT  # noqa: E402
from tests.support.replicas import REFERENCE, melder, replicas  # noqa: E402
from tests.support.teams_fakes import ANNA, FakeMicrosoft, activity, new_key as new_rsa_key  # noqa: E402

SECTION = "7 Replicas"


async def _signals(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT (ref_year, ref_number)) FROM signal")
        return row[0], row[1]
    finally:
        await conn.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _lines(i: int) -> list[str]:
    return [line if step != 1 else f"{line} (waarneming {i})" for step, line in enumerate(SCRIPT)]


async def one_run(processes: int, employees: int, fake: FakeMicrosoft) -> tuple[Figure, list[float]]:
    key = new_key()
    async with Store("postgres") as url:
        with tempfile.TemporaryDirectory(prefix="meldbot-replicas-") as tmp:
            async with replicas(processes, url, fake, Path(tmp), request_timeout=300, MELDBOT_DATA_KEY=key,
                                MELDBOT_STORAGE__ALLOW_PLAINTEXT="false") as teams:
                async def report(i: int, timed: list[float] | None) -> str:
                    user = melder(i)
                    last = ""
                    for step, line in enumerate(_lines(i)):
                        body = activity(fake, user, line)
                        started = time.perf_counter()
                        status = await teams.post(teams[(i + step) % processes], body)
                        if timed is not None:
                            timed.append(time.perf_counter() - started)
                        if status not in (200, 202):
                            raise AssertionError(f"HTTP {status} for a turn")
                        last = "\n".join(teams.shown(body["id"]))
                    return last

                warm = await asyncio.gather(*(report(1_000_000 + p, None) for p in range(processes)))
                turns: list[float] = []
                cpu = [_cpu_seconds(p.proc.pid) for p in teams.processes]
                own = time.process_time()
                started = time.perf_counter()
                finals = await asyncio.gather(*(report(i, turns) for i in range(employees)))
                seconds = time.perf_counter() - started
                own = time.process_time() - own
                cpu = [_cpu_seconds(p.proc.pid) - c for p, c in zip(teams.processes, cpu)]
                errors = teams.errors()
            signals, distinct = await _signals(url)
    told = [sorted(set(REFERENCE.findall(text))) for text in finals]
    problems = []
    if signals != employees + processes or distinct != signals:
        problems.append(f"{signals} signals ({distinct} distinct references) for {employees + processes} reports")
    if not all(len(t) == 1 for t in told) or len({t[0] for t in told if t}) != employees:
        problems.append("not every employee was told one reference of their own")
    if not all(REFERENCE.findall(w) for w in warm):
        problems.append("a warm-up report got no reference")
    if errors:
        problems.append(f"errors in the logs of {sorted(errors)}")
    if problems:
        raise AssertionError("; ".join(problems))
    rate = len(turns) / seconds
    figure = Figure(SECTION, f"{processes} process{'es' if processes > 1 else ''}: turns per second", rate,
                    "turns/s", detail=(f"{employees} employees x {len(SCRIPT)} turns in {seconds:.1f} s, each "
                                       f"turn to the next process; per turn {summary_ms(turns)}; {employees} "
                                       f"signals, {employees} distinct references, no error logged; CPU seconds: meldbot "
                                       f"{' + '.join(f'{c:.1f}' for c in cpu)}, client and connector {own:.1f}"))
    return figure, turns


async def measure(quick: bool) -> list[Figure]:
    employees = 40 if quick else 150
    fake = await FakeMicrosoft(new_rsa_key(), installed={ANNA.aad}, max_activity_bytes=None).start()
    figures = []
    try:
        for processes in (1, 2, 3):
            figure, _ = await one_run(processes, employees, fake)
            print(f"  {figure.name}: {figure.value:.0f} {figure.unit}", flush=True)
            figures.append(figure)
            fake.requests.clear()
    finally:
        await fake.stop()
    base = figures[0].value
    for processes, figure in zip((2, 3), figures[1:]):
        figures.append(Figure(SECTION, f"{processes} processes / 1 process", figure.value / base, "x",
                              detail=f"{figure.value:.0f} vs {base:.0f} turns/s on the same machine and run"))
    return figures


if __name__ == "__main__":
    main(measure)
