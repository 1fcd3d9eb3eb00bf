"""Print the pinned requirements of pyproject.toml, one per line, for pip.

Usage: python tools/deps.py [--dev]
"""

import sys
import tomllib
from pathlib import Path


def main(argv: list[str]) -> int:
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "project"
    ]
    reqs = list(project["dependencies"])
    if "--dev" in argv:
        reqs += project["optional-dependencies"]["dev"]
    print("\n".join(reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
