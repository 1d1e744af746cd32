"""Where a day's tasks hand each other their files: a local directory (the default) or an S3 prefix
(`[staging] location`), behind one interface, so that with S3 any host runs any stage of any day.

Both keep the promises the stages rely on:
- a file appears under its name only once it is whole (a local file is written beside its name and
  renamed; an object is one PUT or a completed multipart upload), so a name that exists is complete
  on every host, and a writer left by an exception leaves nothing behind;
- a file is read as a seekable binary file (zipfile reads an archive in S3 with ranged GETs,
  amp_luigi.object_reader, never a copy on disk), and an object replaced while it is read raises
  StaleStateError naming it;
- `remove_tree` leaves nothing of a directory: in S3 its objects and the multipart uploads a killed
  writer left open below it.

Paths are PurePaths below the project's staging root: real paths in a local area, the keys
themselves in S3 (`<prefix>/<project>/<date>/export/parts.json`, amp_luigi.layout).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath, PurePosixPath
from typing import IO, Any, Protocol

from amp_luigi.object_reader import ObjectReader
from amp_luigi.s3 import Bucket, Listed

# Small reads (zip headers, names) are served from a buffer this size; larger ones go straight on.
READ_BUFFER = 16 * 1024


def partial_path(dest: Path) -> Path:
    """Where `dest` is written before its atomic rename: hidden, per process, never taken as complete."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.partial")


class Sink(Protocol):
    """What a file being written takes: bytes, in order (it tells how many so far, never seeks)."""

    def write(self, data: bytes, /) -> int: ...

    def tell(self) -> int: ...

    def flush(self) -> None: ...


class StagingArea(ABC):
    @abstractmethod
    def where(self, path: PurePath) -> str:
        """How messages name the file: its path, or its `s3://` address."""

    @abstractmethod
    def exists(self, path: PurePath) -> bool: ...

    @abstractmethod
    def size(self, path: PurePath) -> int:
        """The file's size in bytes; FileNotFoundError when there is none."""

    @abstractmethod
    def open(self, path: PurePath) -> IO[bytes]:
        """The file, seekable, for reading; FileNotFoundError when there is none."""

    @abstractmethod
    def create(self, path: PurePath) -> contextlib.AbstractContextManager[Sink]:
        """A file written as a stream: it appears under `path` when the `with` ends cleanly, and not
        at all when an exception leaves it."""

    @abstractmethod
    def files(self, path: PurePath) -> dict[PurePath, int]:
        """Every file below the directory `path`, at any depth, with its size."""

    @abstractmethod
    def remove(self, path: PurePath) -> None:
        """The file gone (nothing happens when there is none)."""

    @abstractmethod
    def remove_tree(self, path: PurePath) -> None:
        """Everything below the directory `path` gone."""

    def children(self, path: PurePath) -> set[str]:
        """The names directly below the directory `path` (files and directories)."""
        return {found.relative_to(path).parts[0] for found in self.files(path)}

    def read_bytes(self, path: PurePath) -> bytes:
        with self.open(path) as source:
            return source.read()

    def write_bytes(self, path: PurePath, data: bytes) -> None:
        with self.create(path) as out:
            out.write(data)


class LocalArea(StagingArea):
    """A directory on this host's disk ([staging] data_dir). There is one, LOCAL: a pickled copy
    (a task sent to a spawned worker) is LOCAL again."""

    def __reduce__(self) -> str:
        return "LOCAL"

    def where(self, path: PurePath) -> str:
        return str(path)

    def exists(self, path: PurePath) -> bool:
        return Path(path).exists()

    def size(self, path: PurePath) -> int:
        return Path(path).stat().st_size

    def open(self, path: PurePath) -> IO[bytes]:
        return Path(path).open("rb")

    @contextlib.contextmanager
    def create(self, path: PurePath) -> Iterator[Sink]:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)  # a day without data has no directory yet
        partial = partial_path(dest)
        try:
            with partial.open("wb") as out:
                yield out
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)

    def files(self, path: PurePath) -> dict[PurePath, int]:
        folder = Path(path)
        found: dict[PurePath, int] = {}
        for each in folder.rglob("*") if folder.is_dir() else []:
            with contextlib.suppress(FileNotFoundError):  # removed while listed
                if each.is_file():
                    found[each] = each.stat().st_size
        return found

    def remove(self, path: PurePath) -> None:
        Path(path).unlink(missing_ok=True)

    def remove_tree(self, path: PurePath) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def children(self, path: PurePath) -> set[str]:
        """Empty directories too: a day's directory left behind counts as staged."""
        folder = Path(path)
        return {each.name for each in folder.iterdir()} if folder.is_dir() else set()


LOCAL = LocalArea()


class S3Area(StagingArea):
    """A prefix in a bucket ([staging] location = s3://bucket/prefix), shared by every host.

    The bucket is opened once per process (a forked extraction worker opens its own: a boto3 client
    must not cross a fork), through `open_bucket`, the project's way to open it.
    """

    def __init__(self, name: str, open_bucket: Callable[[], Bucket]) -> None:
        self.name, self.open_bucket = name, open_bucket
        self._buckets: dict[int, Bucket] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Without the buckets, whose clients cannot be pickled (a task sent to a spawned worker)."""
        return {**self.__dict__, "_buckets": {}}

    def __eq__(self, other: object) -> bool:
        """The same bucket is the same area (its paths say where in it)."""
        return isinstance(other, S3Area) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def bucket(self) -> Bucket:
        if os.getpid() not in self._buckets:
            self._buckets[os.getpid()] = self.open_bucket()
        return self._buckets[os.getpid()]

    @staticmethod
    def key(path: PurePath) -> str:
        """The object key: the path itself (the bucket's root, `.`, is the empty prefix)."""
        text = str(PurePosixPath(path))
        return "" if text == "." else text

    def where(self, path: PurePath) -> str:
        return f"s3://{self.name}/{self.key(path)}"

    def exists(self, path: PurePath) -> bool:
        return self.bucket.exists(self.key(path))

    def size(self, path: PurePath) -> int:
        return self._head(path).size

    def _head(self, path: PurePath) -> Listed:
        found = self.bucket.head(self.key(path))
        if found is None:
            raise FileNotFoundError(f"{self.where(path)} does not exist")
        return found

    def open(self, path: PurePath) -> IO[bytes]:
        found = self._head(path)
        reader = ObjectReader(self.bucket, self.key(path), found.size, found.etag)
        return io.BufferedReader(reader, READ_BUFFER)

    def create(self, path: PurePath) -> contextlib.AbstractContextManager[Sink]:
        return self.bucket.writer(self.key(path))

    def folder(self, path: PurePath) -> str:
        """The key prefix of everything below the directory `path` ('' for the bucket's root)."""
        key = self.key(path).rstrip("/")
        return f"{key}/" if key else ""

    def files(self, path: PurePath) -> dict[PurePath, int]:
        listing = self.bucket.listing(self.folder(path))
        return {PurePosixPath(key): listed.size for key, listed in listing.items()}

    def remove(self, path: PurePath) -> None:
        self.bucket.delete([self.key(path)])

    def remove_tree(self, path: PurePath) -> None:
        prefix = self.folder(path)
        self.bucket.delete(sorted(self.bucket.listing(prefix)))
        self.bucket.abort_left_uploads(prefix)
