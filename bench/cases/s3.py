"""End to end into S3 (a moto server): an Upload API upload through a POP, timed from
start until the file is `Complete`, against the same bytes sent straight to the same
moto with aiobotocore's multipart upload (same part size, same parts in flight). The
ratio says what the POP costs on the way (target ≥ 0.9: the POP adds no bottleneck).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from bench import clients
from bench.cases import Context, Measured, cpu_per_gb, measure, throughput
from bench.processes import AWS_ENV, BUCKET, CinNetwork, cin_network, moto, started
from bench.report import Figure, ratios

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

CASE = "s3"
FULL_SIZE = 256 * 1024**2
QUICK_SIZE = 24 * 1024**2
TARGET = "ratio ≥ 0.9"


@contextlib.asynccontextmanager
async def s3_client(endpoint: str) -> AsyncIterator[S3Client]:
    session = get_session()
    async with session.create_client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
            config=AioConfig(s3={"addressing_style": "path"},
                             max_pool_connections=clients.PARTS_IN_FLIGHT * 2)) as client:
        yield client


async def direct_upload(client: S3Client, key: str, size: int) -> None:
    """What a client that skipped cin would do: aiobotocore's multipart upload."""
    created = await client.create_multipart_upload(Bucket=BUCKET, Key=key)
    upload_id = created["UploadId"]
    sizes = clients.part_sizes(size)
    etags: dict[int, str] = {}
    queue = list(range(len(sizes)))

    async def sender() -> None:
        while queue:
            index = queue.pop(0)
            part = clients.part_bytes(sizes[index])
            reply = await client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id,
                                             PartNumber=index + 1, Body=part)
            etags[index + 1] = reply["ETag"]

    await asyncio.gather(*(sender() for _ in range(clients.PARTS_IN_FLIGHT)))
    await client.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]}
                                   for n in sorted(etags)]})


async def _empty_bucket(client: S3Client) -> None:
    """moto keeps objects in memory: drop each run's before the next."""
    listed = await client.list_objects_v2(Bucket=BUCKET)
    for item in listed.get("Contents", []):
        await client.delete_object(Bucket=BUCKET, Key=item["Key"])


async def run(ctx: Context) -> list[Figure]:
    return await ctx.on_each_loop(_on_loop)


async def _on_loop(ctx: Context, loop: str) -> list[Figure]:
    size = QUICK_SIZE if ctx.quick else FULL_SIZE
    label = f"{size // 1024**2} MiB"
    figures: list[Figure] = []
    root = ctx.scratch(f"{CASE}-{loop}")
    moto_process, endpoint = moto(root)
    with started(moto_process) as s3:
        network = CinNetwork(root / "cin", event_loop=loop, s3_endpoint=endpoint)
        samples: dict[str, list[Measured]] = {"direct": [], "cin": []}
        async with s3_client(endpoint) as client:
            await client.create_bucket(Bucket=BUCKET)
            with cin_network(network) as (coordinator, pop):
                for index in range(ctx.runs):
                    samples["direct"].append(await measure(functools.partial(
                        direct_upload, client, f"direct-{index}", size), [s3]))
                    await _empty_bucket(client)

                    async def through_cin() -> None:
                        reply = await clients.multipart_upload(network.pop_url, size)
                        await clients.wait_complete(network.coordinator_url, reply["handle"],
                                                    limit=600)

                    samples["cin"].append(await measure(through_cin,
                                                        [coordinator, pop]))
                    await _empty_bucket(client)
                    if ctx.out_of_time():
                        break
    direct = throughput(size, samples["direct"])
    figures += [
        Figure(CASE, f"aiobotocore multipart {label} straight to S3", loop, "MB/s", direct,
               extra={"cpu_s_per_gb": cpu_per_gb(size, samples["direct"], client=True)}),
        Figure(CASE, f"multipart {label} through a POP to S3 (to Complete)", loop,
               "MB/s", throughput(size, samples["cin"]),
               ratio=ratios(throughput(size, samples["cin"]).runs, direct.runs),
               against=f"aiobotocore multipart {label} straight to S3", target=TARGET,
               extra={"cpu_s_per_gb": cpu_per_gb(size, samples["cin"])}),
    ]
    return figures
