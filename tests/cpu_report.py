"""Rank the tests by CPU seconds from a ``COSTRECON_TEST_CPU=<dir>`` run (tests/conftest.py):
``python tests/cpu_report.py <dir> [N]``."""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    root = Path(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    rows = []
    for f in root.glob("cpu-*.tsv"):
        for line in f.read_text().splitlines():
            cpu, wall, spawned, nodeid = line.split("\t", 3)
            rows.append((float(cpu), float(wall), int(spawned), nodeid))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"{len(rows)} tests, {total:.1f} CPU-s in tests, {sum(r[2] for r in rows)} processes")
    print("   cpu    wall  procs  test")
    for cpu, wall, spawned, nodeid in rows[:top]:
        print(f"{cpu:6.2f} {wall:7.2f} {spawned:6d}  {nodeid}")


if __name__ == "__main__":
    main()
