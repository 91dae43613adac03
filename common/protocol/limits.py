"""S3's bounds on objects and multipart uploads: the one place cin declares them.

Every storage driver keeps them (so what works on local disk works on S3), and the
protocol parsers refuse requests outside them before any byte is taken.
"""

from __future__ import annotations

MIN_PART_SIZE = 5 * 1024 * 1024  # every part but the last
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = MAX_PARTS * MAX_PART_SIZE
MAX_KEY_BYTES = 1024
