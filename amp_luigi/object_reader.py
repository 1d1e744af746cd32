"""An S3 object as a seekable binary file, so zipfile reads an archive in S3 as it reads one on disk.

Reads are served from ranged GETs read as streams: a read after a seek elsewhere (zipfile's jumps
to the central directory and to each member) asks for a small range from there, and while reads
follow each other (a member streamed out) each next range is twice the last, up to MAX_SPAN. So a
member is read in a few GETs whatever its size, and what is asked for but never read (the rest of
a range when zipfile jumps away) is at most what was read in that run: with no copy on disk and no
more than one read's bytes in memory. Every answer must come from the version of the object the
reader was opened on (its ETag): an object replaced while it is read raises StaleStateError naming
it, never a mix of two versions' bytes.
"""

from __future__ import annotations

import io
from typing import Any

from amp_luigi.errors import StaleStateError
from amp_luigi.s3 import Bucket

MIN_SPAN = 64 * 1024
MAX_SPAN = 16 * 1024 * 1024


class ObjectReader(io.RawIOBase):
    def __init__(self, bucket: Bucket, key: str, size: int, etag: str) -> None:
        super().__init__()
        self.bucket, self.key, self.size, self.etag = bucket, key, size, etag
        self._position = 0
        self._body: Any = None  # the open GET's stream, positioned at self._position
        self._end = 0  # where the open GET's range ends
        self._span = MIN_SPAN  # the next range's length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        position = max(0, base + offset)
        if position != self._position:
            self._drop()
            self._position, self._span = position, MIN_SPAN
        return position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self.size - self._position)
        if wanted <= 0:
            return 0
        if self._body is None:
            self._end = min(self.size, self._position + max(wanted, self._span))
            self._span = min(MAX_SPAN, self._span * 2)
            self._body, etag = self.bucket.read_from(self.key, self._position, self._end)
            if etag != self.etag:
                self._drop()
                raise StaleStateError(
                    f"s3://{self.bucket.name}/{self.key} was replaced while it was read (ETag {etag}, "
                    f"not {self.etag})"
                )
        data = self._body.read(min(wanted, self._end - self._position))
        if not data:
            self._drop()
            raise StaleStateError(
                f"s3://{self.bucket.name}/{self.key} ended at byte {self._position}, not {self.size}: "
                "it changed while it was read"
            )
        buffer[: len(data)] = data
        self._position += len(data)
        if self._position == self._end:
            self._drop()  # read whole: its connection goes back to the pool
        return len(data)

    def _drop(self) -> None:
        """Close the open GET: read whole, or left by a seek elsewhere (its connection then closes)."""
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop()
        super().close()
