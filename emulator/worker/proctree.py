"""Process trees of execution environments: find, measure, stop.

Each runtime process starts in a session of its own, and the worker makes
itself a child subreaper, so a handler's children stay reachable. They are
descendants of the runtime process or, once orphaned, children of the
worker that still carry the runtime's session id.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
from collections.abc import Iterable

import psutil

logger = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _children(pid: int) -> list[int]:
    # /proc/PID/task/TID/children lists the children each thread created; it
    # is far cheaper than psutil's scan of every process on the machine.
    result: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return result
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as file:
                result.extend(int(child) for child in file.read().split())
        except OSError:
            continue
    return result


def descendants(root: int) -> list[int]:
    """Return the pids of `root` and everything it started that is still its descendant."""
    found = [root]
    index = 0
    while index < len(found):
        found.extend(_children(found[index]))
        index += 1
    return found


def session_members(session_id: int, candidates: Iterable[int]) -> list[int]:
    """Return those of `candidates` (and their descendants) in session `session_id`."""
    members: list[int] = []
    for pid in candidates:
        try:
            if os.getsid(pid) == session_id:
                members.extend(descendants(pid))
        except OSError:
            continue
    return members


def tree_pids(root: int, known: Iterable[int] = ()) -> set[int]:
    """Return every live pid of the tree rooted at `root`.

    Includes orphans that re-parented to this (subreaper) process and kept
    the root's session, and the `known` pids seen in the tree before.
    """
    pids = set(descendants(root))
    pids.update(session_members(root, _children(os.getpid())))
    for pid in known:
        if pid not in pids and _alive(pid):
            pids.add(pid)
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rss_bytes(pids: Iterable[int]) -> int:
    """Return the summed resident memory of `pids`, skipping ones that are gone."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as file:
                total += int(file.read().split()[1]) * _PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


def open_status(pid: int) -> int:
    """Open /proc/PID/status for `peak_rss_bytes`; return -1 if the process is gone."""
    try:
        return os.open(f"/proc/{pid}/status", os.O_RDONLY)
    except OSError:
        return -1


def peak_rss_bytes(status_fd: int) -> int:
    """Return the peak resident memory (VmHWM) from an open status file, or 0 if unknown.

    One pread() on a file opened once costs a single system call, where
    opening the file each time costs three: this runs on every invocation.
    """
    if status_fd < 0:
        return 0
    try:
        status = os.pread(status_fd, 8192, 0)
        start = status.index(b"VmHWM:") + 6
        return int(status[start : status.index(b"kB", start)]) * 1024
    except (OSError, ValueError):
        return 0


def signal_pids(pids: Iterable[int], sig: signal.Signals) -> list[psutil.Process]:
    """Send `sig` to each pid; return the processes that were signalled."""
    signalled: list[psutil.Process] = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.send_signal(sig)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        signalled.append(process)
    return signalled


async def stop_tree(
    root: int,
    known: Iterable[int] = (),
    *,
    term_timeout: float = 2.0,
    kill_timeout: float = 2.0,
    graceful: bool = True,
    label: str = "",
) -> None:
    """Stop the whole tree of `root`: SIGTERM, then SIGKILL, each with a deadline.

    With `graceful=False` the tree gets SIGKILL at once, as Lambda does to a
    sandbox that timed out or ran out of memory.
    """
    pids = tree_pids(root, known)
    if graceful:
        processes = signal_pids(pids, signal.SIGTERM)
        _, alive = await asyncio.to_thread(psutil.wait_procs, processes, term_timeout)
        if not alive:
            return
        logger.warning(
            "%s: %d process(es) ignored SIGTERM for %.1f s, sending SIGKILL: %s",
            label or f"pid {root}",
            len(alive),
            term_timeout,
            ", ".join(str(process.pid) for process in alive),
        )
        # Processes started while the tree was stopping are caught here too.
        pids = tree_pids(root, [process.pid for process in alive] + list(pids))
    processes = signal_pids(pids, signal.SIGKILL)
    _, alive = await asyncio.to_thread(psutil.wait_procs, processes, kill_timeout)
    if alive:
        logger.error(
            "%s: %d process(es) survived SIGKILL: %s",
            label or f"pid {root}",
            len(alive),
            ", ".join(str(process.pid) for process in alive),
        )


def reap_orphans(exclude: Iterable[int]) -> None:
    """Collect the exit status of orphaned children this subreaper inherited.

    Children in `exclude` (the runtime processes, whose exit the
    environments wait for themselves) are left alone.
    """
    excluded = set(exclude)
    for pid in _children(os.getpid()):
        if pid in excluded:
            continue
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
