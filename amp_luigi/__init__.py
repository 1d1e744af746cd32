"""amp-luigi: Amplitude's raw event export into Amazon S3, day by day, as a Luigi task graph.

`luigi --module amp_luigi VerifyDay --date 2024-03-01` runs one day, `ExportRange --start ...` fills
every missing day; `luigi.tools.range` is imported here so `RangeDailyBase` and `RangeDaily` resolve
from `--module amp_luigi` too.
"""

import luigi.tools.range  # noqa: F401 - registers RangeDaily and RangeDailyBase for the luigi command

from amp_luigi.ranges import ExportRange
from amp_luigi.tasks import ExportDay, ExtractDay, UploadDay, VerifyDay

__all__ = ["ExportDay", "ExportRange", "ExtractDay", "UploadDay", "VerifyDay"]
