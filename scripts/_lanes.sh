# shellcheck shell=bash
# Shared by scripts/setup, scripts/test, scripts/lint, scripts/bench and scripts/develop.
#
# A "lane" is one supported Home Assistant version on the Python it requires. Where the
# host has a Python that qualifies, the lane is a venv on the host; otherwise it lives in a
# throwaway Debian root (debootstrap) kept in the cache, outside the checkout.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# CI may run with a minimal environment: no HOME, no sbin directories on PATH.
HOME="${HOME:-$(getent passwd "$(id -un)" | cut -d: -f6)}"
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export HOME PATH
CACHE_DIR="${ITANNIX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/itannix-dev}"
LANES=(oldest latest)

# lane -> python, minimum version, Debian suite, pytest-homeassistant-custom-component, HA
lane_python() { case "$1" in oldest) echo python3.13 ;; latest) echo python3.14 ;; esac; }
lane_min_python() { case "$1" in oldest) echo 3.13.2 ;; latest) echo 3.14.2 ;; esac; }
lane_suite() { case "$1" in oldest) echo trixie ;; latest) echo sid ;; esac; }
lane_phacc() { case "$1" in oldest) echo 0.13.301 ;; latest) echo 0.13.375 ;; esac; }
# The Home Assistant a lane runs: the one its plugin release pins, unless overridden.
lane_ha() {
  local override
  override="$(lane_ha_override "$1")"
  if [[ -n "$override" ]]; then echo "$override"; return; fi
  case "$1" in oldest) echo 2025.12.4 ;; latest) echo 2026.10.4 ;; esac
}
# A Home Assistant release installed over the one the plugin pins, while no plugin release
# pins it yet (nothing when the plugin's own pin is the lane's). The plugin then runs
# against a newer Home Assistant than it was made from: tests/ha_bridge.py (loaded before
# it) covers what it expects of its own release. Switch to the plugin's 2026.11 release
# (and drop the override) once one is published.
lane_ha_override() { case "$1" in oldest) echo "" ;; latest) echo 2026.11.0 ;; esac; }

# Bump this when the way a lane is installed changes, so `setup` reinstalls it.
LANE_RECIPE_VERSION=2
# Home Assistant components the tests load: their requirements (from the lane's own
# manifests, so each lane gets its version's pins) are installed with the lane.
HA_COMPONENTS="conversation assist_pipeline assist_satellite tts stt ffmpeg wake_word"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

check_lane() {
  case "$1" in oldest | latest) ;; *) die "unknown lane '$1' (oldest, latest)" ;; esac
}

# Prints the host interpreter for the lane if one qualifies, nothing otherwise.
host_python_for() {
  local py min
  py="$(lane_python "$1")"
  min="$(lane_min_python "$1")"
  command -v "$py" >/dev/null 2>&1 || return 0
  if "$py" -c "import sys, venv; sys.exit(sys.version_info[:3] < tuple(map(int, '$min'.split('.'))))" \
    >/dev/null 2>&1; then
    command -v "$py"
  fi
}

lane_root() { echo "$CACHE_DIR/root-$1"; }
lane_host_venv() { echo "$CACHE_DIR/venv-$1"; }

# "host" or "root": where the lane runs.
lane_kind() {
  if [[ -f "$(lane_root "$1")/.itannix-root-ready" ]]; then
    echo root
  elif [[ -n "$(host_python_for "$1")" ]]; then
    echo host
  else
    echo root
  fi
}

# The lane's venv as seen from where its commands run.
lane_venv() {
  if [[ "$(lane_kind "$1")" == host ]]; then lane_host_venv "$1"; else echo /opt/lane-venv; fi
}

# Marker recording that the lane's packages are installed for this recipe.
lane_marker() {
  if [[ "$(lane_kind "$1")" == host ]]; then
    echo "$(lane_host_venv "$1")/.itannix-lane-$LANE_RECIPE_VERSION"
  else
    echo "$(lane_root "$1")/opt/lane-venv/.itannix-lane-$LANE_RECIPE_VERSION"
  fi
}

# What the lane was installed from; a change means reinstalling.
lane_recipe() {
  cat "$REPO_ROOT/requirements_test.txt"
  echo "# components: $HA_COMPONENTS"
  echo "# plugin: $(lane_phacc "$1"), Home Assistant: $(lane_ha "$1")"
}

lane_ready() {
  [[ -f "$(lane_marker "$1")" ]] && cmp -s "$(lane_marker "$1")" <(lane_recipe "$1")
}

# Runs a command in the lane, with the checkout as the working directory. In a Debian root
# the checkout, /proc, /dev and /tmp are bind-mounted in a private mount namespace, so the
# mounts vanish with the command whatever happens to it.
lane_exec() {
  local lane="$1"
  shift
  local venv
  venv="$(lane_venv "$lane")"
  if [[ "$(lane_kind "$lane")" == host ]]; then
    (cd "$REPO_ROOT" && PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" \
      LITELLM_LOCAL_MODEL_COST_MAP=True "$@")
    return
  fi
  local root
  root="$(lane_root "$lane")"
  mkdir -p "$root$REPO_ROOT"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  local -a envs=(
    "PATH=$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "VIRTUAL_ENV=$venv" "HOME=/root" "LANG=C.UTF-8" "TERM=${TERM:-dumb}"
    "PIP_DISABLE_PIP_VERSION_CHECK=1" "PIP_DEFAULT_TIMEOUT=180"
    "PYTHONDONTWRITEBYTECODE=1" "PYTHONUNBUFFERED=1"
    # Home Assistant 2025.12's cloud client imports LiteLLM, which otherwise fetches a
    # price list from the internet on import: tests and tools stay on loopback.
    "LITELLM_LOCAL_MODEL_COST_MAP=True"
  )
  local var
  for var in CI PYTEST_ADDOPTS ITANNIX_BENCH_TURNS ITANNIX_SOAK_TURNS ITANNIX_DEBUG; do
    [[ -n "${!var:-}" ]] && envs+=("$var=${!var}")
  done
  unshare --mount --propagation private -- /bin/bash -c '
    set -e
    root="$1"; repo="$2"; shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --bind /tmp "$root/tmp"
    mount --bind "$repo" "$root$repo"
    exec chroot "$root" /usr/bin/env -i "$@"
  ' _ "$root" "$REPO_ROOT" "${envs[@]}" /bin/bash -c 'cd "$0" && exec "$@"' "$REPO_ROOT" "$@"
}
