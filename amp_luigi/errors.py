"""The small error hierarchy every module raises and the tasks handle once.

Retriable errors are worth another attempt (Amplitude or S3 said "later"); fatal ones are not
(bad credentials, bad input, an archive that fails its checks). Every message says what was wrong
and what to do, and never carries a secret.
"""


class AmpLuigiError(Exception):
    """Base class: anything amp-luigi raises on purpose."""


class ConfigError(AmpLuigiError):
    """A setting is missing or invalid; the message names the variable and the luigi.cfg option."""


class FatalError(AmpLuigiError):
    """Retrying cannot help: fix the cause, then run again."""


class RetriableError(AmpLuigiError):
    """A transient fault; `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooLargeError(AmpLuigiError):
    """Amplitude refused the range as too large (400) or timed out building it (504): split it."""


class NoDataError(AmpLuigiError):
    """Amplitude has no events in the range (404): a legitimate empty result, not a failure."""


class NotYetAvailableError(FatalError):
    """The day is not over plus Amplitude's availability lag; exporting it now would be partial."""


class ArchiveError(FatalError):
    """The downloaded archive failed a check; the message names the member."""


class StorageError(FatalError):
    """S3 refused for a reason retrying cannot fix (access denied, no such bucket)."""


class VerificationError(FatalError):
    """What S3 holds for a day differs from the manifest; the message lists every difference."""


class StaleStateError(FatalError):
    """A stage's output an earlier run wrote cannot be read (damaged, or a form this version does not
    read); the stage that reads it discards the stage that wrote it, so the next run writes it anew."""


class NewerRecordError(FatalError):
    """A record was written by a newer amp-luigi: kept as it is, this version stops."""


class IntegrityError(FatalError):
    """The store's answer to an upload does not prove it holds the bytes sent; the message names the key."""
