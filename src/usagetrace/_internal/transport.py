"""Delivery of encoded OTLP requests: HTTP, gRPC, a JSON-lines file, the console, memory.

A transport takes protobuf bytes and a deadline and answers ``OK``, ``DROP``
(will never succeed: a 4xx, a bad certificate) or a retry delay in seconds. It
never raises and never blocks past the deadline it is given.
"""

from __future__ import annotations

import gzip
import os
import sys
import threading

from . import log
from .config import Target

OK = "ok"
DROP = "drop"
_USER_AGENT = "usagetrace"
_RETRYABLE_HTTP = (408, 429, 502, 503, 504)
_MAX_RETRY_AFTER = 300.0
FILE_MAX_BYTES = 16 * 1024 * 1024
_attempt = threading.local()


def last_attempt() -> tuple:
    """``(reached, outcome, wire bytes)`` of the calling thread's latest HTTP or gRPC send.

    ``reached`` is True when the whole request left the machine, False when it
    certainly did not, None when that is unknown. Read by ``receipts.send``.
    """
    return getattr(_attempt, "value", (False, "", 0))


def _note(reached, outcome: str, size: int) -> None:
    _attempt.value = (reached, outcome, size)


def forget_attempt() -> None:
    """Clear the calling thread's record before a send (a send that notes nothing sent nothing)."""
    _note(False, "", 0)


def _retry_after(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        return default  # an HTTP date: not worth parsing, back off by default


def _import_grpc():
    """Import grpc with its C core's logging at ERROR unless the host chose a level.

    Left unset, gRPC's core prints lines such as TLS handshake failures to the
    host's stderr. ``GRPC_VERBOSITY`` is read once, when grpc is imported, so it
    is set only for that import and then removed again.
    """
    if "grpc" in sys.modules:
        import grpc

        return grpc
    unset = "GRPC_VERBOSITY" not in os.environ
    if unset:
        os.environ["GRPC_VERBOSITY"] = "ERROR"
    try:
        import grpc
    finally:
        if unset:
            os.environ.pop("GRPC_VERBOSITY", None)
    return grpc


def _shown(target: Target) -> str:
    """The endpoint as it may appear in a log line: never its query (an API key) or userinfo."""
    from .config import safe_url

    return safe_url(target.url)


class HttpSession:
    """Keeps one HTTP connection per ``(scheme, host, port)`` open between requests (``keep-alive``).

    The daily uploader sends a package's traces and metrics over one
    connection; everything else opens a connection per request.
    """

    def __init__(self) -> None:
        self._conns: dict[tuple, object] = {}

    def take(self, key: tuple):
        return self._conns.pop(key, None)

    def give_back(self, key: tuple, conn) -> None:
        old = self._conns.pop(key, None)
        if old is not None:
            old.close()
        self._conns[key] = conn

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:
                pass
        self._conns.clear()


class HttpTransport:
    """OTLP over HTTP (protobuf or JSON), with ``http.client`` and hard timeouts."""

    #: Bytes leave the machine: ``receipts.send`` keeps a receipt (and reads :func:`last_attempt`).
    sends_over_network = True

    def __init__(self, target: Target, session: HttpSession | None = None) -> None:
        from urllib.parse import urlsplit

        self.target = target
        self.session = session
        parts = urlsplit(target.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._ssl = None

    def _context(self):
        if self._ssl is None:
            import ssl

            ctx = ssl.create_default_context(cafile=self.target.certificate or None)
            if self.target.client_certificate:
                ctx.load_cert_chain(self.target.client_certificate, self.target.client_key or None)
            self._ssl = ctx
        return self._ssl

    def send(self, signal: str, payload: bytes, timeout: float):
        import http.client
        import ssl

        body = payload
        headers = {"Content-Type": "application/x-protobuf", "User-Agent": _USER_AGENT}
        if self.target.protocol == "http/json":
            from . import otlp_json

            body = otlp_json.to_json(signal, payload).encode()
            headers["Content-Type"] = "application/json"
        if self.target.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        for key, value in self.target.headers:
            headers[key] = value
        timeout = max(timeout, 0.01)
        wrote = False
        key = (self._https, self._host, self._port)
        conn = self.session.take(key) if self.session is not None else None
        reused = conn is not None
        try:
            while True:
                if conn is None:
                    if self._https:
                        conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                                           context=self._context())
                    else:
                        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
                elif conn.sock is not None:
                    conn.sock.settimeout(timeout)
                try:
                    conn.request("POST", self._path, body=body, headers=headers)
                    wrote = True
                    response = conn.getresponse()
                    response.read(64 * 1024)
                    status = response.status
                    retry_after = response.getheader("Retry-After")
                except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                    conn.close()
                    conn = None
                    if not reused:
                        raise
                    # The server closed the kept-alive connection before reading this request: once, anew.
                    reused = wrote = False
                    continue
                except BaseException:
                    conn.close()
                    raise
                if self.session is not None and not response.will_close and response.isclosed():
                    self.session.give_back(key, conn)  # the whole answer was read: reusable
                else:
                    conn.close()
                break
        except ssl.SSLError as exc:
            log.debug("OTLP %s export to %s failed TLS verification: %s", signal, _shown(self.target), exc)
            _note(wrote, "TLS error", len(body))
            return DROP
        except (OSError, http.client.HTTPException) as exc:
            log.debug("OTLP %s export to %s failed: %r", signal, _shown(self.target), exc)
            _note(wrote, f"{'no answer' if wrote else 'not sent'}: {type(exc).__name__}", len(body))
            return 1.0
        if 200 <= status < 300:
            _note(True, f"accepted (HTTP {status})", len(body))
            return OK
        if status in _RETRYABLE_HTTP:
            _note(True, f"retry later (HTTP {status})", len(body))
            return _retry_after(retry_after, 1.0)
        log.debug("OTLP %s export to %s rejected with HTTP %d; dropping", signal, _shown(self.target), status)
        _note(True, f"rejected (HTTP {status})", len(body))
        return DROP

    def close(self) -> None:
        pass


class GrpcTransport:
    """OTLP over gRPC with raw protobuf bytes (no re-encoding)."""

    sends_over_network = True

    _METHODS = {
        "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    }

    def __init__(self, target: Target) -> None:
        self.target = target
        self._channel = None
        self._calls = {}

    def _call(self, signal: str):
        grpc = _import_grpc()

        if self._channel is None:
            options = [("grpc.enable_retries", 0), ("grpc.max_send_message_length", 16 * 1024 * 1024)]
            if self.target.secure:
                def read(path):
                    if not path:
                        return None
                    with open(path, "rb") as fh:
                        return fh.read()

                creds = grpc.ssl_channel_credentials(
                    root_certificates=read(self.target.certificate),
                    private_key=read(self.target.client_key),
                    certificate_chain=read(self.target.client_certificate),
                )
                self._channel = grpc.secure_channel(self.target.url, creds, options=options)
            else:
                self._channel = grpc.insecure_channel(self.target.url, options=options)
        call = self._calls.get(signal)
        if call is None:
            call = self._calls[signal] = self._channel.unary_unary(self._METHODS[signal])
        return call

    def send(self, signal: str, payload: bytes, timeout: float):
        try:
            grpc = _import_grpc()
        except Exception:
            log.internal_error("transport.grpc_import")
            return DROP
        try:
            kwargs = {}
            if self.target.compression == "gzip":
                kwargs["compression"] = grpc.Compression.Gzip
            self._call(signal)(
                payload,
                timeout=max(timeout, 0.01),
                metadata=tuple(self.target.headers) or None,
                wait_for_ready=False,
                **kwargs,
            )
            _note(True, "accepted (gRPC OK)", len(payload))
            return OK
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            log.debug("OTLP %s gRPC export to %s failed: %s", signal, self.target.url, code)
            # UNAVAILABLE: no connection; DEADLINE_EXCEEDED: unknown; anything else: the server answered.
            reached = {grpc.StatusCode.UNAVAILABLE: False, grpc.StatusCode.DEADLINE_EXCEEDED: None}.get(code, True)
            _note(reached, f"gRPC {getattr(code, 'name', code)}", len(payload))
            retryable = (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.ABORTED,
                grpc.StatusCode.CANCELLED,
            )
            return 1.0 if code in retryable else DROP
        except Exception:
            log.internal_error("transport.grpc")
            _note(None, "gRPC error", len(payload))
            return 1.0

    def close(self) -> None:
        if self._channel is not None:
            try:
                self._channel.close()
            except Exception:
                pass
            self._channel = None
            self._calls = {}


class FileTransport:
    """Development mode: OTLP JSON lines, the same format as the collector's ``file`` exporter.

    The file is rotated once it passes ``FILE_MAX_BYTES`` (one ``.1`` backup kept).
    """

    _locks: dict[str, threading.Lock] = {}

    def __init__(self, target: Target) -> None:
        self.path = target.url
        self.lock = self._locks.setdefault(self.path, threading.Lock())

    def send(self, signal: str, payload: bytes, timeout: float):
        from . import otlp_json

        try:
            line = otlp_json.to_json(signal, payload) + "\n"
            with self.lock:
                try:
                    if os.path.getsize(self.path) > FILE_MAX_BYTES:
                        os.replace(self.path, self.path + ".1")
                except OSError:
                    pass
                from . import paths

                # 0600 in a 0700 directory: the file holds the install id.
                with os.fdopen(paths.open_private(self.path), "a", encoding="utf-8") as fh:
                    fh.write(line)
            return OK
        except Exception:
            log.debug("cannot write development file %s", self.path, exc_info=True)
            return DROP

    def close(self) -> None:
        pass


class ConsoleTransport:
    """Development mode: OTLP JSON lines on stderr (never stdout, which belongs to the host)."""

    def send(self, signal: str, payload: bytes, timeout: float):
        from . import otlp_json

        try:
            sys.stderr.write(otlp_json.to_json(signal, payload, indent=2) + "\n")
            return OK
        except Exception:
            return DROP

    def close(self) -> None:
        pass


class MemoryTransport:
    """Keeps every request in memory (``usagetrace.testing`` and ``usagetrace preview``)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def send(self, signal: str, payload: bytes, timeout: float):
        with self.lock:
            self.requests.append((signal, payload))
        return OK

    def close(self) -> None:
        pass


class NullTransport:
    """Where the configuration is invalid: everything is dropped (and counted)."""

    def send(self, signal: str, payload: bytes, timeout: float):
        return DROP

    def close(self) -> None:
        pass


class TeeTransport:
    """Sends to several transports (development file plus console); the first answer counts."""

    def __init__(self, *transports) -> None:
        self.transports = transports

    def send(self, signal: str, payload: bytes, timeout: float):
        results = [t.send(signal, payload, timeout) for t in self.transports]
        return results[0]

    def close(self) -> None:
        for t in self.transports:
            t.close()


def for_target(target: Target, session: HttpSession | None = None):
    """Return a transport for a resolved target (HTTP ones share ``session``'s connections, if given)."""
    if target.kind == "http":
        return HttpTransport(target, session)
    if target.kind == "grpc":
        return GrpcTransport(target)
    if target.kind == "file":
        from .config import console_enabled

        if console_enabled():
            return TeeTransport(FileTransport(target), ConsoleTransport())
        return FileTransport(target)
    return NullTransport()
