"""`costrecon`: the TUI (default) and the commands for scripts and people without the TUI."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from costrecon_daemon import __version__
from costrecon_daemon.config import Config, ConfigError, load_config
from costrecon_daemon.money import display
from costrecon_daemon.text import printable

from .client import ApprovalItem, ClientError, CostRow, DaemonClient
from .export import checkpoint_path, read_checkpoint, write_checkpoint, write_csv

EXIT_FAIL, EXIT_USAGE, EXIT_NOT_RUNNING = 1, 2, 3


def _client(cfg: Config, args: argparse.Namespace) -> DaemonClient:
    client = DaemonClient(Path(args.socket) if args.socket else cfg.socket_path)
    # A big approval answered "recording": said on stderr while the client follows it.
    client.on_recording = _say
    return client


def _say(message: str) -> None:
    print(f"costrecon: {message}", file=sys.stderr, flush=True)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------- costs


async def _all_rows(client: DaemonClient, *, changed: bool, query: str) -> list[CostRow]:
    view = await client.cost_view(query=query, changed_only=changed)
    rows: list[CostRow] = []
    for start in range(0, len(view.ids), 2000):
        rows += await client.cost_rows(view.ids[start : start + 2000])
    return rows


def _pct(row: CostRow) -> str:
    return "" if row.change_pct is None else f"{row.change_pct:+.2f}%"


def cmd_costs(cfg: Config, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with _client(cfg, args) as client:
            rows = await _all_rows(client, changed=args.changed, query=args.filter or "")
        if args.json:
            print(json.dumps([_row_json(r) for r in rows], indent=2))
            return 0
        header = (
            f"{'PSA ID':<24} {'name':<34} {'contr':>5} {'catalogue':>11} {'vendor':>11} "
            f"{'change':>11} {'%':>8}  action"
        )
        print(header)
        for r in rows:
            change = "" if r.change is None else ("+" if r.change > 0 else "") + display(r.change)
            print(
                f"{r.identifier[:24]:<24} {r.name[:34]:<34} {r.contracts:>5} "
                f"{display(r.catalog_cost):>11} "
                f"{display(r.vendor_cost):>11} {change:>11} {_pct(r):>8}  {_action(r)}"
            )
        print(f"{len(rows)} row(s)")
        return 0

    return _run(go())


def _action(r: CostRow) -> str:
    if r.state == "pushing":
        return f"pushing {r.state_detail.get('done', 0)}/{r.state_detail.get('total', 0)}"
    if r.state:
        return r.state
    return "approve" if r.change else ""


def _row_json(r: CostRow) -> dict[str, Any]:
    def s(v: Decimal | None) -> str | None:
        return None if v is None else str(v)

    return {
        "id": r.id,
        "psa_id": r.psa_id,
        "identifier": r.identifier,
        "name": r.name,
        "contracts": r.contracts,
        "lines": r.lines,
        "currency": r.currency,
        "catalog_cost": s(r.catalog_cost),
        "vendor_cost": s(r.vendor_cost),
        "change": s(r.change),
        "change_pct": s(r.change_pct),
        "state": r.state,
        "vendor_source": None if r.vendor_source is None else dataclasses.asdict(r.vendor_source),
    }


def _print_preview(p: dict[str, Any]) -> None:
    impact = p.get("monthly_impact")
    cur = p.get("currency") or ""
    print(f"  items:            {p['items']}")
    print(
        f"  contract lines:   {p['lines']} to change, {p['lines_skipped']} left alone by policy "
        f"'{p['policy']}', {p.get('lines_already', 0)} already at the new cost"
    )
    print(f"  negotiated lines: {p['negotiated_lines']}")
    print(
        f"  API calls:        {p['api_calls']}"
        + (
            f" (about {p['estimated_seconds']:.0f} s)"
            if p.get("estimated_seconds") is not None
            else ""
        )
    )
    if impact is not None:
        print(
            f"  monthly impact:   {'+' if Decimal(impact) > 0 else ''}{display(Decimal(impact))} "
            f"{cur}"
        )
    for per in p["per_item"]:
        print(
            f"    {per['identifier']:<24} {display(_d(per['before'])):>10} -> "
            f"{display(_d(per['after'])):>10}  {per['lines']} line(s)"
        )
    if p["items"] > len(p["per_item"]):
        # The daemon details the first items only; the totals above count every one.
        print(f"    … and {p['items'] - len(p['per_item']):,} more items")
    for w in p.get("warnings", []):
        print(f"  ! {w}")


def _d(v: Any) -> Decimal | None:
    return None if v is None else Decimal(v)


def _effective_arg(text: str | None) -> tuple[str | None, str | None]:
    """``--effective``: (the date to send, or None for "at once"; an error sentence)."""
    if not text:
        return None, None
    try:
        day = dt.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        return (
            None,
            f"--effective must be a real date such as 2027-01-01 (YYYY-MM-DD), not {text!r}.",
        )
    today = dt.date.today()
    if day < today:
        return None, (
            f"the effective date {text} is in the past; give today ({today.isoformat()}) "
            "or a later date."
        )
    return (day.isoformat() if day > today else None), None


def cmd_approve(cfg: Config, args: argparse.Namespace) -> int:
    effective, problem = _effective_arg(getattr(args, "effective", None))
    if problem:
        print(f"costrecon: {problem}", file=sys.stderr)
        return EXIT_USAGE

    async def go() -> int:
        async with _client(cfg, args) as client:
            rows = await _all_rows(client, changed=False, query="")
            by_key: dict[str, CostRow] = {}
            for r in rows:
                by_key[r.identifier] = r
                by_key[str(r.id)] = r
                by_key[r.psa_id] = r
            chosen: list[CostRow] = []
            for key in args.items:
                row = by_key.get(key)
                if row is None:
                    print(
                        f"costrecon: no row with PSA ID or id {key!r}; see `costrecon costs`.",
                        file=sys.stderr,
                    )
                    return EXIT_USAGE
                chosen.append(row)
            if args.all_changed:
                chosen += [
                    r
                    for r in rows
                    if r.change
                    and r not in chosen
                    and r.state not in ("pending", "pushing", "scheduled")
                ]
            if not chosen:
                print(
                    "costrecon: nothing to approve (name items, or use --all-changed).",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            bad = [r.identifier for r in chosen if r.vendor_cost is None]
            if bad:
                print(
                    f"costrecon: no vendor cost for {', '.join(bad)}; set one first.",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            items = [ApprovalItem(r.id, r.vendor_cost, r.catalog_cost) for r in chosen]  # type: ignore[arg-type]
            preview = await client.preview_change_set(items, args.policy, effective_date=effective)
            print("Approval preview:")
            _print_preview(preview)
            if effective:
                print(f"  effective date:   {effective} (scheduled)")
                print(f"    {preview.get('effective_date_handling') or ''}")
            if args.dry_run:
                return 0
            if not args.yes:
                if not sys.stdin.isatty():
                    print("costrecon: add --yes to approve without a prompt.", file=sys.stderr)
                    return EXIT_USAGE
                if input("Push these costs to the PSA? [y/N] ").strip().lower() not in ("y", "yes"):
                    print("Nothing approved.")
                    return 0
            cs = await client.approve(items, args.policy, effective_date=effective)
            if cs.get("status") == "scheduled":
                print(
                    f"Change set {cs['id']} approved by {cs['actor']}: {cs['total']} step(s) "
                    f"scheduled for {cs['effective_date']} (`costrecon cancel {cs['id']}` "
                    "cancels it before then)."
                )
                return 0
            print(f"Change set {cs['id']} approved by {cs['actor']}: {cs['total']} step(s) queued.")
            if args.wait:
                return await _wait_change_set(client, cs["id"])
            return 0

    return _run(go())


async def _wait_change_set(client: DaemonClient, cs_id: int) -> int:
    """Wait until the change set has finished; the daemon refreshes the cost table in the same
    transaction that finishes it, so `costrecon costs` run afterwards shows the outcome."""
    while True:
        cs = await client.change_set_summary(cs_id)
        if cs["status"] not in ("pending", "pushing"):
            break
        await asyncio.sleep(0.5)
    c = cs["counts"]
    summary = cs.get("summary") or {}
    print(
        f"Change set {cs_id}: {cs['status']} — {c['done']} done, {c['conflict']} conflict, "
        f"{c['failed']} failed, {c['denied']} denied, {c['cancelled']} not sent"
        + (f", {summary['skipped']} line(s) skipped by policy" if summary.get("skipped") else "")
        + "."
    )
    if cs.get("message"):
        print(f"  {cs['message']}")
    for diff in summary.get("differences") or ():
        print(f"  {diff}")
    # Per-line problems from the journal, a page at a time (a big set can have thousands).
    page = await client.change_set_steps(cs_id, status=("conflict", "failed", "denied"), limit=50)
    for step in page["steps"]:
        print(
            f"  {step['status']}: {step['identifier']} {step['target']} "
            f"{step['target_psa_id']}: {step['message']}"
        )
    if page["total"] > len(page["steps"]):
        print(
            f"  … and {page['total'] - len(page['steps'])} more "
            f"(GET /v1/change-sets/{cs_id}/steps?status=conflict,failed,denied)."
        )
    return 0 if cs["status"] == "done" else EXIT_FAIL


def cmd_cancel(cfg: Config, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with _client(cfg, args) as client:
            cs = await client.cancel_change_set(args.change_set)
            print(
                f"Change set {cs['id']} cancelled: nothing was sent, its {cs['total']} step(s) "
                "will never be pushed."
            )
            return 0

    return _run(go())


def cmd_undo(cfg: Config, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with _client(cfg, args) as client:
            preview = (await client.undo(args.change_set, dry_run=True))["preview"]
            print(f"Undo of change set {args.change_set}:")
            _print_preview(preview)
            if args.dry_run:
                return 0
            if not args.yes:
                if not sys.stdin.isatty():
                    print("costrecon: add --yes to undo without a prompt.", file=sys.stderr)
                    return EXIT_USAGE
                if input("Restore the previous costs in the PSA? [y/N] ").strip().lower() not in (
                    "y",
                    "yes",
                ):
                    print("Nothing undone.")
                    return 0
            cs = (await client.undo(args.change_set))["change_set"]
            print(
                f"Change set {cs['id']} (undo of {args.change_set}) queued: {cs['total']} step(s)."
            )
            if args.wait:
                return await _wait_change_set(client, cs["id"])
            return 0

    return _run(go())


def cmd_sync(cfg: Config, args: argparse.Namespace) -> int:
    async def go() -> int:
        async with _client(cfg, args) as client:
            before = (await client.status())["last_event"]
            await client.sync_now(full=args.full)
            print("Sync requested." if not args.wait else "Syncing…")
            if not args.wait:
                return 0
            since = before
            outcome: str | None = None
            clock = asyncio.get_running_loop().time
            deadline = float("inf")
            while True:
                if clock() > deadline:
                    print(f"{outcome} (the cost table has not been rebuilt yet)")
                    return 0
                for e in await client.events(since, timeout=20):
                    since = e.id
                    if outcome is None and e.kind == "sync":
                        if e.data.get("state") == "failed":
                            print(e.data.get("message", "failed"))
                            return EXIT_FAIL
                        if e.data.get("state") == "done":
                            outcome = e.data.get("message", "done")
                            deadline = clock() + 300
                    elif outcome is not None and e.kind == "table":
                        # The cost table was rebuilt from what the sync brought: now a
                        # `costrecon costs` run right after this sees it (--wait means that).
                        print(outcome)
                        return 0

    return _run(go())


def cmd_vendors(cfg: Config, args: argparse.Namespace) -> int:
    """``costrecon vendors pull [pax8|ingram] [--wait]``: one line per source."""

    async def go() -> int:
        async with _client(cfg, args) as client:
            answer = await client.vendor_pull(args.source, wait=args.wait)
            if not args.wait:
                print(f"Pull started: {', '.join(answer['started'])}.")
                return 0
            failed = False
            for st in answer["results"]:
                if st["state"] == "failed":
                    failed = True
                    print(f"{st['vendor']}: {st['error']}")
                    if st.get("fix"):
                        print(f"  Fix: {st['fix']}")
                else:
                    print(f"{st['vendor']}: {st['last_result']}")
                for nf in st.get("not_found") or []:
                    print(f"  not found: {nf['identifier']}: {nf['reason']}")
            return EXIT_FAIL if failed else 0

    return _run(go())


# ---------------------------------------------------------------- activity


def _format_entry(e: dict[str, Any]) -> str:
    # The client escapes control characters already; printable() again (it is idempotent) keeps
    # a forged line or an escape sequence off the terminal even for data from elsewhere.
    change = ""
    if e.get("before") is not None or e.get("after") is not None:
        change = f"  {printable(e.get('before') or '—')} → {printable(e.get('after') or '—')}"
    return (
        f"{printable(str(e.get('at') or ''))[:19].replace('T', ' ')}  "
        f"{printable(e.get('actor') or ''):<12} {printable(e.get('action') or ''):<22} "
        f"{printable(e.get('subject') or '')}{change}"
    )


def cmd_activity(cfg: Config, args: argparse.Namespace) -> int:
    if args.activity_command == "verify":
        checkpoint = None
        if args.checkpoint:
            try:
                checkpoint = read_checkpoint(Path(args.checkpoint))
            except ValueError as exc:
                print(f"costrecon: {printable(exc)}", file=sys.stderr)
                return EXIT_USAGE

        async def verify() -> int:
            async with _client(cfg, args) as client:
                r = await client.verify_activity(checkpoint)
            against = (
                f" and it still ends at or after entry {checkpoint['id']}" if checkpoint else ""
            )
            if r["ok"]:
                print(f"Activity log intact: {r['checked']} entries verified{against}.")
                return 0
            where = f" at entry {r['first_broken']}" if r.get("first_broken") is not None else ""
            print(
                f"Activity log broken{where}: {printable(r['reason'])} "
                f"({r['checked']} entries before it verified)."
            )
            return EXIT_FAIL

        return _run(verify())
    if args.activity_command == "export":

        async def export() -> int:
            async with _client(cfg, args) as client:
                # The checkpoint first, then exactly the entries up to it: the CSV and its
                # checkpoint describe the same log, however busy the daemon is meanwhile.
                checkpoint = await client.activity_checkpoint()
                entries: list[dict[str, Any]] = []
                after = 0
                while after < checkpoint["id"]:
                    batch = await client.activity(after_id=after, limit=5000)
                    if not batch:
                        break
                    entries += [e for e in batch if e["id"] <= checkpoint["id"]]
                    after = batch[-1]["id"]
            csv_path = Path(args.csv)
            with open(csv_path, "w", newline="", encoding="utf-8") as fh:
                n = write_csv(entries, fh)
            cp_path = checkpoint_path(csv_path)
            write_checkpoint(cp_path, checkpoint)
            print(f"Exported {n} entries to {printable(args.csv)}.")
            print(
                f"Checkpoint (entry {checkpoint['id']}) saved to {printable(cp_path)}; "
                f"`costrecon activity verify --checkpoint {printable(cp_path)}` detects entries "
                "removed since."
            )
            return 0

        return _run(export())

    async def tail() -> int:
        async with _client(cfg, args) as client:
            recent = await client.activity(limit=args.lines)
            for e in reversed(recent):
                print(_format_entry(e), flush=True)
            if args.no_follow:
                return 0
            last = (await client.status())["last_event"]
            while True:
                for event in await client.events(last, timeout=25):
                    last = event.id
                    if event.kind == "activity":
                        print(_format_entry(event.data), flush=True)

    try:
        return _run(tail())
    except KeyboardInterrupt:
        return 0


# ---------------------------------------------------------------- TUI


def _tui_logging(cfg: Config) -> str | None:
    """The TUI never writes to the terminal it draws on: its log goes to a file beside the daemon's.
    Returns the log's path (the error panel names it), or None when it cannot be written."""
    import logging

    path = cfg.log_file.with_name("costrecon-tui.log")
    shown: str | None = str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:
        handler = logging.NullHandler()
        shown = None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("costrecon_tui")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return shown


def cmd_tui(cfg: Config, args: argparse.Namespace) -> int:
    from .app import CostreconApp

    log_path = _tui_logging(cfg)

    start = None
    if args.start_daemon:
        start = _start_daemon_fn(cfg)
        start()
    app = CostreconApp(
        _client(cfg, args),
        keymap=cfg.keys,
        start_daemon=start or _start_daemon_fn(cfg),
        log_path=log_path,
        confirm_change_pct=cfg.tui.confirm_change_pct,
    )
    app.run()
    return tui_exit_status(app, log_path)


def tui_exit_status(app: Any, log_path: str | None) -> int:
    """Textual restores the terminal after a crash; the exit status and one sentence say so."""
    if not app.return_code:
        return 0
    where = f"; details are in {log_path}" if log_path else ""
    print(f"costrecon: the TUI stopped after an unexpected error{where}.", file=sys.stderr)
    return EXIT_FAIL


def _start_daemon_fn(cfg: Config) -> Any:
    def start() -> None:
        import subprocess

        cmd = [sys.executable, "-m", "costrecon_daemon.cli"]
        if cfg.path:
            cmd += ["--config", str(cfg.path)]
        subprocess.run(
            cmd + ["start"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    return start


def cmd_demo(cfg: Config | None, args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="costrecon",
        description="Keep PSA catalogue and contract-line costs true to vendor prices. With no "
        "command, opens the full-screen cost table (the daemon, costrecond, must be running).",
    )
    p.add_argument("--version", action="version", version=f"costrecon {__version__}")
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help="config file (default: $COSTRECON_CONFIG or ~/.config/costrecon/config.toml)",
    )
    p.add_argument("--socket", metavar="PATH", help="daemon socket (default: from the config)")
    p.add_argument(
        "--start-daemon", action="store_true", help="start costrecond first if it is not running"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("tui", help="open the full-screen cost table (the default)")
    demo = sub.add_parser(
        "demo", help="try everything against a simulated PSA with sample price files"
    )
    demo.add_argument(
        "--psa",
        choices=["connectwise", "autotask", "syncro"],
        default="connectwise",
        help="which simulated PSA (default connectwise)",
    )
    demo.add_argument(
        "--keep", metavar="DIR", help="keep the demo's state, config and files in DIR"
    )
    demo.add_argument(
        "--no-tui",
        action="store_true",
        help="set everything up, print how to reach it, wait for Ctrl-C",
    )
    costs = sub.add_parser("costs", help="print the cost table")
    costs.add_argument("--changed", action="store_true", help="only rows whose vendor cost differs")
    costs.add_argument(
        "--filter", metavar="TEXT", help="only rows whose PSA ID or name contains TEXT"
    )
    costs.add_argument("--json", action="store_true", help="JSON for scripts (amounts as strings)")
    ap = sub.add_parser(
        "approve", help="push vendor costs to the catalogue item and its contract lines"
    )
    ap.add_argument(
        "items", nargs="*", metavar="ITEM", help="PSA service ID (or row id) of each item"
    )
    ap.add_argument(
        "--all-changed", action="store_true", help="every row whose vendor cost differs"
    )
    ap.add_argument(
        "--policy",
        choices=["all", "matching"],
        default="all",
        help="all contract lines (default), or only those still at the old catalogue cost",
    )
    ap.add_argument("--dry-run", action="store_true", help="show the preview only")
    ap.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    ap.add_argument(
        "--wait", action="store_true", help="wait until the push finishes and report the outcome"
    )
    ap.add_argument(
        "--effective",
        metavar="YYYY-MM-DD",
        help="the day the new costs take effect (default today; a later day schedules the push)",
    )
    cancel = sub.add_parser("cancel", help="cancel a scheduled change set before its date")
    cancel.add_argument("change_set", type=int, metavar="CHANGESET")
    undo = sub.add_parser("undo", help="restore the costs a change set replaced")
    undo.add_argument("change_set", type=int, metavar="CHANGESET")
    undo.add_argument("--dry-run", action="store_true")
    undo.add_argument("--yes", "-y", action="store_true")
    undo.add_argument("--wait", action="store_true")
    sync = sub.add_parser("sync", help="sync the PSA mirror now")
    sync.add_argument("--full", action="store_true", help="a full pass instead of incremental")
    sync.add_argument("--wait", action="store_true", help="wait for the result")
    vend = sub.add_parser("vendors", help="distributor API sources (Pax8, Ingram Micro)")
    vsub = vend.add_subparsers(dest="vendors_command", metavar="ACTION", required=True)
    vpull = vsub.add_parser("pull", help="pull costs now (all configured sources by default)")
    vpull.add_argument("source", nargs="?", choices=["pax8", "ingram"], help="only this source")
    vpull.add_argument("--wait", action="store_true", help="wait for the result and print it")
    act = sub.add_parser("activity", help="the activity log: tail, export, verify")
    asub = act.add_subparsers(dest="activity_command", metavar="ACTION", required=True)
    tail = asub.add_parser("tail", help="print recent entries and follow new ones (like tail -f)")
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("--no-follow", action="store_true")
    exp = asub.add_parser(
        "export",
        help="write the whole log as CSV (formula-safe), with its checkpoint beside it",
    )
    exp.add_argument("--csv", required=True, metavar="FILE")
    ver = asub.add_parser("verify", help="check the hash chain; report the first broken entry")
    ver.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="also check against the checkpoint an export saved (FILE.checkpoint.json): "
        "detects entries removed from the end of the log",
    )
    return p


EXIT_PIPE = 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)


def main(argv: list[str] | None = None) -> int:
    """The entry point. A reader that closes the pipe early (``costrecon costs --json | head``)
    ends every command quietly: no BrokenPipeError traceback, on any command, at any write."""
    try:
        try:
            return _main(argv)
        finally:
            # flush inside the handler: a write still buffered at exit would fail after it
            sys.stdout.flush()
    except BrokenPipeError:
        # Python's documented dance: point stdout at devnull so the interpreter's own flush at
        # shutdown does not fail a second time and print "Exception ignored … BrokenPipeError".
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_PIPE


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return cmd_demo(None, args)
    try:
        cfg = load_config(Path(args.config) if args.config else None)
    except ConfigError as exc:
        print(f"costrecon: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    handler = {
        None: cmd_tui,
        "tui": cmd_tui,
        "costs": cmd_costs,
        "approve": cmd_approve,
        "undo": cmd_undo,
        "cancel": cmd_cancel,
        "sync": cmd_sync,
        "activity": cmd_activity,
        "vendors": cmd_vendors,
    }[args.command]
    try:
        return handler(cfg, args)
    except ClientError as exc:
        print(f"costrecon: {printable(exc)}", file=sys.stderr)
        from .client import DaemonNotRunning

        return EXIT_NOT_RUNNING if isinstance(exc, DaemonNotRunning) else EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
