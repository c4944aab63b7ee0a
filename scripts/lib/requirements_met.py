"""Whether every requirement of a pip requirements file is installed in this interpreter.

Prints "N packages met" or the unmet ones, and exits 1 if any is unmet. Run by
scripts/setup with the venv's python, so what counts is what that venv really holds
(a package removed by hand is noticed), not a remembered hash.
"""

import sys
from importlib import metadata

try:
    from packaging.requirements import Requirement
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement


def unmet(path):
    with open(path, encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    count = 0
    problems = []
    for line in filter(None, lines):
        req = Requirement(line)
        count += 1
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} not installed")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} does not satisfy {req.specifier}")
            continue
        for extra in sorted(req.extras):
            dist = metadata.distribution(req.name)
            for dep in dist.requires or []:
                dep_req = Requirement(dep)
                if dep_req.marker is None or not dep_req.marker.evaluate({"extra": extra}):
                    continue
                try:
                    metadata.version(dep_req.name)
                except metadata.PackageNotFoundError:
                    problems.append(f"{dep_req.name} (for {req.name}[{extra}]) not installed")
    return count, problems


def main():
    count, problems = unmet(sys.argv[1])
    if problems:
        print("unmet: " + "; ".join(problems))
        return 1
    print(f"{count} requirements of {sys.argv[1]} met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
