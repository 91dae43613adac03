"""tuspy, unmodified, as a separate process: the tus tests kill it mid-upload.

    python tus_client.py URL FILE STORAGE CHUNK METADATA_JSON [--checksum]

Uploads FILE to the tus creation URL with tuspy, keeping the upload's URL in STORAGE
(tuspy's own FileStorage), so that a second run resumes where the first was killed.
Prints one JSON line when it starts (its offset: 0 for a new upload) and one after each
chunk, and the upload's URL at the end.
"""

from __future__ import annotations

import json
import sys

from tusclient import client
from tusclient.storage.filestorage import FileStorage


def main() -> None:
    url, path, storage, chunk, metadata = sys.argv[1:6]
    uploader = client.TusClient(url).uploader(
        path, chunk_size=int(chunk), metadata=json.loads(metadata), store_url=True,
        url_storage=FileStorage(storage),  # type: ignore[no-untyped-call]
        upload_checksum="--checksum" in sys.argv,
        retries=0)
    print(json.dumps({"start": uploader.offset, "url": uploader.url}), flush=True)
    size = uploader.get_file_size()  # type: ignore[no-untyped-call]
    while not uploader.url or uploader.offset < size:
        # One chunk per call: its offset is printed before the next is sent.
        uploader.upload(stop_at=min(uploader.offset + int(chunk), size))
        print(json.dumps({"offset": uploader.offset, "url": uploader.url}), flush=True)
    print(json.dumps({"done": uploader.url}), flush=True)


if __name__ == "__main__":
    main()
