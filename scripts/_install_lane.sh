# shellcheck shell=bash
# Runs inside a lane (see scripts/setup): creates its venv and installs the test
# environment under Home Assistant's own package constraints.
#   _install_lane.sh VENV PYTHON PHACC_VERSION COMPONENT...
set -euo pipefail
venv="$1" py="$2" phacc="$3"
shift 3

[[ -x "$venv/bin/python" ]] || "$py" -m venv "$venv"
export PATH="$venv/bin:$PATH"
pip install -q --upgrade pip
pip install -q "pytest-homeassistant-custom-component==$phacc"

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
# Home Assistant's pins decide av/aiortc, exactly as on a user's install.
pip install -q -c "$ha/package_constraints.txt" -r requirements_test.txt "${components[@]}"
