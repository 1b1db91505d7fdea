"""
The REST front of the simulator: routing, rate limiting, REST faults and signed endpoints.

Order of handling for each request:

1. armed REST faults for the path (:meth:`FaultController.take_rest`): a ``fail_rest`` answer or
   drop, a ``rate_limit_rest`` 429 (``Retry-After`` seconds, an HTTP-date, or none), and any
   ``delay_rest`` delay (applied to whatever is answered);
2. the configured ``rest_rate_limit`` (requests per 60 s, sliding): 429
   ``{"code":"TOO_MANY_REQUESTS","message":"Too many requests"}`` without ``Retry-After``, as the
   wire shows none;
3. routing: unknown path -> 404 plain text ``not found``; a known path with another method ->
   405 plain text ``method not allowed``;
4. signed endpoints check the signature (:mod:`._verify`); ``GET /api/v1/capital``
   (balanceQuery), ``GET/POST/DELETE /api/v1/order`` (orderQuery/orderExecute/orderCancel),
   ``GET/DELETE /api/v1/orders`` (orderQueryAll/orderCancelAll).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ...testing._http import HttpResponse
from ._payloads import ENCODER
from ._private import ApiFailure, bad_payload
from ._rest_public import PublicApi
from ._verify import verify_rest

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

    from ...testing._http import HttpRequest
    from ._account import Account
    from ._config import MarketSpec, SimulatorConfig
    from ._faults import FaultController
    from ._market import Market

__all__ = ["RestApi"]

_JSON = {"content-type": "application/json; charset=utf-8"}
_SIGNED: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/capital"): "balanceQuery",
    ("GET", "/api/v1/order"): "orderQuery",
    ("POST", "/api/v1/order"): "orderExecute",
    ("DELETE", "/api/v1/order"): "orderCancel",
    ("GET", "/api/v1/orders"): "orderQueryAll",
    ("DELETE", "/api/v1/orders"): "orderCancelAll",
}


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> HttpResponse:
    """A JSON answer with sorted keys."""
    return HttpResponse(status, ENCODER.encode(obj), {**_JSON, **(headers or {})})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> HttpResponse:
    """Backpack's JSON error body ``{"code","message"}``."""
    return json_response({"code": code, "message": message}, status, headers)


class RestApi:
    """Answers every REST request of the simulator."""

    def __init__(
        self,
        config: SimulatorConfig,
        markets: Mapping[str, Market],
        closed: Mapping[str, MarketSpec],
        faults: FaultController,
        account: Account,
        api_keys: Collection[str],
        now_us: Callable[[], int],
    ) -> None:
        self._config = config
        self._faults = faults
        self._account = account
        self._api_keys = api_keys
        self._now_us = now_us
        self._public = PublicApi(markets, closed, faults, now_us)
        self._recent: deque[float] = deque()

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """The :func:`open_http_server` handler."""
        delay = 0.0
        response: HttpResponse | None = None
        for rule in self._faults.take_rest(request.path):
            if rule.kind == "delay_rest":
                delay += rule.seconds
            elif rule.kind == "fail_rest":
                response = HttpResponse(rule.status, rule.body, drop=rule.drop)
            else:
                headers = self._faults.retry_after_header(rule)
                response = error_response(429, "TOO_MANY_REQUESTS", "Too many requests", headers)
        if response is None:
            response = self._limited() or self._route(request)
        if delay > 0:  # math.inf never answers (the HTTP server sleeps forever)
            response = HttpResponse(
                response.status, response.body, response.headers, delay=delay, drop=response.drop
            )
        return response

    def _limited(self) -> HttpResponse | None:
        limit = self._config.rest_rate_limit
        if limit is None:
            return None
        now = anyio.current_time()
        recent = self._recent
        while recent and recent[0] <= now - 60.0:
            recent.popleft()
        if len(recent) >= limit:
            return error_response(429, "TOO_MANY_REQUESTS", "Too many requests")
        recent.append(now)
        return None

    def _route(self, request: HttpRequest) -> HttpResponse:
        key = (request.method, request.path)
        try:
            if key in _SIGNED:
                return json_response(self._signed(request, _SIGNED[key]))
            handler = self._public.routes.get(request.path)
            if handler is None:
                known = any(path == request.path for _, path in _SIGNED)
                return HttpResponse(405, "method not allowed") if known else HttpResponse(404, "not found")
            if request.method not in ("GET", "HEAD"):
                return HttpResponse(405, "method not allowed")
            result = handler(request)
        except ApiFailure as failure:
            if failure.plain:
                return HttpResponse(failure.status, failure.message)
            return error_response(failure.status, failure.code, failure.message)
        if isinstance(result, str):
            return HttpResponse(200, result)
        return json_response(result)

    def _params(self, request: HttpRequest) -> dict[str, Any]:
        if not request.body.strip():
            return dict(request.query)
        try:
            body = msgspec.json.decode(request.body)
        except msgspec.DecodeError as exc:
            raise bad_payload(str(exc)) from None
        if not isinstance(body, dict):
            raise bad_payload("expected a JSON object")
        return body

    def _signed(self, request: HttpRequest, instruction: str) -> Any:
        params = self._params(request)
        failure = verify_rest(
            request.headers,
            instruction,
            params,
            api_keys=self._api_keys,
            now_ms=self._now_us() // 1000,
            window_max=self._config.signature_window_max,
        )
        if failure is not None:
            raise ApiFailure(failure.status, "INVALID_CLIENT_REQUEST", failure.message)
        account = self._account
        if instruction == "balanceQuery":
            return account.capital()
        if instruction == "orderExecute":
            return account.execute(params)
        if instruction == "orderCancel":
            return account.cancel(params)
        if instruction == "orderQuery":
            return account.order_rest(account.find(params))
        if instruction == "orderCancelAll":
            return account.cancel_all(params.get("symbol"))
        return account.open_orders(params.get("symbol"))
