"""The journal's life in a POP's app: opened before anything serves, its shipper and
lease keeper running in the background, and all of it closed last.

`journal_ctx` comes first in the app's cleanup_ctx, so the routes and the transfers (in
the resources after it) find JOURNAL and SHIPPER set, and at shutdown it ends last: what
the transfers recorded as they stopped goes in the shipper's last attempt. Its own
connection pool to the coordinator keeps a batch from queueing behind the requests'
calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from edge.coordinator_client import CoordinatorClient
from edge.journal.leases import LeaseKeeper
from edge.journal.shipper import Shipper
from edge.journal.sqlite_journal import SqliteJournal
from edge.keys import CONFIG, EDGE_METRICS, JOURNAL, LEASES, POP, SHIPPER


async def journal_ctx(app: web.Application) -> AsyncIterator[None]:
    config, pop, metrics = app[CONFIG], app[POP], app[EDGE_METRICS]
    # Open before anything serves: a store is acknowledged only once it is recorded here.
    journal = SqliteJournal(pop.spool_dir, config.internal_secret,
                            retention=config.event_shipping.retention,
                            started_retention=config.upload_expiry.ttl,
                            on_commit=metrics.journal_commit)
    await journal.open()
    app[JOURNAL] = journal
    try:
        async with aiohttp.ClientSession() as session:
            client = CoordinatorClient(config.coordinator.internal_url,
                                       config.internal_secret, session)
            shipping, leasing = config.event_shipping, config.handle_leases
            shipper = app[SHIPPER] = Shipper(journal, client, pop.name,
                                             batch_size=shipping.batch_size,
                                             linger=shipping.linger, metrics=metrics)
            journal.on_event = shipper.wake
            keeper = app[LEASES] = LeaseKeeper(journal, client, pop.name,
                                               block_size=leasing.block_size,
                                               low_water=leasing.low_water,
                                               outage=leasing.outage, metrics=metrics)
            # What the POP left unshipped when it stopped goes first; a POP without
            # handles asks for a block (briefly) before it serves.
            shipper.start()
            try:
                await keeper.start()
                yield
            finally:
                await keeper.stop()
                await shipper.stop()
    finally:
        await journal.close()
