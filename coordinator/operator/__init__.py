"""The operator's page: a live view of the network, served by the coordinator at
`/operator` to whoever holds the operator's credential (routes.py); what it shows is read
and worded in view.py, and page.js refreshes it in place."""

from coordinator.operator.routes import PAGE_PATH, STATUS_PATH, add_routes

__all__ = ["PAGE_PATH", "STATUS_PATH", "add_routes"]
