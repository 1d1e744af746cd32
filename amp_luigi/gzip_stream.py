"""Gzip streams as untrusted input: inflated one bounded piece at a time, bombs refused early.

ISA-L inflates several times faster than zlib; the standard library is the fallback. A member may
hold several gzip members back to back (as `gzip` writes them); each is checked by its own CRC.
"""

from __future__ import annotations

import types
import zlib
from collections.abc import Iterable, Iterator
from typing import IO

from amp_luigi.errors import ArchiveError

gzip_codec: types.ModuleType
try:
    from isal import isal_zlib as gzip_codec
except ImportError:  # pragma: no cover - isal is a declared dependency
    gzip_codec = zlib
CODEC_ERRORS: tuple[type[Exception], ...] = (gzip_codec.error, zlib.error)

CHUNK = 1024 * 1024


def read_chunks(stream: IO[bytes], size: int = CHUNK) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk


def inflate(chunks: Iterable[bytes], member: str, max_ratio: int) -> Iterator[bytes]:
    """Gunzip a stream (several gzip members allowed), in bounded pieces, refusing bombs."""
    decoder = gzip_codec.decompressobj(wbits=31)
    started = False
    consumed = produced = 0
    try:
        for chunk in chunks:
            pending = chunk
            while pending:
                started = True
                out = decoder.decompress(pending, CHUNK)
                left = (
                    decoder.unused_data + decoder.unconsumed_tail if decoder.eof else decoder.unconsumed_tail
                )
                # Count only the input inflated so far, so a bomb is caught within a few MiB of output
                # rather than after `max_inflate_ratio` times a whole read chunk.
                consumed += len(pending) - len(left)
                pending = left
                if decoder.eof:
                    decoder = gzip_codec.decompressobj(wbits=31)
                    started = False
                if out:
                    produced += len(out)
                    if produced > max_ratio * consumed + CHUNK:
                        raise ArchiveError(
                            f"member {member} inflates more than {max_ratio} times its size "
                            "(a gzip bomb?); refusing it. Raise [staging] max_inflate_ratio if it is genuine."
                        )
                    yield out
    except CODEC_ERRORS as error:
        raise ArchiveError(f"member {member}: gzip data is corrupt ({error})") from error
    if started or consumed == 0:
        raise ArchiveError(f"member {member}: gzip data ends early (truncated member)")
