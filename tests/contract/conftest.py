"""What every contract test shares: a script that must be played to the end, and a cold HTTP cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from reliability_center.gitops.forges import ETAGS
from tests.contract.fakes import FakeForgeTransport

Transport = TypeVar("Transport", bound=FakeForgeTransport)


@pytest.fixture(autouse=True)
def cold_etag_cache() -> Iterator[None]:
    """The ETag cache lives at module level: a test must not revalidate what another test cached."""
    ETAGS.clear()
    yield
    ETAGS.clear()


@pytest.fixture
def scripted() -> Iterator[Callable[[Transport], Transport]]:
    """Registers a Fake transport; at teardown each one must have served its whole script.

    Without it, a client that silently skips a request (a page, a read-back, a
    revalidation) would still pass, since the Fake only sees what is sent.
    """
    transports: list[FakeForgeTransport] = []

    def register(transport: Transport) -> Transport:
        transports.append(transport)
        return transport

    yield register
    for transport in transports:
        transport.done()
