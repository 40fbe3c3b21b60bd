"""The reference server: every dialect on one port, a latency/capacity model and a fault catalogue.

Start it with ``chatprobe serve`` or, from Python, with
:func:`chatprobe.server.runner.running_server` (thread) /
:func:`chatprobe.server.runner.spawn_server` (child process).
"""
