"""Eight uploads of 256 MiB at once to one POP (local-disk bucket): the aggregate MB/s,
and the POP's peak resident memory, which must stay flat however many bytes are in
flight (target ≤ 150 MB). Once through the REST store, once through the Upload API.

The ceiling takes the same eight bodies at once, each streamed into a file and fsync'd.
"""

from __future__ import annotations

import asyncio

from bench import clients
from bench.cases import Context, Measured, ceiling_figure, cpu_per_gb, measure, throughput
from bench.processes import CinNetwork, ceiling, cin_network, started
from bench.report import Figure, Summary, ratios

CASE = "concurrent"
UPLOADS = 8
FULL_SIZE = 256 * 1024**2
QUICK_SIZE = 16 * 1024**2
RSS_TARGET = "peak RSS ≤ 150 MB"


async def run(ctx: Context) -> list[Figure]:
    return await ctx.on_each_loop(_on_loop)


async def _on_loop(ctx: Context, loop: str) -> list[Figure]:
    each = QUICK_SIZE if ctx.quick else FULL_SIZE
    total = each * UPLOADS
    label = f"{UPLOADS} x {each // 1024**2} MiB"
    figures: list[Figure] = []
    root = ctx.scratch(f"{CASE}-{loop}")
    network = CinNetwork(root / "cin", event_loop=loop)
    ceiling_process, ceiling_url = ceiling(root, loop)
    samples: dict[str, list[Measured]] = {"ceiling": [], "rest": [], "multipart": []}
    peaks: dict[str, list[float]] = {"rest": [], "multipart": []}
    with started(ceiling_process) as bare, cin_network(network) as (coordinator, pop):
        idle_rss = pop.rss_bytes() / 1e6
        for _ in range(ctx.runs):
            samples["ceiling"].append(await measure(lambda: asyncio.gather(*(
                clients.ceiling_post(ceiling_url, each, fsync=True)
                for _ in range(UPLOADS))), [bare]))
            pop.reset_peak_rss()
            samples["rest"].append(await measure(lambda: asyncio.gather(*(
                clients.rest_store(network.pop_url, each) for _ in range(UPLOADS))),
                [coordinator, pop]))
            peaks["rest"].append(pop.peak_rss_bytes() / 1e6)

            async def multipart() -> None:
                replies = await asyncio.gather(*(
                    clients.multipart_upload(network.pop_url, each)
                    for _ in range(UPLOADS)))
                await asyncio.gather(*(clients.wait_complete(
                    network.coordinator_url, reply["handle"], limit=600)
                    for reply in replies))

            pop.reset_peak_rss()
            samples["multipart"].append(await measure(multipart, [coordinator, pop]))
            peaks["multipart"].append(pop.peak_rss_bytes() / 1e6)
            if ctx.out_of_time():
                break
    ceiling_runs = throughput(total, samples["ceiling"]).runs
    figures.append(ceiling_figure(CASE, f"ceiling: {label} POSTs, fsync", loop, total,
                                  samples["ceiling"]))
    for kind, name in (("rest", f"REST store {label}"),
                       ("multipart", f"multipart {label} (to Complete)")):
        figures.append(Figure(
            CASE, name, loop, "MB/s", throughput(total, samples[kind]),
            ratio=ratios(throughput(total, samples[kind]).runs, ceiling_runs),
            against=f"ceiling: {label} POSTs, fsync", target=RSS_TARGET,
            extra={"peak_rss_mb": Summary.of(peaks[kind]),
                   "idle_rss_mb": Summary.of([idle_rss]),
                   "cpu_s_per_gb": cpu_per_gb(total, samples[kind])}))
    return figures
