"""Private implementation of usagetrace. Nothing here is public API.

The modules a run with telemetry off imports (usagetrace, instrumentation, consent, env, log, paths,
runenv, clock and the CLI integrations; tests/integrations/test_import_cost.py holds them to it) write
the annotations that need it as strings instead of ``from __future__ import annotations``: that
statement imports the ``__future__`` module, ~0.3 ms of every such run.
"""
