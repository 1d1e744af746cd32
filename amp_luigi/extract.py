"""ExtractDay's stage: every member of the day's archives extracted, checked, and the manifest.

The manifest is written last, after every member passed its checks (amp_luigi.members). An
archive the index names but the staging area no longer holds, a damaged index or an archive that fails a
check raise ArchiveError or StaleStateError: the task then discards the download.
"""

from __future__ import annotations

from collections.abc import Callable

from amp_luigi.errors import ArchiveError
from amp_luigi.layout import DayLayout
from amp_luigi.members import Limits, extract_archives
from amp_luigi.records import ExportIndex, Manifest


def extract_day(
    layout: DayLayout, limits: Limits, on_member: Callable[[int, int, int], None] | None = None
) -> Manifest:
    """`on_member` gets (archive bytes done, archive bytes in all, members done)."""
    area = layout.area
    index = ExportIndex.load(layout.export_index, area)
    archives = [layout.export_dir / part.archive for part in index.ranges if part.archive]
    missing = [path.name for path in archives if not area.exists(path)]
    if missing:
        raise ArchiveError(
            f"downloaded archive(s) {', '.join(missing)} vanished from {area.where(layout.export_dir)}"
        )
    members = extract_archives(archives, layout.members_dir, limits, on_member, area)
    manifest = Manifest(layout.date, members, index.ranges, index.split)
    manifest.save(layout.manifest_path, area)
    return manifest
