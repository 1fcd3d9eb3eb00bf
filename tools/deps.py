"""Print the pinned requirements of pyproject.toml, one per line, for pip.

Usage: python tools/deps.py [--dev]

Without ``--dev``: the student environment and the staff tools; with it, the test tools too.
"""

import sys
import tomllib
from pathlib import Path


def main(argv: list[str]) -> int:
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "project"
    ]
    extras = project["optional-dependencies"]
    reqs = [*project["dependencies"], *extras["staff"]]
    if "--dev" in argv:
        reqs += extras["dev"]
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
