"""The dev network's config for `cin dev` without `-c`, wherever cin is installed.

configs/dev.yaml ships inside the package as `cin/dev.yaml` (a link to it in the source
tree, a copy in a wheel), so an installed `cin dev`, run in an empty directory, writes it
there and runs: nothing outside the package is needed.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FILE_NAME = "cin-dev.yaml"


def ensure(directory: Path) -> str:
    """The dev config's file name in `directory`, written first if it is not there (an
    existing one, perhaps edited, is kept)."""
    path = directory / FILE_NAME
    if not path.exists():
        text = resources.files("cin").joinpath("dev.yaml").read_text(encoding="utf-8")
        path.write_text(text, encoding="utf-8")
        print(f"cin: wrote {FILE_NAME}, the dev network's config (edit it and run "
              "`cin dev` again to change it)", flush=True)
    return FILE_NAME
