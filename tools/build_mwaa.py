"""Build what Amazon MWAA takes from S3 for this project (``make mwaa``): ``dist/mwaa/``.

* ``requirements.txt``: MWAA's ``--constraint`` line, then ``--find-links /usr/local/airflow/plugins
  --no-index`` and every distribution to install, pinned. Nothing comes from PyPI, so an environment
  without internet access (private network, no NAT) installs it the same way.
* ``plugins.zip``: the provider package as a wheel (``airflow_provider_market_ingest-<version>-py3-none-any.whl``,
  which registers the connection forms and the Airflow plugin through its entry points: no plugin
  module is copied), a wheel for each dependency MWAA's image lacks (CPython 3.12, manylinux x86_64)
  and the constraints file the first line names. MWAA unpacks it into ``/usr/local/airflow/plugins``.
* ``startup.sh``: points the package at the configuration inside the DAGs folder.
* ``dags/``: ``market_data.py``, ``market_config_check.py``, an ``.airflowignore`` and ``include/`` (the pipeline config, pools,
  migrations and universes; the stand-in's recordings stay behind), for the environment's DAGs prefix.

The target is MWAA's newest Airflow, 3.3.1 on Python 3.12 (``deploy/mwaa/``, vendored from
aws/amazon-mwaa-docker-images with provenance). The requirements are ``deploy/mwaa/requirements.in``
resolved by uv under that image's constraints; a requirement already installed in the image at the
resolved version gets no wheel. Needs the package index (this machine's registry) to resolve and
download; takes about a minute and writes about 100 MB.

Run from the repository root: ``python tools/build_mwaa.py [--out DIR]``. Raises
:class:`subprocess.CalledProcessError` (uv's or pip's message on stderr) when resolution or a
download fails, for instance when a pin in ``requirements.in`` conflicts with the constraints.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "mwaa"

AIRFLOW_VERSION = "3.3.1"
PYTHON_VERSION = "3.12"
CONSTRAINTS = DEPLOY / f"constraints-{AIRFLOW_VERSION}-{PYTHON_VERSION}.txt"
ESSENTIAL_CONSTRAINTS = DEPLOY / f"mwaa-essential-constraints-{AIRFLOW_VERSION}.txt"
IMAGE_PACKAGES = DEPLOY / f"image-packages-{AIRFLOW_VERSION}.txt"
REQUIREMENTS_IN = DEPLOY / "requirements.in"
STARTUP = DEPLOY / "startup.sh"

#: Where MWAA unpacks plugins.zip (AWS, "Installing custom plugins"; the image's AIRFLOW_HOME/plugins).
MWAA_PLUGINS = "/usr/local/airflow/plugins"
#: MWAA's image: Amazon Linux 2023 (glibc 2.34) on x86_64, CPython 3.12 (Dockerfile.base there).
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")
#: The parts of include/ a deployment reads: config, pools, migrations, universes.
INCLUDE_PARTS = ("pipeline.yaml", "pools.json", "sql", "symbols")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


def normalize(name: str) -> str:
    """A distribution name in PEP 503 form: ``Flask_Login`` -> ``flask-login``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements-style file, as {normalized name: version}; comments,
    options and unpinned lines are skipped."""
    pins = {}
    for line in path.read_text().splitlines():
        if m := _PIN.match(line.split("#", 1)[0].strip()):
            pins[normalize(m[1])] = m[2]
    return pins


def requirement_names(path: Path) -> set[str]:
    """The distributions a requirements file asks for (normalized names, extras and pins dropped)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(normalize(re.split(r"[\[=<>!~; ]", line, maxsplit=1)[0]))
    return names


def _uv() -> str:
    return shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv") or "uv"


def resolve(work: Path) -> dict[str, str]:
    """Resolve ``requirements.in`` under MWAA's constraints for CPython 3.12 on manylinux x86_64.

    Returns {normalized name: version} for the whole closure, the image's own packages included.
    """
    out = work / "resolved.txt"
    subprocess.run(
        [_uv(), "pip", "compile", "--quiet", "--no-header", "--no-annotate", str(REQUIREMENTS_IN),
         "--constraint", str(CONSTRAINTS), "--constraint", str(ESSENTIAL_CONSTRAINTS),
         "--python-version", PYTHON_VERSION, "--python-platform", "x86_64-manylinux_2_28", "--output-file", str(out)],
        check=True,
    )  # fmt: skip
    return read_pins(out)


def build_provider_wheel(dest: Path) -> Path:
    """Build the provider package (``pyproject.toml``) as a wheel into ``dest``; returns its path."""
    subprocess.run([_uv(), "build", "--quiet", "--wheel", "--out-dir", str(dest), str(ROOT)], check=True)
    (wheel,) = dest.glob("airflow_provider_market_ingest-*.whl")
    return wheel


#: Pure-Python distributions published as an sdist only: built into a ``py3-none-any`` wheel here,
#: so that MWAA still installs nothing but wheels (ibind 0.1.24: no wheel on PyPI).
SDIST_ONLY = {"ibind"}


def download_wheels(pins: dict[str, str], dest: Path) -> None:
    """Download one binary wheel per pin for MWAA's interpreter and platform (never an sdist);
    the :data:`SDIST_ONLY` ones are built into a pure-Python wheel from their sdist instead."""
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    binary = {n: v for n, v in pins.items() if normalize(n) not in SDIST_ONLY}
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--only-binary=:all:", "--implementation", "cp", "--python-version", PYTHON_VERSION, *platforms,
         "--dest", str(dest), *(f"{n}=={v}" for n, v in sorted(binary.items()))],
        check=True,
    )  # fmt: skip
    for name, version in sorted(pins.items()):
        if normalize(name) in SDIST_ONLY:
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                 "--no-binary", name, "--wheel-dir", str(dest), f"{name}=={version}"],
                check=True,
            )  # fmt: skip
            built = list(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
            if not built or not all(w.name.endswith("-py3-none-any.whl") for w in built):
                raise RuntimeError(f"{name} {version}: expected a pure-Python wheel, built {[w.name for w in built]}")


def provider_version() -> str:
    """The provider package's version, as ``pyproject.toml`` states it."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def render_requirements(extra: dict[str, str]) -> str:
    """MWAA's ``requirements.txt``: constraint and index lines, the provider, then each wheel's pin."""
    lines = [
        f"# Built by `make mwaa` (tools/build_mwaa.py) for MWAA Airflow {AIRFLOW_VERSION}, Python {PYTHON_VERSION}.",
        "# Every distribution is a wheel in plugins.zip; nothing is fetched from PyPI.",
        f'--constraint "{MWAA_PLUGINS}/{CONSTRAINTS.name}"',
        f"--find-links {MWAA_PLUGINS}",
        "--no-index",
        f"airflow-provider-market-ingest=={provider_version()}",
        *(f"{name}=={version}" for name, version in sorted(extra.items())),
    ]
    return "\n".join(lines) + "\n"


def build(out: Path) -> dict[str, str]:
    """Write ``requirements.txt``, ``plugins.zip``, ``startup.sh`` and ``dags/`` into ``out``
    (emptied first). Returns the pins shipped as wheels besides the provider's."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    image = read_pins(IMAGE_PACKAGES)
    with tempfile.TemporaryDirectory(prefix="mwaa-build-") as tmp:
        work = Path(tmp)
        resolved = resolve(work)
        extra = {name: version for name, version in resolved.items() if image.get(name) != version}
        wheels = work / "wheels"
        download_wheels(extra, wheels)
        build_provider_wheel(wheels)
        with zipfile.ZipFile(out / "plugins.zip", "w", zipfile.ZIP_DEFLATED) as z:
            z.write(CONSTRAINTS, CONSTRAINTS.name)
            for wheel in sorted(wheels.glob("*.whl")):
                z.write(wheel, wheel.name, compress_type=zipfile.ZIP_STORED)
    (out / "requirements.txt").write_text(render_requirements(extra))
    shutil.copy2(STARTUP, out / "startup.sh")
    dags = out / "dags"
    shutil.copytree(ROOT / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    (dags / "include").mkdir()
    for part in INCLUDE_PARTS:
        src = ROOT / "include" / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dags / "include" / part)
    (dags / ".airflowignore").write_text("# the pipeline's configuration, not DAG files\ninclude/\n")
    return extra


#: In MWAA's image but built from source against system libraries (libpq, libcurl); nothing here imports them.
NOT_INSTALLED = {"psycopg2", "pycurl"}


def install(out: Path, home: Path, python: str) -> Path:
    """Lay out ``home`` as MWAA's ``AIRFLOW_HOME`` from :func:`build`'s ``out`` and install as MWAA does.

    A virtualenv ``home/venv`` of ``python`` (3.12) first gets exactly the image's distributions
    (``image-packages``, minus :data:`NOT_INSTALLED`); ``plugins.zip`` is unpacked into
    ``home/plugins`` and ``dags/`` copied to ``home/dags``; then ``requirements.txt`` is installed with
    pip under MWAA's essential constraints (its ``safe-pip-install``), ``/usr/local/airflow`` read as
    ``home``, with no package index and no pip configuration. ``home/startup.sh`` is the startup script.

    :return: the virtualenv's python.
    :raises subprocess.CalledProcessError: an install failed (pip's resolver message on stderr).
    """
    home = home.resolve()
    venv = home / "venv"
    subprocess.run([_uv(), "venv", "--quiet", "--seed", "--python", python, str(venv)], check=True)
    image = home / "image-packages.txt"
    image.write_text("".join(f"{n}=={v}\n" for n, v in read_pins(IMAGE_PACKAGES).items() if n not in NOT_INSTALLED))
    py = venv / "bin" / "python"
    subprocess.run([_uv(), "pip", "install", "--quiet", "--python", str(py), "--no-deps", "-r", str(image)], check=True)
    with zipfile.ZipFile(out / "plugins.zip") as z:
        z.extractall(home / "plugins")
    shutil.copytree(out / "dags", home / "dags", dirs_exist_ok=True)
    requirements = home / "requirements.txt"
    requirements.write_text((out / "requirements.txt").read_text().replace("/usr/local/airflow", str(home)))
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--constraint", str(ESSENTIAL_CONSTRAINTS), "-r", str(requirements)],
        check=True, env={"PATH": os.environ["PATH"], "HOME": str(home), "PIP_CONFIG_FILE": os.devnull},
    )  # fmt: skip
    shutil.copy2(out / "startup.sh", home / "startup.sh")
    return py


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "mwaa")
    parser.add_argument("--home", type=Path, help="then install into this MWAA-like AIRFLOW_HOME (venv/ beneath it)")
    parser.add_argument("--python", help="with --home: the Python 3.12 interpreter of its virtualenv")
    args = parser.parse_args(argv)
    extra = build(args.out)
    ours = read_pins(ROOT / "requirements.txt")
    print(
        f"{args.out}: requirements.txt, plugins.zip ({(args.out / 'plugins.zip').stat().st_size / 1e6:.0f} MB), startup.sh, dags/"
    )
    print(
        f"{len(extra)} wheels beside the provider's; MWAA {AIRFLOW_VERSION}'s constraints choose other versions than requirements.txt for:"
    )
    resolved_at = read_pins(args.out / "requirements.txt") | read_pins(IMAGE_PACKAGES)
    for name, version in sorted(ours.items()):
        if name != "apache-airflow" and resolved_at.get(name) != version:
            print(f"  {name}: {version} -> {resolved_at.get(name)}")
    if args.home:
        if args.home.exists():
            shutil.rmtree(args.home)
        args.home.mkdir(parents=True)
        print(f"installed as on MWAA: {install(args.out, args.home, args.python or 'python3.12')}")


if __name__ == "__main__":
    main()
