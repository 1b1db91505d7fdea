"""
The websocket transport through an HTTP CONNECT proxy (a real one on 127.0.0.1), and property D6:
only the explicit proxy setting decides the route, never the environment.
"""

from __future__ import annotations

import ssl

import anyio
import anyio.abc
import pytest
import trustme

from native_anyio import (
    AnyioTransport,
    Backoff,
    ConnectionLost,
    LocalProtocolError,
    SessionConfig,
    open_session,
)
from native_anyio.testing import ServerConnection, open_ws_server


class ConnectProxy:
    """A minimal HTTP CONNECT proxy that records its tunnels (or refuses them)."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.tunnels: list[str] = []
        self.port = 0

    async def serve(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                head += await client.receive(4096)
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            self.tunnels.append(target)
            if self.refuse:
                await client.send(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            host, port = target.rsplit(":", 1)
            async with await anyio.connect_tcp(host, int(port)) as upstream, anyio.create_task_group() as tg:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")

                async def pipe(src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream) -> None:
                    try:
                        async for chunk in src:
                            await dst.send(chunk)
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(pipe, client, upstream)
                tg.start_soon(pipe, upstream, client)


async def run_proxy(
    proxy: ConnectProxy, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:
        task_status.started()
        await listener.serve(proxy.serve)


async def hello(conn: ServerConnection) -> None:
    await conn.wait_message()
    await conn.send_text("hello through the tunnel")
    await anyio.sleep(100)


def config(**overrides: object) -> SessionConfig:
    values: dict[str, object] = {"backoff": Backoff(initial=0.1, jitter=0.0, max_attempts=2), "seed": 0}
    values.update(overrides)
    return SessionConfig(**values)  # type: ignore[arg-type]


async def first_message(url: str, transport: AnyioTransport) -> bytes:
    async with open_session(url, subscriptions=["x"], transport=transport, config=config()) as session:
        async for item in session:
            if isinstance(item, bytes):
                return item
    raise AssertionError("no message")


async def test_ws_through_a_connect_proxy():
    proxy = ConnectProxy()
    async with open_ws_server(hello) as server, anyio.create_task_group() as tg:
        await tg.start(run_proxy, proxy)
        with anyio.fail_after(30):
            transport = AnyioTransport(proxy=f"http://127.0.0.1:{proxy.port}")
            assert await first_message(server.url, transport) == b"hello through the tunnel"
        tg.cancel_scope.cancel()
    assert proxy.tunnels == [f"127.0.0.1:{server.port}"]


async def test_wss_through_a_connect_proxy_verifies_the_origin_certificate():
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    proxy = ConnectProxy()
    async with open_ws_server(hello, ssl_context=server_context) as server, anyio.create_task_group() as tg:
        await tg.start(run_proxy, proxy)
        with anyio.fail_after(30):
            transport = AnyioTransport(proxy=f"http://127.0.0.1:{proxy.port}", ssl_context=client_context)
            assert await first_message(server.url, transport) == b"hello through the tunnel"
        tg.cancel_scope.cancel()
    assert proxy.tunnels == [f"127.0.0.1:{server.port}"]


async def test_a_refusing_proxy_fails_the_attempt_and_the_session_gives_up_by_policy():
    proxy = ConnectProxy(refuse=True)
    async with open_ws_server(hello) as server, anyio.create_task_group() as tg:
        await tg.start(run_proxy, proxy)
        with anyio.fail_after(30), pytest.raises(ConnectionLost) as info:
            await first_message(server.url, AnyioTransport(proxy=f"http://127.0.0.1:{proxy.port}"))
        tg.cancel_scope.cancel()
    assert info.value.attempts == 2
    assert "refused CONNECT" in info.value.reason.detail
    assert server.connections == []  # nothing reached the origin


async def test_proxy_environment_variables_do_not_hijack_the_route(monkeypatch: pytest.MonkeyPatch):
    """D6: a proxy in the environment pointing at a dead port changes nothing."""
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    async with open_ws_server(hello) as server:
        with anyio.fail_after(30):
            assert await first_message(server.url, AnyioTransport()) == b"hello through the tunnel"


def test_only_http_connect_proxies_are_accepted():
    with pytest.raises(LocalProtocolError, match="CONNECT"):
        AnyioTransport(proxy="socks5://127.0.0.1:1080")


async def test_the_backpack_client_sends_its_websocket_through_the_configured_proxy():
    from native_anyio.backpack import BackpackConfig, open_backpack
    from native_anyio.backpack.simulator import SimulatorConfig, open_simulator

    proxy = ConnectProxy(refuse=True)
    async with open_simulator(SimulatorConfig(symbols=("SOL_USDC",))) as sim, anyio.create_task_group() as tg:
        await tg.start(run_proxy, proxy)
        config = BackpackConfig(
            ws_url=sim.ws_url, rest_url=sim.rest_url, proxy=f"http://127.0.0.1:{proxy.port}"
        )
        with anyio.fail_after(30), pytest.raises(ConnectionLost) as info:
            async with open_backpack(config, session_config=config_for_one_attempt()) as client:
                await client.receive_events()
        tg.cancel_scope.cancel()
    assert "refused CONNECT" in info.value.reason.detail
    port = sim.ws_url.rsplit(":", 1)[1]
    assert f"127.0.0.1:{port}" in proxy.tunnels
    assert sim.connections == ()  # the simulator was never reached directly


def config_for_one_attempt() -> SessionConfig:
    return config(backoff=Backoff(initial=0.1, jitter=0.0, max_attempts=1))
