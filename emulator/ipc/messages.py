"""Typed messages carried in frames between the gateway and a worker.

Gateway to worker: CONFIGURE (first, and again on reload), INVOKE, SHUTDOWN.
Worker to gateway: HELLO, RESULT, LOG, STATUS.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from emulator.ipc.framing import FrameKind

_MessageT = TypeVar("_MessageT", bound="Message")


@dataclass(frozen=True, slots=True)
class Message:
    kind: ClassVar[FrameKind]

    def to_body(self) -> dict[str, Any]:
        # A shallow copy: every field is a msgpack-ready value, and
        # dataclasses.asdict() would deep-copy them on the hot path.
        return {name: getattr(self, name) for name in _field_names(type(self))}

    @classmethod
    def from_body(cls: type[_MessageT], body: dict[str, Any]) -> _MessageT:
        names = _field_names(cls)
        return cls(**{key: value for key, value in body.items() if key in names})


_FIELD_NAMES: dict[type[Message], frozenset[str]] = {}


def _field_names(cls: type[Message]) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(item.name for item in fields(cls))
    return names


@dataclass(frozen=True, slots=True)
class WorkerConfig(Message):
    """Everything a worker needs to run one function's environments."""

    kind: ClassVar[FrameKind] = FrameKind.CONFIGURE

    route: str
    function_name: str
    function_arn: str
    region: str
    src: str
    runtime: str
    handler_setting: str | None
    command: list[str]
    timeout: int
    memory: int
    concurrency: int
    queue_size: int
    idle_environment_timeout: float
    prewarm: bool
    environment: dict[str, str]


@dataclass(frozen=True, slots=True)
class Hello(Message):
    kind: ClassVar[FrameKind] = FrameKind.HELLO

    pid: int
    route: str


@dataclass(frozen=True, slots=True)
class Invoke(Message):
    kind: ClassVar[FrameKind] = FrameKind.INVOKE

    id: int
    event: bytes


@dataclass(frozen=True, slots=True)
class Result(Message):
    """The outcome of one INVOKE, with the figures of its REPORT line."""

    kind: ClassVar[FrameKind] = FrameKind.RESULT

    id: int
    request_id: str
    payload: bytes | None = None
    error_type: str | None = None
    error_message: str | None = None
    duration_ms: float = 0.0
    max_memory_mb: int = 0
    init_duration_ms: float | None = None
    # The invocation's last log lines (END and REPORT, and START when the
    # function printed nothing), carried here to save a LOG frame.
    lines: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Log(Message):
    """Lines for the emulator's output, attributed to the worker's function.

    `request_id` is the invocation the lines belong to, or None for output
    outside any invocation (during init, or from a stray child process).
    """

    kind: ClassVar[FrameKind] = FrameKind.LOG

    lines: list[str]
    request_id: str | None = None
    level: str = "INFO"
    # Set for the worker's own log records: the logger they came from.
    logger: str | None = None


@dataclass(frozen=True, slots=True)
class Status(Message):
    kind: ClassVar[FrameKind] = FrameKind.STATUS

    environments: int
    busy: int
    queued: int
    # Session ids of the running environments (each runtime leads its own
    # session), so the gateway can end their processes if the worker dies.
    sessions: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Shutdown(Message):
    kind: ClassVar[FrameKind] = FrameKind.SHUTDOWN


MESSAGE_TYPES: dict[FrameKind, type[Message]] = {
    cls.kind: cls for cls in (WorkerConfig, Hello, Invoke, Result, Log, Status, Shutdown)
}
