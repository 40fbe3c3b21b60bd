"""Subprocess helper of test_no_cycles.py (Locust monkey-patches whatever imports it).

    python cycle_probe.py URL REQUESTS

Sends REQUESTS requests through chatprobe's load path (send_one, gevent client)
with the cyclic collector off, then prints one JSON line: the requests' errors
and how many objects gc.collect() found in reference cycles afterwards.
"""

from __future__ import annotations

import gc
import json
import os
import sys


def main() -> None:
    url, n = sys.argv[1], int(sys.argv[2])
    from chatprobe.loadplan import SETTINGS_ENV, LoadSettings

    os.environ[SETTINGS_ENV] = LoadSettings(target=url, max_tokens=8, prompt_tokens=8).dumps()
    import locust
    from locust.env import Environment

    from chatprobe.load import users as cl
    from chatprobe.load.client import GeventClient
    from chatprobe.load.state import state

    env = Environment(events=locust.events)
    client = GeventClient(state.builder, state.load())
    cl.send_one(env, client)  # warm: first-use caches are not per-request garbage
    gc.collect()
    gc.disable()
    errors = [cl.send_one(env, client).error for _ in range(n)]
    client.close()
    sys.stdout.write(json.dumps({"errors": errors, "cyclic": gc.collect()}) + "\n")


if __name__ == "__main__":
    main()
