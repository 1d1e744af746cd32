"""amp-luigi: Amplitude's raw event export into Amazon S3, day by day, as a Luigi task graph.

`luigi --module amp_luigi VerifyDay --date 2024-03-01` runs one day, `ExportRange --start ...` fills
every missing day; `luigi.tools.range` is imported here so `RangeDailyBase` and `RangeDaily` resolve
from `--module amp_luigi` too. Importing the package fills in the Luigi settings it depends on
(exit codes, the export concurrency cap, range limits) where no luigi.cfg sets them.
"""

import atexit
import gc

import luigi.configuration
import luigi.tools.range

from amp_luigi import luigi_defaults
from amp_luigi.ranges import ExportRange
from amp_luigi.tasks import ExportDay, ExtractDay, IcebergDay, ParquetDay, RefreshDay, UploadDay, VerifyDay

luigi_defaults.apply(luigi.configuration.get_config())

# What is imported by now (luigi, boto3, botocore, requests: ~90k objects) lives until exit. Frozen,
# the cyclic GC stops rescanning it on every collection (~80 ms of a small day's run) and, frozen
# again at exit, stops walking it before the process ends (~0.2 s); a forked worker shares it as is.
gc.freeze()
atexit.register(gc.freeze)

__all__ = [
    "ExportDay",
    "ExportRange",
    "ExtractDay",
    "IcebergDay",
    "ParquetDay",
    "RefreshDay",
    "UploadDay",
    "VerifyDay",
]
