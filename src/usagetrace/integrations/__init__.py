"""Optional integrations, one module each; import the one you need.

* :mod:`usagetrace.integrations.click` - click and typer CLIs (``pip install 'usagetrace[click]'``)
* :mod:`usagetrace.integrations.argparse` - argparse CLIs (standard library)
* :mod:`usagetrace.integrations.crash` - unhandled exceptions (standard library)
* :mod:`usagetrace.integrations.flask` - Flask page views (``pip install 'usagetrace[flask]'``)
* :mod:`usagetrace.integrations.dash` - Dash page views and callbacks (``pip install 'usagetrace[dash]'``)
* :mod:`usagetrace.integrations.email` - e-mail opens and clicks (standard library)

Every integration sends through the package's own consent-gated pipeline:
nothing is recorded while consent is off, and only allowlisted attribute keys
ever leave the process. None of them raises into the host program.
"""

import sys

# The import guard of the integrations that need a framework. Here, not in a module of its own: this
# package is imported anyway, and each module more is ~0.2 ms of every CLI run with telemetry off.


def require(module: str, extra: str, integration: str):
    """Import ``module`` or raise ImportError telling which usagetrace extra provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"usagetrace.integrations.{integration} needs {module!r}, which is not installed; "
            f"install it with: pip install 'usagetrace[{extra}]'"
        ) from exc


def available(module: str) -> bool:
    """True when the top-level ``module`` is imported or importable, without importing it (nor importlib.util)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        try:
            if find_spec is not None and find_spec(module, None) is not None:
                return True
        except Exception:
            continue
    return False
