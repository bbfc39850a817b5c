"""examples/agent_loop.py runs end to end against a real stratad."""

from __future__ import annotations

import os
import subprocess
import sys

from client_testlib import SRC, unique

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(SRC))), "examples",
                       "agent_loop.py")


def test_agent_loop_example(url: str) -> None:
    assert os.path.isfile(EXAMPLE), EXAMPLE
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, EXAMPLE, "--url", url, "--user", unique("ana"),
                          "--session", unique("demo")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("agent> You said:") == 4
    assert "consolidation job" in out.stdout and ": done" in out.stdout


def test_agent_loop_example_server_down() -> None:
    from client_testlib import free_port
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, EXAMPLE, "--url", "http://127.0.0.1:%d" % free_port()],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "error:" in out.stderr and "connect" in out.stderr
