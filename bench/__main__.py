"""Benchmark the emulator beside a bare aiohttp echo server: `python -m bench`.

Every scenario runs `--repeats` times; latencies print as the median and
the 99th percentile of all samples, rates and sizes as the median of the
runs. `--smoke` runs each scenario once with tiny counts, to check that
the harness works, not to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bench import scenarios
from bench.processes import echo_server, emulator, raise_file_limit


@dataclass(frozen=True)
class Counts:
    round_trips: int
    warmup: int
    clients: int
    per_client: int
    throughput_warmup: int
    connections: int
    connect_concurrency: int
    idle_connections: int
    repeats: int


FULL = Counts(
    round_trips=2000,
    warmup=200,
    clients=50,
    per_client=100,
    throughput_warmup=5,
    connections=1000,
    connect_concurrency=10,
    idle_connections=10_000,
    repeats=3,
)
SMOKE = Counts(
    round_trips=20,
    warmup=2,
    clients=3,
    per_client=3,
    throughput_warmup=1,
    connections=5,
    connect_concurrency=2,
    idle_connections=20,
    repeats=1,
)


@dataclass(frozen=True)
class Row:
    scenario: str
    unit: str
    emulator: float
    baseline: float
    emulator_p99: float | None = None
    baseline_p99: float | None = None
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float:
        return self.emulator / self.baseline if self.baseline else float("nan")


def _p99(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def run(counts: Counts, only: set[str] | None, log_path: Path | None) -> list[Row]:
    rows: list[Row] = []
    scratch = scenarios.scratch_dir()

    def wanted(name: str) -> bool:
        return only is None or name in only

    try:
        echo: dict[str, list[float]] = {"rtt": [], "rate": [], "connect": [], "idle": []}
        emu: dict[str, list[float]] = {
            "python": [],
            "node": [],
            "python_rate": [],
            "node_rate": [],
            "connect": [],
            "idle": [],
        }
        for _ in range(counts.repeats):
            async with echo_server() as server:
                echo["rtt"] += await scenarios.round_trips(
                    server.url, scenarios.PYTHON_MESSAGE, counts.round_trips, counts.warmup
                )
                echo["rate"].append(
                    await scenarios.throughput(
                        server.url,
                        scenarios.PYTHON_MESSAGE,
                        counts.clients,
                        counts.per_client,
                        counts.throughput_warmup,
                    )
                )
                echo["connect"].append(
                    await scenarios.connect_rate(
                        server.url, counts.connections, counts.connect_concurrency
                    )
                )
                if wanted("e"):
                    echo["idle"].append(
                        await scenarios.idle_memory(server, counts.idle_connections)
                    )
            async with emulator(log_path=log_path) as server:
                for route, message in (
                    ("python", scenarios.PYTHON_MESSAGE),
                    ("node", scenarios.NODE_MESSAGE),
                ):
                    if wanted("b"):
                        emu[route] += await scenarios.round_trips(
                            server.url, message, counts.round_trips, counts.warmup
                        )
                    if wanted("c"):
                        emu[f"{route}_rate"].append(
                            await scenarios.throughput(
                                server.url,
                                message,
                                counts.clients,
                                counts.per_client,
                                counts.throughput_warmup,
                            )
                        )
                if wanted("d"):
                    emu["connect"].append(
                        await scenarios.connect_rate(
                            server.url, counts.connections, counts.connect_concurrency
                        )
                    )
                if wanted("e"):
                    emu["idle"].append(await scenarios.idle_memory(server, counts.idle_connections))

        base_rtt = statistics.median(echo["rtt"])
        base_rate = statistics.median(echo["rate"])
        base_p99 = _p99(echo["rtt"])
        rows.append(Row("a baseline round trip", "ms", base_rtt, base_rtt, base_p99, base_p99))
        for route in ("python", "node"):
            if emu[route]:
                median = statistics.median(emu[route])
                rows.append(
                    Row(
                        f"b warm round trip ({route})",
                        "ms",
                        median,
                        base_rtt,
                        _p99(emu[route]),
                        _p99(echo["rtt"]),
                        "< 2 ms" if route == "python" else "",
                        median < 2 if route == "python" else None,
                    )
                )
        for route in ("python", "node"):
            if emu[f"{route}_rate"]:
                rate = statistics.median(emu[f"{route}_rate"])
                rows.append(
                    Row(
                        f"c throughput, {counts.clients} clients ({route})",
                        "replies/s",
                        rate,
                        base_rate,
                        target=">= 3000/s",
                        met=rate >= 3000,
                    )
                )
        if emu["connect"]:
            rate = statistics.median(emu["connect"])
            rows.append(
                Row(
                    "d connect rate",
                    "conn/s",
                    rate,
                    statistics.median(echo["connect"]),
                    target=">= 500/s",
                    met=rate >= 500,
                )
            )
        if emu["idle"]:
            per_connection = statistics.median(emu["idle"])
            rows.append(
                Row(
                    f"e idle memory, {counts.idle_connections} connections",
                    "KiB/conn",
                    per_connection,
                    statistics.median(echo["idle"]),
                    target="< 40 KiB",
                    met=per_connection < 40,
                )
            )
        if wanted("f"):
            cold: list[float] = []
            bare: list[float] = []
            for _ in range(counts.repeats):
                first, baseline = await scenarios.cold_start(scratch)
                cold.append(first)
                bare.append(baseline)
            rows.append(
                Row("f cold start (python)", "ms", statistics.median(cold), statistics.median(bare))
            )
        else:
            bare = [scenarios.bare_import_ms(scenarios.bare_handler_dir(scratch), "handler_module")]
        if wanted("g"):
            reloads = [await scenarios.reload_time(scratch) for _ in range(counts.repeats)]
            median = statistics.median(reloads)
            rows.append(
                Row(
                    "g reload to new reply",
                    "ms",
                    median,
                    statistics.median(bare),
                    max(reloads),
                    target="< 300 ms",
                    met=median < 300,
                )
            )
        if wanted("h"):
            starts = [await scenarios.startup() for _ in range(counts.repeats)]
            median = statistics.median(start for start, _ in starts)
            rows.append(
                Row(
                    "h startup to first connection",
                    "ms",
                    median,
                    statistics.median(base for _, base in starts),
                    target="< 1500 ms",
                    met=median < 1500,
                )
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return rows


def _met_text(met: bool | None) -> str:
    if met is None:
        return ""
    return "yes" if met else "NO"


def format_table(rows: list[Row]) -> str:
    header = ("scenario", "emulator", "p99", "baseline", "p99", "ratio", "target", "met")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.scenario,
                f"{row.emulator:,.2f} {row.unit}",
                f"{row.emulator_p99:,.2f}" if row.emulator_p99 is not None else "",
                f"{row.baseline:,.2f} {row.unit}",
                f"{row.baseline_p99:,.2f}" if row.baseline_p99 is not None else "",
                f"{row.ratio:.2f}x",
                row.target,
                _met_text(row.met),
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def machine_description() -> str:
    memory = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    system = f"{platform.system()} {platform.release()}"
    return (
        f"{platform.node()}: {psutil.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB, "
        f"Python {platform.python_version()}, {system}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts, one repeat")
    parser.add_argument("--repeats", type=int, help="runs of each scenario (default 3)")
    parser.add_argument(
        "--only", help="comma-separated scenario letters to run (a always runs), e.g. b,c"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--log", type=Path, help="write the emulator's log to this file")
    args = parser.parse_args(argv)

    counts = SMOKE if args.smoke else FULL
    if args.repeats:
        counts = Counts(**{**asdict(counts), "repeats": args.repeats})
    only = set(args.only.split(",")) if args.only else None
    raise_file_limit()
    print(machine_description(), flush=True)
    rows = asyncio.run(run(counts, only, args.log))
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
