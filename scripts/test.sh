#!/usr/bin/env bash
# Build the sanitized tree (ASan+UBSan, no recovery) and run every test.
# The last line is `N passed, N failed`, counted from meson's testlog.json.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/deps.sh"
# shellcheck disable=SC2086
sockpool_install_missing $SOCKPOOL_BUILD_PKGS $SOCKPOOL_TEST_PKGS || exit 1
build="${SOCKPOOL_TEST_BUILD:-$top/build-test}"
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$top" -Db_sanitize=address,undefined -Db_lundef=false \
		-Dwerror=true -Dc_args=-fno-sanitize-recover=all -Dc_link_args=-fno-sanitize-recover=all ||
		exit 1
fi
ninja -C "$build" || exit 1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
meson test -C "$build" --print-errorlogs --num-processes 2 "$@"
rc=$?
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = 0
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        r = json.loads(line)
        if r.get("result") in ("OK", "EXPECTEDFAIL"):
            passed += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed")
PY
exit $rc
