"""A synchronous HTTP client for an ASGI app in this process (httpx over ASGITransport, one event
loop for all calls, no socket): Starlette's TestClient without its deprecated httpx bridge."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class InProcessClient:
    """``post`` like httpx.Client; a server error comes back as the 500 reply a client would see."""

    def __init__(self, app: Any) -> None:
        self._loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")

    def post(self, path: str, content: Any = b"", headers: dict[str, str] | None = None) -> httpx.Response:
        return self._loop.run_until_complete(self._client.post(path, content=content, headers=headers))

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()

    def __enter__(self) -> InProcessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
