"""The blocks of handles the coordinator leases to POPs, and who holds a handle.

A POP gives out handles on its own from blocks it is leased here
(common/protocol/handle_lease.py). A lease is recorded in the state store before the POP
is told of it, so every coordinator sharing that store knows whose a handle is: any
handle names its block, and its MAC (under the internal secret) tells one made from a
lease from a guess or a forgery without a lookup. Blocks never change once granted, so
each coordinator keeps those it has seen in memory; a block it has not seen (granted by
another coordinator, or before a restart) is read from the store once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from common.config import Config
from common.protocol.errors import CinError, Code
from common.protocol.handle_lease import (
    MAX_BLOCK_SIZE,
    HandleBlock,
    leased_handle,
    new_block_id,
)
from coordinator.state import StateStore

log = logging.getLogger("cin.coordinator.leases")

# Block ids are 8 random base62 characters (47 bits): a collision is all but impossible,
# and one retried this often is a bug, not bad luck.
GRANT_ATTEMPTS = 5


class HandleLeases:
    def __init__(self, state: StateStore, config: Config,
                 on_grant: Callable[[HandleBlock], None] = lambda block: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.secret = config.internal_secret
        self.pops = frozenset(pop.name for pop in config.pops)
        self.on_grant = on_grant
        self.clock = clock
        self._blocks: dict[str, HandleBlock] = {}

    async def grant(self, pop: str, count: int) -> HandleBlock:
        """A new block of `count` handles (at least 1, at most MAX_BLOCK_SIZE) for `pop`,
        a configured POP, recorded as its own before it is returned."""
        if pop not in self.pops:
            raise CinError(Code.BAD_MESSAGE, f"no POP named {pop[:64]!r} is configured")
        if not isinstance(count, int):
            raise CinError(Code.BAD_MESSAGE, "count is a number of handles")
        size = max(1, min(count, MAX_BLOCK_SIZE))
        for _ in range(GRANT_ATTEMPTS):
            block = HandleBlock(new_block_id(), size, pop, granted=self.clock())
            try:
                await self.state.grant_lease(block)
            except CinError as exc:
                if exc.code is not Code.CONFLICT:
                    raise
                continue  # that id was leased before: draw another
            self._blocks[block.block] = block
            log.info("leased block %s of %d handles to POP %s", block.block, size, pop)
            self.on_grant(block)
            return block
        raise CinError(Code.INTERNAL, f"no free block id in {GRANT_ATTEMPTS} draws")

    async def block(self, block_id: str) -> HandleBlock | None:
        found = self._blocks.get(block_id)
        if found is None:
            found = await self.state.lease(block_id)
            if found is not None:
                self._blocks[block_id] = found
        return found

    async def holder(self, handle: str) -> str | None:
        """The POP `handle` was leased to; None for a handle no lease made (one the
        coordinator named itself, a guess, a forgery, an index past its block)."""
        made = leased_handle(self.secret, handle)
        if made is None:
            return None
        block = await self.block(made.block)
        if block is None or made.index >= block.size:
            return None
        return block.pop
