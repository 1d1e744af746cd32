"""The error hierarchy callers rely on: everything amp-luigi raises on purpose is an AmpLuigiError,
and each error is retriable, fatal, or one of the two answers that are neither (split, or no data)."""

from __future__ import annotations

import pickle

import pytest

from amp_luigi import errors
from amp_luigi.errors import (
    AmpLuigiError,
    ArchiveError,
    ConfigError,
    FatalError,
    IntegrityError,
    NewerRecordError,
    NoDataError,
    NotYetAvailableError,
    RetriableError,
    StaleStateError,
    StorageError,
    TooLargeError,
    VerificationError,
)

FATAL = [
    NotYetAvailableError,
    ArchiveError,
    StorageError,
    VerificationError,
    StaleStateError,
    NewerRecordError,
    IntegrityError,
]
NEITHER = [ConfigError, TooLargeError, NoDataError]


def test_every_error_of_the_module_is_an_amp_luigi_error_and_sorted_here() -> None:
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, Exception) and value is not AmpLuigiError
    }
    assert all(issubclass(error, AmpLuigiError) for error in defined)
    assert defined == {FatalError, RetriableError, *FATAL, *NEITHER}, "a new error is sorted in this test"


@pytest.mark.parametrize("error", FATAL)
def test_each_fatal_error_is_one_retrying_cannot_help(error: type[Exception]) -> None:
    assert issubclass(error, FatalError)
    assert not issubclass(error, RetriableError)


@pytest.mark.parametrize("error", NEITHER)
def test_a_setting_a_too_large_range_and_no_data_are_neither_retried_nor_fatal(
    error: type[Exception],
) -> None:
    assert not issubclass(error, (FatalError, RetriableError))


def test_a_retriable_error_carries_the_servers_hint() -> None:
    assert RetriableError("HTTP 429", retry_after=7.5).retry_after == 7.5
    assert RetriableError("HTTP 503").retry_after is None
    assert not issubclass(RetriableError, FatalError)


def test_an_archive_error_from_a_forked_worker_arrives_with_its_message() -> None:
    # members.py checks archives in worker processes, which hand errors back pickled.
    copy = pickle.loads(pickle.dumps(ArchiveError("member x.json.gz, line 2 is not JSON")))
    assert type(copy) is ArchiveError and str(copy) == "member x.json.gz, line 2 is not JSON"
