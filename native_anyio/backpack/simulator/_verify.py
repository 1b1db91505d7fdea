"""
Signature checks of the simulated venue (private websocket subscribe and signed REST).

REST outcomes (Backpack documents only "Invalid signature"; the rest are our choices). Every
body is ``{"code":"INVALID_CLIENT_REQUEST","message":<message>}``:

* 401 "Invalid signature": a missing or malformed ``X-API-Key``, ``X-Signature`` or
  ``X-Timestamp``, an unknown key, or a signature that does not verify;
* 400 "Invalid window": ``X-Window`` is not an integer in ``1..signature_window_max``;
* 401 "Request has expired": ``now > timestamp + window``;
* 401 "Request timestamp is in the future": ``timestamp > now + window``.

The signature is checked first, so a request with a bad signature is always "Invalid signature".
The signed string is built with :func:`native_anyio.build_signing_string` from the JSON body when
there is one, else from the (URL-decoded) query; values are tried raw first and then
percent-encoded, since clients disagree (protocol doc §6.4). ``now`` is the simulator's wall clock.

A private websocket subscribe fails (4003) on any of these conditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

from ..._auth import DEFAULT_WINDOW_MS, verify_signature
from ..._errors import LocalProtocolError
from ..._signing import build_signing_string

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["AuthFailure", "verify_rest", "verify_ws"]


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a signed request was refused."""

    status: int
    message: str


INVALID_SIGNATURE = AuthFailure(401, "Invalid signature")
INVALID_WINDOW = AuthFailure(400, "Invalid window")
EXPIRED = AuthFailure(401, "Request has expired")
FUTURE = AuthFailure(401, "Request timestamp is in the future")


def _int(text: object) -> int | None:
    if isinstance(text, str) and text.isascii() and text.isdigit():
        return int(text)
    return None


def _encoded(params: object) -> object:
    if isinstance(params, Mapping):
        return {k: quote_plus(v, safe="") if isinstance(v, str) else v for k, v in params.items()}
    return params


def check(
    key: object,
    signature: object,
    timestamp: object,
    window: object,
    instruction: str,
    params: object,
    *,
    api_keys: Collection[str],
    now_ms: int,
    window_max: int,
) -> AuthFailure | None:
    """The shared check of both transports: None when the request is authentic and fresh."""
    ts, win = _int(timestamp), _int(window)
    if not isinstance(key, str) or not isinstance(signature, str) or ts is None or key not in api_keys:
        return INVALID_SIGNATURE
    if win is None or not 1 <= win <= window_max:
        return INVALID_WINDOW
    for candidate in (params, _encoded(params)):
        try:
            message = build_signing_string(instruction, candidate, timestamp_ms=ts, window_ms=win)  # type: ignore[arg-type]
        except LocalProtocolError:
            return INVALID_SIGNATURE
        if verify_signature(key, message, signature):
            break
    else:
        return INVALID_SIGNATURE
    if now_ms > ts + win:
        return EXPIRED
    if ts > now_ms + win:
        return FUTURE
    return None


def verify_ws(signature: object, *, api_keys: Collection[str], now_ms: int, window_max: int) -> bool:
    """Whether a SUBSCRIBE's ``signature`` array ``[key, sig, ts, window]`` is valid and fresh."""
    if not isinstance(signature, list) or len(signature) != 4:
        return False
    key, sig, ts, window = signature
    failure = check(
        key, sig, ts, window, "subscribe", None, api_keys=api_keys, now_ms=now_ms, window_max=window_max
    )
    return failure is None


def verify_rest(
    headers: Mapping[str, str],
    instruction: str,
    params: object,
    *,
    api_keys: Collection[str],
    now_ms: int,
    window_max: int,
) -> AuthFailure | None:
    """Check a signed REST request's headers (lower-cased names); None when it passes."""
    return check(
        headers.get("x-api-key"),
        headers.get("x-signature"),
        headers.get("x-timestamp"),
        headers.get("x-window", str(DEFAULT_WINDOW_MS)),
        instruction,
        params,
        api_keys=api_keys,
        now_ms=now_ms,
        window_max=window_max,
    )
