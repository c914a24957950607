"""Install what the development Home Assistant loads (run inside the latest lane).

    python scripts/_develop_requirements.py CONFIG_DIR [--also DOMAIN ...]

Home Assistant runs with --skip-pip under scripts/develop, so every requirement must
be in place beforehand. This resolves them the way Home Assistant's bootstrap does: the
domains in configuration.yaml, the integrations it always sets up, the custom
integrations in the config directory, the domains of its config entries, those given
with --also (a config flow scripts/develop runs itself, like the satellite's Wyoming
one), then their dependencies and after-dependencies,
and installs their requirements under Home Assistant's own package constraints. A
marker in the venv records what was installed, so an unchanged set costs no pip call.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import subprocess
import sys
from typing import Any

import homeassistant
from homeassistant import bootstrap
from homeassistant.const import BASE_PLATFORMS
from homeassistant.helpers import config_validation as cv
from homeassistant.util.yaml import load_yaml

HA_DIR = Path(homeassistant.__file__).parent
MARKER = Path(sys.prefix) / ".itannix-develop-requirements"


def _manifests(config_dir: Path) -> dict[str, dict[str, Any]]:
    """Every manifest Home Assistant could load; custom ones shadow built-in ones."""
    found: dict[str, dict[str, Any]] = {}
    for folder in (HA_DIR / "components", config_dir / "custom_components"):
        for path in folder.glob("*/manifest.json"):
            found[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
    return found


def _entry_domains(config_dir: Path) -> set[str]:
    """The domains of the config entries Home Assistant will set up."""
    path = config_dir / ".storage" / "core.config_entries"
    if not path.is_file():
        return set()
    entries = json.loads(path.read_text(encoding="utf-8"))["data"]["entries"]
    return {entry["domain"] for entry in entries if entry.get("disabled_by") is None}


def _start_domains(config_dir: Path, custom: set[str]) -> set[str]:
    """The domains bootstrap sets up or resolves for this configuration."""
    config = load_yaml(config_dir / "configuration.yaml") or {}
    if not isinstance(config, dict):
        sys.exit("configuration.yaml is not a mapping")
    return {
        *(cv.domain_key(key) for key in config),
        *bootstrap.CORE_INTEGRATIONS,
        *bootstrap.DEFAULT_INTEGRATIONS,
        *BASE_PLATFORMS,
        # Config entries of custom integrations (ours) are set up too.
        *custom,
        *_entry_domains(config_dir),
    }


def resolve(config_dir: Path, also: list[str]) -> list[str]:
    """Requirements of the start domains and of everything they depend on."""
    manifests = _manifests(config_dir)
    custom = {
        path.parent.name
        for path in (config_dir / "custom_components").glob("*/manifest.json")
    }
    todo = [*_start_domains(config_dir, custom), *also]
    seen: set[str] = set()
    requirements: set[str] = set()
    while todo:
        domain = todo.pop()
        if domain in seen or domain not in manifests:
            continue
        seen.add(domain)
        manifest = manifests[domain]
        requirements.update(manifest.get("requirements", []))
        todo.extend(manifest.get("dependencies", []))
        # Bootstrap also gathers these: an integration may import them when present.
        todo.extend(manifest.get("after_dependencies", []))
    return sorted(requirements)


def main() -> None:
    """Install the resolved requirements unless the marker says they are there."""
    parser = argparse.ArgumentParser(prog="scripts/_develop_requirements.py")
    parser.add_argument("config_dir", type=Path)
    parser.add_argument("--also", nargs="*", default=[])
    args = parser.parse_args()
    wanted = "\n".join(resolve(args.config_dir, args.also)) + "\n"
    if MARKER.is_file() and MARKER.read_text(encoding="utf-8") == wanted:
        return
    print("==> installing what Home Assistant loads (frontend, ...)", file=sys.stderr)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(HA_DIR / "package_constraints.txt"),
            *wanted.split(),
        ],
        check=True,
    )
    MARKER.write_text(wanted, encoding="utf-8")


if __name__ == "__main__":
    main()
