"""Break scenario c's CPU cost down by process: `python -m bench.cpu`.

Runs the throughput workload against the emulator on the benchmark app and
prints, for each process group (the gateway, each worker, the runtimes
under each worker, and this client), the CPU time it spent per reply. It
shows where a reply's cost goes before any optimization. Profile the
heaviest group next (py-spy, cProfile).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import defaultdict
from pathlib import Path

import psutil

from bench import scenarios
from bench.processes import emulator, raise_file_limit

_ROUTES = {"python": scenarios.PYTHON_MESSAGE, "node": scenarios.NODE_MESSAGE}


def _cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _label(process: psutil.Process, gateway_pid: int) -> str:
    """Name a process by its role: gateway, worker or runtime, with its function."""
    if process.pid == gateway_pid:
        return "gateway"
    try:
        command = process.cmdline()
        parent = process.parent()
    except psutil.Error:
        return "gone"
    if "emulator.worker" in command:
        return f"worker {_worker_function(process)}"
    if parent is not None and parent.pid != gateway_pid:
        return f"runtimes of {_worker_function(parent)}"
    return "other: " + " ".join(command[:2])


def _worker_function(worker: psutil.Process) -> str:
    """Return the handler directory a worker serves, read from its runtimes' environment."""
    try:
        for child in worker.children():
            name = child.environ().get("AWS_LAMBDA_FUNCTION_NAME")
            if name:
                return name
    except psutil.Error:
        pass
    return str(worker.pid)


def snapshot(gateway_pid: int) -> dict[int, tuple[str, float]]:
    """Return each process's label and CPU seconds: the gateway and all its descendants."""
    gateway = psutil.Process(gateway_pid)
    processes = [gateway, *gateway.children(recursive=True)]
    return {p.pid: (_label(p, gateway_pid), _cpu_seconds(p)) for p in processes}


async def measure(route: str, clients: int, per_client: int, log: Path | None) -> None:
    message = _ROUTES[route]
    me = psutil.Process(os.getpid())
    async with emulator(log_path=log) as server:
        # Warm every environment the load will use before the first reading.
        await scenarios.throughput(server.url, message, clients, 1, warmup_rounds=5)
        # Let the `$disconnect` invocations of those clients, and the starts
        # of their environments, finish outside the measurement.
        await asyncio.sleep(2.0)
        before = snapshot(server.pid)
        client_before = _cpu_seconds(me)
        rate = await scenarios.throughput(server.url, message, clients, per_client)
        client_after = _cpu_seconds(me)
        after = snapshot(server.pid)
    replies = clients * per_client
    groups: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for pid, (label, seconds) in after.items():
        groups[label] += seconds - before.get(pid, (label, 0.0))[1]
        counts[label] += 1
    groups["client (this process)"] = client_after - client_before
    counts["client (this process)"] = 1
    print(f"route {route}: {replies} replies at {rate:,.0f} replies/s")
    total = 0.0
    for label, seconds in sorted(groups.items(), key=lambda item: -item[1]):
        per_reply = seconds / replies * 1e6
        total += per_reply
        print(f"  {label:<32} {counts[label]:>3} processes  {per_reply:8.0f} µs per reply")
    print(f"  {'total':<47} {total:8.0f} µs per reply")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__)
    parser.add_argument("--route", choices=sorted(_ROUTES), action="append")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=100)
    parser.add_argument("--log", type=Path, help="write the emulator's log to this file")
    args = parser.parse_args(argv)
    raise_file_limit()
    for route in args.route or ["python", "node"]:
        asyncio.run(measure(route, args.clients, args.per_client, args.log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
