"""What counting a request in /metrics costs: `python -m bench.metrics_overhead`.

Runs the request-log middleware (common/web/request_log.py) N times on one matched
request and a handler that answers at once, in an app without metrics and in one with
them, and prints the microseconds per request of each and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from common.config import MetricsConfig
from common.web import metrics, request_log


async def _answer(request: web.Request) -> web.StreamResponse:
    return web.Response(status=200)


async def _seconds_per_request(with_metrics: bool, count: int) -> float:
    app = web.Application()
    app.router.add_post("/api/store/{provider}", _answer)
    if with_metrics:
        metrics.install(app, MetricsConfig(), "x" * 16)
    request_log.install(app)
    middleware = app.middlewares[0]
    app.freeze()
    request = make_mocked_request("POST", "/api/store/S3", app=app)
    match = await app.router.resolve(request)
    match.add_app(app)
    request._match_info = match
    for _ in range(1000):  # warm: the label children are made on the first request
        await middleware(request, _answer)
    started = time.perf_counter()
    for _ in range(count):
        await middleware(request, _answer)
    return (time.perf_counter() - started) / count


async def main(count: int) -> None:
    without = min([await _seconds_per_request(False, count) for _ in range(3)])
    with_ = min([await _seconds_per_request(True, count) for _ in range(3)])
    print(f"{count} requests, best of 3: without metrics {without * 1e6:.2f} µs, "
          f"with {with_ * 1e6:.2f} µs per request; metrics add {(with_ - without) * 1e6:.2f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().requests))
