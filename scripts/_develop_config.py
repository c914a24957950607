"""Prepare the development config directory (run inside the latest lane).

    python scripts/_develop_config.py CONFIG_DIR --port PORT --user NAME --password PW

Copies the template (scripts/develop_config/) over it, links the integration from the
checkout, keeps a workspace key for the emulator, keeps the web server on loopback, and
on the first run creates the login and marks onboarding done, so the developer lands on
the dashboard. Prints the key.
"""

from __future__ import annotations

import argparse
from contextlib import redirect_stdout
import json
import os
from pathlib import Path
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


def main() -> None:
    """Prepare the directory and print the emulator's workspace key."""
    parser = argparse.ArgumentParser()
    parser.add_argument("config_dir", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()
    config_dir: Path = args.config_dir.resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    _copy_template(config_dir)
    _link_integration(config_dir)
    key = _workspace_key(config_dir)
    _onboard(config_dir, args.user, args.password)
    _http_on_loopback(config_dir, args.port)
    print(key)


if __name__ == "__main__":
    main()
