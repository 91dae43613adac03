"""The tests' free ports: picked before anything binds them, so never handed out twice."""

from __future__ import annotations

from support import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # The kernel picks at random among some 14,000 ports: 500 picks without a memory of
    # what was handed out repeat one almost surely (the birthday bound).
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
