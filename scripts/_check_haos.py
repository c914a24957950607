"""Does the integration install on Home Assistant OS? (run by scripts/check-haos).

    python scripts/_check_haos.py --ha VERSION [--arch ARCH ...] [--repeats N]

Run with the Python that Home Assistant release runs on: the resolution, the downloads
and the builds below are for that Python version. For each architecture (Home Assistant
OS is Alpine, so musl: x86_64 and aarch64), it

1. takes `homeassistant/package_constraints.txt` out of that Home Assistant's wheel,
2. resolves the manifest's requirements under those constraints for musllinux with uv,
3. downloads every pinned package for that platform: a musllinux (or pure Python) wheel,
   else the source package,
4. builds each source package with no C compiler (CC, CXX and LDSHARED are `false`): it
   installs on Home Assistant OS only if that still yields a pure-Python wheel,

then checks the pure-Python google-crc32c that such a build gives (imports, CRC32C test
vectors) and times its `value()` against the C extension's on data channel message
sizes, both in this run. Prints tables; exits 1 when something would not install.
Everything happens in a temporary directory; only package registries are contacted.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = REPO_ROOT / "custom_components" / "itannix" / "manifest.json"
# Pinned so that a run is reproducible; bump deliberately.
UV_VERSION = "0.13.9"
ARCHES = ("x86_64", "aarch64")
# Alpine's musl 1.2 runs wheels for musllinux_1_1 and musllinux_1_2. pip does not widen
# an explicit --platform to older musllinux tags itself.
MUSLLINUX = ("musllinux_1_2", "musllinux_1_1")
MESSAGE_SIZES = (200, 1024, 4096)
NO_COMPILER = {"CC": "false", "CXX": "false", "LDSHARED": "false", "CPP": "false"}
WHEEL_RE = re.compile(
    r"^(?P<name>.+?)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)

# CRC32C (Castagnoli) check values: the common "123456789" one and RFC 3720, B.4.
CRC_VECTORS = (
    ("", 0x00000000),
    ("313233343536373839", 0xE3069283),
    ("00" * 32, 0x8A9136AA),
    ("ff" * 32, 0x62A8AB43),
    (bytes(range(32)).hex(), 0x46DD794E),
    (bytes(range(31, -1, -1)).hex(), 0x113FDB5C),
)

# Runs in a venv holding one google-crc32c build; prints one JSON line.
CRC_PROBE = textwrap.dedent(
    """
    import json, statistics, sys, timeit, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import google_crc32c
    vectors, sizes, repeats = json.loads(sys.argv[1])
    failed = [
        h for h, want in vectors if google_crc32c.value(bytes.fromhex(h)) != want
    ]
    a, b = b"ItanniX " * 40, b"realtime" * 25
    if google_crc32c.extend(google_crc32c.value(a), b) != google_crc32c.value(a + b):
        failed.append("extend")
    timings = {}
    for size in sizes:
        data = bytes((i * 31 + 7) & 0xFF for i in range(size))
        timer = timeit.Timer(lambda: google_crc32c.value(data))
        number, _ = timer.autorange()
        runs = timer.repeat(repeat=repeats, number=number)
        timings[size] = statistics.median(runs) / number * 1e6
    print(json.dumps({
        "implementation": google_crc32c.implementation,
        "warning": [str(w.message) for w in caught],
        "failed": failed,
        "us_per_message": timings,
    }))
    """
)


@dataclass
class Package:
    """One pinned package and what a platform offers for it."""

    name: str
    version: str
    found: str = ""
    verdict: str = ""
    ok: bool = False
    sdist: Path | None = None
    pure_wheel: Path | None = None


def log(message: str) -> None:
    """Print progress to stderr, like the other scripts."""
    print(f"\033[1m==> {message}\033[0m", file=sys.stderr, flush=True)


def run(
    cmd: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; never raises on a non-zero exit."""
    return subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def tail(text: str, lines: int = 6) -> str:
    """The last lines of a command's output, indented for the log."""
    kept = [line[:300] for line in text.strip().splitlines()[-lines:]]
    return textwrap.indent("\n".join(kept), "    ")


def short(messages: object) -> str:
    """The first sentence of the first warning, for one line of output."""
    if isinstance(messages, list) and messages:
        messages = messages[0]
    return str(messages).split(". ")[0][:140]


def make_venv(path: Path, *packages: str) -> Path:
    """Create a venv with the given packages and return its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    if packages:
        result = run([str(python), "-m", "pip", "install", "-q", *packages])
        if result.returncode != 0:
            sys.exit(f"error: could not install {packages}:\n{tail(result.stderr)}")
    return python


def constraints_of(python: Path, ha_version: str, py: str, dest: Path) -> Path:
    """Home Assistant's package_constraints.txt, out of its wheel."""
    result = run(
        [
            str(python), "-m", "pip", "download", "-q", f"homeassistant=={ha_version}",
            "--no-deps", "--only-binary=:all:", "--python-version", py, "-d", str(dest),
        ]
    )  # fmt: skip
    wheels = list(dest.glob("homeassistant-*.whl"))
    if result.returncode != 0 or not wheels:
        sys.exit(f"error: no Home Assistant {ha_version} wheel:\n{tail(result.stderr)}")
    target = dest / "package_constraints.txt"
    with zipfile.ZipFile(wheels[0]) as wheel:
        target.write_bytes(wheel.read("homeassistant/package_constraints.txt"))
    return target


def resolve(
    uv: Path, requirements: list[str], constraints: Path, arch: str, py: str
) -> list[Package]:
    """Pin the requirements for musl on this architecture, as Home Assistant would."""
    result = run(
        [
            str(uv), "pip", "compile", "-", "--python-platform", f"{arch}-unknown-linux-musl",
            "--python-version", py, "-c", str(constraints),
            "--no-header", "--no-annotate",
            # The machine's certificate store, as pip uses it (a proxy may sign).
            "--system-certs",
        ],
        # uv would otherwise try to download a Python of its own.
        env={"UV_PYTHON_DOWNLOADS": "never", "UV_NO_CONFIG": "1"},
        stdin="\n".join(requirements) + "\n",
    )  # fmt: skip
    if result.returncode != 0 or "==" not in result.stdout:
        print(
            f"uv cannot resolve {requirements} for {arch}:\n{tail(result.stderr, 20)}"
        )
        return []
    packages = []
    for line in result.stdout.splitlines():
        if "==" in (line := line.split("#")[0].strip()):
            name, version = line.split("==", 1)
            packages.append(Package(name.strip(), version.split(";")[0].strip()))
    return packages


def wheel_tags(path: Path) -> tuple[str, str, str]:
    """(python, abi, platform) tags of a wheel file name."""
    match = WHEEL_RE.match(path.name)
    if match is None:
        return ("?", "?", "?")
    return (match["py"], match["abi"], match["plat"])


def is_pure(path: Path) -> bool:
    """A wheel that runs anywhere: no ABI, any platform, no compiled modules inside."""
    _, abi, plat = wheel_tags(path)
    if abi != "none" or plat != "any":
        return False
    with zipfile.ZipFile(path) as wheel:
        return not any(n.endswith((".so", ".pyd", ".dylib")) for n in wheel.namelist())


def fetch(python: Path, package: Package, arch: str, py: str, dest: Path) -> None:
    """Download the package for the platform: a wheel if there is one, else the sdist."""
    pin = f"{package.name}=={package.version}"
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for tag in MUSLLINUX for arg in ("--platform", f"{tag}_{arch}")]
    result = run(
        [
            str(python), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
            *platforms, "--implementation", "cp", "--python-version", py,
            "-d", str(dest), pin,
        ]
    )  # fmt: skip
    if result.returncode == 0 and (wheels := sorted(dest.glob("*.whl"))):
        _, _, plat = wheel_tags(wheels[0])
        package.found = "wheel " + "-".join(wheel_tags(wheels[0]))
        package.ok = plat == "any" or plat.startswith("musllinux")
        if not package.ok:
            package.verdict = f"unexpected platform {plat}"
        elif plat == "any":
            package.verdict = "installs (pure Python wheel)"
        else:
            package.verdict = "installs (wheel)"
        return
    result = run(
        [
            str(python), "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:",
            "-d", str(dest), pin,
        ]
    )  # fmt: skip
    sdists = [p for p in dest.iterdir() if p.name.endswith((".tar.gz", ".zip"))]
    if result.returncode != 0 or not sdists:
        package.found = "nothing"
        package.verdict = "no wheel for this platform and no source package"
        return
    package.found = "source only"
    package.sdist = sdists[0]


def build_without_compiler(
    python: Path, package: Package, dest: Path, built: dict[tuple[str, str], Path]
) -> None:
    """Build the sdist into a wheel with no C compiler; pure Python is what installs.

    A pure wheel serves every architecture, so each sdist is built once (`built`).
    """
    assert package.sdist is not None
    key = (package.name, package.version)
    if key not in built:
        out = dest / package.name
        out.mkdir(parents=True, exist_ok=True)
        result = run(
            [
                str(python), "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir",
                "-w", str(out), str(package.sdist),
            ],
            env=NO_COMPILER,
        )  # fmt: skip
        wheels = sorted(out.glob("*.whl"))
        if result.returncode != 0 or not wheels:
            package.verdict = "source build fails without a compiler"
            print(
                f"{package.name}: no build without a compiler:\n{tail(result.stderr)}"
            )
            return
        if not is_pure(wheels[0]):
            package.verdict = f"source build is not pure Python ({wheels[0].name})"
            return
        built[key] = wheels[0]
    package.pure_wheel = built[key]
    package.ok = True
    package.verdict = "installs: source builds pure Python without a compiler"


def probe_crc32c(python: Path, repeats: int) -> dict[str, object]:
    """Run the google-crc32c probe in a venv and return its findings."""
    vectors = [list(v) for v in CRC_VECTORS]
    result = run(
        [str(python), "-c", CRC_PROBE, json.dumps([vectors, MESSAGE_SIZES, repeats])]
    )
    if result.returncode != 0:
        return {"error": tail(result.stderr)}
    findings: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return findings


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """A plain-text table."""
    widths = [
        max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))
    ]
    for row in [headers, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(
                str(c).ljust(w) for c, w in zip(row, widths, strict=True)
            ).rstrip()
        )


def check_crc32c(work: Path, version: str, pure_wheel: Path, repeats: int) -> bool:
    """Pure-Python google-crc32c (as built above) against the C extension."""
    log(f"google-crc32c {version}: pure Python build vs C extension")
    pure = probe_crc32c(make_venv(work / "crc-pure", str(pure_wheel)), repeats)
    c_ext = probe_crc32c(
        make_venv(work / "crc-c", "--only-binary=:all:", f"google-crc32c=={version}"),
        repeats,
    )
    print(f"\ngoogle-crc32c {version} on Python {sys.version.split()[0]}")
    ok = True
    for label, found, want in (
        ("source build", pure, "python"),
        ("binary wheel", c_ext, "c"),
    ):
        if "error" in found:
            print(f"  {label}: does not import:\n{found['error']}")
            ok = False
            continue
        failed = found["failed"]
        warned = (
            f", warns on import: {short(found['warning'])}" if found["warning"] else ""
        )
        vectors = f"FAILED {failed}" if failed else "correct"
        print(
            f"  {label}: implementation {found['implementation']!r}, "
            f"test vectors {vectors}{warned}"
        )
        # Both must be right; only the source build must be the pure one.
        ok = ok and not failed
        if label == "source build" and found["implementation"] != want:
            ok = False
    if "error" in pure or "error" in c_ext:
        return False
    pure_us = pure["us_per_message"]
    c_us = c_ext["us_per_message"]
    assert isinstance(pure_us, dict)
    assert isinstance(c_us, dict)
    print(f"\n  value() per data channel message (median of {repeats} repeats, µs):")
    rows = [
        [
            f"{size} B",
            f"{pure_us[str(size)]:.1f}",
            f"{c_us[str(size)]:.2f}",
            f"{pure_us[str(size)] / c_us[str(size)]:.0f}x",
        ]
        for size in MESSAGE_SIZES
    ]
    print_table(["message", "pure Python", "C extension", "ratio"], rows)
    return ok


def main() -> int:
    """Check one Home Assistant release on every architecture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ha", required=True, help="Home Assistant version")
    parser.add_argument("--arch", action="append", choices=ARCHES)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    arches = args.arch or list(ARCHES)
    # The full version: Home Assistant requires a patch level (e.g. >=3.13.2).
    py = ".".join(map(str, sys.version_info[:3]))
    requirements = json.loads(MANIFEST.read_text())["requirements"]

    work = Path(tempfile.mkdtemp(prefix="itannix-haos-"))
    try:
        log(f"Home Assistant {args.ha} on Python {py}: tools")
        tools = make_venv(work / "tools", f"uv=={UV_VERSION}")
        uv = tools.parent / "uv"
        constraints = constraints_of(tools, args.ha, py, work / "ha")
        pins = {
            line.split("==")[0].lower(): line.split("==")[1]
            for line in constraints.read_text().splitlines()
            if "==" in line and not line.startswith("#")
        }
        print(
            f"\nHome Assistant {args.ha} (Python {py}) pins av {pins.get('av', '-')}, "
            f"cryptography {pins.get('cryptography', '-')}; requirements: {requirements}"
        )
        all_ok = True
        built: dict[tuple[str, str], Path] = {}
        for arch in arches:
            log(f"Home Assistant {args.ha}, musllinux {arch}: resolve and download")
            packages = resolve(uv, requirements, constraints, arch, py)
            for package in packages:
                fetch(tools, package, arch, py, work / arch / package.name)
                if package.sdist is not None:
                    build_without_compiler(tools, package, work / "built", built)
            if not packages:
                all_ok = False
                continue
            print(f"\nHome Assistant {args.ha}, Python {py}, musllinux {arch}:")
            print_table(
                ["package", "version", "for this platform", "verdict"],
                [[p.name, p.version, p.found, p.verdict] for p in packages],
            )
            all_ok = all_ok and all(p.ok for p in packages)
        for (name, version), wheel in built.items():
            if name.lower().replace("_", "-") == "google-crc32c":
                all_ok = check_crc32c(work, version, wheel, args.repeats) and all_ok
        print(
            f"\nHome Assistant {args.ha}: "
            + ("everything installs" if all_ok else "SOMETHING WOULD NOT INSTALL")
        )
        return 0 if all_ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
