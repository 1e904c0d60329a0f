"""Dashboard live views for scripts/bench.py: `--live-views N` runs each row also with N signed-in
owners watching /dashboard/live, so that the cost of the live view to the relay shows in the same run.

A view is what the Live page's EventSource does: sign in with the owner secret (the sign-in form's CSRF
token and cookie, then the session cookie), then hold GET /dashboard/events open and read every event.
Each view counts what it received; a view that received nothing while calls were relayed is a broken
view, not a cheap one, and the benchmark reports it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import httpx2

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OPEN_SECONDS = 30.0


async def _sign_in(http: httpx2.AsyncClient, token: str) -> None:
    form = await http.get("/dashboard/signin")
    form.raise_for_status()
    found = CSRF.search(form.text)
    if found is None:
        raise RuntimeError("the dashboard's sign-in form has no CSRF token")
    answer = await http.post("/dashboard/signin", data={"csrf_token": found[1], "owner_secret": token, "next": "/dashboard/live"})
    if answer.status_code != 303:
        raise RuntimeError(f"dashboard sign-in answered {answer.status_code}")


@asynccontextmanager
async def live_views(base_url: str, token: str, count: int) -> AsyncIterator[list[int]]:
    """Hold `count` signed-in event streams open; yields the events each has received so far."""
    received = [0] * count
    if count == 0:
        yield received
        return
    async with AsyncExitStack() as stack:
        streams = []
        with anyio.fail_after(OPEN_SECONDS):
            for _ in range(count):
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(base_url=base_url, timeout=httpx2.Timeout(30, read=None), follow_redirects=False))
                await _sign_in(http, token)
                stream = await stack.enter_async_context(http.stream("GET", "/dashboard/events"))
                stream.raise_for_status()
                streams.append(stream)

        async def read(index: int, stream: httpx2.Response) -> None:
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    received[index] += 1

        async with anyio.create_task_group() as tasks:
            for index, stream in enumerate(streams):
                tasks.start_soon(read, index, stream)
            yield received
            tasks.cancel_scope.cancel()
