"""Subprocess helper of test_kernel_stamps.py (Locust monkey-patches whatever imports it).

    python kstamp_probe.py URL REQUESTS

Sends REQUESTS streaming requests with kernel receive stamps on, then as many
with them off (`--stamps user`), each over chatprobe's gevent client,
and prints one JSON line per mode: per request the token texts, token stamps,
t_sent / t_first_byte / t_end, the perf_counter_ns read just after the exchange,
and whether the connection used kernel stamps.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from typing import Any


def main() -> None:
    url, n = sys.argv[1], int(sys.argv[2])
    from chatprobe.loadplan import SETTINGS_ENV, LoadSettings

    settings = LoadSettings(target=url, max_tokens=24, ignore_eos=True, prompt_tokens=8)
    os.environ[SETTINGS_ENV] = settings.dumps()
    import locust  # noqa: F401  (monkey-patches the process, as under Locust)

    from chatprobe.load.client import Exchange, GeventClient
    from chatprobe.load.state import state
    from chatprobe.metrics import RequestRecord

    for mode in ("1", "0"):
        b = state.builder
        b.stamps = "kernel" if mode == "1" else "user"  # what --stamps sets for a run
        b._cycle = itertools.cycle(b.prepared)  # both modes send the same prompts
        client = GeventClient(b, settings)
        out: list[dict[str, Any]] = []
        for i in range(n):
            req = state.builder.next()
            record = RequestRecord(request_id=f"probe-{mode}-{i}", dialect="openai", t_sent_ns=0)
            ex = Exchange(record, state.builder.profile, req, False)
            client.exchange(ex, req)
            after = time.perf_counter_ns()
            res = ex.validator.result
            out.append({
                "ok": record.ok, "error": record.error, "text": res.text(),
                "tokens": len(res.token_arrivals_ns), "stamps": list(res.token_arrivals_ns),
                "t_sent": record.t_sent_ns, "t_first_byte": record.t_first_byte_ns,
                "t_end": record.t_end_ns, "after": after, "output_tokens": record.output_tokens,
                "kernel": client.idle[0].kernel_stamps if client.idle else None,
            })
        client.close()
        sys.stdout.write(json.dumps({"mode": mode, "requests": out}) + "\n")


if __name__ == "__main__":
    main()
