"""Run the emulator on its own: ``python -m tests.emulator --port 8765``."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
import secrets
import signal

from tests.network import NetworkProfile

from .server import Emulator
from .turns_file import TurnsFileWatcher


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.emulator",
        description="An ItanniX-compatible realtime service on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--workspace-key", help="key clients must send (default: a random one)"
    )
    keys.add_argument(
        "--no-workspace-key",
        action="store_true",
        help="older docs' mode: X-Workspace-Key is not required",
    )
    parser.add_argument(
        "--state-file", type=Path, help="keep enrollments (TOFU hashes) in this file"
    )
    parser.add_argument(
        "--ga-names",
        action="store_true",
        help="use the GA event names (response.output_text.delta, ...)",
    )
    parser.add_argument(
        "--turns",
        type=Path,
        metavar="FILE",
        help="JSON list of scripted turns for the default assistant, reloaded when "
        "the file changes",
    )
    parser.add_argument(
        "--network",
        type=_network,
        metavar="PROFILE",
        help="the network between clients and the service, e.g. "
        "rtt=80ms,jitter=10ms,loss=1%%: media pays all three, HTTP answers the delay",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def _network(text: str) -> NetworkProfile:
    try:
        return NetworkProfile.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


async def _serve(args: argparse.Namespace) -> None:
    key = (
        None
        if args.no_workspace_key
        else (args.workspace_key or f"wk-{secrets.token_hex(12)}")
    )
    emulator = Emulator(
        workspace_key=key,
        state_file=args.state_file,
        host=args.host,
        port=args.port,
        ga_names=args.ga_names,
    )
    emulator.network = args.network
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await emulator.start()
    watcher: TurnsFileWatcher | None = None
    if args.turns is not None:
        watcher = TurnsFileWatcher(args.turns, emulator.assistant())
        watcher.start()
    try:
        print(f"ItanniX emulator listening on {emulator.url}", flush=True)  # noqa: T201
        print(  # noqa: T201
            f"Workspace key: {key}" if key else "Workspace key: not required",
            flush=True,
        )
        if args.network is not None:
            print(f"Network: {args.network}", flush=True)  # noqa: T201
        await stop.wait()
    finally:
        if watcher is not None:
            await watcher.stop()
        await emulator.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
