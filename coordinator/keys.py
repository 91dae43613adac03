"""Typed keys for what the coordinator's aiohttp app holds."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from common.config import Config
from common.storage.storage_set import StorageSet
from coordinator.expiry import UploadExpiry
from coordinator.files import FileAuthority
from coordinator.leases import HandleLeases
from coordinator.metadata import HashCache
from coordinator.metrics import CoordinatorMetrics
from coordinator.multipart import MultipartUploads
from coordinator.pop_batches import PopBatches
from coordinator.pop_registry import PopRegistry
from coordinator.pop_sharing import SharedHeartbeats
from coordinator.state import StateStore
from coordinator.store_expiry import StoreExpiry

CONFIG = web.AppKey("config", Config)
STATE = web.AppKey("state", StateStore)
COORDINATOR_METRICS = web.AppKey("coordinator_metrics", CoordinatorMetrics)
STORAGE = web.AppKey("storage", StorageSet)
FILES = web.AppKey("files", FileAuthority)
HASHES = web.AppKey("hashes", HashCache)
MULTIPART = web.AppKey("multipart", MultipartUploads)
POPS = web.AppKey("pops", PopRegistry)
HEARTBEATS = web.AppKey("heartbeats", SharedHeartbeats)
EXPIRY = web.AppKey("expiry", UploadExpiry)
STORE_EXPIRY = web.AppKey("store_expiry", StoreExpiry)
LEASES = web.AppKey("leases", HandleLeases)
POP_BATCHES = web.AppKey("pop_batches", PopBatches)
SESSION = web.AppKey("session", aiohttp.ClientSession)  # webhooks, overwrite proxy
