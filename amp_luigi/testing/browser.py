"""A page as a person sees it: rendered by a real headless Chromium (Debian's, installed by
`.ci/setup`) to a PNG, and that PNG read back as pixels, for the tests and for the README's picture.

Chromium runs with a new empty profile, without a sandbox (CI runs as root), without a GPU, and
without its background networking (on a closed network its connections are refused, many at a
time), at a device scale of 1: a CSS pixel of the page is a pixel of the PNG.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def chromium() -> str:
    """The browser's path; RuntimeError naming what installs it when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium on PATH: `.ci/setup` installs Debian's (apt-get install chromium)")


def screenshot(page: Path, png: Path, width: int = 1200, height: int = 1600) -> None:
    """`page` (a local HTML file) as Chromium draws it in a window of `width` x `height`."""
    with tempfile.TemporaryDirectory(prefix="amp-chromium-") as profile:
        subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    if not png.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot of {page}")


@dataclass(frozen=True)
class Image:
    """An 8-bit RGB(A) PNG's pixels, row by row."""

    width: int
    height: int
    rows: list[bytes]
    channels: int

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        at = x * self.channels
        red, green, blue = self.rows[y][at : at + 3]
        return red, green, blue

    def regions(self, colour: tuple[int, int, int]) -> list[tuple[int, int, int, int]]:
        """The bounding boxes (left, top, right, bottom, inclusive) of the areas of exactly `colour`
        that touch each other, top-left first."""
        seen: set[tuple[int, int]] = set()
        found = []
        for y in range(self.height):
            for x in range(self.width):
                if (x, y) in seen or self.pixel(x, y) != colour:
                    continue
                stack, box = [(x, y)], [x, y, x, y]
                seen.add((x, y))
                while stack:
                    px, py = stack.pop()
                    box = [min(box[0], px), min(box[1], py), max(box[2], px), max(box[3], py)]
                    for nx, ny in ((px + 1, py), (px - 1, py), (px, py + 1), (px, py - 1)):
                        inside = 0 <= nx < self.width and 0 <= ny < self.height
                        if inside and (nx, ny) not in seen and self.pixel(nx, ny) == colour:
                            seen.add((nx, ny))
                            stack.append((nx, ny))
                found.append((box[0], box[1], box[2], box[3]))
        return found


def read_png(path: Path) -> Image:
    """Decode a non-interlaced 8-bit RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    position, header, compressed = 8, b"", bytearray()
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        position += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour_type not in (2, 6) or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced RGB or RGBA PNGs are read here")
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(bytes(compressed))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(kind, line, previous, channels)
        rows.append(bytes(line))
        previous = line
    return Image(width, height, rows, channels)


def _unfilter(kind: int, line: bytearray, previous: bytearray, step: int) -> None:
    """Undo one row's PNG filter in place (None, Sub, Up, Average, Paeth)."""
    for i in range(len(line)):
        left = line[i - step] if i >= step else 0
        up = previous[i]
        corner = previous[i - step] if i >= step else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            estimate = left + up - corner
            near = min(
                (abs(estimate - left), 0, left),
                (abs(estimate - up), 1, up),
                (abs(estimate - corner), 2, corner),
            )
            line[i] = (line[i] + near[2]) & 0xFF


if __name__ == "__main__":  # python -m amp_luigi.testing.browser page.html picture.png [width height]
    import sys

    size = [int(value) for value in sys.argv[3:5]] or [1000, 900]
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]), *size)
