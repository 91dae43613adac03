"""A POP's own record of what it did: handles leased to it, facts to ship, and its view
of the files it took until the coordinator has them.

protocol.py is the contract the routes rely on (`PopJournal`); sqlite_journal.py keeps it
on SQLite; shipper.py sends the facts to the coordinator and leases.py keeps the lease of
handles topped up, both in the background; lifecycle.py runs them in a POP's app."""
