"""The OpenAPI file describes every route the server serves, with the right
methods: the route table in src/server/router.c is compared with
docs/openapi.yaml (parsed with a tiny indentation-based reader, so the test
needs no YAML library)."""

import os
import re

ROOT = os.environ.get("STRATA_SOURCE_DIR",
                      os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))


def router_routes():
    text = open(os.path.join(ROOT, "src", "server", "router.c")).read()
    routes = set()
    for method, pattern in re.findall(r'\{"([A-Z]+)", "(/[^"]*)", h_', text):
        routes.add((method.lower(), re.sub(r":([a-z_]+)", r"{\1}", pattern)))
    return routes


def openapi_routes():
    routes = set()
    path = None
    for line in open(os.path.join(ROOT, "docs", "openapi.yaml")):
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path = m.group(1)
            continue
        m = re.match(r"^    (get|put|post|patch|delete):", line)
        if m and path:
            routes.add((m.group(1), path))
        if re.match(r"^\S", line):
            path = None
    return routes


def test_every_route_is_documented():
    served = router_routes()
    documented = openapi_routes()
    assert len(served) > 20
    missing = sorted(served - documented)
    assert not missing, "routes missing from docs/openapi.yaml: %s" % missing


def test_no_documented_route_is_missing():
    extra = sorted(openapi_routes() - router_routes())
    assert not extra, "documented but not served: %s" % extra
