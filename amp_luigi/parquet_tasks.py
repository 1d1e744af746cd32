"""ParquetDay: the verified day as typed, Hive-partitioned Parquet, downstream of VerifyDay.

    ExportDay -> ExtractDay -> UploadDay -> VerifyDay -> ParquetDay

It reads what VerifyDay proved is in S3 (the objects its marker lists), never staging, so any
verified day converts, however old. `ExportRange --of ParquetDay`, or `[parquet] enabled = true`,
fills every day without Parquet, exporting first whatever is not verified yet.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from luigi.contrib.s3 import S3Target

from amp_luigi.layout import PARQUET_DIR, ParquetLayout, marker_date, marker_prefix
from amp_luigi.manifest import recorded_objects
from amp_luigi.progress import Progress, mib
from amp_luigi.settings import parquet, staging, storage
from amp_luigi.tasks import DayTask, VerifyDay


def parquet_layout(date: dt.date) -> ParquetLayout:
    prefix = storage().key_prefix()
    return ParquetLayout(date, prefix, parquet().key_prefix(prefix))


class ParquetDay(DayTask):
    """Converts the verified day into Parquet files under `<parquet prefix>/dt=<date>/`.

    Input: VerifyDay's marker and the objects it lists. Output: `_parquet/<date>.json` (rows, files,
    bytes, schema version), written only after every file's footer in S3 counts the rows the
    verified marker counts. A rerun converts again to the same keys and deletes any other file.
    """

    def requires(self) -> VerifyDay:
        return VerifyDay(self.date)

    def output(self) -> S3Target:
        return self.s3_target(parquet_layout(self.date).marker_key)

    @classmethod
    def bulk_complete(cls, parameter_tuples: Iterable[dt.date]) -> list[dt.date]:
        """The dates with a Parquet marker, from one listing (see VerifyDay.bulk_complete)."""
        dates = list(parameter_tuples)
        listing = storage().open_bucket().listing(marker_prefix(storage().key_prefix(), PARQUET_DIR))
        done = {marker_date(key) for key in listing}
        return [date for date in dates if date in done]

    def run(self) -> None:
        from amp_luigi.parquet import Engine, convert_day

        layout = parquet_layout(self.date)
        progress = Progress(self)
        bucket = storage().open_bucket()
        objects = recorded_objects(bucket.read_json(self.layout().verified_key))
        settings = parquet()
        root = staging().root()
        root.mkdir(parents=True, exist_ok=True)
        # Hidden and not named like a day, so the status view does not take it for a failed export.
        work = Path(tempfile.mkdtemp(prefix=f".parquet-{self.date.isoformat()}-", dir=root))
        try:
            record = convert_day(
                bucket,
                layout,
                objects,
                Engine(settings.memory_limit_mib, settings.threads),
                work,
                lambda done, total: progress(f"converted {done} of {total} hour(s)", 100.0 * done / total),
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        bucket.write_json(layout.marker_key, record)
        progress(
            f"{record['rows']} rows in {record['files']} Parquet file(s), {mib(record['bytes'])}",
            100,
            final=True,
        )
