"""Add scripts/develop's Wyoming satellite to Home Assistant (run inside the latest lane).

    python scripts/_develop_wyoming.py CONFIG_DIR --port PORT --satellite-port PORT

With Home Assistant running (scripts/develop calls this once its readiness check
passed): unless the config directory already has a Wyoming entry on 127.0.0.1 (an
earlier start made it; scripts/_develop_config.py points it at this port), adds one
through the Wyoming config flow over the REST API, as Settings -> Add integration ->
Wyoming Protocol would. Then, while the satellite's Assistant is still the preferred
one and an "ItanniX" Assist pipeline exists (the ItanniX entry makes it), picks that
pipeline for it. Prints one line of what it did; exits 1 when a step fails. Every wait
is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
import sys
import time
from typing import Any

from _develop_check import login
import aiohttp

SATELLITE_HOST = "127.0.0.1"
SATELLITE_NAME = "Dev satellite"
PIPELINE = "ItanniX"
REQUEST_TIMEOUT = 30.0
# The satellite's entities appear shortly after its entry is set up.
ENTITY_WAIT = 30.0


class WyomingSetupError(Exception):
    """A step did not do what it should."""


def has_entry(config_dir: Path) -> bool:
    """Whether an earlier start added the satellite (Home Assistant saved it)."""
    path = config_dir / ".storage" / "core.config_entries"
    if not path.is_file():
        return False
    entries = json.loads(path.read_text(encoding="utf-8"))["data"]["entries"]
    return any(
        entry.get("domain") == "wyoming"
        and (entry.get("data") or {}).get("host") == SATELLITE_HOST
        for entry in entries
    )


async def add_entry(
    http: aiohttp.ClientSession, auth: dict[str, str], port: int
) -> str:
    """The Wyoming config flow's user step with the satellite's address."""
    async with http.post(
        "/api/config/config_entries/flow",
        headers=auth,
        json={"handler": "wyoming", "show_advanced_options": False},
    ) as resp:
        form: dict[str, Any] = await resp.json()
    if form.get("type") != "form":
        raise WyomingSetupError(f"the Wyoming config flow did not start: {form}")
    async with http.post(
        f"/api/config/config_entries/flow/{form['flow_id']}",
        headers=auth,
        json={"host": SATELLITE_HOST, "port": port},
    ) as resp:
        result: dict[str, Any] = await resp.json()
    if result.get("type") != "create_entry":
        raise WyomingSetupError(f"the Wyoming config flow did not add it: {result}")
    return str(result.get("title"))


async def pipeline_select(
    http: aiohttp.ClientSession, auth: dict[str, str]
) -> dict[str, Any] | None:
    """The satellite's Assistant select, once its entities are there."""
    deadline = time.monotonic() + ENTITY_WAIT
    prefix = "select." + SATELLITE_NAME.lower().replace(" ", "_")
    while True:
        async with http.get("/api/states", headers=auth) as resp:
            states: list[dict[str, Any]] = await resp.json()
        for state in states:
            options = state.get("attributes", {}).get("options") or []
            if state["entity_id"].startswith(prefix) and "preferred" in options:
                return state
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(1)


async def run(config_dir: Path, port: int, satellite_port: int) -> str:
    """Add the entry if needed and pick the pipeline; what was done, in one line."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    done: list[str] = []
    async with aiohttp.ClientSession(
        f"http://127.0.0.1:{port}", timeout=timeout
    ) as http:
        auth = {"Authorization": f"Bearer {await login(http)}"}
        if has_entry(config_dir):
            done.append(f"Wyoming satellite on port {satellite_port}")
        else:
            title = await add_entry(http, auth, satellite_port)
            done.append(f"added Wyoming satellite {title!r} on port {satellite_port}")
        select = await pipeline_select(http, auth)
        if select is None:
            raise WyomingSetupError("the satellite's Assistant select did not appear")
        options = select["attributes"]["options"]
        if select["state"] == "preferred" and PIPELINE in options:
            async with http.post(
                "/api/services/select/select_option",
                headers=auth,
                json={"entity_id": select["entity_id"], "option": PIPELINE},
            ) as resp:
                if resp.status != 200:
                    raise WyomingSetupError(f"could not pick {PIPELINE}: {resp.status}")
            done.append(f"its assistant is now {PIPELINE}")
        else:
            done.append(f"its assistant: {select['state']}")
    return "; ".join(done)


def main() -> None:
    """Run and report in one line."""
    parser = argparse.ArgumentParser(prog="scripts/_develop_wyoming.py")
    parser.add_argument("config_dir", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--satellite-port", type=int, required=True)
    args = parser.parse_args()
    try:
        line = asyncio.run(run(args.config_dir, args.port, args.satellite_port))
    except (WyomingSetupError, aiohttp.ClientError, TimeoutError) as err:
        print(f"error: the Wyoming satellite: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"==> {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
