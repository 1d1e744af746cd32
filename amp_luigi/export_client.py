"""The Export API client: one request streamed to disk, the error policy, retries and range splitting.

Amplitude's answers, sorted once here (from its Export API documentation):
- 200: a zip of `*.json.gz` members. It can be gigabytes and take minutes, so it is streamed into
  the staging area as it arrives (a local file or an S3 object, which appears only when every byte
  announced has arrived) and kept only if it opens as a zip.
- 404: no data in the range. 400 ("Shorten the time ranges", over 4 GB) and 504 (the export timed
  out): the range is too large and is split. 401/403: bad credentials or the wrong region: fatal.
- 429: the project's concurrency limit; 5xx, dropped connections, timeouts and truncated bodies:
  transient, retried with exponential backoff and jitter, a bounded number of attempts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import logging
import random
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

import requests

from amp_luigi.errors import FatalError, NoDataError, RetriableError, TooLargeError
from amp_luigi.hours import HourRange
from amp_luigi.staging_area import LOCAL, StagingArea

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
S3_EXPORT_HINT = (
    "Amplitude cannot export this single hour through the Export API (over its 4 GB limit or "
    "timing out); use Amplitude's Amazon S3 export for this project instead."
)

#: Called with (bytes received so far, bytes announced or None) while a body streams in.
ByteProgress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_seconds: float = 5.0
    max_backoff_seconds: float = 300.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
        backoff = random.uniform(0.5, 1.0) * self.backoff_seconds * 2 ** (attempt - 1)
        return min(self.max_backoff_seconds, max(backoff, retry_after or 0.0))


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # a garbled hint (from a proxy, say): our own backoff decides
    if parsed.tzinfo is None:  # "-0000": UTC, per RFC 5322
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return max(0.0, parsed.timestamp() - time.time())


class ExportClient:
    """Downloads hour ranges of one Amplitude project; holds the credentials, never prints them."""

    def __init__(
        self,
        url: str,
        api_key: str,
        secret_key: str,
        *,
        retry: RetryPolicy = RetryPolicy(),
        connect_timeout: float = 15.0,
        read_timeout: float = 900.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        settings_named: tuple[str, str] = ("AMP_API_KEY and AMP_SECRET_KEY", "[amplitude] region"),
    ) -> None:
        self.url = url
        self._auth = (api_key, secret_key)
        # Where the user sets this project's keys and region, for the message a refusal gets.
        self.keys_setting, self.region_setting = settings_named
        self.retry = retry
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or requests.Session()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"ExportClient({self.url!r})"

    def download(
        self,
        hours: HourRange,
        dest: PurePath,
        progress: ByteProgress | None = None,
        area: StagingArea = LOCAL,
    ) -> bool:
        """Stream `hours` into the zip `dest` in `area`; False when Amplitude has no data for them (404).

        Transient faults are retried up to the policy's attempts; TooLargeError is left to the caller.
        """
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                self._download_once(hours, dest, progress, area)
                return True
            except NoDataError:
                return False
            except RetriableError as error:
                if attempt == self.retry.max_attempts:
                    raise FatalError(
                        f"Amplitude export {hours.label()} failed after {attempt} attempts: {error}. "
                        "Run again later, or raise [amplitude] max_attempts."
                    ) from error
                wait = self.retry.delay(attempt, error.retry_after)
                logger.warning(
                    "Amplitude export %s attempt %d/%d failed (%s); retrying in %.1f s",
                    hours.label(),
                    attempt,
                    self.retry.max_attempts,
                    error,
                    wait,
                )
                self._sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _download_once(
        self, hours: HourRange, dest: PurePath, progress: ByteProgress | None, area: StagingArea
    ) -> None:
        try:
            with self.session.get(
                self.url, params=hours.query(), auth=self._auth, stream=True, timeout=self.timeout
            ) as response:
                self._raise_for_status(response, hours)
                self._save(response, hours, dest, progress, area)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise RetriableError(f"connection to {self.url} failed: {type(error).__name__}") from error
        except requests.exceptions.ChunkedEncodingError as error:
            raise RetriableError("the connection broke while the archive was streaming") from error

    def _raise_for_status(self, response: requests.Response, hours: HourRange) -> None:
        status = response.status_code
        if status == 200:
            return
        detail = response.text[:300].strip() if status < 500 else ""
        if status == 404:
            # Amplitude answers 404 when the range holds no events at all.
            raise NoDataError(f"no data for {hours.label()}")
        if status in (400, 413, 504):
            raise TooLargeError(
                f"HTTP {status} for {hours.label()}: {detail or 'export too large or timed out'}"
            )
        if status in (401, 403):
            raise FatalError(
                f"Amplitude refused the credentials (HTTP {status}) at {self.url}. Check {self.keys_setting}, "
                "and the project's region: EU projects use https://analytics.eu.amplitude.com/api/2/export, "
                f"US projects https://amplitude.com/api/2/export ({self.region_setting} = eu|us)."
            )
        if status == 429 or status >= 500:
            what = "concurrency limit reached" if status == 429 else "server error"
            raise RetriableError(f"HTTP {status} ({what})", retry_after=_retry_after(response))
        raise FatalError(f"Amplitude answered HTTP {status} for {hours.label()}: {detail}")

    def _save(
        self,
        response: requests.Response,
        hours: HourRange,
        dest: PurePath,
        progress: ByteProgress | None,
        area: StagingArea,
    ) -> None:
        """The body into `dest` as it arrives (whole or not at all: StagingArea.create), then opened
        as a zip; one that is not is removed again."""
        announced = response.headers.get("Content-Length")
        expected = int(announced) if announced and announced.isdigit() else None
        received = 0
        with area.create(dest) as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                received += len(chunk)
                if progress:
                    progress(received, expected)
            # Content-Length counts the bytes on the wire, which differ from `received` if a proxy
            # compressed the body (Content-Encoding); urllib3 counts those.
            on_wire = response.raw.tell()
            if expected is not None and on_wire != expected:
                raise RetriableError(f"truncated body: {on_wire} of {expected} bytes for {hours.label()}")
        with area.open(dest) as written:
            readable = zipfile.is_zipfile(written)
        if not readable:
            area.remove(dest)
            raise RetriableError(f"the body for {hours.label()} is not a readable zip ({received} bytes)")


@dataclass(frozen=True)
class ExportedPart:
    hours: HourRange
    archive: PurePath | None  # None: Amplitude had no data for these hours
    split: bool = False  # a part of a range Amplitude refused as too large


def export_hours(
    client: ExportClient,
    hours: HourRange,
    archive_path: Callable[[HourRange], PurePath],
    progress: Callable[[HourRange, int, int | None], None] | None = None,
    area: StagingArea = LOCAL,
) -> list[ExportedPart]:
    """Download `hours` into `area`, halving ranges Amplitude finds too large; parts already there are reused."""
    dest = archive_path(hours)
    if area.exists(dest):
        return [ExportedPart(hours, dest)]
    try:
        on_bytes = (lambda got, total: progress(hours, got, total)) if progress else None
        found = client.download(hours, dest, on_bytes, area)
        return [ExportedPart(hours, dest if found else None)]
    except TooLargeError as error:
        if hours.hours == 1:
            raise FatalError(f"{error}. {S3_EXPORT_HINT}") from error
        logger.info("Amplitude refused %s as too large (%s); splitting it in two", hours.label(), error)
        return [
            dataclasses.replace(part, split=True)
            for half in hours.halves()
            for part in export_hours(client, half, archive_path, progress, area)
        ]
