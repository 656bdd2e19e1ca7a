#!/usr/bin/env bash
# Build sockpool if needed and run it: on the embedded default, or with the
# arguments given (e.g. `scripts/run.sh -c examples/loopback-rotation.ini`).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/deps.sh"
# shellcheck disable=SC2086
sockpool_install_missing $SOCKPOOL_BUILD_PKGS
build="$top/build-release"
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$top" --buildtype=release -Dtests=false >/dev/null
fi
ninja -C "$build" proxy/sockpool >/dev/null
exec "$build/proxy/sockpool" "$@"
