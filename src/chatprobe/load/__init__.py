"""The load generator (Locust users and their HTTP/1.1 streaming client).

- :mod:`chatprobe.load.clocks`: kernel receive stamps on ``perf_counter_ns``'s scale;
- :mod:`chatprobe.load.state`: one generator process's settings, records, health;
- :mod:`chatprobe.load.client`: request builder, exchange, gevent client (transport seam);
- :mod:`chatprobe.load.users`: Locust users, event hooks, master/worker glue, the ONLY
  module importing locust (``import locust`` monkey-patches the process with gevent).

This package's ``__init__`` imports none of them: the CLI may import it safely.
"""
