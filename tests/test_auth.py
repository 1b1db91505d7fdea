"""Tests for Backpack request signing and secret handling (reliability properties G1, G2, G6)."""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import pickle
import traceback
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native_anyio._auth import (
    DEFAULT_WINDOW_MS,
    MAX_WINDOW_MS,
    Ed25519Secret,
    Ed25519Signer,
    HeaderNames,
    generate_keypair,
    verify_signature,
)
from native_anyio._errors import InvalidKeyError, LocalProtocolError, NativeError
from native_anyio._signing import Params, build_signing_string, format_param_value

# Test vectors from backpack-protocol.md section 4.1 (seed = 32 bytes of 0x01).
SECRET = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
API_KEY = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
TS = 1614550000000
GOLDEN_SIGNATURES = {
    "instruction=subscribe&timestamp=1614550000000&window=5000": (
        "yswB5uivS+qIvjPNQnZnzehOHlD2VoNq/Gw1ulFrdZAK1efuvzKIO7b+AuYIn+OA5XQ1WTgs0JQoKnK7r+fWDg=="
    ),
    "instruction=balanceQuery&timestamp=1614550000000&window=5000": (
        "Z84gQTC7cBU2B7ntts0up1fqeLuPKUdNaYqZ8hMecImH8gBJzdntZ8AedhMlKMqLYysELwKES3SFW+k8i+JuDA=="
    ),
    "instruction=orderCancel&orderId=28&symbol=BTC_USDT&timestamp=1614550000000&window=5000": (
        "5JNvIFup6BvOx0ITxfxtEn5ac317vAI78vza6AWOyTvrzDTlVnO/T0dQazXuJmS4WJbLnm17ydL4EwqW5+6aBA=="
    ),
}
SUBSCRIBE_MSG, BALANCE_MSG, CANCEL_MSG = GOLDEN_SIGNATURES
BATCH_GOLDEN = (
    "instruction=orderExecute&orderType=Limit&price=141&quantity=12&side=Bid&symbol=SOL_USDC_PERP"
    "&instruction=orderExecute&orderType=Limit&price=140&quantity=11&side=Bid&symbol=SOL_USDC_PERP"
    "&timestamp=1750793021519&window=5000"
)

# The canary: a seed that must never be visible anywhere, in any of its spellings.
CANARY = hashlib.sha256(b"native-anyio canary").digest()
CANARY_B64 = base64.b64encode(CANARY).decode()


def canary_forms(seed: bytes) -> list[str]:
    text = str(seed)  # "b'...'"
    return [base64.b64encode(seed).decode(), text, text[2:-1], seed.hex(), seed.hex().upper()]


def assert_absent(output: str | bytes, seed: bytes = CANARY) -> None:
    if isinstance(output, bytes):
        assert seed not in output
        assert not any(form.encode() in output for form in canary_forms(seed))
    else:
        assert not any(form in output for form in canary_forms(seed)), output


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def golden_signer(**kwargs: object) -> Ed25519Signer:
    return Ed25519Signer(SECRET, public_key=API_KEY, clock=FakeClock(TS / 1000), **kwargs)  # type: ignore[arg-type]


# -- G1: signing strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instruction", "params", "expected"),
    [
        ("orderCancel", {"orderId": 28, "symbol": "BTC_USDT"}, CANCEL_MSG),
        ("orderCancel", {"symbol": "BTC_USDT", "orderId": 28}, CANCEL_MSG),
        ("balanceQuery", None, BALANCE_MSG),
        ("balanceQuery", {}, BALANCE_MSG),
        ("balanceQuery", {"symbol": None}, BALANCE_MSG),
        ("subscribe", None, SUBSCRIBE_MSG),
    ],
)
def test_golden_signing_strings(instruction, params, expected):
    assert build_signing_string(instruction, params, timestamp_ms=TS, window_ms=5000) == expected


def test_golden_batch_order_execute():
    orders: list[dict[str, object]] = [
        {"symbol": "SOL_USDC_PERP", "side": "Bid", "orderType": "Limit", "price": "141", "quantity": "12"},
        {"quantity": 11, "price": 140, "side": "Bid", "symbol": "SOL_USDC_PERP", "orderType": "Limit"},
    ]
    assert (
        build_signing_string("orderExecute", orders, timestamp_ms=1750793021519, window_ms=5000)
        == BATCH_GOLDEN
    )


@pytest.mark.parametrize(("message", "signature"), list(GOLDEN_SIGNATURES.items()))
def test_golden_signatures(message, signature):
    signer = golden_signer()
    assert signer.sign(message) == signature
    assert signer.sign(message.encode()) == signature


def test_golden_rest_headers_and_ws_frame():
    signer = golden_signer()
    assert signer.headers("orderCancel", {"orderId": 28, "symbol": "BTC_USDT"}) == {
        "X-API-Key": API_KEY,
        "X-Signature": GOLDEN_SIGNATURES[CANCEL_MSG],
        "X-Timestamp": "1614550000000",
        "X-Window": "5000",
    }
    assert signer.ws_signature() == [API_KEY, GOLDEN_SIGNATURES[SUBSCRIBE_MSG], str(TS), "5000"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        ("True", "True"),
        ("isTrue=True", "isTrue=True"),
        (4294967295, "4294967295"),
        (-3, "-3"),
        (Decimal("1E-7"), "0.0000001"),
        (Decimal("1.5E+3"), "1500"),
        (Decimal("0.10"), "0.10"),
        (1e-7, "0.0000001"),
        (1e22, "10000000000000000000000"),
        (0.1, "0.1"),
        (141.0, "141.0"),
    ],
)
def test_value_formatting(value, expected):
    assert format_param_value(value) == expected


def test_booleans_do_not_mangle_other_values():
    params = {"postOnly": True, "reduceOnly": False, "clientNote": "True story False", "x": None}
    assert build_signing_string("orderExecute", params, timestamp_ms=1, window_ms=2) == (
        "instruction=orderExecute&clientNote=True story False&postOnly=true&reduceOnly=false"
        "&timestamp=1&window=2"
    )


@pytest.mark.parametrize(
    ("instruction", "params"),
    [
        ("orderExecute", {"nested": {"a": 1}}),
        ("orderExecute", {"nested": [1, 2]}),
        ("orderExecute", {"blob": b"x"}),
        ("orderExecute", {"price": Decimal("NaN")}),
        ("orderExecute", {"price": float("inf")}),
        ("orderExecute", {"x": object()}),
        ("orderExecute", {1: "x"}),
        ("orderExecute", []),
        ("orderExecute", [{"a": 1}, "b=2"]),
        ("orderExecute", "a=1"),
        ("", None),
        ("order&Cancel", None),
        ("1order", None),
    ],
)
def test_unsignable_input_is_refused(instruction, params):
    with pytest.raises(LocalProtocolError):
        build_signing_string(instruction, params, timestamp_ms=1, window_ms=2)


@pytest.mark.parametrize(("ts", "window"), [(-1, 5000), (1, -1), (1.5, 5000), (True, 5000), (1, "5000")])
def test_bad_timestamp_or_window_refused(ts, window):
    with pytest.raises(LocalProtocolError):
        build_signing_string("x", None, timestamp_ms=ts, window_ms=window)


# -- G1: Hypothesis agreement with an independent reference -------------------------------------


def _plain_decimal(d: Decimal) -> str:
    """Positional notation built from the digit tuple (independent of format(d, "f"))."""
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    if exponent >= 0:
        text += "0" * exponent
    else:
        places = -exponent
        text = text.rjust(places + 1, "0")
        text = f"{text[:-places]}.{text[-places:]}"
    return ("-" if sign else "") + text


def _reference_value(value: object) -> str:
    if value is True or value is False:
        return str(value).lower()
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return _plain_decimal(Decimal(repr(value)))
    if type(value) is Decimal:
        return _plain_decimal(value)
    assert type(value) is str
    return value


def reference_signing_string(instruction: str, params: Params, ts: int, window: int) -> str:
    groups: list[Mapping[str, object]]
    if params is None:
        groups = []
    elif isinstance(params, Mapping):
        groups = [params]
    else:
        groups = list(params)
    segments = []
    for group in groups or [{}]:
        pairs = [f"{k}={_reference_value(v)}" for k, v in sorted(group.items()) if v is not None]
        segments.append("&".join([f"instruction={instruction}", *pairs]))
    return "&".join([*segments, f"timestamp={ts}", f"window={window}"])


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.text(max_size=8).map(lambda s: f"{s}True{s}"),
    st.sampled_from(["True", "False", "TrueUSD", "a=True&b=False", "None"]),
)
_mapping = st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True), _values, max_size=8)
_params = st.one_of(st.none(), _mapping, st.lists(_mapping, min_size=1, max_size=5))


@settings(max_examples=2000, deadline=None)
@given(
    instruction=st.from_regex(r"[a-z][A-Za-z0-9]{0,20}", fullmatch=True),
    params=_params,
    ts=st.integers(min_value=0, max_value=2**53),
    window=st.integers(min_value=1, max_value=MAX_WINDOW_MS),
)
def test_builder_matches_reference(instruction, params, ts, window):
    got = build_signing_string(instruction, params, timestamp_ms=ts, window_ms=window)
    assert got == reference_signing_string(instruction, params, ts, window)


SIGNER = Ed25519Signer(SECRET)
VERIFY_KEY = nacl.signing.VerifyKey(base64.b64decode(API_KEY))


@settings(max_examples=300, deadline=None)
@given(params=_params, ts=st.integers(min_value=0, max_value=2**53))
def test_signed_headers_verify(params, ts):
    headers = SIGNER.headers("orderExecute", params, timestamp_ms=ts)
    message = reference_signing_string("orderExecute", params, ts, DEFAULT_WINDOW_MS).encode()
    VERIFY_KEY.verify(message, base64.b64decode(headers["X-Signature"]))
    assert verify_signature(headers["X-API-Key"], message, headers["X-Signature"])


# -- verification, clock, windows ----------------------------------------------------------------


def test_verify_signature_rejects_tampering_and_garbage():
    message = "instruction=balanceQuery&timestamp=1&window=5000"
    signature = SIGNER.sign(message)
    other_key = generate_keypair()[1]
    assert verify_signature(API_KEY, message, signature)
    assert verify_signature(API_KEY, message.encode(), signature)
    assert not verify_signature(API_KEY, message + "0", signature)
    assert not verify_signature(other_key, message, signature)
    flipped = bytearray(base64.b64decode(signature))
    flipped[0] ^= 1
    assert not verify_signature(API_KEY, message, base64.b64encode(bytes(flipped)).decode())
    for key, sig in [
        ("***", signature),
        (API_KEY, "***"),
        (API_KEY, signature[:-4]),
        (API_KEY[:-4], signature),
    ]:
        assert not verify_signature(key, message, sig)


def test_injected_clock_and_offset_drive_the_timestamp():
    clock = FakeClock(1_700_000_000.123)
    signer = Ed25519Signer(SECRET, clock=clock)
    assert signer.timestamp_ms() == 1_700_000_000_123
    clock.now += 2.5
    headers = signer.headers("balanceQuery")
    assert headers["X-Timestamp"] == "1700000002623"
    message = f"instruction=balanceQuery&timestamp=1700000002623&window={DEFAULT_WINDOW_MS}"
    assert verify_signature(API_KEY, message, headers["X-Signature"])
    signer.clock_offset = -30.0
    assert signer.timestamp_ms() == 1_699_999_972_623
    assert signer.ws_signature()[2] == "1699999972623"
    with pytest.raises(ValueError):
        signer.clock_offset = float("nan")
    assert Ed25519Signer(SECRET, clock=clock, clock_offset=1.0).timestamp_ms() == 1_700_000_003_623


def test_window_limits():
    signer = golden_signer()
    assert signer.headers("balanceQuery", window_ms=MAX_WINDOW_MS)["X-Window"] == "60000"
    with pytest.raises(LocalProtocolError, match="60001 ms exceeds the maximum of 60000 ms"):
        signer.headers("balanceQuery", window_ms=60001)
    with pytest.raises(LocalProtocolError):
        signer.ws_signature(window_ms=60001)
    for bad in (0, -5, True):
        with pytest.raises(LocalProtocolError):
            signer.headers("balanceQuery", window_ms=bad)
    with pytest.raises(LocalProtocolError):
        golden_signer(window_ms=60001)
    strict = golden_signer(window_ms=1000, max_window_ms=2000)
    assert strict.window_ms == 1000
    assert strict.headers("balanceQuery")["X-Window"] == "1000"
    with pytest.raises(LocalProtocolError):
        strict.headers("balanceQuery", window_ms=2001)


def test_custom_header_names_and_ws_instruction():
    names = HeaderNames(api_key="K", signature="S", timestamp="T", window="W")
    headers = golden_signer().headers("balanceQuery", names=names)
    assert headers == {
        "K": API_KEY,
        "S": GOLDEN_SIGNATURES[BALANCE_MSG],
        "T": str(TS),
        "W": "5000",
    }
    key, sig, ts, window = golden_signer().ws_signature("unsubscribe", window_ms=7000)
    assert (key, ts, window) == (API_KEY, str(TS), "7000")
    assert verify_signature(key, f"instruction=unsubscribe&timestamp={TS}&window=7000", sig)


def test_generated_keypairs_round_trip():
    secret, public = generate_keypair()
    assert len(base64.b64decode(secret)) == 32
    signer = Ed25519Signer(secret, public_key=public)
    assert signer.public_key == public
    assert verify_signature(public, "m", signer.sign("m"))
    fresh = Ed25519Secret.generate()
    assert Ed25519Signer(fresh).public_key == fresh.public_key
    assert generate_keypair() != generate_keypair()


def test_secret_accepts_bytes_input_and_a_trailing_newline():
    assert Ed25519Signer(SECRET.encode() + b"\n").public_key == API_KEY
    assert Ed25519Signer(f"  {SECRET}\n").public_key == API_KEY
    assert Ed25519Signer(Ed25519Secret(b"\x01" * 32)).public_key == API_KEY


# -- G6 + G2: key validation never reveals the secret --------------------------------------------


def _bad_input(kind: str) -> tuple[bytes, dict[str, Any]]:
    """(the secret-bearing bytes to hunt for, constructor kwargs) for each invalid configuration."""
    b64 = base64.b64encode
    if kind == "31 bytes":
        return CANARY[:31], {"secret": b64(CANARY[:31]).decode()}
    if kind == "33 bytes":
        return CANARY + b"!", {"secret": b64(CANARY + b"!").decode()}
    if kind == "64-byte keypair":
        return CANARY, {"secret": b64(CANARY + CANARY).decode()}
    if kind == "not base64":
        return CANARY, {"secret": CANARY_B64[:-1] + "*"}
    if kind == "no padding":
        return CANARY, {"secret": CANARY_B64.rstrip("=")}
    if kind == "non-canonical":
        return CANARY, {"secret": CANARY_B64[:-2] + chr(ord(CANARY_B64[-2]) + 1) + "="}
    if kind == "non-ascii":
        return CANARY, {"secret": CANARY_B64 + "\u00e9"}
    if kind == "mismatched key":
        return CANARY, {"secret": CANARY_B64, "public_key": API_KEY}
    if kind == "swapped key and secret":
        return CANARY, {"secret": API_KEY, "public_key": CANARY_B64}
    assert kind == "bad public key"
    return CANARY, {"secret": SECRET, "public_key": CANARY_B64[:-1] + "*"}


BAD_KINDS = [
    "31 bytes",
    "33 bytes",
    "64-byte keypair",
    "not base64",
    "no padding",
    "non-canonical",
    "non-ascii",
    "mismatched key",
    "swapped key and secret",
    "bad public key",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_invalid_keys_fail_without_revealing_the_secret(kind, caplog):
    caplog.set_level(logging.DEBUG)
    seed = _bad_input(kind)[0]
    with pytest.raises(InvalidKeyError) as info:
        Ed25519Signer(**_bad_input(kind)[1])  # no local of this frame holds the input
    exc = info.value
    assert isinstance(exc, NativeError)
    assert isinstance(exc, ValueError)
    assert exc.__cause__ is None
    assert exc.__context__ is None
    assert "API" in str(exc)
    assert_absent(str(exc), seed)
    assert_absent(repr(exc), seed)
    assert_absent(repr(exc.args), seed)
    assert_absent("".join(traceback.format_exception(exc)), seed)
    # Traceback printers that show locals (loguru diagnose, rich, --showlocals) find nothing in our
    # frames. The first frame is this test's, which holds the canary on purpose.
    assert exc.__traceback__ is not None
    ours = exc.__traceback__.tb_next
    assert ours is not None
    with_locals = traceback.TracebackException(type(exc), exc, ours, capture_locals=True)
    assert "native_anyio" in "".join(with_locals.format())
    assert_absent("".join(with_locals.format()), seed)
    assert_absent(pickle.dumps(exc), seed)
    logging.getLogger("native_anyio").exception("key failed", exc_info=exc)
    assert_absent(caplog.text, seed)


def test_length_errors_say_what_is_wrong():
    with pytest.raises(InvalidKeyError, match="must decode to 32 bytes, got 31"):
        Ed25519Signer(base64.b64encode(CANARY[:31]).decode())
    with pytest.raises(InvalidKeyError, match="got 33"):
        Ed25519Secret.from_base64(base64.b64encode(CANARY + b"!"))
    with pytest.raises(InvalidKeyError, match="does not match"):
        Ed25519Signer(CANARY_B64, public_key=API_KEY)
    with pytest.raises(InvalidKeyError, match="32 bytes, got 31 bytes"):
        Ed25519Secret(CANARY[:31])


# -- G2: the canary never leaks from live objects ------------------------------------------------


def test_canary_absent_from_repr_str_format_logs_and_pickle(caplog):
    caplog.set_level(logging.DEBUG)
    secret = Ed25519Secret.from_base64(CANARY_B64)
    signer = Ed25519Signer(secret, clock=FakeClock(1.0))
    log = logging.getLogger("native_anyio")
    outputs: list[str] = []
    for obj in (secret, signer, [signer], {"auth": secret}):
        outputs += [str(obj), repr(obj), f"{obj}", f"{obj!r}", format(obj, ""), "%s %r" % (obj, obj)]  # noqa: UP031
    outputs += [format(secret, ">60"), f"{secret:s}", str(dir(signer))]
    for output in outputs:
        assert_absent(output)
    assert repr(secret) == "Ed25519Secret(<redacted>)"
    assert repr(signer) == f"Ed25519Signer(public_key={secret.public_key!r})"

    log.debug("signing with %s / %r", signer, secret)
    signer.headers("orderExecute", [{"symbol": "SOL_USDC", "postOnly": True}])
    signer.ws_signature()
    with pytest.raises(LocalProtocolError) as info:
        signer.headers("orderExecute", window_ms=10**6)
    log.exception("signing failed", exc_info=info.value)
    assert caplog.records
    assert_absent(caplog.text)
    for record in caplog.records:
        assert_absent(record.getMessage())

    for obj in (secret, signer, [signer], {"k": secret}):
        with pytest.raises(TypeError, match="cannot be pickled") as pickled:
            pickle.dumps(obj)
        assert_absent(str(pickled.value))
        assert_absent("".join(traceback.format_exception(pickled.value)))
    assert copy.copy(secret) is secret
    assert copy.deepcopy(secret) is secret
