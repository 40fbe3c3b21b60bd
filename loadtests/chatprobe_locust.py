"""chatprobe's load users as a plain locustfile: exact TTFT, ITL and TPOT per request.

    locust -f loadtests/chatprobe_locust.py --host http://127.0.0.1:8000 \\
        -u 8 -r 8 -t 30s --headless --dialect openai --max-tokens 64

Locust's own options work as usual (``-u``, ``-r``, ``-t``, ``--headless`` or the
web UI, ``--master`` / ``--worker``). chatprobe's request settings are Locust
options too, shown in the web UI's form (not in ``locust --help``: Locust prints
that before it reads a locustfile): ``--dialect``, ``--dialect-profile``, ``--model``, ``--api-key-env``,
``--max-tokens``, ``--prompt-tokens`` (``N`` or a distribution: ``uniform:LO:HI``,
``normal:mean=M,stdev=S``, ``lognormal:…``, as ``chatprobe load``'s), ``--tokenizer``,
``--dataset``, ``--prefix-groups``, ``--prefix-tokens``, ``--no-stream``,
``--no-usage``, ``--ignore-eos``, ``--request-timeout``, ``--read-timeout``,
``--check-schema``, ``--stamps``, ``--seed``.

Locust's stats (web UI, ``--csv``) get a POST row per request (end to end) and,
per successful response, TTFT, TPOT and ITL rows (ITL: every gap between
token-bearing events). ``chatprobe load`` runs the same engine
(:mod:`chatprobe.load.users`) and writes its own exact report instead.
"""

from __future__ import annotations

from locust import User, task

from chatprobe.load.users import ConnectBackoff, new_client, send_one


class ChatProbeUser(User):
    """Closed loop: send one chat request, read its whole (streamed) response, repeat.

    The request (dialect, body, headers) comes from the chatprobe options; the
    client reads it on its own keep-alive connection, stamps every read and checks
    the stream as it arrives; ``send_one`` records it and reports it to Locust. A refused
    connection (the server went away) is retried after a back-off, 10 ms doubling to 1 s."""

    def on_start(self) -> None:
        self.chatprobe = new_client()
        self.backoff = ConnectBackoff()

    def on_stop(self) -> None:
        self.chatprobe.close()

    @task
    def chat(self) -> None:
        self.backoff.after(send_one(self.environment, self.chatprobe))
