#!/usr/bin/env bash
# Installs what `make up` and `make test` need, only where it is missing:
# Debian packages (postgresql, pgbouncer, and every .ci/apt-*.txt) and a
# Python virtualenv (.venv) with every .ci/requirements-*.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

packages=(postgresql postgresql-client pgbouncer curl python3-venv)
for list in "$ROOT"/.ci/apt-*.txt; do
  [ -f "$list" ] || continue
  while read -r pkg; do
    pkg="${pkg%%#*}"; pkg="$(echo "$pkg" | xargs)"
    [ -n "$pkg" ] && packages+=("$pkg")
  done < "$list"
done
missing=()
for pkg in $(printf '%s\n' "${packages[@]}" | sort -u); do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"; fi
  if { [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; } && command -v apt-get >/dev/null; then
    echo "==> apt-get install $*"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "missing Debian packages: $* (run: sudo apt-get install $*)" >&2
    return 1
  fi
}
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}" || exit 1; fi
# Debian's own nodejs ships npm as a package of its own (NodeSource's nodejs
# includes it): only the browser tests need it (make test-browser says so).
command -v npm >/dev/null || apt_install npm || true
# The Debian packages start their own services where systemd exists; the
# project runs its own instances on other ports and needs none of them.

stamp="$VENV/.requirements"
wanted="$(cat "$ROOT"/.ci/requirements-*.txt 2>/dev/null | sed 's/#.*//' | grep -v '^\s*$' | sort -u)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "==> python venv $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  printf '%s\n' "$wanted" > "$VENV/requirements.txt"
  "$VENV/bin/pip" install -q -r "$VENV/requirements.txt"
  printf '%s\n' "$wanted" > "$stamp"
fi
