#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan+UBSan, coverage on the code under
# test) and run each for N seconds (default 20). Exits non-zero when a target
# crashes, leaks, trips a sanitizer or breaks one of its checks; the input
# that did it is left in $build/fuzz-artifacts/.
#
#   scripts/fuzz.sh [SECONDS]
#   SOCKPOOL_FUZZ_BUILD=dir   build directory (default build-fuzz)
#   SOCKPOOL_FUZZ_TARGETS="fuzz_socks5_server ..."   subset to run
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
secs="${1:-20}"
case "$secs" in
'' | *[!0-9]*)
	echo "usage: $0 [SECONDS]  (got '$secs')" >&2
	exit 2
	;;
esac
. "$top/scripts/deps.sh"
set +e
# shellcheck disable=SC2086
sockpool_install_missing $SOCKPOOL_BUILD_PKGS clang libclang-rt-14-dev || exit 1

build="${SOCKPOOL_FUZZ_BUILD:-$top/build-fuzz}"
targets="${SOCKPOOL_FUZZ_TARGETS:-fuzz_socks5_server fuzz_socks5_client fuzz_conf}"

if [ ! -f "$build/build.ninja" ]; then
	CC=clang meson setup "$build" "$top" -Dfuzz=true -Db_sanitize=address,undefined \
		-Db_lundef=false "-Dc_args=-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" ||
		exit 1
fi
ninja_targets=()
for t in $targets; do
	ninja_targets+=("tests/fuzz/$t")
done
ninja -C "$build" "${ninja_targets[@]}" || exit 1

# Seeds: one valid exchange per shape, so the fuzzers start past the
# version checks. The corpus grows in $build/fuzz-corpus between runs.
seed() { # target name bytes(printf format)
	local dir="$build/fuzz-corpus/$1"
	mkdir -p "$dir"
	[ -f "$dir/seed-$2" ] || printf "$3" >"$dir/seed-$2"
}
# server: option byte (bit 0: password wanted), then what a client sends
seed fuzz_socks5_server noauth-v4 '\x00\x05\x01\x00\x05\x01\x00\x01\xc0\x00\x02\x0a\x00\x19'
seed fuzz_socks5_server pw-domain '\x01\x05\x02\x00\x02\x01\x04kumo\x02pw\x05\x01\x00\x03\x0bexample.org\x00\x19'
seed fuzz_socks5_server bind-v6 '\x06\x05\x01\x00\x05\x02\x00\x01\xc0\x00\x02\x0a\x00\x00\x05\x01\x00\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x11\x01\xbb'
# client: read-size byte, then what an upstream proxy answers
seed fuzz_socks5_client noauth-v4 '\x03\x05\x00\x05\x00\x00\x01\xc0\x00\x02\x0a\x9c\x40'
seed fuzz_socks5_client pw-bind-domain '\x07\x05\x02\x01\x00\x05\x00\x00\x01\xcb\x00\x71\x05\x00\x00\x05\x00\x00\x03\x04host\x12\x34'
seed fuzz_socks5_client v6-refused '\x01\x05\x00\x05\x05\x00\x04\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x11\x01\xbb'
mkdir -p "$build/fuzz-corpus/fuzz_conf"
[ -f "$build/fuzz-corpus/fuzz_conf/seed-full" ] || cat >"$build/fuzz-corpus/fuzz_conf/seed-full" <<'EOF'
[server]
listen = 0.0.0.0:1080
listen = [::1]:1081 pool=warm
admin_listen = 127.0.0.1:9180
allow = 10.0.0.0/8, ::1/128
auth = password
default_pool = main
connect_timeout = 30s
deny_destinations = 169.254.0.0/16, fe80::/10

[defaults]
suspend_when_unplumbed.trigger = immediate
suspend_when_unplumbed.duration = 5m

[source "ip-1"]
address = 192.0.2.10
suspend_when_unplumbed.trigger = 3/1m
suspend_when_unplumbed.duration = 5m
max_connections = 500
rate = 100/s

[source "v6net"]
prefix = 2001:db8:1::/64
prefix_pick = hash

[source "far-1"]
socks5_proxy_server = 198.51.100.7:1080
socks5_proxy_username = relay
socks5_proxy_password = secret
suspend_when_proxy_unhealthy.trigger = 3/5m
suspend_when_proxy_unhealthy.duration = 10m

[pool "main"]
strategy = round-robin
source = ip-1 weight=2
source = v6net, far-1
source = 192.0.2.99 weight=0

[pool "warm"]
strategy = failover
source = ip-1 priority=1

[user "mta1"]
password = secret
pool = main
EOF

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
mkdir -p "$build/fuzz-artifacts"
failed=()
for t in $targets; do
	args=(-max_total_time="$secs" -print_final_stats=1
		-artifact_prefix="$build/fuzz-artifacts/$t-")
	[ "$t" = fuzz_conf ] && args+=(-dict="$top/tests/fuzz/conf.dict")
	log="$build/fuzz-artifacts/$t.log"
	echo "fuzz: $t for ${secs}s" >&2
	"$build/tests/fuzz/$t" "${args[@]}" "$build/fuzz-corpus/$t" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
	if [ $rc -ne 0 ]; then
		echo "FAIL $t: exit $rc after ${execs:-?} runs; see $log" >&2
		grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5 >&2
		failed+=("$t")
	else
		echo "ok   $t: ${execs:-?} runs, ${cov:-cov: ?}" >&2
	fi
done
if [ ${#failed[@]} -ne 0 ]; then
	echo "fuzz: ${#failed[@]} failed: ${failed[*]}" >&2
	exit 1
fi
echo "fuzz: all targets ran ${secs}s without a crash" >&2
