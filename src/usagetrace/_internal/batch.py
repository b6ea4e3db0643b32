"""Delivery ids: what lets storage count each request once, however often it arrives.

Every OTLP request usagetrace sends carries a resource attribute
``usagetrace.batch.id`` (32 hex digits, random):

* realtime: one id per encoded request, given when the request is made
  (:func:`with_id`). The request's bytes never change after that: retries,
  the spool, a sender that takes over a stale lock or is killed and started
  again all send the very same bytes, id included.
* daily and weekly: the id of the store bucket (one period's report for one
  resource), kept in the store until the collector accepted the report; a
  re-upload after a lost answer or a killed uploader carries it again.

``usagetrace report`` and the ClickHouse views count the rows of each id
once (one copy per id; see ``analytics``). Data without an id (older
versions) is counted as it arrives.

The id is added to already-encoded protobuf bytes (no import, no decode):
``ExportTraceServiceRequest`` and ``ExportMetricsServiceRequest`` are both
``repeated Resource{Spans,Metrics} = 1``, each holding ``Resource resource =
1``, which holds ``repeated KeyValue attributes = 1``. Appending one KeyValue
to each resource, with the lengths rewritten, is exactly what an encoder
would have produced with the attribute in place.
"""

from __future__ import annotations

import os

KEY = "usagetrace.batch.id"


def new_id() -> str:
    """A random id: 32 lowercase hex digits (the shape of a session id)."""
    return os.urandom(16).hex()


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes):
    """(field number, wire type, raw field bytes, payload of a length-delimited field or None)."""
    i = 0
    n = len(data)
    while i < n:
        start = i
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        payload = None
        if wire == 0:
            _, i = _read_varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            length, i = _read_varint(data, i)
            payload = data[i:i + length]
            i += length
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if i > n:
            raise ValueError("truncated")
        yield number, wire, data[start:i], payload


def _ld(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _attribute(key: str, value: str) -> bytes:
    # KeyValue{key = 1; AnyValue value = 2 {string_value = 1}}
    return _ld(1, key.encode()) + _ld(2, _ld(1, value.encode()))


def with_id(payload: bytes, batch_id: str) -> bytes:
    """``payload`` (an OTLP traces or metrics request) with ``usagetrace.batch.id`` on every resource."""
    attr = _ld(1, _attribute(KEY, batch_id))
    out = bytearray()
    for number, wire, raw, body in _fields(payload):
        if number != 1 or wire != 2:
            out += raw
            continue
        inner = bytearray()
        found = False
        for n2, w2, raw2, body2 in _fields(body):
            if n2 == 1 and w2 == 2 and not found:
                resource = bytes(body2) + attr
                inner += _ld(1, resource)
                found = True
            else:
                inner += raw2
        if not found:
            inner = bytearray(_ld(1, attr)) + inner
        out += _ld(1, bytes(inner))
    return bytes(out)


def ids_of(payload: bytes) -> list[str]:
    """The ``usagetrace.batch.id`` values in ``payload``, one per resource that has one (for tests and status)."""
    found = []
    for number, wire, _, body in _fields(payload):
        if number != 1 or wire != 2:
            continue
        for n2, w2, _, resource in _fields(body):
            if n2 != 1 or w2 != 2:
                continue
            for n3, w3, _, kv in _fields(resource):
                if n3 != 1 or w3 != 2:
                    continue
                parts = {n: b for n, w, _, b in _fields(kv) if w == 2}
                if parts.get(1) == KEY.encode() and parts.get(2) is not None:
                    value = {n: b for n, w, _, b in _fields(parts[2]) if w == 2}.get(1)
                    if value is not None:
                        found.append(value.decode())
    return found
