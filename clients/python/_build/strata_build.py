"""A PEP 517 / PEP 660 build backend for strata-client, standard library only.

Why not setuptools: pip builds a project in an isolated environment into which
it installs the backend named in ``[build-system] requires``. Offline (no index)
that download fails, so ``pip install ./clients/python`` would not work without
``--no-build-isolation`` and a setuptools already installed. This backend needs
nothing (``requires = []``): pip loads it from this directory (``backend-path``)
and it builds the pure-Python wheel itself with ``zipfile``.

It reads the ``[project]`` table of pyproject.toml (``tomllib`` on 3.11+, a
small parser of the subset used there on 3.10), packs ``src/strata_client``
(every ``.py`` file and ``py.typed``) plus ``.dist-info`` metadata into
``strata_client-<version>-py3-none-any.whl``, and makes an sdist of the
project. ``build_editable`` makes a wheel holding a ``.pth`` file that points
at ``src/``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "strata_client"
SRC = os.path.join(ROOT, "src")
TAG = "py3-none-any"

__all__ = [
    "get_requires_for_build_wheel",
    "get_requires_for_build_sdist",
    "get_requires_for_build_editable",
    "prepare_metadata_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "build_wheel",
    "build_sdist",
    "build_editable",
]


# ---- pyproject.toml --------------------------------------------------------------
def _parse_toml_subset(text: str) -> dict:
    """Tables, ``key = "string"``, ``key = ["a", "b"]`` (may span lines), ``key = {...}``
    with string values. Enough for this project's pyproject.toml on Python 3.10."""
    doc: dict = {}
    table = doc
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].split("#", 1)[0].strip() if '"' not in lines[i] else lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[([A-Za-z0-9_.\-]+)\]$", line)
        if m:
            table = doc
            for part in m.group(1).split("."):
                table = table.setdefault(part, {})
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip().strip('"')
        value = value.strip()
        if value.startswith("[") and not value.rstrip().endswith("]"):
            while i < len(lines) and not value.rstrip().endswith("]"):
                value += " " + lines[i].strip()
                i += 1
        table[key] = _toml_value(value)
    return doc


def _toml_value(value: str):
    value = value.strip()
    if value.startswith('"'):
        m = re.match(r'^"((?:[^"\\]|\\.)*)"', value)
        return m.group(1).encode().decode("unicode_escape") if m else value.strip('"')
    if value.startswith("["):
        return [s.encode().decode("unicode_escape")
                for s in re.findall(r'"((?:[^"\\]|\\.)*)"', value)]
    if value.startswith("{"):
        return {k: v for k, v in re.findall(r'([A-Za-z0-9_\-]+)\s*=\s*"([^"]*)"', value)}
    if value in ("true", "false"):
        return value == "true"
    return value


def _project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        data = f.read()
    try:
        import tomllib  # Python 3.11+
        doc = tomllib.loads(data.decode("utf-8"))
    except ImportError:
        doc = _parse_toml_subset(data.decode("utf-8"))
    project = doc.get("project", {})
    if "version" not in project:
        raise RuntimeError("pyproject.toml: [project] has no version")
    return project


def _dist_name(project: dict) -> str:
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


def _metadata(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        "Name: %s" % project["name"],
        "Version: %s" % project["version"],
    ]
    if project.get("description"):
        lines.append("Summary: %s" % project["description"])
    if project.get("requires-python"):
        lines.append("Requires-Python: %s" % project["requires-python"])
    lic = project.get("license")
    if isinstance(lic, dict) and lic.get("text"):
        lines.append("License: %s" % lic["text"])
    elif isinstance(lic, str):
        lines.append("License: %s" % lic)
    if project.get("keywords"):
        lines.append("Keywords: %s" % ",".join(project["keywords"]))
    for c in project.get("classifiers") or []:
        lines.append("Classifier: %s" % c)
    for dep in project.get("dependencies") or []:
        lines.append("Requires-Dist: %s" % dep)
    for extra, deps in (project.get("optional-dependencies") or {}).items():
        lines.append("Provides-Extra: %s" % extra)
        for dep in deps:
            lines.append('Requires-Dist: %s ; extra == "%s"' % (dep, extra))
    readme = project.get("readme")
    body = ""
    if isinstance(readme, str) and os.path.isfile(os.path.join(ROOT, readme)):
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = f.read()
        lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def _dist_info_files(project: dict) -> dict[str, bytes]:
    return {
        "METADATA": _metadata(project).encode("utf-8"),
        "WHEEL": ("Wheel-Version: 1.0\nGenerator: strata_build\nRoot-Is-Purelib: true\n"
                  "Tag: %s\n" % TAG).encode(),
        "top_level.txt": (PACKAGE + "\n").encode(),
    }


def _package_files() -> list[tuple[str, str]]:
    """(archive name, file path) of the package, sorted."""
    out = []
    base = os.path.join(SRC, PACKAGE)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith(".py") or fn == "py.typed":
                full = os.path.join(dirpath, fn)
                out.append((os.path.relpath(full, SRC).replace(os.sep, "/"), full))
    return out


# ---- wheels ------------------------------------------------------------------------
def _zip_time() -> tuple[int, int, int, int, int, int]:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # 1980-01-01
    return time.gmtime(max(epoch, 315532800))[:6]


def _write_wheel(directory: str, files: list[tuple[str, bytes]], project: dict) -> str:
    name = "%s-%s" % (_dist_name(project), project["version"])
    wheel_name = "%s-%s.whl" % (name, TAG)
    dist_info = name + ".dist-info"
    for fn, data in sorted(_dist_info_files(project).items()):
        files.append(("%s/%s" % (dist_info, fn), data))
    record = []
    for arc, data in files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (arc, digest, len(data)))
    record.append("%s/RECORD,," % dist_info)
    files.append(("%s/RECORD" % dist_info, ("\n".join(record) + "\n").encode()))
    path = os.path.join(directory, wheel_name)
    when = _zip_time()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            info = zipfile.ZipInfo(arc, when)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return wheel_name


def _write_metadata_dir(directory: str, project: dict) -> str:
    dist_info = "%s-%s.dist-info" % (_dist_name(project), project["version"])
    os.makedirs(os.path.join(directory, dist_info), exist_ok=True)
    for fn, data in _dist_info_files(project).items():
        with open(os.path.join(directory, dist_info, fn), "wb") as f:
            f.write(data)
    return dist_info


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _write_metadata_dir(metadata_directory, _project())


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _write_metadata_dir(metadata_directory, _project())


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = []
    for arc, full in _package_files():
        with open(full, "rb") as f:
            files.append((arc, f.read()))
    return _write_wheel(wheel_directory, files, _project())


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    pth = (os.path.abspath(SRC) + "\n").encode()
    return _write_wheel(wheel_directory, [("_%s_editable.pth" % PACKAGE, pth)], _project())


# ---- sdist ---------------------------------------------------------------------------
def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    name = "%s-%s" % (_dist_name(project), project["version"])
    path = os.path.join(sdist_directory, name + ".tar.gz")
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))

    def add(tar: tarfile.TarFile, arc: str, data: bytes) -> None:
        info = tarfile.TarInfo("%s/%s" % (name, arc))
        info.size = len(data)
        info.mtime = mtime
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "PKG-INFO", _metadata(project).encode("utf-8"))
        for top in ("pyproject.toml", "README.md"):
            full = os.path.join(ROOT, top)
            if os.path.isfile(full):
                with open(full, "rb") as f:
                    add(tar, top, f.read())
        for sub in ("_build", "src", "tests"):
            for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, sub)):
                dirnames[:] = sorted(d for d in dirnames
                                     if d not in ("__pycache__", ".pytest_cache"))
                for fn in sorted(filenames):
                    if fn.endswith((".pyc", ".pyo")):
                        continue
                    full = os.path.join(dirpath, fn)
                    with open(full, "rb") as f:
                        add(tar, os.path.relpath(full, ROOT).replace(os.sep, "/"), f.read())
    return os.path.basename(path)
