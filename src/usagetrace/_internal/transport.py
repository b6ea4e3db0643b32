"""Delivery of encoded OTLP requests: HTTP, gRPC, a JSON-lines file, the console, memory.

A transport takes protobuf bytes and a deadline and answers ``OK``, ``DROP``
(will never succeed: a 4xx, a bad certificate) or a retry delay in seconds (a
3xx, a 429/5xx that may pass, no answer). It never raises and never blocks past
the deadline it is given: for HTTP that one deadline covers name lookup,
connect, proxy tunnel, TLS, send and receive (see "one deadline per request").
Proxies come from the environment as ``requests`` takes them (``_proxy_for``).
"""

from __future__ import annotations

import _thread
import base64
import errno
import gzip
import os
import select
import socket
import ssl
import sys
import threading
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

from . import clock, log, otlp_json
from .config import Target, console_enabled

_clock = clock.REAL

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


_GRPC = None


def _import_grpc():
    """Import grpc with its C core's logging at ERROR unless the host chose a level.

    Left unset, gRPC's core prints lines such as TLS handshake failures to the
    host's stderr. ``GRPC_VERBOSITY`` is read once, when grpc is imported, so it
    is set only for that import and then removed again.
    """
    global _GRPC
    if _GRPC is not None:
        return _GRPC  # held here: later sys.modules surgery by the host cannot take it away
    if "grpc" in sys.modules:
        import grpc

        _GRPC = grpc
        return grpc
    unset = "GRPC_VERBOSITY" not in os.environ
    if unset:
        os.environ["GRPC_VERBOSITY"] = "ERROR"
    try:
        import grpc
    finally:
        if unset:
            os.environ.pop("GRPC_VERBOSITY", None)
    _GRPC = grpc
    return grpc


def _shown(target: Target) -> str:
    """The endpoint as it may appear in a log line: never its query (an API key) or userinfo."""
    from .config import safe_url

    return safe_url(target.url)


class HttpSession:
    """Keeps one HTTP connection per ``(scheme, host, port, proxy)`` open between requests (``keep-alive``).

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


# -- one deadline per request ------------------------------------------------------------------------
#
# A socket timeout bounds one socket operation, not a request: a server answering one byte every
# 0.2 s keeps ``http.client`` reading for as long as it likes, and ``getaddrinfo`` has no timeout at
# all. So HTTP is spoken here on a non-blocking socket: every wait (name lookup, connect, TLS
# handshake, send, receive) is a poll against the one deadline of the request, in slices of
# ``_SLICE`` seconds so that a sender asked to stop (a fork waits for it) gives up within ~10 ms.

_SLICE = 0.01
_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024
_cancel = threading.local()


class Expired(OSError):
    """The request's deadline passed (or its sender was asked to stop) before it completed."""


def set_cancel(check) -> None:
    """Give the calling thread's sends a ``check()`` that, once true, makes every wait give up."""
    _cancel.value = check


def _check(deadline: float) -> float:
    left = deadline - _clock.monotonic()
    if left <= 0:
        raise Expired("deadline passed")
    check = getattr(_cancel, "value", None)
    if check is not None and check():
        raise Expired("cancelled")
    return left


if hasattr(select, "poll"):
    def _ready(sock, write: bool, seconds: float) -> bool:
        poller = select.poll()
        poller.register(sock, select.POLLOUT if write else select.POLLIN)
        return bool(poller.poll(seconds * 1000.0))
else:  # Windows
    def _ready(sock, write: bool, seconds: float) -> bool:
        r, w, x = select.select(() if write else (sock,), (sock,) if write else (), (sock,), seconds)
        return bool(r or w or x)


def _wait(sock, write: bool, deadline: float) -> None:
    while not _ready(sock, write, min(_check(deadline), _SLICE)):
        pass


class _Lookup:
    """One ``getaddrinfo`` in a helper thread: a name server that never answers costs a thread, not the deadline."""

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.result = None
        self.error: BaseException | None = None
        self.done = _thread.allocate_lock()
        self.done.acquire()

    def run(self) -> None:
        try:
            self.result = socket.getaddrinfo(self.key[0], self.key[1], 0, socket.SOCK_STREAM)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting sender
            self.error = exc
        finally:
            with _lookups_lock:
                if _lookups.get(self.key) is self:
                    del _lookups[self.key]
            self.done.release()


#: Lookups under way, by (host, port): a second request for the same name waits for the same one,
#: so a dead name server never costs more than one thread per name.
_lookups: dict[tuple, _Lookup] = {}
_lookups_lock = threading.Lock()


def _numeric(host: str, port: int):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))]
    return None


def resolve(host: str, port: int, deadline: float) -> list:
    """``getaddrinfo`` bounded by ``deadline`` (it has no timeout of its own)."""
    found = _numeric(host, port)
    if found is not None:
        return found
    key = (host, port)
    with _lookups_lock:
        job = _lookups.get(key)
        if job is None:
            job = _lookups[key] = _Lookup(key)
            try:
                # A bare thread, like the delivery thread: invisible to the host's threading.enumerate().
                _thread.start_new_thread(job.run, ())
            except BaseException:
                del _lookups[key]
                raise
    while not job.done.acquire(timeout=min(_check(deadline), _SLICE)):
        pass
    job.done.release()
    if job.error is not None:
        raise job.error
    return job.result


def _reset_after_fork() -> None:
    global _lookups_lock, _lookups
    _lookups_lock = threading.Lock()
    _lookups = {}  # their threads did not come along


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def connect(host: str, port: int, deadline: float) -> socket.socket:
    """A connected non-blocking TCP socket, trying each address of ``host`` in turn, within ``deadline``."""
    error: BaseException = OSError(f"no address for {host}")
    for family, kind, proto, _, address in resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, 10035):
                raise OSError(code, os.strerror(code))
            if code:
                _wait(sock, True, deadline)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except Expired:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            error = exc
    raise error


def _tls(sock, context, host: str, deadline: float):
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    while True:
        try:
            tls.do_handshake()
            return tls
        except ssl.SSLWantReadError:
            _wait(tls, False, deadline)
        except ssl.SSLWantWriteError:
            _wait(tls, True, deadline)


def _send_all(sock, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        _check(deadline)
        try:
            sent = sock.send(view)
        except (BlockingIOError, ssl.SSLWantWriteError):
            _wait(sock, True, deadline)
            continue
        except ssl.SSLWantReadError:
            _wait(sock, False, deadline)
            continue
        view = view[sent:]


def _recv(sock, deadline: float) -> bytes:
    while True:
        _check(deadline)
        try:
            return sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            _wait(sock, False, deadline)
        except ssl.SSLWantWriteError:
            _wait(sock, True, deadline)


class _Response:
    def __init__(self, version: str, status: int, headers: dict, body: bytes, reusable: bool) -> None:
        self.version, self.status, self.headers, self.body, self.reusable = version, status, headers, body, reusable


class _Closed(OSError):
    """The server closed the connection before any byte of an answer."""


def _read_response(sock, deadline: float, buffered: bytes = b"", head_only: bool = False) -> _Response:
    """Read one HTTP/1.x answer (skipping 1xx), its body only when small and delimited by Content-Length."""
    buf = buffered
    while True:
        while b"\r\n\r\n" not in buf:
            if len(buf) > _MAX_HEAD:
                raise OSError("HTTP answer head too long")
            chunk = _recv(sock, deadline)
            if not chunk:
                raise (_Closed if not buf else OSError)("connection closed before a complete answer")
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {lines[0][:60]!r}")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if 100 <= status < 200:
            continue
        break
    reusable = False
    length = headers.get("content-length", "")
    if not head_only and length.isdigit() and int(length) <= _MAX_BODY and "chunked" not in headers.get(
            "transfer-encoding", "").lower():
        while len(buf) < int(length):
            chunk = _recv(sock, deadline)
            if not chunk:
                break
            buf += chunk
        reusable = (len(buf) == int(length) and parts[0] == "HTTP/1.1"
                    and headers.get("connection", "").lower() != "close")
    return _Response(parts[0], status, headers, buf, reusable)


def _proxy_for(scheme: str, host: str, port: int):
    """The proxy URL for a request, from the environment, as ``requests`` (and so the OTel exporters) choose it.

    ``https_proxy``/``HTTPS_PROXY`` for https, ``http_proxy``/``HTTP_PROXY`` for http
    (lowercase first; ``HTTP_PROXY`` is ignored in a CGI request), ``all_proxy`` otherwise;
    none for a host matched by ``no_proxy``/``NO_PROXY``.
    """
    proxies = getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    try:
        if proxy_bypass_environment(f"{host}:{port}", proxies) or proxy_bypass_environment(host, proxies):
            return None
    except Exception:  # a malformed no_proxy: use the proxy, as configured
        pass
    return url if "://" in url else "http://" + url


class _Conn:
    """An open connection (direct, or tunnelled through a proxy) with the bytes read past the last answer."""

    def __init__(self, sock) -> None:
        self.sock = sock

    def close(self) -> None:
        try:
            self.sock.close()
        except Exception:
            pass


class HttpTransport:
    """OTLP over HTTP (protobuf or JSON): one deadline per request, proxies as the OTel exporters use them."""

    #: Bytes leave the machine: ``receipts.send`` keeps a receipt (and reads :func:`last_attempt`).
    sends_over_network = True

    def __init__(self, target: Target, session: HttpSession | None = None) -> None:
        self.target = target
        self.session = session
        parts = urlsplit(target.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._authority = host if parts.port is None else f"{host}:{parts.port}"
        self._ssl = None

    def _context(self):
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.target.certificate or None)
            if self.target.client_certificate:
                ctx.load_cert_chain(self.target.client_certificate, self.target.client_key or None)
            self._ssl = ctx
        return self._ssl

    def _open(self, proxy: str | None, deadline: float) -> _Conn:
        if proxy is None:
            sock = connect(self._host, self._port, deadline)
        else:
            parts = urlsplit(proxy)
            if parts.scheme != "http" or not parts.hostname:
                raise OSError(f"unsupported proxy {parts.scheme}://{parts.hostname}: only http:// proxies")
            sock = connect(parts.hostname, parts.port or 80, deadline)
            if self._https:
                try:
                    host = f"[{self._host}]" if ":" in self._host else self._host
                    lines = [f"CONNECT {host}:{self._port} HTTP/1.1", f"Host: {host}:{self._port}",
                             f"User-Agent: {_USER_AGENT}"]
                    auth = self._proxy_auth(parts)
                    if auth:
                        lines.append(f"Proxy-Authorization: {auth}")
                    _send_all(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), deadline)
                    answer = _read_response(sock, deadline, head_only=True)
                    if answer.status != 200:
                        raise OSError(f"the proxy refused the tunnel: HTTP {answer.status}")
                except BaseException:
                    sock.close()
                    raise
        if self._https:
            try:
                sock = _tls(sock, self._context(), self._host, deadline)
            except BaseException:
                sock.close()
                raise
        return _Conn(sock)

    @staticmethod
    def _proxy_auth(parts) -> str | None:
        if parts.username is None:
            return None
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("utf-8")
        return "Basic " + base64.b64encode(token).decode("ascii")

    def send(self, signal: str, payload: bytes, timeout: float):
        deadline = _clock.monotonic() + max(timeout, 0.01)
        body = payload
        headers = {"Content-Type": "application/x-protobuf", "User-Agent": _USER_AGENT}
        if self.target.protocol == "http/json":
            body = otlp_json.to_json(signal, payload).encode()
            headers["Content-Type"] = "application/json"
        if self.target.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        for key, value in self.target.headers:
            headers[key] = value
        scheme = "https" if self._https else "http"
        wrote = False
        try:
            proxy = _proxy_for(scheme, self._host, self._port)
            target = self._path
            if proxy is not None and not self._https:
                target = f"http://{self._authority}{self._path}"  # absolute form: the proxy forwards it
                auth = self._proxy_auth(urlsplit(proxy))
                if auth:
                    headers["Proxy-Authorization"] = auth
            lines = [f"POST {target} HTTP/1.1", f"Host: {self._authority}", f"Content-Length: {len(body)}"]
            lines += [f"{k}: {v}" for k, v in headers.items() if not any(c in f"{k}{v}" for c in "\r\n\x00")]
            request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body
            key = (self._https, self._host, self._port, proxy)
            conn = self.session.take(key) if self.session is not None else None
            reused = conn is not None
            while True:
                if conn is None:
                    conn = self._open(proxy, deadline)
                try:
                    _send_all(conn.sock, request, deadline)
                    wrote = True
                    response = _read_response(conn.sock, deadline)
                except (_Closed, ConnectionResetError, BrokenPipeError):
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
                if self.session is not None and response.reusable:
                    self.session.give_back(key, conn)  # the whole answer was read: reusable
                else:
                    conn.close()
                break
        except ssl.SSLCertVerificationError as exc:
            log.debug("OTLP %s export to %s failed TLS verification: %s", signal, _shown(self.target), exc)
            _note(wrote, "TLS error", len(body))
            return DROP
        except Exception as exc:  # OSError, Expired, ssl.SSLError, a malformed answer: retried later
            log.debug("OTLP %s export to %s failed: %r", signal, _shown(self.target), exc)
            what = "deadline passed" if isinstance(exc, Expired) else type(exc).__name__
            _note(wrote, f"{'no answer' if wrote else 'not sent'}: {what}", len(body))
            return 1.0
        status = response.status
        if 200 <= status < 300:
            _note(True, f"accepted (HTTP {status})", len(body))
            return OK
        if status in _RETRYABLE_HTTP or 300 <= status < 400:
            # 3xx: a captive portal or a moved endpoint. Redirects are not followed (the data goes only
            # where it was recorded for) and nothing is deleted: it is kept and retried.
            _note(True, f"retry later (HTTP {status})", len(body))
            return _retry_after(response.headers.get("retry-after"), 1.0)
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
        try:
            _import_grpc()  # now, with the delivery thread's other imports (delivery._Deps), not mid-export
        except Exception:
            pass  # reported by send()

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
            # grpc's own deadline covers name resolution, connect, send and receive; the call is a
            # future so that a sender asked to stop (a fork) cancels it instead of waiting.
            deadline = _clock.monotonic() + max(timeout, 0.01)
            future = self._call(signal).future(
                payload,
                timeout=max(timeout, 0.01),
                metadata=tuple(self.target.headers) or None,
                wait_for_ready=False,
                **kwargs,
            )
            while not future.done():
                try:
                    _check(deadline + 1.0)  # grpc ends the call at its deadline; this only catches a stop
                except Expired:
                    future.cancel()
                    break
                try:
                    future.exception(timeout=_SLICE)
                except Exception:
                    pass
            future.result(timeout=0)
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
        except grpc.FutureCancelledError:
            _note(None, "gRPC call abandoned (the process forks)", len(payload))
            return 1.0
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
        if console_enabled():
            return TeeTransport(FileTransport(target), ConsoleTransport())
        return FileTransport(target)
    return NullTransport()
