#!/usr/bin/env bash
# Runs crossplane/checks: the real `crossplane render` and the upstream Go API types, all pinned in
# crossplane/go.mod and fetched through the Go module proxy. The first run builds them (minutes);
# Go's build cache keeps later runs to seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need="$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
have="$("$GO" env GOVERSION 2>/dev/null | sed 's/^go//')" || have=""
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  echo "test-crossplane: needs Go >= $need (found: ${have:-none}); install it from https://go.dev/dl/ into /usr/local/go or set GO=/path/to/go" >&2
  exit 1
fi
export GOTOOLCHAIN=local
exec "$GO" test -count=1 -v ./checks/...
