"""
native-anyio: native exchange market data with structured concurrency, on asyncio or trio.

The toolkit (this namespace) is what exchange integrations are built from: a self-healing
websocket session, a decode-once router, a REST client, Ed25519 auth helpers, a TTL symbol
service, and health/metrics snapshots. Test fakes and local servers live in
``native_anyio.testing``.
"""

from __future__ import annotations

from ._auth import DEFAULT_WINDOW_MS as DEFAULT_WINDOW_MS
from ._auth import MAX_WINDOW_MS as MAX_WINDOW_MS
from ._auth import Ed25519Secret as Ed25519Secret
from ._auth import Ed25519Signer as Ed25519Signer
from ._auth import HeaderNames as HeaderNames
from ._auth import generate_keypair as generate_keypair
from ._auth import verify_signature as verify_signature
from ._backoff import Backoff as Backoff
from ._backoff import BackoffRun as BackoffRun
from ._book import BookSync as BookSync
from ._book import BookSyncStatistics as BookSyncStatistics
from ._book import OrderBook as OrderBook
from ._book import SyncOutput as SyncOutput
from ._errors import ApiError as ApiError
from ._errors import AuthError as AuthError
from ._errors import CloseReason as CloseReason
from ._errors import ConnectError as ConnectError
from ._errors import ConnectionLost as ConnectionLost
from ._errors import DecodeError as DecodeError
from ._errors import HandshakeRejected as HandshakeRejected
from ._errors import InvalidKeyError as InvalidKeyError
from ._errors import LocalProtocolError as LocalProtocolError
from ._errors import MessageTooBig as MessageTooBig
from ._errors import NativeError as NativeError
from ._errors import NativeInternalError as NativeInternalError
from ._errors import ProtocolError as ProtocolError
from ._errors import RateLimited as RateLimited
from ._errors import RemoteProtocolError as RemoteProtocolError
from ._errors import RequestTimeout as RequestTimeout
from ._errors import TransportError as TransportError
from ._frames import FrameProtocolError as FrameProtocolError
from ._health import Health as Health
from ._health import HealthStatus as HealthStatus
from ._health import Instrumentation as Instrumentation
from ._health import InstrumentationEvent as InstrumentationEvent
from ._health import LoggingHook as LoggingHook
from ._liveness import LivenessConfig as LivenessConfig
from ._ratelimit import RateLimiter as RateLimiter
from ._ratelimit import RateLimiterStatistics as RateLimiterStatistics
from ._ratelimit import RateLimitPolicy as RateLimitPolicy
from ._rest import RestClient as RestClient
from ._rest_support import ParamValue as ParamValue
from ._rest_support import RequestInfo as RequestInfo
from ._rest_support import RestResponse as RestResponse
from ._rest_support import RestStatistics as RestStatistics
from ._rest_support import Signer as Signer
from ._router import Router as Router
from ._router import RouterStatistics as RouterStatistics
from ._session import Connected as Connected
from ._session import Disconnected as Disconnected
from ._session import JsonSubscriptions as JsonSubscriptions
from ._session import Posted as Posted
from ._session import SessionConfig as SessionConfig
from ._session import SessionEvent as SessionEvent
from ._session import SessionStatistics as SessionStatistics
from ._session import SubscriptionProtocol as SubscriptionProtocol
from ._session import WsSession as WsSession
from ._session import open_session as open_session
from ._signing import build_signing_string as build_signing_string
from ._symbols import SymbolService as SymbolService
from ._symbols import SymbolStatistics as SymbolStatistics
from ._symbols import UnknownSymbolError as UnknownSymbolError
from ._transport import AnyioTransport as AnyioTransport
from ._transport import ConnectionListener as ConnectionListener
from ._transport import WsConnection as WsConnection
from ._transport import WsTransport as WsTransport

__version__ = "0.1.0.dev0"

__all__ = [
    "AnyioTransport",
    "ApiError",
    "AuthError",
    "Backoff",
    "BackoffRun",
    "BookSync",
    "BookSyncStatistics",
    "CloseReason",
    "ConnectError",
    "Connected",
    "ConnectionListener",
    "ConnectionLost",
    "DEFAULT_WINDOW_MS",
    "DecodeError",
    "Disconnected",
    "Ed25519Secret",
    "Ed25519Signer",
    "FrameProtocolError",
    "HandshakeRejected",
    "HeaderNames",
    "Health",
    "HealthStatus",
    "Instrumentation",
    "InstrumentationEvent",
    "InvalidKeyError",
    "JsonSubscriptions",
    "LivenessConfig",
    "LocalProtocolError",
    "LoggingHook",
    "MAX_WINDOW_MS",
    "MessageTooBig",
    "NativeError",
    "NativeInternalError",
    "OrderBook",
    "ParamValue",
    "Posted",
    "ProtocolError",
    "RateLimitPolicy",
    "RateLimited",
    "RateLimiter",
    "RateLimiterStatistics",
    "RemoteProtocolError",
    "RequestInfo",
    "RequestTimeout",
    "RestClient",
    "RestResponse",
    "RestStatistics",
    "Router",
    "RouterStatistics",
    "SessionConfig",
    "SessionEvent",
    "SessionStatistics",
    "Signer",
    "SubscriptionProtocol",
    "SymbolService",
    "SymbolStatistics",
    "SyncOutput",
    "TransportError",
    "UnknownSymbolError",
    "WsConnection",
    "WsSession",
    "WsTransport",
    "build_signing_string",
    "generate_keypair",
    "open_session",
    "verify_signature",
]


def _fix_module_names() -> None:
    # Tracebacks and reprs say native_anyio.X, not native_anyio._module.X (anyio's trick).
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("native_anyio._"):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):  # pragma: no cover - aliases of builtins
                pass


_fix_module_names()
del _fix_module_names
