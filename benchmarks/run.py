"""Run every benchmark, each in its own process, and write benchmarks/RESULTS.md.

    python -m benchmarks.run [--quick] [--only burst,growth] [--output PATH]

Latency targets are ratios to a baseline measured in the same run (shared machines are noisy);
the absolute figures stand beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from benchmarks.common import ROOT

# In the order of the issue; each with the most it may take on this machine (seconds).
MODULES = [
    ("matrix_latency", "1 Matrix: reply latency against a bare matrix-nio echo bot", 900),
    ("teams_latency", "2 Teams: reply latency against an echo agent on the same SDK", 600),
    ("burst", "3 Burst after an awareness training (SQLite and PostgreSQL)", 1200),
    ("peer", "4 Peer: the same dialog on botbuilder-dialogs", 600),
    ("growth", "5 Growth: 10k, 100k and 1M signals in PostgreSQL", 1500),
    ("footprint", "6 Memory and start", 600),
    ("replicas", "7 Replicas: turns per second with 1, 2 and 3 meldbot run processes on one PostgreSQL", 900),
]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def _postgres_version() -> str:
    from benchmarks.burst import POSTGRES

    try:
        import asyncpg

        conn = await asyncpg.connect(POSTGRES.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
        try:
            return (await conn.fetchval("SHOW server_version")).split()[0]
        finally:
            await conn.close()
    except Exception as exc:
        return f"not reachable ({type(exc).__name__})"


def machine() -> list[tuple[str, str]]:
    return [
        ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("cores", str(os.cpu_count())),
        ("CPU", _cpu()),
        ("memory", f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        ("PostgreSQL", asyncio.run(_postgres_version())),
        ("Synapse", _version("matrix-synapse")),
        ("matrix-nio", _version("matrix-nio")),
        ("vodozemac", _version("vodozemac")),
        ("Agents SDK (hosting-core)", _version("microsoft-agents-hosting-core")),
        ("botbuilder-dialogs", _version("botbuilder-dialogs")),
        ("SQLAlchemy", _version("sqlalchemy")),
        ("asyncpg", _version("asyncpg")),
        ("meldbot commit", _commit()),
    ]


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run_module(name: str, quick: bool, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, "-m", f"benchmarks.{name}", "--json", str(out)] + (["--quick"] if quick else [])
        load = _load()
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"took longer than {timeout:.0f} s", "seconds": timeout, "load": load}
        seconds = time.perf_counter() - started
        sys.stdout.write(proc.stdout)
        if proc.returncode or not out.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return {"error": f"exit code {proc.returncode}:\n{tail}", "seconds": seconds, "load": load}
        result = json.loads(out.read_text())
        result["seconds"] = seconds
        result["load"] = load
        return result


def _value(f: dict) -> str:
    value = f["value"]
    if value is None:
        return "–"
    text = f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {f['unit']}".strip()


def _target(f: dict) -> str:
    if f["target"] is None:
        return ""
    return f"{'≥' if f['at_least'] else '≤'} {f['target']:g} {f['unit']}".strip()


def render(results: dict[str, dict], quick: bool, total: float, info: list[tuple[str, str]]) -> str:
    figures = [f for r in results.values() for f in r.get("figures", [])]
    checked = [f for f in figures if f["met"] is not None]
    met = [f for f in checked if f["met"]]
    failed = [name for name, r in results.items() if "error" in r]
    lines = ["# meldbot benchmarks: results", ""]
    if quick:
        lines += ["**Quick run (small sizes): only shows that the benchmarks work; not a result.**", ""]
    lines += [
        "Written by `make bench` (`python -m benchmarks.run`). Latency targets are ratios to a baseline "
        "measured in the same run; the absolute figures stand beside them. "
        "What each benchmark does: [benchmarks/README.md](README.md).",
        "",
        f"**{len(met)} of {len(checked)} targets met** in {total / 60:.1f} minutes"
        + (f"; benchmarks that did not finish: {', '.join(failed)}" if failed else "") + ".",
        "",
        "## Machine", "",
        "| | |", "| --- | --- |",
    ]
    lines += [f"| {k} | {v} |" for k, v in info]
    lines += ["", "## Figures", "",
              "| benchmark | figure | value | target | result | detail |",
              "| --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        verdict = {True: "met", False: "**not met**", None: ""}[f["met"]]
        detail = f["detail"].replace("|", "\\|")
        lines.append(f"| {f['section']} | {f['name']} | {_value(f)} | {_target(f)} | {verdict} | {detail} |")
    lines += ["", "## Runs", "", "| benchmark | seconds | load average at start (1, 5, 15 min) | outcome |",
              "| --- | --- | --- | --- |"]
    for name, r in results.items():
        outcome = "ok" if "error" not in r else "failed: " + r["error"].splitlines()[0]
        lines.append(f"| {name} | {r['seconds']:.0f} | {r['load']} | {outcome} |")
    for name, r in results.items():
        if "error" in r:
            lines += ["", f"### {name} failed", "", "```", r["error"], "```"]
    missed = [f for f in checked if not f["met"]]
    if missed:
        lines += ["", "## Targets not met", ""]
        lines += [f"- {f['section']}: {f['name']}: {_value(f)}, target {_target(f)}" for f in missed]
        lines += ["", "Where the time goes for each: see the profiles in [benchmarks/README.md](README.md)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: check that every benchmark works")
    parser.add_argument("--only", default="", help="comma-separated module names, e.g. burst,growth")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args()
    chosen = [m for m in MODULES if not args.only or m[0] in args.only.split(",")]
    info = machine()
    results: dict[str, dict] = {}
    started = time.perf_counter()
    for name, title, timeout in chosen:
        print(f"== {title}", flush=True)
        results[name] = run_module(name, args.quick, timeout)
        if "error" in results[name]:
            print(f"   FAILED: {results[name]['error']}", flush=True)
    total = time.perf_counter() - started
    args.output.write_text(render(results, args.quick, total, info))
    print(f"written: {args.output} ({total / 60:.1f} min)")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
