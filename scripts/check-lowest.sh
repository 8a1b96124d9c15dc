#!/usr/bin/env bash
# Keep pyproject's lower bounds true: install the lowest version each direct dependency allows
# ("name>=X" pins to X) into a throwaway virtualenv, the test tools at their usual versions, and
# run the fast tests (core, project, cli) against them. Exits non-zero when a bound is not true.
#
#   scripts/check-lowest.sh            (run by .ci/run; needs python3 and the package registry)
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - pyproject.toml >"$work/lowest.txt" <<'PY'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as handle:
    dependencies = tomllib.load(handle)["project"]["dependencies"]
for requirement in dependencies:
    found = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?>=([0-9][^,;]*)", requirement.replace(" ", ""))
    if found is None:
        sys.exit(f"check-lowest: cannot read a '>=' lower bound in {requirement!r}")
    print(f"{found.group(1)}=={found.group(3)}")
PY
echo "check-lowest: direct dependencies at their lower bounds:" $(cat "$work/lowest.txt")

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet --constraint "$work/lowest.txt" -e '.[dev]'
# The editable install points at this checkout; the venv's own scripts (weed, tako) are used.
PATH="$work/venv/bin:$PATH" "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
  tests/core tests/project tests/cli
