"""What every contract test shares: a script that must be played to the end, and a cold HTTP cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from reliability_center.gitops.forges import ETAGS, Forge, ForgeOptions, new_forge
from reliability_center.gitops.workspace import Credentials
from tests.contract.fakes import Exchange, FakeForgeTransport

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


def forge_builder(scripted: Callable[[Transport], Transport], fake: type[FakeForgeTransport], url: str,
                  token: str) -> Iterator[Callable[..., tuple[Forge, FakeForgeTransport]]]:
    """For a module's ``forge_with`` fixture: builds forges on scripted Fakes, closed at teardown.

    ``build(*script, token=, accepted=, api_url=)``: the forge sends ``token``; the Fake lets in
    ``accepted`` only (both the module's token unless a test says otherwise).
    """
    built: list[Forge] = []

    def build(*script: Exchange, token: str = token, accepted: str = token,
              api_url: str | None = None) -> tuple[Forge, Any]:
        transport = scripted(fake(script=list(script), token=accepted))
        forge = new_forge(url, None, Credentials(token=token), ForgeOptions(transport=transport, api_url=api_url))
        built.append(forge)
        return forge, transport

    yield build
    for forge in built:
        forge.close()
