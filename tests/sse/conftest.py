"""Every decoder test here runs twice: with the compiled accelerator
(chatprobe._ssefast) and with the pure-Python bulk paths, which must give the
same events and findings. The C run is skipped, saying why, only when the
extension is not built (an install with CHATPROBE_NO_EXT=1 or no compiler)."""

from __future__ import annotations

import pytest

import chatprobe.sse

_NOT_BUILT = "chatprobe._ssefast is not built (no compiler at install, or CHATPROBE_NO_EXT=1)"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests of the extension itself (test_ssefast.py) need no second run.
    if "sse_impl" in metafunc.fixturenames and not metafunc.definition.get_closest_marker(
        "one_impl"
    ):
        metafunc.parametrize("sse_impl", ["compiled", "python"], indirect=True)


@pytest.fixture(autouse=True)
def sse_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    impl: str = getattr(request, "param", "default")
    if impl == "compiled":
        if chatprobe.sse._scan_c is None:
            pytest.skip(_NOT_BUILT)
        monkeypatch.setattr(chatprobe.sse, "ACCELERATED", True)
    elif impl == "python":
        monkeypatch.setattr(chatprobe.sse, "ACCELERATED", False)
    return impl


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "one_impl: run once, not once per decoder implementation")
