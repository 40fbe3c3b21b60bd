from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatprobe.server.runner import running_server


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    with running_server() as url:
        yield url


@pytest.fixture(scope="session")
def keyed_server_url() -> Iterator[str]:
    with running_server(api_key="sekret") as url:
        yield url
