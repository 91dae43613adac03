"""Typed keys for what a POP's aiohttp app holds."""

from __future__ import annotations

from aiohttp import web

from common.config import Config, PopConfig
from common.storage.storage_set import StorageSet
from edge.coordinator_client import CoordinatorClient
from edge.journal.leases import LeaseKeeper
from edge.journal.protocol import PopJournal
from edge.journal.shipper import Shipper
from edge.local_files import JournalFirstFiles
from edge.metrics import EdgeMetrics
from edge.multipart.part_spool import PartSpool
from edge.multipart.part_transfer import PartTransfer
from edge.multipart.spool_sweeper import SpoolSweeper
from edge.multipart.uploads import PopUploads
from edge.rest.staging import Staging
from edge.rest.url_fetch import UrlFetcher

CONFIG = web.AppKey("config", Config)
POP = web.AppKey("pop", PopConfig)
COORDINATOR = web.AppKey("coordinator", CoordinatorClient)
STORAGE = web.AppKey("storage", StorageSet)
STAGING = web.AppKey("staging", Staging)
FETCHER = web.AppKey("fetcher", UrlFetcher)
PART_SPOOL = web.AppKey("part_spool", PartSpool)
TRANSFER = web.AppKey("transfer", PartTransfer)
EDGE_METRICS = web.AppKey("edge_metrics", EdgeMetrics)
SWEEPER = web.AppKey("sweeper", SpoolSweeper)
# The journal (edge/journal): what the store and Upload API routes record, and the
# background work that ships it and keeps its lease of handles.
JOURNAL = web.AppKey("journal", PopJournal)
SHIPPER = web.AppKey("shipper", Shipper)
LEASES = web.AppKey("leases", LeaseKeeper)
# The uploads and files as this POP sees them: its journal first, then the coordinator.
UPLOADS = web.AppKey("uploads", PopUploads)
FILES = web.AppKey("files", JournalFirstFiles)
