"""Run every benchmark, each in its own process, and write benchmarks/RESULTS.md.

    python -m benchmarks.run                      # everything, about 20 minutes; writes RESULTS.md
    python -m benchmarks.run --only growth,peer   # these again; the other figures kept from results.json
    python -m benchmarks.run --quick              # the regression check: ratios at small n, under a minute
    python -m benchmarks.run --smoke              # every benchmark at small sizes: does each still work?

Latency targets are ratios to a baseline measured in the same run (shared machines are noisy);
the absolute figures stand beside them.

--quick runs only the benchmarks whose figures are ratios to a baseline measured in the same process
(QUICK below), at small n, and judges each ratio against a regression limit of about twice its
target: noise on a small sample stays under it, a real regression does not. It exits 1 when a ratio
passes its limit. It writes no RESULTS.md unless --output is given.

A full run also writes benchmarks/results.json (every figure, the machine, each benchmark's run); with
--only, the benchmarks not run are taken from it, marked with the date and commit of their run.
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

from benchmarks.common import ROOT, cpu_reference_ms

# In the order of the issue; each with the most it may take (seconds): about twice what it took on the
# slowest machine it ran on (an Intel Xeon at 2 GHz, 2026-11-30, about 2.5 times slower than the AMD EPYC of
# the earlier runs); a limit only stops a benchmark that hangs.
MODULES = [
    ("matrix_latency", "1 Matrix: reply latency against a bare matrix-nio echo bot (nio and Element clients)", 1200),
    ("teams_latency", "2 Teams: reply latency against echo agents on the same SDK (committing and bare)", 600),
    ("burst", "3 Burst after an awareness training (SQLite and PostgreSQL)", 2400),
    ("burst_processes", "3b Burst on 1, 2 and 3 processes (PostgreSQL)", 900),
    ("peer", "4 Peer: the same dialog on botbuilder-dialogs", 900),
    ("growth", "5 Growth: 10k, 100k and 1M signals in PostgreSQL", 3000),
    ("footprint", "6 Memory and start", 900),
    ("replicas", "7 Replicas: turns per second with 1, 2 and 3 meldbot run processes on one PostgreSQL", 1200),
    ("takeover", "8 Matrix take-over after kill -9 of the holder, RSS per meldbot run process", 900),
]


# The quick regression check: per module, (figure name, the most that ratio may reach at small n).
# Each limit is about twice the figure's target: the quick samples are small (a few dozen turns), so a
# ratio may wander well past its target by chance, but not past twice it without a real regression.
# Teams: quick ratios 1.15-1.28 on SQLite and 1.19-1.44 on PostgreSQL on an idle machine (2026-11-30, after
# the turn-path work); ratios grow about 1.5x while other work loads both cores. The limit (twice the target)
# catches a turn that gets ~80 % slower.
QUICK: dict[str, list[tuple[str, float]]] = {
    "peer": [("dialog engine per turn, ratio meldbot/botbuilder", 1.0)],            # target 0.5
    "teams_latency": [("p50 ratio meldbot/committing echo, SQLite", 2.4),           # target 1.2
                      ("p50 ratio meldbot/committing echo, PostgreSQL", 2.4)],
    "matrix_latency": [("p50 ratio meldbot/echo", 2.3),                              # target 1.15
                       ("p50 ratio meldbot/echo, Element client", 2.3)],
}
RESULTS_JSON = ROOT / "benchmarks" / "results.json"


def quick_verdicts(results: dict[str, dict]) -> list[tuple[str, str, float | None, float, bool]]:
    """(module, figure, ratio, limit, within) for every ratio the quick check judges; a missing figure
    (its module failed) counts as not within."""
    verdicts = []
    for module, limits in QUICK.items():
        if module not in results:
            continue
        by_name = {f["name"]: f for f in results[module].get("figures", [])}
        for name, limit in limits:
            value = by_name.get(name, {}).get("value")
            within = value is not None and value == value and value <= limit
            verdicts.append((module, name, value, limit, within))
    return verdicts


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
    """Run `python -m benchmarks.<name>` in its own process; its figures (as dicts), seconds, load."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, "-m", f"benchmarks.{name}", "--json", str(out)] + (["--quick"] if quick else [])
        load = _load()
        speed = cpu_reference_ms()      # how fast the machine is right now (benchmarks.common)
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"took longer than {timeout:.0f} s", "seconds": timeout, "load": load,
                    "cpu_reference_ms": speed}
        run = {"seconds": time.perf_counter() - started, "load": load, "cpu_reference_ms": speed}
        sys.stdout.write(proc.stdout)
        if proc.returncode or not out.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            return {"error": f"exit code {proc.returncode}:\n{tail}", **run}
        return {**json.loads(out.read_text()), **run}


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


def render(results: dict[str, dict], quick: bool, total: float, info: list[tuple[str, str]],
           verdicts: list | None = None) -> str:
    figures = [f for r in results.values() for f in r.get("figures", [])]
    checked = [f for f in figures if f["met"] is not None]
    met = [f for f in checked if f["met"]]
    failed = [name for name, r in results.items() if "error" in r]
    lines = ["# meldbot benchmarks: results", ""]
    if quick:
        lines += ["**Quick run (small sizes): only shows that the benchmarks work; not a result.**", ""]
    if verdicts:
        lines += ["## Regression check (quick)", "", "| benchmark | ratio | value | limit | result |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {m} | {n} | {'–' if v is None else f'{v:.3g}'} | ≤ {limit:g} | {'ok' if ok else '**past the limit**'} |"
                  for m, n, v, limit, ok in verdicts]
        lines += [""]
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
    speeds = [r["cpu_reference_ms"] for r in results.values() if r.get("cpu_reference_ms") and not r.get("kept")]
    if speeds:
        low, high = f"{min(speeds):.1f}", f"{max(speeds):.1f}"
        lines.append(f"| CPU reference | {low if low == high else f'{low}–{high}'} ms before the benchmarks of this run "
                     "(a fixed pure-Python workload, median of 5; lower is faster; see Runs) |")
    lines += ["", "## Figures", "",
              "| benchmark | figure | value | target | result | detail |",
              "| --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        verdict = {True: "met", False: "**not met**", None: ""}[f["met"]]
        detail = f["detail"].replace("|", "\\|")
        lines.append(f"| {f['section']} | {f['name']} | {_value(f)} | {_target(f)} | {verdict} | {detail} |")
    lines += ["", "## Runs", "",
              "| benchmark | seconds | load average at start (1, 5, 15 min) | CPU reference at start | outcome |",
              "| --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        outcome = "ok" if "error" not in r else "failed: " + r["error"].splitlines()[0]
        if r.get("kept"):
            outcome += f"; kept from the run of {r['kept']}"
        speed = f"{r['cpu_reference_ms']:.1f} ms" if r.get("cpu_reference_ms") else "–"
        lines.append(f"| {name} | {r['seconds']:.0f} | {r['load']} | {speed} | {outcome} |")
    for name, r in results.items():
        if "error" in r:
            lines += ["", f"### {name} failed", "", "```", r["error"], "```"]
    missed = [f for f in checked if not f["met"]]
    if missed:
        lines += ["", "## Targets not met", ""]
        lines += [f"- {f['section']}: {f['name']}: {_value(f)}, target {_target(f)}" for f in missed]
        lines += ["", "Where the time goes for each: see the profiles in [benchmarks/README.md](README.md)."]
    return "\n".join(lines) + "\n"


def _parse_markdown(path: Path) -> dict:
    """What an older RESULTS.md (from before results.json) holds, in results.json's shape; for --only."""
    machine_rows, results, section = [], {}, ""
    by_section: dict[str, list[dict]] = {}
    runs: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:]
            continue
        if not line.startswith("| ") or line.startswith("| ---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if section == "Machine" and len(cells) == 2 and cells[0]:
            machine_rows.append((cells[0], cells[1]))
        elif section == "Figures" and len(cells) >= 6 and cells[0] != "benchmark":
            value_text, _, unit = cells[2].partition(" ")
            target_text = cells[3]
            target = float(target_text.split()[1].replace(",", "")) if target_text else None
            met = {"met": True, "**not met**": False}.get(cells[4])
            by_section.setdefault(cells[0], []).append({
                "section": cells[0], "name": cells[1], "unit": unit,
                "value": None if value_text == "–" else float(value_text.replace(",", "")),
                "target": target, "at_least": target_text.startswith("≥"), "met": met,
                "detail": " | ".join(cells[5:]).replace("\\|", "|")})
        elif section == "Runs" and len(cells) in (4, 5) and cells[0] != "benchmark":
            runs[cells[0]] = {"seconds": float(cells[1]), "load": cells[2], "outcome": cells[-1]}
    for name, title, _timeout in MODULES:
        if name in runs:
            number = title.split()[0] + " "     # a module's figures are in the sections its title's number opens
            figures = [f for s, fs in by_section.items() if s.startswith(number) for f in fs]
            result = {"seconds": runs[name]["seconds"], "load": runs[name]["load"], "figures": figures}
            if "measured separately on" in runs[name]["outcome"]:
                result["kept"] = runs[name]["outcome"].split("measured separately on ", 1)[1]
            results[name] = result
    return {"machine": machine_rows, "results": results}


def _kept(previous: dict, name: str) -> dict | None:
    """A module's result from an earlier full run (results.json), marked with that run's date and commit."""
    result = previous.get("results", {}).get(name)
    if result is None:
        return None
    info = dict(previous.get("machine", []))
    result = dict(result)
    result.setdefault("kept", f"{info.get('date', '?')} at commit {info.get('meldbot commit', '?')}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="regression check: the ratio benchmarks at small n, each judged against a limit")
    parser.add_argument("--smoke", action="store_true", help="every benchmark at small sizes: does each still work?")
    parser.add_argument("--only", default="", help="comma-separated module names, e.g. burst,growth")
    parser.add_argument("--output", type=Path, help="where RESULTS.md goes (default benchmarks/RESULTS.md; "
                        "with --quick or --smoke none unless given)")
    args = parser.parse_args(argv)
    small = args.quick or args.smoke
    only = [n for n in args.only.split(",") if n]
    unknown = set(only) - {m[0] for m in MODULES}
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    chosen = [m for m in MODULES if (not only or m[0] in only) and (not args.quick or m[0] in QUICK)]
    info = machine()
    results: dict[str, dict] = {}
    started = time.perf_counter()
    for name, title, timeout in chosen:
        print(f"== {title}", flush=True)
        results[name] = run_module(name, small, timeout)
        if "error" in results[name]:
            print(f"   FAILED: {results[name]['error']}", flush=True)
    total = time.perf_counter() - started
    verdicts = quick_verdicts(results) if args.quick else []
    for module, name, value, limit, within in verdicts:
        shown = "missing" if value is None else f"{value:.3g}"
        print(f"quick check {module}: {name} = {shown} (limit {limit:g}): {'ok' if within else 'PAST THE LIMIT'}")
    output = args.output if args.output or small else ROOT / "benchmarks" / "RESULTS.md"
    if not small:
        if RESULTS_JSON.exists():
            previous = json.loads(RESULTS_JSON.read_text())
        elif (ROOT / "benchmarks" / "RESULTS.md").exists():
            previous = _parse_markdown(ROOT / "benchmarks" / "RESULTS.md")
        else:
            previous = {}
        if only:      # the figures of the other benchmarks from the last run that had them
            merged = {}
            for name, _title, _timeout in MODULES:
                result = results.get(name) or _kept(previous, name)
                if result is not None:
                    merged[name] = result
            results = merged
        RESULTS_JSON.write_text(json.dumps({"machine": info, "results": results}, indent=1, ensure_ascii=False))
    if output:
        output.write_text(render(results, small, total, info, verdicts))
        print(f"written: {output} ({total / 60:.1f} min)")
    else:
        print(f"({total:.0f} s)")
    failed = any("error" in r for r in results.values() if not r.get("kept"))
    return 1 if failed or not all(v[4] for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
