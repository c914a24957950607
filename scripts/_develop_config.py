"""Prepare the development config directory (run inside the latest lane).

    python scripts/_develop_config.py CONFIG_DIR --port PORT --emulator-port PORT \
        --instance TOKEN --user NAME --password PW [--example-turns] \
        [--satellite-port PORT]

Copies the template (scripts/develop_config/) over it, links the integration from the
checkout, keeps a workspace key for the emulator, keeps the web server on loopback at
PORT (and its internal URL, where media players fetch from, at http://127.0.0.1:PORT),
points ItanniX entries made against an earlier emulator port at this one, enables the
Wyoming entry of the development satellite at --satellite-port (disables it when the
satellite is not started, so Home Assistant does not retry a missing one), and on
the first run creates the login and marks onboarding done, so the developer lands on
the dashboard. It adds to the copied configuration.yaml (not to the template) the
sensor that holds TOKEN, new on every start, which scripts/develop's readiness check
reads back, and automations.yaml with an example automation (written once, then
the UI's to edit); with --example-turns, an example turns file for the emulator
(turns.json, written once). Prints the key.
"""

from __future__ import annotations

import argparse
from contextlib import redirect_stdout
import importlib.util
import json
import os
from pathlib import Path
import re
import secrets
import shutil
import socket
import sys

from homeassistant.components.http import config as http_config
from homeassistant.components.http.const import CONF_SERVER_HOST, CONF_SERVER_PORT
from homeassistant.components.onboarding import STORAGE_KEY, STORAGE_VERSION
from homeassistant.components.onboarding.const import STEPS
from homeassistant.scripts import auth
from homeassistant.util import dt as dt_util

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "scripts" / "develop_config"
KEY_FILE = ".emulator-workspace-key"
TURNS_FILE = "turns.json"
AUTOMATIONS_FILE = "automations.yaml"
# The sensor holding this start's instance token: its name makes its entity ID,
# sensor.itannix_develop_instance (what scripts/_develop_ready.py reads).
INSTANCE_SENSOR_NAME = "ItanniX develop instance"
ENTRIES_STORE = "core.config_entries"
# Server URLs of entries made against the emulator (any port): the ones to follow it.
_EMULATOR_URL = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\]):\d+$")
# The template's internal URL; the copy gets this start's port.
_INTERNAL_URL = re.compile(
    r"^([ \t]+internal_url:[ \t]*)http://127\.0\.0\.1:\d+[ \t]*$", re.M
)
# The Wyoming entry of the development satellite (scripts/develop --satellite).
SATELLITE_HOST = "127.0.0.1"

# Home Assistant's Assist API names its intent tools "intent__HassTurnOn" since 2026.11
# (each integration's tools carry its domain), "HassTurnOn" before.
TURN_ON_TOOL = (
    "intent__HassTurnOn"
    if importlib.util.find_spec("homeassistant.components.intent.llm")
    else "HassTurnOn"
)

# The example turns: typed, so spoken turns still get the emulator's default answer.
# The first calls a dashboard function the example automation answers, the second a
# built-in device function (a typed conversation has no device: it says so).
EXAMPLE_TURNS = [
    {
        "user_text": "what is the temperature outside",
        "reply": "Let me ask Home Assistant.",
        "function_calls": [{"name": "get_outdoor_temperature", "arguments": {}}],
        "reply_after_tools": "The automation answered: {get_outdoor_temperature}",
    },
    {
        "user_text": "set the volume to 30",
        "reply": "Setting the volume.",
        "function_calls": [
            {"name": "set_device_volume", "arguments": {"volume_level": 30}}
        ],
        "reply_after_tools": "The device function answered: {set_device_volume}",
    },
    {
        # A tool of Home Assistant's Assist API (offered when the entry controls Home
        # Assistant, the default): the light really turns on.
        "user_text": "turn on the kitchen light",
        "reply": "Turning on the kitchen light.",
        "function_calls": [
            {"name": TURN_ON_TOOL, "arguments": {"name": "Kitchen light"}}
        ],
        "reply_after_tools": "The kitchen light is on.",
    },
]

EXAMPLE_AUTOMATIONS = """\
# Automations of the development Home Assistant: the UI edits this file.
# scripts/develop wrote it once, with an example: it answers the assistant's
# get_outdoor_temperature call (a turn of the example turns file, turns.json).
- id: itannix_develop_outdoor_temperature
  alias: "ItanniX example: answer get_outdoor_temperature"
  description: "Tells the assistant the outdoor temperature when it asks."
  triggers:
    - trigger: event
      event_type: itannix_function_call
      event_data:
        name: get_outdoor_temperature
  actions:
    - action: itannix.function_call_response
      data:
        call_id: "{{ trigger.event.data.call_id }}"
        response:
          temperature: "{{ states('sensor.outdoor_temperature') }}"
          unit: "{{ state_attr('sensor.outdoor_temperature', 'unit_of_measurement') }}"
"""


def _write_store(path: Path, key: str, version: int, minor: int, data: object) -> None:
    """Write a Home Assistant storage file the way its Store does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": version, "minor_version": minor, "key": key, "data": data}
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    path.chmod(0o600)


def _copy_template(config_dir: Path) -> None:
    """The template's files win: it is the one to edit (and commit)."""
    for source in TEMPLATE.rglob("*"):
        if source.is_dir() or "__pycache__" in source.parts:
            continue
        target = config_dir / source.relative_to(TEMPLATE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def _link_integration(config_dir: Path) -> None:
    """Load the integration straight from the checkout."""
    link = config_dir / "custom_components" / "itannix"
    target = os.path.relpath(REPO_ROOT / "custom_components" / "itannix", link.parent)
    if link.is_symlink():
        if os.readlink(link) == target:
            return
        link.unlink()
    elif link.exists():
        sys.exit(f"{link} is not a link to the checkout; move it away")
    link.symlink_to(target, target_is_directory=True)


def _workspace_key(config_dir: Path) -> str:
    """One key per config directory, so entries made with it keep working."""
    path = config_dir / KEY_FILE
    if not path.is_file():
        path.write_text(f"wk-dev-{secrets.token_urlsafe(12)}\n", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def _onboard(config_dir: Path, username: str, password: str) -> None:
    """Create the login and skip onboarding, once."""
    storage = config_dir / ".storage"
    onboarding = storage / STORAGE_KEY
    if onboarding.is_file():
        return
    # Home Assistant's own user script; the user (an administrator) is created from
    # these credentials at the first login.
    with redirect_stdout(sys.stderr):
        auth.run(["-c", str(config_dir), "add", username, password])
    _write_store(onboarding, STORAGE_KEY, STORAGE_VERSION, 1, {"done": list(STEPS)})


def _loopback_hosts() -> list[str]:
    """127.0.0.1, and ::1 where IPv6 works.

    A host that fails to bind would make Home Assistant fall back to its default:
    every interface.
    """
    hosts = ["127.0.0.1"]
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return hosts
    return [*hosts, "::1"]


def _http_on_loopback(config_dir: Path, port: int) -> None:
    """Serve on loopback only: the login is dev / dev.

    Since 2026.x the HTTP settings live in storage; `http:` in configuration.yaml would
    only be staged as a trial that reverts (and restarts Home Assistant on all
    interfaces) five minutes later. So the settings are written here, as confirmed
    ones, on every start.
    """
    stable = {
        **http_config.HTTP_STORAGE_SCHEMA(
            {CONF_SERVER_HOST: _loopback_hosts(), CONF_SERVER_PORT: port}
        ),
        http_config.HTTP_CONFIG_CREATED_AT: dt_util.utcnow().isoformat(),
        http_config.HTTP_CONFIG_ERROR: None,
        http_config.HTTP_CONFIG_ERROR_MESSAGE: None,
    }
    _write_store(
        config_dir / ".storage" / http_config.STORAGE_KEY,
        http_config.STORAGE_KEY,
        http_config.STORAGE_VERSION,
        http_config.STORAGE_MINOR_VERSION,
        {
            http_config.KEY_STABLE: stable,
            http_config.KEY_PENDING: None,
            http_config.KEY_YAML_MIGRATION_DONE: True,
        },
    )


def _add_to_configuration(config_dir: Path, instance: str) -> None:
    """Append scripts/develop's own parts to the fresh copy of the template.

    Keys with a label ("automation itannix_develop", "template itannix_develop")
    merge with any plain `automation:` or `template:` of the template.
    """
    path = config_dir / "configuration.yaml"
    text = path.read_text(encoding="utf-8")
    parts = [
        "",
        "# ---- Added by scripts/develop on every start (not in the template) ----",
    ]
    if AUTOMATIONS_FILE not in text:
        parts += [
            "# The automations made in the UI, and the example one.",
            f"automation itannix_develop: !include {AUTOMATIONS_FILE}",
        ]
    parts += [
        "# New on every start: the readiness check of scripts/develop reads it back, to",
        "# know that the Home Assistant answering on the port is the one it started.",
        "template itannix_develop:",
        "  - sensor:",
        f"      - name: {INSTANCE_SENSOR_NAME}",
        "        icon: mdi:identifier",
        f'        state: "{instance}"',
        "",
    ]
    path.write_text(text.rstrip("\n") + "\n" + "\n".join(parts), encoding="utf-8")


def _set_internal_url(config_dir: Path, port: int) -> None:
    """Media players fetch relayed replies from here: loopback, this start's port."""
    path = config_dir / "configuration.yaml"
    text = path.read_text(encoding="utf-8")
    text, count = _INTERNAL_URL.subn(rf"\g<1>http://127.0.0.1:{port}", text)
    if count != 1:
        sys.exit("configuration.yaml: expected one 'internal_url: http://127.0.0.1:N'")
    path.write_text(text, encoding="utf-8")


def _satellite_entries(config_dir: Path, port: int | None) -> None:
    """Enable the development satellite's Wyoming entry when it runs, else disable it.

    Only Wyoming entries on 127.0.0.1 (made by scripts/develop --satellite); one on
    another host is left alone. Home Assistant is not running here.
    """
    path = config_dir / ".storage" / ENTRIES_STORE
    if not path.is_file():
        return
    document = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for entry in document.get("data", {}).get("entries", []):
        data = entry.get("data") or {}
        if entry.get("domain") != "wyoming" or data.get("host") != SATELLITE_HOST:
            continue
        if port is None:
            if entry.get("disabled_by") is None:
                entry["disabled_by"] = "user"
                changed = True
            continue
        if entry.get("disabled_by") == "user" or data.get("port") != port:
            entry["disabled_by"] = None
            data["port"] = port
            changed = True
    if changed:
        _write_store(
            path,
            ENTRIES_STORE,
            document["version"],
            document.get("minor_version", 1),
            document["data"],
        )


def _write_once(path: Path, text: str) -> None:
    """An example for the developer to edit: never overwritten."""
    if not path.exists():
        path.write_text(text, encoding="utf-8")


def _follow_emulator(config_dir: Path, emulator_url: str) -> None:
    """Point ItanniX entries made against the emulator at its current port.

    Only entries whose server URL is a loopback http:// URL (the emulator's): one
    against the real service is left alone. Home Assistant is not running here.
    """
    path = config_dir / ".storage" / ENTRIES_STORE
    if not path.is_file():
        return
    document = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    for entry in document.get("data", {}).get("entries", []):
        data = entry.get("data") or {}
        url = data.get("base_url")
        if (
            entry.get("domain") == "itannix"
            and isinstance(url, str)
            and _EMULATOR_URL.match(url)
            and url != emulator_url
        ):
            print(
                f"==> ItanniX entry {entry.get('title')!r}: server URL {url} -> "
                f"{emulator_url}",
                file=sys.stderr,
            )
            data["base_url"] = emulator_url
            changed = True
    if changed:
        _write_store(
            path,
            ENTRIES_STORE,
            document["version"],
            document.get("minor_version", 1),
            document["data"],
        )


def main() -> None:
    """Prepare the directory and print the emulator's workspace key."""
    parser = argparse.ArgumentParser()
    parser.add_argument("config_dir", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--emulator-port", type=int, required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--example-turns", action="store_true")
    parser.add_argument("--satellite-port", type=int)
    args = parser.parse_args()
    # A letter first: a template state of digits alone would be read as a number.
    if not re.fullmatch(r"[a-z][a-z0-9-]{15,63}", args.instance):
        parser.error("--instance: 16 to 64 of a-z, 0-9, -, starting with a letter")
    config_dir: Path = args.config_dir.resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    _copy_template(config_dir)
    _add_to_configuration(config_dir, args.instance)
    _set_internal_url(config_dir, args.port)
    _write_once(config_dir / AUTOMATIONS_FILE, EXAMPLE_AUTOMATIONS)
    if args.example_turns:
        _write_once(config_dir / TURNS_FILE, json.dumps(EXAMPLE_TURNS, indent=2) + "\n")
    _link_integration(config_dir)
    key = _workspace_key(config_dir)
    _onboard(config_dir, args.user, args.password)
    _http_on_loopback(config_dir, args.port)
    _follow_emulator(config_dir, f"http://127.0.0.1:{args.emulator_port}")
    _satellite_entries(config_dir, args.satellite_port)
    print(key)


if __name__ == "__main__":
    main()
