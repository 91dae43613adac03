"""One large upload to a POP with a local-disk bucket: through the REST store (one POST,
answered once the file is in the bucket) and through the Upload API (8 MiB parts, four
in flight, answered at complete once every byte is durable at the POP).

Ceilings, in the same shapes: one POST streamed into a file, and the same PUTs each into
a file of its own, each with and without an fsync before the answer. A REST store is
answered after the bucket's fsync, a part PUT after the spool's: both are compared with
the fsync'd ceiling.
"""

from __future__ import annotations

import functools

from bench import clients
from bench.cases import (
    Context,
    Measured,
    ceiling_figure,
    compared_figure,
    cpu_per_gb,
    measure,
    throughput,
)
from bench.processes import CinNetwork, ceiling, cin_network, started
from bench.report import Figure

CASE = "large"
FULL_SIZE = 1024**3
QUICK_SIZE = 64 * 1024**2
TARGET = "ratio ≥ 0.8"


async def run(ctx: Context) -> list[Figure]:
    return await ctx.on_each_loop(_on_loop)


async def _on_loop(ctx: Context, loop: str) -> list[Figure]:
    size = QUICK_SIZE if ctx.quick else FULL_SIZE
    label = f"{size // 1024**2} MiB" if size < 1024**3 else f"{size // 1024**3} GiB"
    root = ctx.scratch(f"{CASE}-{loop}")
    network = CinNetwork(root / "cin", event_loop=loop)
    ceiling_process, ceiling_url = ceiling(root, loop)
    samples: dict[str, list[Measured]] = {key: [] for key in (
        "post_fsync", "post", "parts_fsync", "parts", "rest", "multipart", "stored")}
    with started(ceiling_process) as bare, cin_network(network) as (coordinator, pop):
        cin = [coordinator, pop]
        for _ in range(ctx.runs):
            samples["post_fsync"].append(await measure(
                lambda: clients.ceiling_post(ceiling_url, size, fsync=True), [bare]))
            samples["post"].append(await measure(
                lambda: clients.ceiling_post(ceiling_url, size, fsync=False), [bare]))
            samples["rest"].append(await measure(
                lambda: clients.rest_store(network.pop_url, size), cin))
            samples["parts_fsync"].append(await measure(
                lambda: clients.ceiling_parts(ceiling_url, size, fsync=True), [bare]))
            samples["parts"].append(await measure(
                lambda: clients.ceiling_parts(ceiling_url, size, fsync=False), [bare]))
            uploaded = await measure(
                lambda: clients.multipart_upload(network.pop_url, size), cin)
            samples["multipart"].append(uploaded)
            reply = uploaded.result
            assert isinstance(reply, dict)
            rest_of_it = await measure(functools.partial(
                clients.wait_complete, network.coordinator_url, reply["handle"], limit=600),
                cin)
            # Start to Complete: the client's part and the bucket's that follows it.
            samples["stored"].append(Measured(
                uploaded.seconds + rest_of_it.seconds,
                uploaded.client_cpu + rest_of_it.client_cpu,
                uploaded.server_cpu + rest_of_it.server_cpu))
            if ctx.out_of_time():
                break

    post_fsync, parts_fsync = f"ceiling: POST {label}, fsync", \
        f"ceiling: 8 MiB PUTs x4, {label}, fsync"
    return [
        ceiling_figure(CASE, post_fsync, loop, size, samples["post_fsync"]),
        ceiling_figure(CASE, f"ceiling: POST {label}, no fsync", loop, size,
                       samples["post"]),
        compared_figure(CASE, f"REST store {label}", loop, size, samples["rest"],
                        fsync_ceiling=(post_fsync, samples["post_fsync"]),
                        plain_ceiling=samples["post"], target=TARGET),
        ceiling_figure(CASE, parts_fsync, loop, size, samples["parts_fsync"]),
        ceiling_figure(CASE, f"ceiling: 8 MiB PUTs x4, {label}, no fsync", loop, size,
                       samples["parts"]),
        compared_figure(CASE, f"multipart {label} (to complete)", loop, size,
                        samples["multipart"],
                        fsync_ceiling=(parts_fsync, samples["parts_fsync"]),
                        plain_ceiling=samples["parts"], target=TARGET),
        Figure(CASE, f"multipart {label} (to Complete in the bucket)", loop, "MB/s",
               throughput(size, samples["stored"]),
               extra={"cpu_s_per_gb": cpu_per_gb(size, samples["stored"])}),
    ]
