import asyncio
import gc

from coordinator.keyed_locks import KeyedLocks


async def test_one_lock_per_key_while_in_use_then_dropped() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(key: str, name: str, pause: float) -> None:
        async with locks(key):
            order.append(f"{name} in")
            await asyncio.sleep(pause)
            order.append(f"{name} out")

    await asyncio.gather(work("a", "first", 0.02), work("a", "second", 0),
                         work("b", "other", 0))
    # The two on key "a" never overlap; key "b" does not wait for them.
    assert order.index("first out") < order.index("second in")
    assert order.index("other in") < order.index("first out")
    assert locks("a") is locks("a")
    gc.collect()
    assert len(locks) == 0
