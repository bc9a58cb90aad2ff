"""Pytest fixtures for the local vendor servers. Import them into a test module (or a conftest):

    from servers.fixtures import sendgrid_server  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers.sendgrid import SendGridServer


@pytest.fixture()
def sendgrid_server() -> Iterator[SendGridServer]:
    """A started SendGrid v3 look-alike on 127.0.0.1 (fresh per test), stopped afterwards."""
    with SendGridServer() as server:
        yield server
