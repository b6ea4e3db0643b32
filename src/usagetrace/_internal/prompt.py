"""The optional consent prompt for command-line tools.

Asked only when a person can answer: stdin and stderr are terminals, not in
CI, not in a notebook, and no choice exists yet (environment or files). The
answer is stored in the per-user consent file, so it is asked at most once;
no answer within the timeout leaves consent unset and asks again next time.
"""

from __future__ import annotations

import sys

from . import consent, log, runenv

DEFAULT_QUESTION = (
    "{package} can send anonymous usage statistics (which features are used, versions, error types; "
    "never your data, paths or names) to help its maintainers.\n"
    "See exactly what is sent: usagetrace preview {package}\n"
    "Share anonymous usage statistics of {package}? [y/N] "
)
#: Always said before the question (a maintainer's own question included): what a yes means.
FACTS = (
    "If you agree, it goes to {where}, under a random install id for {package} on this machine "
    "({install_id}; `usagetrace reset-id {package}` replaces it, `usagetrace disable {package}` deletes it).\n"
)


def _can_ask() -> bool:
    return (
        runenv.isatty(sys.stdin)
        and runenv.isatty(sys.stderr)
        and runenv.ci_provider() is None
        and not runenv.in_notebook()
    )


def _read_answer(timeout: float) -> str | None:
    try:
        import select

        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        if not ready:
            return None
        return sys.stdin.readline()
    except Exception:
        return None  # no select on this platform/stream: treat as no answer


def ask(package: str, *, question: str | None = None, timeout: float = 30.0, policy: str = consent.OPT_IN):
    """Ask once whether ``package`` may send telemetry; return the resulting :class:`ConsentState`.

    When the package is instrumented in this process, its policy and consent
    version apply: a stored grant for another consent version counts as not
    given, so the question is asked again and the answer stored for this version.
    """
    top = package.split(".", 1)[0]
    try:
        from . import instrumentation

        handle = instrumentation.get(top)
        version = handle.consent_version if handle is not None else None
        policy = handle.policy if handle is not None else policy
        current = consent.resolve(top, policy, notice_shown=True, consent_version=version)
        if current.state != consent.UNSET or current.source in ("pytest", "ci") or not _can_ask():
            return current
        from . import notice

        endpoint = handle.endpoint if handle is not None else None
        # The id is named, not created: a no must leave nothing behind.
        from . import resource

        install_id = resource.stored_install_id(top) or "a new one, made when it first sends"
        facts = FACTS.format(package=top, where=notice.destination(top, endpoint), install_id=install_id)
        sys.stderr.write(facts + (question or DEFAULT_QUESTION).format(package=top))
        sys.stderr.flush()
        answer = _read_answer(timeout)
        if answer is None:
            sys.stderr.write("\n(no answer; nothing will be sent)\n")
            return current
        granted = answer.strip().lower() in ("y", "yes")
        try:
            consent.write_choice(top, granted, version=version)
        except (OSError, consent.BrokenSource):
            log.debug("cannot store the consent answer", exc_info=True)
            return consent.ConsentState(granted, consent.GRANTED if granted else consent.DENIED, "prompt")
        decision = consent.resolve(top, policy, notice_shown=True, consent_version=version)
        _apply(top, decision)
        return decision
    except Exception:
        log.internal_error("prompt.ask")
        return consent.ConsentState(False, consent.UNSET, "error")


def _apply(package: str, decision) -> None:
    """Bring an already instrumented package in line with a fresh answer."""
    from . import instrumentation

    handle = instrumentation.get(package)
    if handle is None:
        return
    handle.consent = decision
    if decision.enabled and not handle.instrumented:
        handle._start()
    elif handle.recorder is not None:
        handle.recorder.enabled = decision.enabled
