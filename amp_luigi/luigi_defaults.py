"""The Luigi settings amp-luigi depends on, filled in wherever no configuration file sets them.

The repository's luigi.cfg sets each of these, with the reason beside it. A deployment that runs
`luigi --module amp_luigi ...` from a directory without that file would otherwise get Luigi's own
defaults: exit code 0 when a day fails (cron never notices), one export at a time, and range tools
that clip `--start` to 100 days back. The `luigi` command imports the module before it reads
`[retcode]`, so applying these on import is in time; any value a file sets wins. Each project a
`[project.<name>]` section names gets its own export cap, `[resources] amplitude_export_<name>`, with
the same default (amp_luigi.projects).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

EXPORT_RESOURCE = "amplitude_export"
EXPORT_CAP = "2"  # Amplitude allows about 5 concurrent requests per project across all its endpoints
PROJECT_SECTION = "project."
RANGE_DEFAULTS = {"days_back": "36500", "days_forward": "-1", "task_limit": "100000"}

DEFAULTS: dict[str, dict[str, str]] = {
    "retcode": {
        "already_running": "0",
        "missing_data": "0",  # another machine took a batch's window or days over (luigi.cfg says why)
        "not_run": "0",
        "task_failed": "30",
        "scheduling_error": "35",
        "unhandled_exception": "40",
    },
    "worker": {"keep_alive": "false"},
    "resources": {EXPORT_RESOURCE: EXPORT_CAP},
    "RangeDailyBase": RANGE_DEFAULTS,
    "RangeDaily": RANGE_DEFAULTS,
}


def export_resource(project: str) -> str:
    """The Luigi resource capping a project's concurrent exports ('' = the unnamed project's)."""
    return f"{EXPORT_RESOURCE}_{project}" if project else EXPORT_RESOURCE


def export_resources(project: str, days: Iterable[dt.date]) -> dict[str, int]:
    """What a task that downloads `days` takes from the scheduler: one of the project's export cap,
    and each day's own resource (capacity 1, as every resource luigid has no figure for), so no
    two downloads of one day run at once on any host; the later one then finds the day done."""
    return {export_resource(project): 1, **{day_resource("amp_export", project, day): 1 for day in days}}


def day_resource(kind: str, project: str, day: dt.date) -> str:
    """A Luigi resource of one day of a project (`amp_export_web_2024-03-01`; the unnamed project's
    without its name), of capacity 1 in luigid: one task of `kind` per day at a time, on any host."""
    return "_".join(filter(None, (kind, project, day.isoformat())))


def export_cap(config: Any, project: str) -> int:
    """How many exports of the project run at once, as this worker's configuration says."""
    return int(config.get("resources", export_resource(project), fallback=EXPORT_CAP))


def project_names(sections: Iterable[str]) -> list[str]:
    """The projects a configuration names, one `[project.<name>]` section each, sorted."""
    return sorted(
        section[len(PROJECT_SECTION) :] for section in sections if section.startswith(PROJECT_SECTION)
    )


def apply(config: Any) -> None:
    """Set every default the configuration leaves unset (a ConfigParser-like Luigi config)."""
    caps = {export_resource(project): EXPORT_CAP for project in project_names(config.sections())}
    for section, options in {**DEFAULTS, "resources": {**DEFAULTS["resources"], **caps}}.items():
        if not config.has_section(section):
            config.add_section(section)
        for option, value in options.items():
            if not config.has_option(section, option):
                config.set(section, option, value)


def as_cfg() -> str:
    """The defaults as luigi.cfg text, for a `luigid` started where no luigi.cfg exists."""
    return "\n".join(
        f"[{section}]\n" + "".join(f"{option} = {value}\n" for option, value in options.items())
        for section, options in DEFAULTS.items()
    )
