"""Where the process runs: CI, notebook, interactive terminal or plain script."""

import os
import sys

from . import env

#: (environment variable, provider name). Checked in order; the generic ``CI``
#: last so a specific provider wins.
CI_VARIABLES = (
    ("GITHUB_ACTIONS", "github_actions"),
    ("GITLAB_CI", "gitlab"),
    ("JENKINS_HOME", "jenkins"),
    ("JENKINS_URL", "jenkins"),
    ("TRAVIS", "travis"),
    ("CIRCLECI", "circleci"),
    ("BITBUCKET_BUILD_NUMBER", "bitbucket"),
    ("TF_BUILD", "azure_pipelines"),
    ("AZURE_PIPELINES", "azure_pipelines"),
    ("BUILDKITE", "buildkite"),
    ("TEAMCITY_VERSION", "teamcity"),
    ("CODEBUILD_BUILD_ID", "aws_codebuild"),
    ("DRONE", "drone"),
    ("APPVEYOR", "appveyor"),
    ("SEMAPHORE", "semaphore"),
    ("WOODPECKER_CI", "woodpecker"),
    ("HEROKU_TEST_RUN_ID", "heroku"),
    ("CI", "generic"),
)


def ci_provider() -> "str | None":
    """Return the CI provider's name when running in CI, else None.

    A variable counts when set to anything but empty, ``0`` or ``false``; CI
    systems set these to ``true``, ``1`` or a path/number.
    """
    for var, provider in CI_VARIABLES:
        value = env.get(var)
        if value is not None and value.strip().lower() not in ("", "0", "false", "no", "off"):
            return provider
    return None


def in_notebook() -> bool:
    """Return True inside a Jupyter/IPython kernel."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()  # type: ignore[attr-defined]
        return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
    except Exception:
        return False


def in_interactive_shell() -> bool:
    """Return True in a REPL (``python -i``, IPython terminal, notebook)."""
    return bool(getattr(sys, "ps1", None)) or bool(getattr(sys.flags, "interactive", 0)) or in_notebook()


def isatty(stream) -> bool:
    """Return True when the stream is an open terminal; never raises."""
    try:
        return bool(stream is not None and not stream.closed and stream.isatty())
    except Exception:
        return False


def run_context() -> str:
    """Return one of ``ci``, ``notebook``, ``interactive`` or ``script``."""
    if ci_provider():
        return "ci"
    if in_notebook():
        return "notebook"
    if in_interactive_shell() or (isatty(sys.stdin) and isatty(sys.stderr)):
        return "interactive"
    return "script"


def under_pytest() -> bool:
    """Return True while pytest runs this process (the test or its collection)."""
    return env.get("PYTEST_CURRENT_TEST") is not None or "_pytest" in sys.modules


#: Files a container runtime leaves at the root: Docker, and Podman/CRI-O.
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")
_TEMP_ROOTS = ("/tmp", "/var/tmp", "/dev/shm")


def _under(path: str, root: str) -> bool:
    root = os.path.normcase(os.path.abspath(root)).rstrip(os.sep)
    return bool(root) and (path == root or path.startswith(root + os.sep))


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def not_lasting(state_dir: str) -> "str | None":
    """Why files kept in ``state_dir`` would probably not last until tomorrow, or None.

    A daily or weekly upload needs its local store to outlive the run: in CI,
    in a container, or with a state directory that cannot be written or lives
    in a temporary directory, it would be lost unsent. Cheap (a few ``stat``
    calls); never raises.
    """
    try:
        provider = ci_provider()
        if provider:
            return f"CI ({provider})"
        if env.get("KUBERNETES_SERVICE_HOST"):
            return "a Kubernetes pod"
        if env.get("container") or any(os.path.exists(marker) for marker in CONTAINER_MARKERS):
            return "a container"
        path = os.path.normcase(os.path.abspath(state_dir))
        existing = _nearest_existing(path)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
            return f"{state_dir} cannot be written"
        roots = [env.get(name) for name in ("TMPDIR", "TEMP", "TMP")] + list(_TEMP_ROOTS)
        if any(root and os.path.isabs(root) and _under(path, root) for root in roots):
            return f"{state_dir} is in a temporary directory"
    except Exception:
        return "it could not be checked"
    return None
