"""The project's benchmark: enqueue rates, drain throughput, idle latency, the cost
of a big history for the claim, an I/O-bound drain, and the same workload on
django-tasks-db 0.13 side by side.

Run it with ``scripts/bench`` (DATABASE_URL picks the database; default: a SQLite
file). It migrates that database, empties the queue tables, and prints one table
(Markdown). Absolute numbers depend on the machine; compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("enqueue", "drain", "latency", "io", "claim", "peer")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"sections ({','.join(SECTIONS)})"
    )
    parser.add_argument(
        "--tasks", type=int, default=10_000, help="tasks per drain and per enqueue_many (10000)"
    )
    parser.add_argument(
        "--enqueues", type=int, default=2_000, help="single enqueue calls per rate (2000)"
    )
    parser.add_argument("--processes", default="1,2,4", help="worker processes per drain (1,2,4)")
    parser.add_argument("--samples", type=int, default=50, help="latency samples (50)")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="finished rows of the claim section"
    )
    parser.add_argument(
        "--claim-tasks", type=int, default=5_000, help="ready tasks the claim section drains"
    )
    parser.add_argument(
        "--io-tasks", type=int, default=1_000, help="sleeping tasks of the io section"
    )
    parser.add_argument(
        "--peer-processes", default="1,2", help="db_worker processes per peer drain (1,2)"
    )
    parser.add_argument("--peer-database", help="the peer's database (default: ours + _peer)")
    parser.add_argument("--json", type=Path, help="also write the raw figures to this file")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()


def database_version() -> str:
    from django.db import connection

    if connection.vendor == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = str(cursor.fetchone()[0])
    return (
        version.split(" on ")[0]
        if connection.vendor == "postgresql"
        else f"MariaDB/MySQL {version}"
    )


def run_section(name: str, measure: Callable[[], Any]) -> Any:
    """The section's figures; a section that fails is run once more on fresh
    connections (a shared server may restart under it), then reported as failed,
    so that one failure does not lose the other sections."""
    from django.db import connections

    from benchmarks import report

    for attempt in (1, 2):
        try:
            return measure()
        except Exception as exc:
            traceback.print_exc()
            connections.close_all()
            if attempt == 2:
                failed = report.Figures()
                failed.add(f"{name}.failed", f"{name}: failed", None, "", f"{exc!r}"[:80])
                return failed
            print(f"section {name} failed; running it once more", file=sys.stderr)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the chosen sections; print the table; return what --json writes."""
    args = parse(argv)
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    from benchmarks import ours, report

    only = set(args.only.split(","))
    machine = report.machine()
    call_command("migrate", verbosity=0)
    figures = report.Figures()
    plans: dict[str, Any] = {}
    peer_raw: dict[str, Any] = {}  # the peer runner's output, merged over its sections
    # Each peer measure runs right after ours: on a shared machine the load changes.
    peer_sections = set()
    if "peer" in only:
        peer_sections = {name for name in PEER_SECTIONS if name in only} or set(PEER_SECTIONS)

    def claim() -> Any:
        from benchmarks.claim_history import claim_figures

        measured, explained = claim_figures(args.rows, args.claim_tasks)
        plans.update({name: vars(plan) for name, plan in explained.items()})
        return measured

    def peer_measure(name: str) -> Callable[[], Any]:
        def measure() -> Any:
            peer_raw.update(run_peer(args, name))
            return report.Figures()

        return measure

    processes = tuple(int(p) for p in args.processes.split(","))
    sections = {
        "enqueue": lambda: ours.enqueue_figures(args.enqueues, args.tasks),
        "drain": lambda: ours.drain_section(args.tasks, processes),
        "latency": lambda: ours.latency_section(args.samples),
        "io": lambda: ours.io_figures(args.io_tasks, 0.1),
        "claim": claim,
    }
    try:
        for name, measure in sections.items():
            if name in only:
                figures.extend(run_section(name, measure))
            if name in peer_sections:
                figures.extend(run_section(f"peer {name}", peer_measure(name)))
    finally:
        connection.close()  # a fresh one, should the server have restarted
        ours.reset()
    peer = None
    if peer_raw:
        peer = {key: peer_raw[key] for key in ("version", "django", "database")}
        peer.update(figures=peer_figures(peer_raw), raw=peer_raw)
    document = {
        "command": " ".join(
            ["scripts/bench", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]
        ),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine, "load_at_end": report.machine()["load"]},
        "database": {"vendor": connection.vendor, "version": database_version()},
        "figures": figures.values(),
        "peer": {**peer, "figures": peer["figures"].values()} if peer else None,
        "claim_plans": plans,
    }
    print_report(document, figures, peer)
    if args.json:
        report.write_json(args.json, document)
    return document


def print_report(document: dict[str, Any], figures: Any, peer: dict[str, Any] | None) -> None:
    from benchmarks import report

    machine = document["machine"]
    print(f"\n{document['command']}")
    cores, kernel, python = machine["cores"], machine["kernel"], machine["python"]
    load = f"load average {machine['load']} at the start, {machine['load_at_end']} at the end"
    print(f"{document['date']}; {cores} cores, Linux {kernel}, Python {python}; {load}")
    print(f"database: {document['database']['version']}")
    if peer is not None:
        version, django, name = peer["version"], peer["django"], peer["database"]
        print(f"peer: django-tasks-db {version} on Django {django}, database {name}")
    print()
    print(report.table(figures, peer["figures"] if peer else None))
    for name, plan in document["claim_plans"].items():
        print(f"\nclaim query, {name}:\n  {report.short_sql(plan['query'])}")
        print("\n".join(f"    {line}" for line in plan["lines"]))


def peer_figures(raw: dict[str, Any]) -> Any:
    """The peer runner's raw output as figures, computed as ours are."""
    from benchmarks import report

    figures = report.Figures()
    if "enqueue.autocommit" in raw:
        rate = raw["enqueue.autocommit"]
        figures.add("enqueue.autocommit", "enqueue, one commit each", rate, "tasks/s")
    for processes, run in raw.get("drain", {}).items():
        count = run["count"]
        steady = report.steady_rate(count, run["first"], run["last"])
        figures.extend(report.drain_figures(count, int(processes), steady, count / run["wall"]))
    if "latency" in raw:
        latency = raw["latency"]
        figures.extend(report.latency_figures("latency", latency["client"], latency["server"]))
    return figures


# -- the peer: django-tasks-db 0.13 in a virtualenv of its own -----------------------------

PEER_REQUIREMENT = "django-tasks-db==0.13.*"
PEER_VENV = Path.home() / ".cache" / "django_tasks_db-bench" / "peer-venv"
#: The sections measured on the peer too.
PEER_SECTIONS = ("enqueue", "drain", "latency")


def peer_env() -> dict[str, str]:
    """Our environment without what would put this project on the peer's path."""
    return {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")
    }


def peer_python(vendor: str) -> Path:
    """The peer venv's python; the venv is made (pyenv's Python 3.12 when there is
    one) and the peer and database drivers installed on first use."""
    venv = Path(os.environ.get("TASKS_PEER_VENV", PEER_VENV))
    python = venv / "bin" / "python"
    if not python.exists():
        found = sorted(
            Path.home().glob(".pyenv/versions/3.12.*/bin/python"),
            key=lambda path: [
                int(part) for part in path.parent.parent.name.split(".") if part.isdigit()
            ],
        )
        creator = str(found[-1]) if found else sys._base_executable  # type: ignore[attr-defined]
        print(f"creating {venv} with {creator}", file=sys.stderr)
        subprocess.run([creator, "-m", "venv", str(venv)], check=True)
    driver = "MySQLdb" if vendor == "mysql" else "psycopg"
    check = (
        f"import {driver}; from importlib.metadata import version; "
        "assert version('django-tasks-db').startswith('0.13.')"
    )
    if subprocess.run([python, "-c", check], capture_output=True, env=peer_env()).returncode:
        packages = [PEER_REQUIREMENT, "mysqlclient" if vendor == "mysql" else "psycopg[binary]"]
        print(f"installing {' '.join(packages)} into {venv} (log: {venv}/pip.log)", file=sys.stderr)
        with open(venv / "pip.log", "ab") as log:
            subprocess.run(
                [python, "-m", "pip", "install", "--disable-pip-version-check", *packages],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=peer_env(),
                check=True,
            )
    return python


def peer_database(name: str | None) -> dict[str, Any]:
    """Our database's settings, named for the peer (created when missing)."""
    from django.db import connection

    ours = connection.settings_dict
    database = {key: ours[key] for key in ("ENGINE", "HOST", "PORT", "USER", "PASSWORD")}
    if connection.vendor == "sqlite":
        path = Path(ours["NAME"])
        database.update(
            NAME=name or str(path.with_stem(f"{path.stem}_peer")), OPTIONS={"timeout": 30}
        )
        return database
    database.update(NAME=name or f"{ours['NAME']}_peer", OPTIONS=dict(ours["OPTIONS"]))
    quoted = connection.ops.quote_name(database["NAME"])
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database["NAME"]])
            if cursor.fetchone() is None:
                cursor.execute(f"CREATE DATABASE {quoted}")
        else:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4")
    return database


def run_peer(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The peer runner's raw output for one section (enqueue, drain or latency)."""
    from django.db import connection

    python = peer_python(connection.vendor)
    database = peer_database(args.peer_database)
    command = [
        str(python),
        str(ROOT / "benchmarks" / "peer.py"),
        "--database",
        json.dumps(database),
    ]
    for option, value in (
        ("--enqueues", args.enqueues),
        ("--tasks", args.tasks),
        ("--samples", args.samples),
        ("--processes", args.peer_processes),
        ("--only", section),
    ):
        command += [option, str(value)]
    runner = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, cwd=tempfile.gettempdir(), env=peer_env()
    )
    try:
        out, _ = runner.communicate(timeout=7200)
    finally:
        if runner.poll() is None:  # interrupted: its finally blocks end its workers
            runner.terminate()
            runner.wait(60)
    if runner.returncode != 0:
        raise RuntimeError(f"the peer runner exited with {runner.returncode}")
    return {**json.loads(out.strip().splitlines()[-1]), "database": database["NAME"]}


if __name__ == "__main__":
    # A stop unwinds through the finally blocks that end the worker processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
