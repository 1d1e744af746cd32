"""The archive reader: every member checked, counted and hashed; hostile archives refused by name."""

from __future__ import annotations

import gzip
import io
import json
import stat
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amp_luigi import members as members_module
from amp_luigi.emulator.faults import write_gzip_bomb
from amp_luigi.errors import ArchiveError
from amp_luigi.members import Limits, extract_archives
from tests.conftest import crc32_of
from tests.test_gzip_stream import events, gzip_streams

PROJECT = "187520"
LIMITS = Limits()


def member(hour: int, part: int = 0) -> str:
    return f"{PROJECT}/{PROJECT}_2024-03-01_{hour}#{part}.json.gz"


def ndjson(count: int, start: int = 0) -> bytes:
    return b"".join(
        json.dumps({"$insert_id": f"id-{i}", "event_type": "Été ✓", "n": i}, ensure_ascii=False).encode()
        + b"\n"
        for i in range(start, start + count)
    )


def write_zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "stage" / "members"


def everything_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.mark.parametrize("fork", [True, False], ids=["worker processes", "in turn (not Linux)"])
def test_members_are_extracted_with_counts_sizes_and_checksums(
    tmp_path: Path, dest: Path, fork: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members_module, "FORK", fork)
    monkeypatch.setattr(members_module, "IN_PROCESS_BYTES", 0)  # this small archive in the workers too
    bodies = {member(0): ndjson(3), member(0, 1): ndjson(2, 3), member(13): ndjson(5, 5)}
    archive = write_zip(tmp_path / "a.zip", [(name, gzip.compress(data)) for name, data in bodies.items()])

    records = extract_archives([archive], dest, LIMITS)

    with zipfile.ZipFile(archive) as zf:
        stored = {info.filename.rsplit("/", 1)[-1]: zf.read(info) for info in zf.infolist()}
    assert [record.name for record in records] == [
        f"{PROJECT}_2024-03-01_0#0.json.gz",
        f"{PROJECT}_2024-03-01_0#1.json.gz",
        f"{PROJECT}_2024-03-01_13#0.json.gz",
    ]
    for record in records:
        raw = bodies[f"{PROJECT}/{record.name}"]
        assert record.events == raw.count(b"\n")
        assert record.json_bytes == len(raw)
        assert record.json_crc32 == crc32_of(raw)
        assert record.gz_bytes == len(stored[record.name])
        assert record.gz_crc32 == crc32_of(stored[record.name])
        assert (dest / record.name).read_bytes() == stored[record.name], "members are copied byte for byte"
    assert [record.hour for record in records] == [0, 0, 13]
    assert everything_under(dest) == {record.name for record in records}, "no temporary files are left"


def test_members_at_any_depth_from_several_archives_are_found(tmp_path: Path, dest: Path) -> None:
    first = write_zip(tmp_path / "a.zip", [(member(1), gzip.compress(ndjson(1)))])
    second = write_zip(
        tmp_path / "b.zip",
        [
            (f"deep/er/{PROJECT}_2024-03-01_2#0.json.gz", gzip.compress(ndjson(2))),
            (f"{PROJECT}_2024-03-01_3#0.json.gz", gzip.compress(ndjson(3))),
            ("README.txt", b"not a member"),
        ],
    )
    records = extract_archives([first, second], dest, LIMITS)
    assert [(record.hour, record.events) for record in records] == [(1, 1), (2, 2), (3, 3)]
    assert "README.txt" not in everything_under(dest)


def test_a_last_line_without_newline_counts_as_an_event(tmp_path: Path, dest: Path) -> None:
    raw = ndjson(2) + b'{"$insert_id": "last"}'
    archive = write_zip(tmp_path / "a.zip", [(member(0), gzip.compress(raw))])
    [record] = extract_archives([archive], dest, LIMITS)
    assert record.events == 3
    assert record.json_crc32 == crc32_of(raw)


def test_a_line_split_across_inflated_chunks_is_one_event(tmp_path: Path, dest: Path) -> None:
    # Several MiB of events, so lines straddle the reader's 1 MiB pieces.
    raw = b"".join(json.dumps({"n": i, "pad": "x" * 700}).encode() + b"\n" for i in range(8000))
    archive = write_zip(tmp_path / "a.zip", [(member(0), gzip.compress(raw, compresslevel=1))])
    [record] = extract_archives([archive], dest, LIMITS)
    assert record.events == 8000 and record.json_bytes == len(raw)


def test_the_same_member_twice_is_refused(tmp_path: Path, dest: Path) -> None:
    first = write_zip(tmp_path / "a.zip", [(member(1), gzip.compress(ndjson(1)))])
    second = write_zip(tmp_path / "b.zip", [(f"other/{member(1)}", gzip.compress(ndjson(1)))])
    with pytest.raises(ArchiveError, match="appears twice"):
        extract_archives([first, second], dest, LIMITS)


# Each broken or hostile archive is refused with the member named


def test_a_file_that_is_not_a_zip_is_refused_by_name(tmp_path: Path, dest: Path) -> None:
    bad = tmp_path / "20240301T00-20240301T23.zip"
    bad.write_bytes(b"<html>502 Bad Gateway</html>")
    with pytest.raises(ArchiveError, match=r"20240301T00-20240301T23\.zip is not a readable zip"):
        extract_archives([bad], dest, LIMITS)


def bad_gzip_crc(data: bytes) -> bytes:
    (crc,) = struct.unpack("<I", data[-8:-4])
    return data[:-8] + struct.pack("<I", crc ^ 0xFFFFFFFF) + data[-4:]


def flip_stored_byte(path: Path, name: str) -> None:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def gz_lines(*lines: bytes) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (bad_gzip_crc(gzip.compress(ndjson(4))), "corrupt"),
        (gzip.compress(ndjson(40))[:-30], "ends early"),
        (gzip.compress(ndjson(2)) + b"trailing garbage", "corrupt"),
        (b"plain text, not gzip", "corrupt"),
        (gz_lines(b'{"ok": 1}', b"this is not JSON {", b'{"ok": 2}'), "line 2 is not JSON"),
        (gz_lines(b'{"ok": 1}', b"[1, 2, 3]"), "line 2 is JSON but not an event object"),
        (gz_lines(b'"just a string"'), "line 1 is JSON but not an event object"),
        (gz_lines(b'{"ok": 1}', b"", b'{"ok": 2}'), "line 2 is not JSON"),
        (gzip.compress(b'{"ok": 1}\n{"bad": "\xff\xfe"}\n'), "line 2 is not JSON"),
    ],
)
def test_a_member_failing_its_checks_is_refused_by_name(
    tmp_path: Path, dest: Path, data: bytes, words: str
) -> None:
    archive = write_zip(tmp_path / "a.zip", [(member(0), gzip.compress(ndjson(2))), (member(7), data)])
    with pytest.raises(ArchiveError, match=f"member {PROJECT}_2024-03-01_7#0.json.gz.*{words}"):
        extract_archives([archive], dest, LIMITS)
    assert not (dest / f"{PROJECT}_2024-03-01_7#0.json.gz").exists()
    assert not [path for path in dest.iterdir() if path.name.endswith(".partial")]


def test_lines_the_fast_parser_refuses_but_json_accepts_are_events(tmp_path: Path, dest: Path) -> None:
    # simdjson refuses integers over 64 bits, NaN, overflowing floats and lone surrogates; the
    # standard library decides, so the same lines pass with or without the fast parser.
    lines = [b'{"big": 123456789012345678901234567890}', b'{"n": NaN}', b'{"f": 1e999}', b'{"s": "\\ud800"}']
    archive = write_zip(tmp_path / "a.zip", [(member(3), gz_lines(*lines))])
    [record] = extract_archives([archive], dest, LIMITS)
    assert record.events == len(lines)


def test_a_zip_crc_mismatch_is_refused_by_name(tmp_path: Path, dest: Path) -> None:
    # Stored (not deflated) and with a body that still gunzips, so only the zip's CRC-32 can tell.
    body = gzip.compress(ndjson(50), compresslevel=0)
    archive = write_zip(tmp_path / "a.zip", [(member(5), body)])
    flip_stored_byte(archive, member(5))
    with pytest.raises(ArchiveError, match=f"member {PROJECT}/{PROJECT}_2024-03-01_5#0.json.gz"):
        extract_archives([archive], dest, LIMITS)
    assert list(dest.iterdir()) == []


def test_an_overlong_line_is_refused_by_name(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(
        tmp_path / "a.zip", [(member(2), gz_lines(b'{"ok": 1}', b'{"pad": "' + b"x" * 5000 + b'"}'))]
    )
    with pytest.raises(ArchiveError, match=r"_2024-03-01_2#0.json.gz, line 2 longer than 1000 bytes"):
        extract_archives([archive], dest, Limits(max_line_bytes=1000))


def test_an_endless_line_is_refused_before_it_ends(tmp_path: Path, dest: Path) -> None:
    # No newline at all for 8 MiB: refused while streaming, not after the member is read.
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf, zf.open(member(2), "w") as out:
        write_gzip_bomb(out, 8 * 1024 * 1024, b"x")
    with pytest.raises(ArchiveError, match="line 1 longer than 1048576 bytes"):
        extract_archives([archive], dest, Limits(max_inflate_ratio=10**6, max_line_bytes=1024 * 1024))


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("evil", "words"),
    [
        ("../../evil.json.gz", "unsafe path"),
        ("ok/../../../evil.json.gz", "unsafe path"),
        ("..\\..\\evil.json.gz", "unsafe path"),
        ("/tmp/evil.json.gz", "unsafe path"),
        ("C:/evil.json.gz", "unsafe path"),
        ("../notes.txt", "unsafe path"),
        (symlink(f"{PROJECT}_2024-03-01_9#0.json.gz"), "symbolic link"),
    ],
)
def test_unsafe_member_names_and_symlinks_reject_the_archive(
    tmp_path: Path, dest: Path, evil: str | zipfile.ZipInfo, words: str
) -> None:
    name = evil.filename if isinstance(evil, zipfile.ZipInfo) else evil
    data = b"/etc/passwd" if isinstance(evil, zipfile.ZipInfo) else gzip.compress(ndjson(1))
    archive = write_zip(tmp_path / "a.zip", [(member(0), gzip.compress(ndjson(1))), (evil, data)])
    before = everything_under(tmp_path)

    with pytest.raises(ArchiveError, match=words) as raised:
        extract_archives([archive], dest, LIMITS)

    assert repr(name) in str(raised.value) or name in str(raised.value)
    written = everything_under(tmp_path) - before
    assert all(path.startswith("stage") for path in written), written
    assert not Path("/tmp/evil.json.gz").exists()
    assert not any(dest.glob("*evil*"))
    assert not any(path.is_symlink() for path in tmp_path.rglob("*"))


def test_a_gzip_bomb_is_refused_with_bounded_memory(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w") as zf, zf.open(member(4), "w") as out:
        write_gzip_bomb(out, 200 * 1024 * 1024, b"\0")  # 200 MiB of zeros from about 200 kB
    assert archive.stat().st_size < 512 * 1024

    tracemalloc.start()
    try:
        with pytest.raises(
            ArchiveError, match=f"member {PROJECT}_2024-03-01_4#0.json.gz inflates more than 200"
        ):
            extract_archives([archive], dest, Limits(max_inflate_ratio=200))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Refused after at most 200 times what was read (~40 MiB here), never the whole 200 MiB.
    assert peak < 100 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    assert sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file()) < 1024 * 1024
    assert not (dest / f"{PROJECT}_2024-03-01_4#0.json.gz").exists()


def test_progress_reports_bytes_and_members(tmp_path: Path, dest: Path) -> None:
    archive = write_zip(tmp_path / "a.zip", [(member(h), gzip.compress(ndjson(3))) for h in range(3)])
    seen: list[tuple[int, int, int]] = []
    extract_archives([archive], dest, LIMITS, lambda *args: seen.append(args))
    assert [members for _, _, members in seen] == [1, 2, 3]
    assert all(done <= total == archive.stat().st_size for done, total, _ in seen)


def test_an_archive_of_other_files_only_is_refused_not_taken_as_an_empty_day(
    tmp_path: Path, dest: Path
) -> None:
    # A changed export format must not mark the day complete with no events.
    archive = write_zip(tmp_path / "a.zip", [(f"{PROJECT}/{PROJECT}_2024-03-01_1#0.json.zst", b"\x28\xb5")])
    with pytest.raises(ArchiveError, match=r"no \*\.json\.gz member.*json\.zst"):
        extract_archives([archive], dest, LIMITS)


def day_archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for hour in (0, 5, 23):
            lines = b"".join(json.dumps({"hour": hour, "n": n}).encode() + b"\n" for n in range(hour + 1))
            archive.writestr(f"{PROJECT}/{PROJECT}_2024-03-01_{hour}#0.json.gz", gzip.compress(lines))
    return path


def counting_workers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many items each map_in_workers call was given (the real workers still do the work)."""
    calls: list[int] = []
    real = members_module.map_in_workers

    def counted(job: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
        listed = list(items)
        calls.append(len(listed))
        return real(job, listed, workers)

    monkeypatch.setattr(members_module, "map_in_workers", counted)
    return calls


@pytest.mark.skipif(not members_module.FORK, reason="forked workers are Linux's")
def test_an_archive_under_the_threshold_starts_no_worker_and_one_over_it_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = day_archive(tmp_path / "day.zip")
    calls = counting_workers(monkeypatch)

    here = extract_archives([archive], tmp_path / "here", Limits())
    assert calls == []

    monkeypatch.setattr(members_module, "IN_PROCESS_BYTES", 0)
    in_workers = extract_archives([archive], tmp_path / "workers", Limits())
    assert calls == [3]

    assert here == in_workers
    assert [record.events for record in here] == [1, 6, 24]
    for record in here:
        assert (tmp_path / "here" / record.name).read_bytes() == (
            tmp_path / "workers" / record.name
        ).read_bytes()


# Properties: any archive, honest or hostile (hypothesis).


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    members=st.lists(
        st.tuples(st.lists(events, max_size=20), st.lists(st.integers(0, 3000), max_size=3)),
        min_size=1,
        max_size=4,
    )
)
def test_extracted_counts_and_hashes_match_a_direct_computation(tmp_path: Path, members: list) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis may run one example twice
    archive = work / "export.zip"
    expected = {}
    with zipfile.ZipFile(archive, "w") as zf:
        for index, (lines, cuts) in enumerate(members):
            raw = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
            data = gzip_streams(raw, cuts)
            name = f"187520_2024-03-01_{index}#0.json.gz"
            zf.writestr(f"187520/{name}", data)
            expected[name] = (
                len(lines),
                len(data),
                crc32_of(data),
                len(raw),
                crc32_of(raw),
            )

    records = extract_archives([archive], work / "members", Limits())
    got = {r.name: (r.events, r.gz_bytes, r.gz_crc32, r.json_bytes, r.json_crc32) for r in records}
    assert got == expected
    assert [r.hour for r in records] == list(range(len(members)))
    for name, (_, _, gz_crc32, _, _) in expected.items():
        assert crc32_of((work / "members" / name).read_bytes()) == gz_crc32


def _zip_with(names: list[str], payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate names are part of the hostile input
        for name in names:
            zf.writestr(name, payload)
    return buffer.getvalue()


hostile_archives = st.one_of(
    st.binary(max_size=2000),
    # real zips with arbitrary member names and bodies (valid gzip of arbitrary bytes or garbage)
    st.builds(
        _zip_with,
        st.lists(
            # zipfile itself cuts a name at NUL and then fails on the empty rest while writing.
            st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=30).map(
                lambda s: s + ".json.gz"
            ),
            min_size=1,
            max_size=4,
        ),
        st.binary(max_size=300) | st.binary(max_size=300).map(lambda b: gzip.compress(b, mtime=0)),
    ),
    # valid zips with bytes flipped
    st.tuples(
        st.builds(
            _zip_with, st.just(["a/187520_2024-03-01_1#0.json.gz"]), st.just(gzip.compress(b'{"a":1}\n' * 20))
        ),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=5),
    ).map(lambda t: _flip(*t)),
)


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for offset, mask in flips:
        out[offset % len(out)] ^= mask
    return bytes(out)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hostile_archives)
def test_arbitrary_archive_bytes_only_raise_archive_error_and_stay_in_the_destination(
    tmp_path: Path, data: bytes
) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "in.zip").write_bytes(data)
    dest = work / "deep" / "members"
    try:
        records = extract_archives([work / "in.zip"], dest, Limits(max_inflate_ratio=50, max_line_bytes=4096))
    except ArchiveError:
        records = None
    written = {path for path in work.rglob("*") if path.is_file()} - {work / "in.zip"}
    assert all(path.parent == dest for path in written), written
    if records is not None:
        assert {path.name for path in written} == {record.name for record in records}
    assert not any(path.name.endswith(".partial") for path in written)
