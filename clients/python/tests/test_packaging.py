"""The package installs offline with pip (in-tree build backend, no downloads),
and its public surface matches the brief."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import zipfile

import pytest

from client_testlib import SRC

import strata_client as sc

PROJECT = os.path.dirname(SRC)


def test_brief_interfaces() -> None:
    assert inspect.isabstract(sc.MemoryStore)
    assert sc.MemoryStore.__abstractmethods__ == frozenset({"get", "put"})
    for cls in (sc.ShortTermMemory, sc.MediumTermMemory, sc.LongTermMemory):
        assert issubclass(cls, sc.MemoryStore) and not inspect.isabstract(cls)
        for name in ("get", "put"):
            fn = getattr(cls, name)
            assert inspect.iscoroutinefunction(fn)
            params = list(inspect.signature(fn).parameters)
            assert params[:2] == ["self", "key"]
    sig = inspect.signature(sc.MediumTermMemory.search)
    assert list(sig.parameters) == ["self", "query_vector", "limit"]
    assert sig.parameters["limit"].default == 5
    sig = inspect.signature(sc.LongTermMemory.query_subgraph)
    assert list(sig.parameters)[:3] == ["self", "center_node_id", "depth"]
    assert sig.parameters["depth"].default == 2
    for name in ("record_turn", "end_session", "recall", "forget_user", "profile",
                 "resolve_clarification", "distill", "job", "wait_job"):
        assert inspect.iscoroutinefunction(getattr(sc.MemoryOrchestrator, name)), name
    assert inspect.signature(sc.MemoryOrchestrator.recall).parameters["budget_chars"].default \
        == 4000
    assert os.path.isfile(os.path.join(SRC, "strata_client", "py.typed"))


def test_wheel_and_offline_install(tmp_path) -> None:
    try:
        import pip  # noqa: F401
    except ImportError:
        pytest.skip("pip is not installed")
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps",
                        "--disable-pip-version-check", "--no-cache-dir", "--target",
                        str(target), PROJECT], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (target / "strata_client" / "py.typed").is_file()
    code = ("import strata_client, sys; assert strata_client.__file__.startswith(sys.argv[1]);"
            "print(strata_client.__version__)")
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=str(target)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == sc.__version__


def test_backend_builds_wheel_and_sdist(tmp_path) -> None:
    sys.path.insert(0, os.path.join(PROJECT, "_build"))
    try:
        import strata_build
    finally:
        sys.path.pop(0)
    whl = strata_build.build_wheel(str(tmp_path))
    assert whl == "strata_client-%s-py3-none-any.whl" % sc.__version__
    with zipfile.ZipFile(tmp_path / whl) as z:
        names = set(z.namelist())
        meta = z.read("strata_client-%s.dist-info/METADATA" % sc.__version__).decode()
    assert "strata_client/py.typed" in names and "strata_client/_http.py" in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    head = meta.split("\n\n")[0].splitlines()
    assert "Requires-Python: >=3.10" in head
    # No run-time dependency: only the optional test extra requires anything.
    assert all("extra ==" in line for line in head if line.startswith("Requires-Dist"))
    sdist = strata_build.build_sdist(str(tmp_path))
    assert sdist.endswith(".tar.gz")
    text = open(os.path.join(PROJECT, "pyproject.toml"), encoding="utf-8").read()
    assert strata_build._parse_toml_subset(text)["project"]["version"] == sc.__version__
