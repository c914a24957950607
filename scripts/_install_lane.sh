# shellcheck shell=bash
# Runs inside a lane (see scripts/setup): creates its venv and installs the test
# environment under Home Assistant's own package constraints.
#   _install_lane.sh VENV PYTHON PHACC_VERSION HA_OVERRIDE COMPONENT...
# HA_OVERRIDE: a Home Assistant version to install over the one the plugin pins, or "".
set -euo pipefail
venv="$1" py="$2" phacc="$3" ha_override="$4"
shift 4

[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
export PATH="$venv/bin:$PATH"
pip install -q --upgrade pip
pip install -q "pytest-homeassistant-custom-component==$phacc"
if [[ -n "$ha_override" ]]; then
  # No plugin release pins this Home Assistant yet: install it beside the plugin. pip
  # warns that the plugin asks for another one; that is expected (scripts/_lanes.sh).
  pip install -q "homeassistant==$ha_override"
fi

ha="$(python -c 'import homeassistant, pathlib; print(pathlib.Path(homeassistant.__file__).parent)')"
# The requirements of the Home Assistant components the tests load, as this lane's
# Home Assistant pins them in their manifests.
mapfile -t components < <(python - "$ha" "$@" <<'PY'
import json, sys
for name in sys.argv[2:]:
    with open(f"{sys.argv[1]}/components/{name}/manifest.json") as file:
        print("\n".join(json.load(file).get("requirements", [])))
PY
)
overridden=()
if [[ -n "$ha_override" ]]; then
  # Home Assistant itself, and the plugin's pins that this Home Assistant pins otherwise
  # (by name only, so its constraints decide), are re-resolved under its constraints.
  mapfile -t overridden < <(python - "$ha/package_constraints.txt" <<'PY'
import sys
from importlib.metadata import requires
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pins = {}
with open(sys.argv[1]) as file:
    for line in file:
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            pins[canonicalize_name(req.name)] = req.specifier
for line in requires("pytest-homeassistant-custom-component") or []:
    req = Requirement(line)
    name = canonicalize_name(req.name)
    if name != "homeassistant" and name in pins and str(req.specifier) != str(pins[name]):
        print(req.name)
PY
)
  overridden+=("homeassistant==$ha_override")
fi
# Home Assistant's pins decide av/aiortc, exactly as on a user's install.
pip install -q -c "$ha/package_constraints.txt" -r requirements_test.txt "${components[@]}" \
  "${overridden[@]}"
