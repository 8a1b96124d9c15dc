"""A synchronous HTTP client for an ASGI app in this process (httpx over ASGITransport, no socket):
Starlette's TestClient without its deprecated httpx bridge. Each call runs in an event loop of its
own, so threads may call one client at once (the race tests do)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class AsgiClient:
    """``post``/``request`` like httpx.Client. By default a server error comes back as the 500 reply
    a client would see; ``raise_app_exceptions=True`` raises it in the test instead."""

    def __init__(self, app: Any, *, raise_app_exceptions: bool = False) -> None:
        self.app = app
        self.raise_app_exceptions = raise_app_exceptions

    def request(self, method: str, path: str, content: Any = b"",
                headers: dict[str, str] | None = None) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=self.raise_app_exceptions)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, path, content=content, headers=headers)

        return asyncio.run(send())

    def post(self, path: str, content: Any = b"", headers: dict[str, str] | None = None) -> httpx.Response:
        return self.request("POST", path, content, headers)

    def close(self) -> None:
        """Nothing to release (each call closes its own client); kept for ``with``."""

    def __enter__(self) -> AsgiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
