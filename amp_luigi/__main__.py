"""`python -m amp_luigi` (or `amp-luigi`): the sandbox, the status view and its HTML report, and the deployment check; the pipeline itself runs
through the `luigi` command (`luigi --module amp_luigi ExportRange --start ...`)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path


def add_days_arguments(command: argparse.ArgumentParser, stop_default: str) -> None:
    """--start, --stop and --project, as every command over a range of days takes them."""
    command.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    command.add_argument(
        "--stop", type=dt.date.fromisoformat, help=f"day after the last one (default: {stop_default})"
    )
    command.add_argument(
        "--project",
        help="only this project ([project.<name>] in luigi.cfg); default: every project luigi.cfg names",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amp_luigi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sandbox = commands.add_parser(
        "sandbox",
        help="run the pipeline on the built-in emulator and a local S3 server, no account needed",
        description="Runs `luigi ... ExportRange` twice against the Amplitude emulator and a moto S3 "
        "server on 127.0.0.1: the first run exports the last few days, the second skips them all.",
    )
    sandbox.add_argument("--days", type=int, default=3, help="how many of the newest days (default 3)")
    sandbox.add_argument(
        "--with-scheduler",
        action="store_true",
        help="start luigid, run against it and keep it running (Ctrl-C stops) to look at the visualiser",
    )
    sandbox.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)  # for tests
    sandbox.add_argument("--events-per-hour", type=int, default=200, help=argparse.SUPPRESS)
    sandbox.add_argument("--latency", type=float, default=0.0, help="emulator seconds per request")
    sandbox.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="write the range's HTML report there too (the web project's day before the newest without events)",
    )
    sandbox.add_argument(
        "--rate-mib", type=float, help="emulator MiB per second of each answer's body (default: no limit)"
    )

    status = commands.add_parser(
        "status",
        help="per day: done / empty / missing / failed, from the S3 markers",
        description="Reads the bucket configured in luigi.cfg / the environment (as the luigi command "
        "does) and shows each day of [--start, --stop) as a calendar.",
    )
    add_days_arguments(status, "today")

    status.add_argument(
        "--check", action="store_true", help="exit 1 when a day in the range is missing or failed"
    )
    status.add_argument(
        "--fail-on-anomaly",
        action="store_true",
        help="exit 1 when a verified day of the range is a volume anomaly ([volume] in luigi.cfg)",
    )
    status.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="also write freshness and completeness metrics in Prometheus' text format to PATH "
        "(atomically, for node_exporter's textfile collector); '-' prints them instead of the calendar",
    )

    report = commands.add_parser(
        "report",
        help="one self-contained HTML page: a calendar heatmap per project, failures and volume anomalies",
        description="Reads what status reads (the S3 markers, never the data) and writes one HTML file "
        "(no script or font from the network): per project a heatmap of events per day, the days "
        "missing, failed, empty, not yet exportable and anomalous, freshness, and every day's figures.",
    )
    add_days_arguments(report, "today")
    report.add_argument(
        "--out", required=True, metavar="PATH", help="the HTML file to write, or s3://bucket/key.html"
    )

    plan = commands.add_parser(
        "plan",
        help="before a backfill: the days missing, every request to Amplitude it makes, peak staging, time",
        description="Prints, per project and without asking Amplitude anything, the days of [--start, --stop) "
        "that are missing, the windows the run would request (days and estimated size), the peak staging "
        "disk, and how long Amplitude's side takes at --latency seconds a request.",
    )
    add_days_arguments(plan, "every day")
    plan.add_argument(
        "--latency", type=float, default=60.0, help="seconds Amplitude takes before a first byte (default 60)"
    )

    check = commands.add_parser(
        "check",
        help="check every setting, then each S3 permission amp-luigi needs (and with --amplitude the keys)",
        description="For a new deployment, before its first cron run: validates every setting, then "
        "tries each S3 request amp-luigi makes on a probe object under <prefix>/_check/, and says which "
        "permission is missing. Exit 0 only when everything needed works.",
    )
    check.add_argument(
        "--amplitude",
        action="store_true",
        help="also export one early hour from Amplitude, proving the keys and the region (one request)",
    )
    check.add_argument(
        "--project",
        help="only this project ([project.<name>] in luigi.cfg); default: every project luigi.cfg names",
    )

    athena = commands.add_parser(
        "athena",
        help="print CREATE EXTERNAL TABLE statements for the Parquet and the raw NDJSON layers",
        description="Athena DDL with partition projection on dt, for the bucket and prefixes configured "
        "in luigi.cfg / the environment.",
    )
    athena.add_argument("--database", default="amplitude", help="database (default amplitude)")
    athena.add_argument(
        "--table",
        default="events",
        help="table name; the raw table gets _raw, a named project's tables _<name> (default events)",
    )
    athena.add_argument(
        "--project",
        help="only this project ([project.<name>] in luigi.cfg); default: every project luigi.cfg names",
    )

    table = commands.add_parser(
        "iceberg",
        help="the Iceberg table (IcebergDay): how to query it, and its upkeep",
        description="`query` prints how to read each project's Iceberg table from Athena and DuckDB; "
        "`maintain` expires old snapshots, compacts small files and removes files no snapshot references.",
    )
    table_commands = table.add_subparsers(dest="action", required=True)
    table_query = table_commands.add_parser(
        "query", help="how to query the table from Athena (Glue) and DuckDB"
    )
    maintain = table_commands.add_parser(
        "maintain", help="expire old snapshots, compact small files, remove files no snapshot references"
    )
    maintain.add_argument(
        "--expire-days",
        type=float,
        default=7.0,
        help="expire snapshots older than this; time travel reaches back this far (default 7)",
    )
    maintain.add_argument(
        "--orphan-hours",
        type=float,
        default=24.0,
        help="remove unreferenced files only when older than this, so a commit under way keeps its files "
        "(default 24)",
    )
    maintain.add_argument(
        "--small-file-mib", type=int, default=32, help="files below this size are compacted (default 32)"
    )
    maintain.add_argument(
        "--max-compaction-mib",
        type=int,
        default=256,
        help="at most this many MiB of small files rewritten per partition and run (default 256)",
    )
    maintain.add_argument("--dry-run", action="store_true", help="only say which files it would remove")
    for parser_of_action in (table_query, maintain):
        parser_of_action.add_argument(
            "--project",
            help="only this project ([project.<name>] in luigi.cfg); default: every project luigi.cfg names",
        )

    args = parser.parse_args(argv)
    if args.command == "athena":
        from amp_luigi.errors import AmpLuigiError
        from amp_luigi.query import athena as athena_module

        try:
            print(athena_module.statements(args.database, args.table, args.project), end="")
        except AmpLuigiError as error:
            print(f"amp-luigi athena: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "sandbox":
        from amp_luigi.commands import sandbox as sandbox_module

        if args.days < 1:
            parser.error("--days must be at least 1")
        return sandbox_module.run(
            args.days,
            with_scheduler=args.with_scheduler,
            wait=not args.no_wait,
            events_per_hour=args.events_per_hour,
            latency=args.latency,
            rate_mib=args.rate_mib,
            report=args.report,
        )
    from amp_luigi.commands import check as check_module
    from amp_luigi.commands import plan as plan_module
    from amp_luigi.commands import status as status_module
    from amp_luigi.errors import AmpLuigiError

    try:
        if args.command == "iceberg":
            from amp_luigi.commands import iceberg as iceberg_module

            if args.action == "query":
                return iceberg_module.query(args.project, sys.stdout)
            return iceberg_module.maintain(
                args.project,
                sys.stdout,
                expire_days=args.expire_days,
                orphan_hours=args.orphan_hours,
                small_file_mib=args.small_file_mib,
                max_compaction_mib=args.max_compaction_mib,
                dry_run=args.dry_run,
            )
        if args.command == "plan":
            return plan_module.main(
                args.start, args.stop, project=args.project, latency=args.latency, out=sys.stdout
            )
        if args.command == "check":
            return check_module.main(amplitude_too=args.amplitude, out=sys.stdout, project=args.project)
        if args.command == "report":
            from amp_luigi.commands import report as report_module

            return report_module.main(args.start, args.stop, project=args.project, out=args.out)
        return status_module.main(
            args.start,
            args.stop,
            project=args.project,
            check=args.check,
            fail_on_anomaly=args.fail_on_anomaly,
            metrics_file=args.metrics_file,
        )
    except AmpLuigiError as error:  # a missing setting, no bucket, access denied: say which
        print(f"amp-luigi {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
