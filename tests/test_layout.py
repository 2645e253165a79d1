"""The engine must not depend on the UI (DESIGN.md §2): importing every daemon module in a fresh
interpreter must not load textual."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import costrecon_daemon


@pytest.mark.slow
def test_daemon_package_never_imports_textual():
    modules = [
        m.name
        for m in pkgutil.walk_packages(costrecon_daemon.__path__, "costrecon_daemon.")
        if ".migrations" not in m.name
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"textual was imported by the daemon package: {out}"
    assert len(modules) > 10  # the walk really found the package's modules
