"""rotel Python processor: the bundled collector configuration, applied by collector_emulator.

Loaded by ``rotel-agent --otlp-with-trace-processor/--otlp-with-metrics-processor``.
Environment (set by the test that starts rotel):

USAGETRACE_EMULATED_CONFIGS  os.pathsep-separated collector config files, merged in order
USAGETRACE_EMULATOR_LOG      file that receives one line per processed item ("ok" or the error)

An error drops everything in the item (fail closed) and is logged, so a test
sees it instead of a silent pass-through.
"""

import os
import traceback

from collector_emulator import Pipeline, load

_LOG = os.environ["USAGETRACE_EMULATOR_LOG"]
_CONFIG = load(os.environ["USAGETRACE_EMULATED_CONFIGS"].split(os.pathsep))
_PIPELINES = {"traces": Pipeline(_CONFIG, "traces"), "metrics": Pipeline(_CONFIG, "metrics")}


def _run(signal, item):
    try:
        _PIPELINES[signal](item)
        line = "ok"
    except Exception:  # noqa: BLE001 - reported to the test through the log
        line = "error " + traceback.format_exc().replace("\n", " | ")
        if signal == "traces":
            item.scope_spans = []
        else:
            item.scope_metrics = []
        if item.resource is not None:
            item.resource.attributes = []
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(f"{signal} {line}\n")


def process_spans(resource_spans):
    _run("traces", resource_spans)


def process_metrics(resource_metrics):
    _run("metrics", resource_metrics)
