"""Requests per second POST /intake/shopify sustains: wrk against `notifier run` on loopback.

    python -m benchmarks.intake [--seconds S] [--connections C] [--threads T] [--postgresql]

`notifier run` as a child process (SQLite in a temporary folder, or with `--postgresql` a scratch
database on the tests' server), its web face on 127.0.0.1 with `[intake] shopify_secret_file`,
polling the in-process simulator (no journeys: the watched number is never found, so the
daemon's own polling stays small) and writing mail to .eml files. wrk (`apt-get install wrk`)
posts the documented fulfillment (tests/data/intake/shopify_fulfillment.json), signed once; the
signature covers the body only, so each request carries a new `X-Shopify-Event-Id` and is a new
event: a full write transaction (event id, watch, subscription, call log) committed before the
200. Three runs: new events, replays of one event id (the de-duplication path) and forged
signatures (401). Each prints wrk's requests/s, latency percentiles and non-2xx answers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.running import started_daemon
from notifier.core.intake import sign
from notifier.testing.simulator import Simulator, SimulatorServer

SECRET = "a benchmark shopify secret 0123456789"
BODY = Path(__file__).parent.parent / "tests" / "data" / "intake" / "shopify_fulfillment.json"

# Every request a new event id (wrk's Lua has no HMAC, and the id is not signed).
NEW_EVENTS = """
counter = 0
request = function()
  counter = counter + 1
  wrk.headers["X-Shopify-Event-Id"] = string.format("%d-%d", math.random(1, 1000000000), counter)
  return wrk.format(nil)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def database(folder: Path, postgresql: bool) -> Iterator[str]:
    if not postgresql:
        yield f"sqlite:///{folder / 'notifier.db'}"
        return
    from tests.databases import fresh_postgres

    yield from fresh_postgres(None)


def wrk(args: argparse.Namespace, url: str, body: Path, headers: dict[str, str], script: str | None) -> str:
    command = [
        "wrk",
        "-t",
        str(args.threads),
        "-c",
        str(args.connections),
        "-d",
        f"{args.seconds}s",
        "--latency",
    ]
    command += ["-s", script] if script else []
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    # wrk takes the body from the script: a tiny one sets method and body for every run.
    return subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout


def summary(output: str) -> str:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    percentiles = dict(re.findall(r"\s+(50|90|99)%\s+(\S+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    return (
        f"{float(rate.group(1)) if rate else 0:.0f} req/s, p50 {percentiles.get('50', '?')}, "
        f"p90 {percentiles.get('90', '?')}, p99 {percentiles.get('99', '?')}, "
        f"{total.group(1) if total else '?'} requests, non-2xx {non2xx.group(1) if non2xx else 0}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--postgresql", action="store_true", help="a scratch PostgreSQL database instead")
    args = parser.parse_args(argv)
    body = BODY.read_bytes()
    with (
        tempfile.TemporaryDirectory(prefix="notifier-intake-") as directory,
        SimulatorServer(Simulator([])) as jp,
        database(Path(directory), args.postgresql) as url,
    ):
        folder = Path(directory)
        port = free_port()
        (folder / "http-secret").write_text("a benchmark http secret of some length\n", encoding="utf-8")
        (folder / "shopify-secret").write_text(SECRET + "\n", encoding="utf-8")
        config = folder / "notifier.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n[japanpost]\nbase_url = "{jp.base_url}"\nrequest_interval = 0\n'
            f'[notifications]\noutbox_dir = "{folder / "outbox"}"\n'
            f'[http]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
            f'secret_file = "{folder / "http-secret"}"\n'
            f'[intake]\nshopify_secret_file = "{folder / "shopify-secret"}"\n',
            encoding="utf-8",
        )
        log = folder / "daemon.log"
        with started_daemon(config, log):
            target = f"http://127.0.0.1:{port}/intake/shopify"
            lua_body = "wrk.method = 'POST'\nwrk.body = io.open('" + str(BODY) + "', 'rb'):read('*a')\n"
            new_events = folder / "new.lua"
            new_events.write_text(lua_body + NEW_EVENTS, encoding="utf-8")
            fixed = folder / "fixed.lua"
            fixed.write_text(lua_body, encoding="utf-8")
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": "fulfillments/create",
                "X-Shopify-Hmac-Sha256": sign(SECRET, body),
            }
            backend = "postgresql" if args.postgresql else "sqlite"
            print(
                f"[{backend}] {args.connections} connections, {args.threads} threads, {args.seconds} s each"
            )
            print("new events:    ", summary(wrk(args, target, BODY, headers, str(new_events))))
            print(
                "replayed event:",
                summary(wrk(args, target, BODY, headers | {"X-Shopify-Event-Id": "one"}, str(fixed))),
            )
            forged = headers | {"X-Shopify-Hmac-Sha256": sign("not the secret", body)}
            print("forged (401):  ", summary(wrk(args, target, BODY, forged, str(fixed))))
            print("loadavg", "/".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
