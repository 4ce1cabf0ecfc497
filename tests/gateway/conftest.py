"""Fixtures for gateway tests: a fake invoker and gateways on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from emulator.config import AppConfig, Options
from emulator.gateway import Gateway

from .fakes import FakeInvoker, make_app

GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def invoker() -> FakeInvoker:
    return FakeInvoker()


@pytest.fixture
async def start_gateway(invoker: FakeInvoker) -> AsyncIterator[GatewayFactory]:
    """Start gateways on 127.0.0.1 with free ports; keyword arguments override Options."""
    started: list[Gateway] = []

    async def start(app: AppConfig | None = None, **overrides: Any) -> Gateway:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "internal_port": 0}
        settings.update(overrides)
        gateway = Gateway(app or make_app(), Options(**settings), invoker, ipv6_loopback=False)
        await gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> Gateway:
    return await start_gateway()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
