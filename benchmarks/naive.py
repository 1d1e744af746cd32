"""The original cron script amp-luigi replaces, kept as the benchmark's baseline.

    python benchmarks/naive.py URL DATE WORK BUCKET PREFIX [--gz]

Exactly as dumb as it was: hold the whole response in memory, unzip every member to disk, gunzip
each to a `.json` file (unless --gz), upload one file at a time with `upload_file`, check nothing.
It runs as a child process of the benchmark, from the same venv as amp-luigi, and imports nothing
of amp-luigi, so its start-up is its own. Credentials come from the environment (AMP_API_KEY,
AMP_SECRET_KEY, and boto3's own chain).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import sys
import zipfile
from pathlib import Path


def naive(url: str, date: str, work: Path, bucket: str, prefix: str, keep_gzip: bool) -> int:
    """Export one day as the original script did; returns the number of files uploaded."""
    import boto3
    import requests

    day = date.replace("-", "")
    response = requests.get(
        url,
        params={"start": f"{day}T00", "end": f"{day}T23"},
        auth=(os.environ["AMP_API_KEY"], os.environ["AMP_SECRET_KEY"]),
        timeout=900,
    )
    response.raise_for_status()
    work.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(work / "zip")
    del response
    files = []
    for member in sorted((work / "zip").rglob("*.json.gz")):
        if keep_gzip:
            files.append(member)
            continue
        target = work / "json" / member.name[: -len(".gz")]
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(member, "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
        files.append(target)
    s3 = boto3.client("s3")
    for path in files:
        s3.upload_file(str(path), bucket, f"{prefix}/{date}/{path.name}")
    shutil.rmtree(work)
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in ("url", "date", "work", "bucket", "prefix"):
        parser.add_argument(name)
    parser.add_argument("--gz", action="store_true", help="upload the .json.gz members as they are")
    args = parser.parse_args()
    count = naive(args.url, args.date, Path(args.work), args.bucket, args.prefix, args.gz)
    print(f"uploaded {count} files", file=sys.stderr)


if __name__ == "__main__":
    main()
