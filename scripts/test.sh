#!/usr/bin/env bash
# Build the sanitized tree (ASan+UBSan, no recovery) and run every test, then
# build the libFuzzer targets with clang and give each a short run.
# The last line is `N passed, N failed`, counted from meson's testlog.json.
#
#   scripts/test.sh [meson test args...]   e.g. scripts/test.sh unit.pool
#   SOCKPOOL_TEST_BUILD=dir   sanitized build directory (default build-test)
#   SOCKPOOL_FUZZ=0           skip the short fuzz runs
#   SOCKPOOL_TSAN=0           skip the ThreadSanitizer build (suite `tsan`:
#                             the thread modules' unit tests and integration
#                             files with workers = 2); SOCKPOOL_TSAN=1 runs it
#                             with the given meson test args too
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/deps.sh"
# shellcheck disable=SC2086
sockpool_install_missing $SOCKPOOL_BUILD_PKGS $SOCKPOOL_TEST_PKGS || exit 1
build="${SOCKPOOL_TEST_BUILD:-$top/build-test}"
fuzz_build="$top/build-fuzz"
logs=("$build/meson-logs/testlog.json")
extra_failed=0

if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$top" -Db_sanitize=address,undefined -Db_lundef=false \
		-Dwerror=true -Dc_args=-fno-sanitize-recover=all -Dc_link_args=-fno-sanitize-recover=all ||
		exit 1
fi
ninja -C "$build" || exit 1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rm -f "$build/meson-logs/testlog.json"
meson test -C "$build" --print-errorlogs --num-processes 2 "$@"
rc=$?

# The tree must be formatted with the committed .clang-format: every tracked
# .c/.h file (every one below the source folders outside a git checkout).
if [ $# -eq 0 ]; then
	sockpool_install_missing clang-format || exit 1
	if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
		files=$(git -C "$top" ls-files '*.c' '*.h')
	else
		files=$(cd "$top" && find conf pool proxy tests -name '*.[ch]')
	fi
	# shellcheck disable=SC2086
	unformatted=$(cd "$top" && clang-format --dry-run -Werror $files 2>&1 |
		sed -n 's/^\([^:]*\.[ch]\):[0-9]*:[0-9]*: error:.*/\1/p' | sort -u)
	if [ -n "$unformatted" ]; then
		echo "test.sh: clang-format would change these files (counted as one failed test;" \
			"fix with clang-format -i):" $unformatted >&2
		extra_failed=$((extra_failed + 1))
		rc=1
	fi
fi

# ThreadSanitizer cannot share a build with ASan: a clang build of its own
# runs what several threads use at once.
tsan=${SOCKPOOL_TSAN:-}
[ -z "$tsan" ] && { [ $# -eq 0 ] && tsan=1 || tsan=0; }
if [ "$tsan" != 0 ]; then
	sockpool_install_missing clang libclang-rt-14-dev || exit 1
	tsan_build="$top/build-tsan"
	if [ ! -f "$tsan_build/build.ninja" ]; then
		CC=clang meson setup "$tsan_build" "$top" -Db_sanitize=thread -Db_lundef=false \
			-Dwerror=true >/dev/null || exit 1
	fi
	if ninja -C "$tsan_build" >/dev/null; then
		rm -f "$tsan_build/meson-logs/testlog.json"
		targs=("$@")
		[ $# -eq 0 ] && targs=(--suite tsan)
		TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1" \
			meson test -C "$tsan_build" --no-rebuild --print-errorlogs --num-processes 2 \
			"${targs[@]}" || rc=1
		logs+=("$tsan_build/meson-logs/testlog.json")
	else
		echo "test.sh: the ThreadSanitizer build failed (counted as one failed test)" >&2
		extra_failed=$((extra_failed + 1))
		rc=1
	fi
fi

if [ "${SOCKPOOL_FUZZ:-1}" != 0 ] && [ $# -eq 0 ]; then
	# shellcheck disable=SC2086
	sockpool_install_missing clang libclang-rt-14-dev || exit 1
	if [ ! -f "$fuzz_build/build.ninja" ]; then
		CC=clang meson setup "$fuzz_build" "$top" -Dfuzz=true -Db_sanitize=address,undefined \
			-Db_lundef=false "-Dc_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" \
			>/dev/null || exit 1
	fi
	ninja -C "$fuzz_build" tests/fuzz/fuzz_socks5_server tests/fuzz/fuzz_socks5_client \
		tests/fuzz/fuzz_conf >/dev/null || exit 1
	rm -f "$fuzz_build/meson-logs/testlog.json"
	ASAN_OPTIONS=detect_leaks=1 meson test -C "$fuzz_build" --no-rebuild --suite fuzz \
		--print-errorlogs --num-processes 2 || rc=1
	logs+=("$fuzz_build/meson-logs/testlog.json")

	# The whole tree must also build warning-free with clang.
	clang_build="$top/build-clang"
	if [ ! -f "$clang_build/build.ninja" ]; then
		CC=clang meson setup "$clang_build" "$top" -Dwerror=true >/dev/null
	fi
	if ! ninja -C "$clang_build" >/dev/null; then
		echo "test.sh: the clang build failed (counted as one failed test)" >&2
		extra_failed=$((extra_failed + 1))
		rc=1
	fi
fi

python3 - "$extra_failed" "${logs[@]}" <<'PY'
import json, os, sys
passed, failed = 0, int(sys.argv[1])
for path in sys.argv[2:]:
    if not os.path.exists(path):
        failed += 1
        continue
    with open(path) as f:
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
sys.exit(1 if failed else 0)
PY
summary=$?
# Fail when meson failed or when the count shows a failure (a missing
# testlog counts as one).
[ $rc -eq 0 ] && rc=$summary
exit $rc
