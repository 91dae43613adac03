"""A POP's own record of what it did: handles leased to it, facts to ship, and its view
of the files it took until the coordinator has them (see `protocol.py`)."""
