"""
Ed25519 keys and request signing for Backpack, sans-IO: no anyio, no I/O, the wall clock is injected.

Secret-handling rules (reliability property G2):

* the 32-byte seed lives only inside :class:`Ed25519Secret`, as a private PyNaCl ``SigningKey``
  (whose own ``str()`` prints the seed, so it never leaves the wrapper);
* ``str``, ``repr`` and ``format`` of the wrapper and of :class:`Ed25519Signer` are redacted, and
  pickling either raises :class:`TypeError` (naming no secret) rather than writing the seed to disk;
* key validation raises :class:`~native_anyio.InvalidKeyError` with messages that never quote the
  input (a swapped API key and secret would otherwise print the secret), with no chained
  ``__cause__``/``__context__``, and after deleting the caller's strings from every frame of ours
  that the traceback holds, so traceback printers that show locals find nothing to print.

The signing string itself is built by :func:`native_anyio._signing.build_signing_string`.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, SupportsIndex, final

import nacl.exceptions
import nacl.signing

from ._errors import InvalidKeyError, LocalProtocolError
from ._signing import Params, build_signing_string

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_WINDOW_MS",
    "MAX_WINDOW_MS",
    "Ed25519Secret",
    "Ed25519Signer",
    "HeaderNames",
    "generate_keypair",
    "verify_signature",
]

#: Backpack's default receive window (``X-Window``), milliseconds.
DEFAULT_WINDOW_MS = 5000
#: Backpack's maximum receive window, milliseconds.
MAX_WINDOW_MS = 60000

_KEY_BYTES = 32
_NOT_BASE64 = "is not valid standard base64 (A-Z a-z 0-9 + /, '=' padded, canonical)"


def _b64decode_strict(text: object) -> bytes | None:
    """Decode canonical, padded, standard base64 (surrounding whitespace ignored); ``None`` otherwise.

    Never raises, so no exception object (which would hold the input) is ever created for a caller.
    """
    if isinstance(text, str):
        if not text.isascii():
            return None
        data = text.strip().encode("ascii")
    elif isinstance(text, (bytes, bytearray)):
        data = bytes(text).strip()
    else:
        return None
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    # b64decode accepts non-zero padding bits; a key with two spellings is not strict.
    return decoded if base64.b64encode(decoded) == data else None


def _decode_key(text: object, what: str) -> bytes:
    raw = _b64decode_strict(text)
    del text  # see the module docstring: no frame of ours keeps the input while an error propagates
    if raw is None:
        raise InvalidKeyError(f"{what} {_NOT_BASE64}")
    if len(raw) != _KEY_BYTES:
        size = len(raw)
        del raw
        raise InvalidKeyError(f"{what} must decode to {_KEY_BYTES} bytes, got {size}")
    return raw


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@final
class Ed25519Secret:
    """
    An Ed25519 private key (the 32-byte seed) that refuses to be printed or pickled.

    ``str``, ``repr`` and ``format`` give ``Ed25519Secret(<redacted>)``; :mod:`pickle` (and anything
    built on ``__reduce_ex__``) raises :class:`TypeError`. ``copy.copy``/``deepcopy`` return the same
    object, which is immutable.

    Args:
        seed: the raw 32-byte seed.

    Raises:
        InvalidKeyError: when ``seed`` is not 32 bytes.
    """

    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != _KEY_BYTES:
            size = len(seed) if isinstance(seed, (bytes, bytearray)) else None
            del seed
            got = f"{size} bytes" if size is not None else "a non-bytes value"
            raise InvalidKeyError(f"an Ed25519 seed is {_KEY_BYTES} bytes, got {got}")
        self._key = nacl.signing.SigningKey(bytes(seed))

    @classmethod
    def from_base64(cls, text: str | bytes) -> Ed25519Secret:
        """
        Load the Backpack API secret: standard base64 of the 32-byte seed.

        Raises:
            InvalidKeyError: on invalid base64 or a length other than 32 bytes.
        """
        try:
            return cls(_decode_key(text, "the API secret"))
        finally:
            del text

    @classmethod
    def generate(cls) -> Ed25519Secret:
        """A fresh random key (for tests and the exchange simulator)."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def public_key(self) -> str:
        """The base64 public (verifying) key: the Backpack API key."""
        return _b64(bytes(self._key.verify_key))

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message``."""
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        return "Ed25519Secret(<redacted>)"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return format(repr(self), format_spec)

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError("Ed25519Secret cannot be pickled: load the key from its source in each process")

    def __copy__(self) -> Ed25519Secret:
        return self

    def __deepcopy__(self, memo: object) -> Ed25519Secret:
        return self


@final
@dataclass(frozen=True, slots=True)
class HeaderNames:
    """The HTTP header names that carry a signature (Backpack's by default)."""

    api_key: str = "X-API-Key"
    signature: str = "X-Signature"
    timestamp: str = "X-Timestamp"
    window: str = "X-Window"


def _check_window(window_ms: int, max_window_ms: int) -> int:
    if isinstance(window_ms, bool) or not isinstance(window_ms, int) or window_ms <= 0:
        raise LocalProtocolError(f"window must be a positive int of milliseconds, got {window_ms!r}")
    if window_ms > max_window_ms:
        raise LocalProtocolError(f"window of {window_ms} ms exceeds the maximum of {max_window_ms} ms")
    return window_ms


@final
class Ed25519Signer:
    """
    Signs Backpack REST requests and private websocket subscriptions.

    Args:
        secret: the API secret (base64 of the 32-byte seed) or an :class:`Ed25519Secret`.
        public_key: the API key (base64 public key); when given it must match the secret.
        clock: wall clock in seconds since the epoch (default :func:`time.time`).
        clock_offset: seconds added to ``clock()`` (server time minus local time); settable later
            through :attr:`clock_offset` once the server time is known.
        window_ms: default receive window, milliseconds.
        max_window_ms: largest window this signer will sign.

    Raises:
        InvalidKeyError: when the secret or public key is not canonical base64 of 32 bytes, or the
            public key does not belong to the secret. The message never contains either input.
        LocalProtocolError: when ``window_ms`` is not in ``1..max_window_ms``.
    """

    __slots__ = ("_clock", "_clock_offset", "_max_window_ms", "_public_key", "_secret", "_window_ms")

    def __init__(
        self,
        secret: str | bytes | Ed25519Secret,
        *,
        public_key: str | None = None,
        clock: Callable[[], float] = time.time,
        clock_offset: float = 0.0,
        window_ms: int = DEFAULT_WINDOW_MS,
        max_window_ms: int = MAX_WINDOW_MS,
    ) -> None:
        try:
            key = secret if isinstance(secret, Ed25519Secret) else Ed25519Secret.from_base64(secret)
            # Never quote the configured key: a swapped key and secret would put the secret in the message.
            # Compared inline: the decoded key is never a local that a traceback could show.
            matches = public_key is None or _b64(_decode_key(public_key, "the API key")) == key.public_key
        finally:
            del secret, public_key
        if not matches:
            raise InvalidKeyError(
                "the API key does not match the API secret (are the key and secret swapped?); "
                f"the secret's public key is {key.public_key}"
            )
        self._secret = key
        self._public_key = key.public_key
        self._clock = clock
        self.clock_offset = clock_offset
        self._max_window_ms = max_window_ms
        self._window_ms = _check_window(window_ms, max_window_ms)

    @property
    def public_key(self) -> str:
        """The base64 public key (the Backpack API key, sent as ``X-API-Key``)."""
        return self._public_key

    @property
    def window_ms(self) -> int:
        """The default receive window, milliseconds."""
        return self._window_ms

    @property
    def clock_offset(self) -> float:
        """Seconds added to the wall clock (server time minus local time)."""
        return self._clock_offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            raise ValueError("clock_offset must be a finite number of seconds")
        self._clock_offset = float(seconds)

    def timestamp_ms(self) -> int:
        """The current (offset-corrected) Unix time in whole milliseconds."""
        return round((self._clock() + self._clock_offset) * 1000)

    def sign(self, message: str | bytes) -> str:
        """The base64 Ed25519 signature of ``message`` (UTF-8 encoded when a str)."""
        data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        return _b64(self._secret.sign(data))

    def headers(
        self,
        instruction: str,
        params: Params = None,
        *,
        timestamp_ms: int | None = None,
        window_ms: int | None = None,
        names: HeaderNames = HeaderNames(),  # frozen, so one shared default is safe
    ) -> dict[str, str]:
        """
        Signed REST headers for one request (or one batch request).

        Args:
            instruction: the Backpack instruction, e.g. ``"orderExecute"``.
            params: the body or query parameters, a list of them for a batch, or ``None``.
            timestamp_ms: override the timestamp (default :meth:`timestamp_ms`).
            window_ms: override the window (default :attr:`window_ms`).
            names: the header names to use.

        Raises:
            LocalProtocolError: for a window above the maximum or params that cannot be signed.
        """
        ts, window = self._ts_window(timestamp_ms, window_ms)
        signature = self.sign(build_signing_string(instruction, params, timestamp_ms=ts, window_ms=window))
        return {
            names.api_key: self._public_key,
            names.signature: signature,
            names.timestamp: str(ts),
            names.window: str(window),
        }

    def ws_signature(
        self, instruction: str = "subscribe", *, timestamp_ms: int | None = None, window_ms: int | None = None
    ) -> list[str]:
        """
        The ``signature`` array of a private websocket SUBSCRIBE: ``[key, signature, ts, window]``.

        The signed message is ``instruction=subscribe&timestamp=<ms>&window=<ms>``; all four elements
        are strings. Sign afresh for every (re)subscription.

        Raises:
            LocalProtocolError: for a window above the maximum or an invalid instruction name.
        """
        ts, window = self._ts_window(timestamp_ms, window_ms)
        signature = self.sign(build_signing_string(instruction, None, timestamp_ms=ts, window_ms=window))
        return [self._public_key, signature, str(ts), str(window)]

    def _ts_window(self, timestamp_ms: int | None, window_ms: int | None) -> tuple[int, int]:
        window = _check_window(self._window_ms if window_ms is None else window_ms, self._max_window_ms)
        return (self.timestamp_ms() if timestamp_ms is None else timestamp_ms), window

    def __repr__(self) -> str:
        # getattr: a traceback printer may repr a half-built signer.
        return f"Ed25519Signer(public_key={getattr(self, '_public_key', None)!r})"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError("Ed25519Signer cannot be pickled: it holds a secret key")


def verify_signature(public_key_b64: str, message: str | bytes, signature_b64: str) -> bool:
    """
    Whether ``signature_b64`` is a valid Ed25519 signature of ``message`` by ``public_key_b64``.

    Malformed input (bad base64, wrong lengths, an invalid point) gives ``False``, never an error.
    """
    key = _b64decode_strict(public_key_b64)
    signature = _b64decode_strict(signature_b64)
    if key is None or signature is None or len(key) != _KEY_BYTES or len(signature) != 64:
        return False
    data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    try:
        nacl.signing.VerifyKey(key).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def generate_keypair() -> tuple[str, str]:
    """A fresh random ``(secret_b64, public_key_b64)`` pair, in Backpack's API secret/key format."""
    key = nacl.signing.SigningKey.generate()
    return _b64(bytes(key)), _b64(bytes(key.verify_key))
