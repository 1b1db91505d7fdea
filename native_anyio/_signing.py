"""
The Backpack signing string, sans-IO: a pure function of (instruction, params, timestamp, window).

Rules (Backpack docs, "Signing requests"; confirmed by the Rust client and BBGO's ``signing_test.go``):

* a single request is ``instruction=<name>&<params sorted by key as k=v joined by &>``;
* a batch (a list of parameter mappings, e.g. ``POST /api/v1/orders``) signs each element that way,
  each with its own ``instruction=<name>`` prefix, and joins the elements with ``&``;
* ``&timestamp=<ms>&window=<ms>`` is appended once, at the end; with no params only the instruction,
  timestamp and window are signed;
* values: ``True``/``False`` become ``true``/``false`` (per value, so a string containing ``"True"``
  is never touched), integers and Decimals are written without an exponent, floats through their
  shortest repr without an exponent, strings are inserted raw (not percent-encoded: the Rust client
  and bpx-py agree, CCXT differs only for characters outside ``[A-Za-z0-9_.-]``); ``None`` values are
  skipped;
* nested values (mappings or lists inside a parameter) are refused with :class:`LocalProtocolError`:
  Backpack request bodies are flat and no source defines how a nested value is signed, so refusing
  beats signing something the venue will reject.

Golden strings from the docs are asserted byte for byte in ``tests/test_auth.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, TypeAlias

from ._errors import LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Params", "build_signing_string", "format_param_value"]

#: One request's parameters, or a batch of them (a list of mappings, signed per element).
Params: TypeAlias = "Mapping[str, object] | Sequence[Mapping[str, object]] | None"

_INSTRUCTION = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def format_param_value(value: object) -> str:
    """
    Format one parameter value as it appears in the signing string.

    Raises:
        LocalProtocolError: for a nested value (mapping, list, ...), a non-finite number or a type
            with no defined signing form.
    """
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr is the shortest round-tripping text; Decimal removes the exponent it may carry.
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise LocalProtocolError(f"cannot sign a non-finite number: {value}")
        return format(value, "f")
    if isinstance(value, (Mapping, Sequence, bytes, bytearray, set, frozenset)):
        raise LocalProtocolError(
            f"cannot sign a nested {type(value).__name__} value: Backpack signs flat parameters only"
        )
    raise LocalProtocolError(f"cannot sign a parameter value of type {type(value).__name__}")


def _pairs(params: Mapping[str, object]) -> Iterator[str]:
    for key in params:
        if not isinstance(key, str):
            raise LocalProtocolError(f"parameter names must be strings, got {type(key).__name__}")
    for key in sorted(params):
        value = params[key]
        if value is not None:
            yield f"{key}={format_param_value(value)}"


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LocalProtocolError(f"{name} must be a non-negative int of milliseconds, got {value!r}")
    return value


def build_signing_string(
    instruction: str, params: Params = None, *, timestamp_ms: int, window_ms: int
) -> str:
    """
    Build the exact string Backpack expects to be signed.

    Args:
        instruction: the instruction name, e.g. ``"orderCancel"``, ``"balanceQuery"``, ``"subscribe"``.
        params: the request body or query parameters: a mapping, a list of mappings (a batch), or
            ``None`` when the endpoint takes none.
        timestamp_ms: the ``X-Timestamp`` value, Unix milliseconds.
        window_ms: the ``X-Window`` value, milliseconds (sign the default 5000 even when the header
            is omitted).

    Returns:
        ``instruction=orderCancel&orderId=28&symbol=BTC_USDT&timestamp=1614550000000&window=5000``.

    Raises:
        LocalProtocolError: for an invalid instruction name, an empty batch, a non-string key, a value
            with no defined signing form, or a negative/non-int timestamp or window.
    """
    if not isinstance(instruction, str) or not _INSTRUCTION.fullmatch(instruction):
        raise LocalProtocolError(f"invalid instruction name: {instruction!r}")
    timestamp_ms = _check_int("timestamp_ms", timestamp_ms)
    window_ms = _check_int("window_ms", window_ms)
    prefix = f"instruction={instruction}"
    body: object = params  # typed loosely: the checks below guard against untyped callers
    if body is None or isinstance(body, Mapping):
        parts = [prefix, *_pairs(body or {})]
    elif isinstance(body, Sequence) and not isinstance(body, (str, bytes, bytearray)):
        if not body:
            raise LocalProtocolError("cannot sign an empty batch")
        parts = []
        for element in body:
            if not isinstance(element, Mapping):
                raise LocalProtocolError(f"batch elements must be mappings, got {type(element).__name__}")
            parts.append(prefix)
            parts.extend(_pairs(element))
    else:
        raise LocalProtocolError(
            f"params must be a mapping, a list of mappings or None, not {type(body).__name__}"
        )
    parts.append(f"timestamp={timestamp_ms}")
    parts.append(f"window={window_ms}")
    return "&".join(parts)
