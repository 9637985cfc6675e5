#!/usr/bin/env bash
# Creates (or reuses) the project-local virtualenv with moto's server, pinned in
# requirements.txt. Reinstalls only when requirements.txt changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.testenv/venv"
stamp="$venv/.requirements"
if [ -x "$venv/bin/moto_server" ] && cmp -s "$here/requirements.txt" "$stamp"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
