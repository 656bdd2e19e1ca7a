#!/usr/bin/env bash
# Benchmark sockpool (relay = splice and relay = copy) side by side with
# direct TCP, microsocks and dante on loopback (SPEC section 7): connections
# per second at 1, 64 and 512 clients, single- and 8-stream throughput each
# way with the proxy's CPU per GB, RSS and fds per idle relayed connection
# opened gradually and in one burst, and RSS once they are closed again.
# Prints a results table on stdout; with --write-docs also writes it as a
# dated section of docs/BENCHMARKS.md. Exit status: 0 clean, 1 the run saw
# errors (they are in the table), 2 setup failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build-bench"
doc="$top/docs/BENCHMARKS.md"

usage() {
	cat <<'EOF'
usage: scripts/bench.sh [--quick] [--write-docs] [options]
  --quick             one short round, 2,000 idle connections (about 1 minute)
  --write-docs        add or replace today's section in docs/BENCHMARKS.md
  --rounds N          rounds of the CPS and throughput runs (default 3); each
                      figure is the median over rounds, each ratio the median
                      of the per-round ratios
  --duration S        measured seconds per CPS run (default 4, plus 1 s warm-up)
  --workers N         concurrent CPS clients of the main CPS row (default 64;
                      rows for 1 and 512 clients are always run)
  --stream-bytes N    bytes per throughput run (default 1073741824 = 1 GiB)
  --stream-seconds S  time cap per throughput run (default 5)
  --idle-conns N      idle relayed connections per proxy (default 10000; capped
                      by the open-files hard limit, two sockets per connection),
                      opened 128 at a time (gradual) and all at once (burst)
  --build-dir DIR     meson build directory (default build-bench)
  --sockpool-workers "LIST"  sockpool's own `workers =` rows, CPS only, with the
                      default relay (default "1 2 auto"; "" skips them)
EOF
}

write_docs=0 rounds=3 cps_s=4 warm_s=1 workers=64 lat_s=2
stream_bytes=$((1 << 30)) stream_s=5 idle_n=10000
sp_workers="1 2 auto"
cmdline="scripts/bench.sh${*:+ $*}"
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) # options after it still apply
		rounds=1 cps_s=2 warm_s=0.5 lat_s=1 stream_bytes=$((256 << 20)) stream_s=2 idle_n=2000 ;;
	--write-docs) write_docs=1 ;;
	--rounds) rounds=$2; shift ;;
	--duration) cps_s=$2; shift ;;
	--workers) workers=$2; shift ;;
	--stream-bytes) stream_bytes=$2; shift ;;
	--stream-seconds) stream_s=$2; shift ;;
	--idle-conns) idle_n=$2; shift ;;
	--build-dir) build=$2; shift ;;
	--sockpool-workers) sp_workers=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

# shellcheck source=scripts/deps.sh
. "$top/scripts/deps.sh"
# shellcheck disable=SC2086
sockpool_install_missing $SOCKPOOL_BUILD_PKGS procps iproute2 microsocks dante-server || exit 2

if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" "$top" --buildtype=release >/dev/null
fi
ninja -C "$build" proxy/sockpool tests/bench/socks_load >/dev/null
sockpool="$build/proxy/sockpool"
load="$build/tests/bench/socks_load"

# Each relayed connection costs the proxy two descriptors.
ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
idle_req=$idle_n
if [ "$nofile" != unlimited ] && [ $((2 * idle_n + 64)) -gt "$nofile" ]; then
	idle_n=$(((nofile - 64) / 2))
fi

tmp=$(mktemp -d /tmp/sockpool-bench.XXXXXX)
pids=()
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# A free port below the ephemeral range, so no client socket can take it.
pick_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		listening "$p" || { echo "$p"; return; }
	done
}

wait_listen() { # port pid name
	local i
	for i in $(seq 100); do
		listening "$1" && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	echo "bench: $3 did not come up on port $1; its log:" >&2
	cat "$tmp/$3.log" >&2 || true
	exit 2
}

# Every process of a tree: dante forks its workers.
tree_pids() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END { q[0] = root; n = 1
		      for (i = 0; i < n; i++) { print q[i]; m = split(kids[q[i]], k, " ")
		                                for (j = 1; j <= m; j++) q[n++] = k[j] } }'
}

# Kernel-reported CPU of the tree in clock ticks, reaped children included.
# cat skips a process that has just exited; the root comes first.
cpu_ticks() {
	local files=() p
	for p in $(tree_pids "$1"); do files+=("/proc/$p/stat"); done
	# The command name may hold spaces: count fields after its closing ")".
	{ cat "${files[@]}" 2>/dev/null || true; } | awk '{
		sub(/.*\) /, ""); s += $12 + $13; if (NR == 1) s += $14 + $15
	} END { print s + 0 }'
}

mem_kib() { # pid VmRSS|Pss
	local files=() p f=status
	[ "$2" = Pss ] && f=smaps_rollup
	for p in $(tree_pids "$1"); do files+=("/proc/$p/$f"); done
	{ cat "${files[@]}" 2>/dev/null || true; } | awk -v k="$2:" '$1 == k { s += $2 } END { print s + 0 }'
}

field() { # "RESULT ... key=value ..." key
	tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k && !seen { print $2; seen = 1 }'
}

# ---- the destination server and the proxies ----

"$load" serve -p 64 -t 3600 >"$tmp/serve.out" 2>"$tmp/serve.log" &
serve_pid=$!
pids+=("$serve_pid")
for i in $(seq 50); do grep -q READY "$tmp/serve.out" && break; sleep 0.1; done
grep -q READY "$tmp/serve.out" || { echo "bench: socks_load serve did not start" >&2; exit 2; }
read -r echo_port hold_port < <(sed -E 's/READY echo=([0-9]+) hold=([0-9]+)/\1 \2/' "$tmp/serve.out")

# sockpool runs once per relay mode; every other target at its own best
# setting (see docs/BENCHMARKS.md, "Targets under test").
proxies=(sockpool-splice sockpool-copy microsocks dante)
targets=(direct "${proxies[@]}")
declare -A port pid
taken=" "
for t in "${proxies[@]}"; do
	p=$(pick_port)
	while [[ "$taken" == *" $p "* ]]; do p=$(pick_port); done
	port[$t]=$p
	taken="$taken$p "
done

for relay in splice copy; do
	cat >"$tmp/sockpool-$relay.ini" <<EOF
[server]
listen = 127.0.0.1:${port[sockpool-$relay]}
admin_listen =
log_level = warn
default_pool = bench
max_connections = 100000
max_connections_per_client = 0
relay = $relay
workers = auto

[source "lo-1"]
address = 127.0.0.1

[source "lo-2"]
address = 127.0.0.2

[source "lo-3"]
address = 127.0.0.3

[pool "bench"]
strategy = round-robin
source = lo-1, lo-2, lo-3
EOF
done

if [ "$(id -u)" -eq 0 ]; then
	dante_users="user.privileged: root
user.unprivileged: nobody"
else
	dante_users="user.privileged: $(id -un)
user.unprivileged: $(id -un)"
fi
cat >"$tmp/danted.conf" <<EOF
logoutput: $tmp/dante.log
internal: 127.0.0.1 port = ${port[dante]}
external: 127.0.0.1
socksmethod: none
clientmethod: none
$dante_users
client pass {
	from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
	from: 127.0.0.0/8 to: 127.0.0.0/8
	command: connect
}
EOF
dante_n=$(nproc)

start_proxy() { # name
	case "$1" in
	sockpool-*) "$sockpool" -c "$tmp/$1.ini" 2>>"$tmp/$1.log" & ;;
	microsocks) microsocks -i 127.0.0.1 -p "${port[microsocks]}" >>"$tmp/microsocks.log" 2>&1 & ;;
	dante) danted -f "$tmp/danted.conf" -N "$dante_n" -p "$tmp/danted.pid" >>"$tmp/dante.log" 2>&1 & ;;
	esac
	pid[$1]=$!
	pids+=("${pid[$1]}")
	wait_listen "${port[$1]}" "${pid[$1]}" "$1"
}

# The whole tree (dante's children hold the listening socket too), then
# until the port is free for the next start.
stop_proxy() {
	local tree keep=() p i
	tree=$(tree_pids "${pid[$1]}")
	stop_pid "${pid[$1]}"
	# shellcheck disable=SC2086
	kill -TERM $tree 2>/dev/null || true
	for i in $(seq 100); do
		# shellcheck disable=SC2086
		kill -0 $tree 2>/dev/null || break
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $tree 2>/dev/null || true
	for i in $(seq 100); do
		listening "${port[$1]}" || break
		sleep 0.1
	done
	for p in "${pids[@]}"; do [ "$p" = "${pid[$1]}" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

results="$tmp/results"
: >"$results"
any_errors=0

run_load() { # phase target round cmd...
	local phase=$1 target=$2 round=$3 c0=0 c1=0 s0 s1 out rc=0
	shift 3
	[ "$target" = direct ] || c0=$(cpu_ticks "${pid[$target]}")
	s0=$(cpu_ticks "$serve_pid")
	out=$(timeout 120 "$load" "$@") || rc=$?
	s1=$(cpu_ticks "$serve_pid")
	[ "$target" = direct ] || c1=$(cpu_ticks "${pid[$target]}")
	if [ "$rc" -ge 2 ] || ! grep -q '^RESULT' <<<"$out"; then
		echo "bench: socks_load $* failed (exit $rc)" >&2
		exit 2
	fi
	[ "$rc" -eq 0 ] || any_errors=1
	echo "$phase $target $round cpu_ticks=$((c1 - c0)) srv_ticks=$((s1 - s0)) $(grep '^RESULT' <<<"$out")" >>"$results"
	echo "  [$SECONDS s] $phase $target round $round: $(grep '^RESULT' <<<"$out" | cut -c1-140)" >&2
}

echo "bench: $(nproc) CPUs, $rounds round(s), CPS ${cps_s}s after ${warm_s}s warm-up," \
	"1/$workers/512 clients; idle $idle_n connections" >&2

# ---- idle RSS, each proxy fresh, gradual then burst ----

fd_count() { # every descriptor of the tree
	local p n=0
	for p in $(tree_pids "$1"); do
		n=$((n + $(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
	done
	echo "$n"
}

idle_run() { # target mode(gradual|burst)
	local t=$1 mode=$2 conc=128 lp rc=0 i line alive
	local r0 p0 f0 n0 r1 p1 f1 n1 r2 f2 t0
	[ "$mode" = burst ] && conc=$idle_n
	start_proxy "$t"
	sleep 0.5
	r0=$(mem_kib "${pid[$t]}" VmRSS) p0=$(mem_kib "${pid[$t]}" Pss)
	f0=$(fd_count "${pid[$t]}") n0=$(tree_pids "${pid[$t]}" | wc -l)
	# No timeout(1) wrapper: SIGUSR1 must reach the loader; its own
	# per-connection timeouts and -t bound it.
	t0=$SECONDS
	"$load" idle -x "127.0.0.1:${port[$t]}" -d "127.0.0.1:$hold_port" \
		-n "$idle_n" -c "$conc" -t 120 >"$tmp/idle.$t.$mode" 2>&1 &
	lp=$!
	for i in $(seq 1200); do
		grep -q '^RESULT' "$tmp/idle.$t.$mode" && break
		kill -0 "$lp" 2>/dev/null || break
		sleep 0.1
	done
	sleep 0.2
	r1=$(mem_kib "${pid[$t]}" VmRSS) p1=$(mem_kib "${pid[$t]}" Pss)
	f1=$(fd_count "${pid[$t]}") n1=$(tree_pids "${pid[$t]}" | wc -l)
	kill -USR1 "$lp" 2>/dev/null || true
	wait "$lp" || rc=$?
	# The loader has closed every connection: wait (bounded) for the proxy
	# to have closed both sides of each too, then see what memory it kept.
	for i in $(seq 300); do
		[ "$(ss -Htn state established state close-wait \
			"( sport = :${port[$t]} or dport = :$hold_port )" | wc -l)" -eq 0 ] && break
		sleep 0.1
	done
	# Its close callbacks run a loop turn after the last close.
	sleep 0.2
	r2=$(mem_kib "${pid[$t]}" VmRSS) f2=$(fd_count "${pid[$t]}")
	line=$(grep '^RESULT' "$tmp/idle.$t.$mode" || echo "RESULT opened=0 errors=1")
	alive=$(grep '^ALIVE' "$tmp/idle.$t.$mode" || echo "ALIVE alive=0 dead=?")
	[ "$rc" -eq 0 ] || any_errors=1
	echo "idle-$mode $t 1 rss0=$r0 rss1=$r1 rss2=$r2 pss0=$p0 pss1=$p1 fds0=$f0 fds1=$f1 fds2=$f2 nproc0=$n0 nproc1=$n1 wall_s=$((SECONDS - t0)) $line $alive" >>"$results"
	echo "  [$SECONDS s] idle $mode $t: ${line:0:90} ${alive} rss $r0 -> $r1 -> $r2 KiB, fds $f0 -> $f1 -> $f2" >&2
	stop_proxy "$t"
}

for t in "${proxies[@]}"; do
	idle_run "$t" gradual
	idle_run "$t" burst
done

# ---- CPS and throughput, rounds in rotating order ----
nt=${#targets[@]}
for t in "${proxies[@]}"; do start_proxy "$t"; done
xarg() { [ "$1" = direct ] || echo "-x 127.0.0.1:${port[$1]}"; }
for phase in cps cps512; do
	c=$workers
	[ "$phase" = cps512 ] && c=512
	for r in $(seq "$rounds"); do
		for i in $(seq 0 $((nt - 1))); do
			t=${targets[$(((i + r - 1) % nt))]}
			# shellcheck disable=SC2046
			run_load "$phase" "$t" "$r" cps $(xarg "$t") -d "127.0.0.1:$echo_port" -c "$c" \
				-w "$warm_s" -t "$cps_s" -p 64
		done
	done
done
# One client, once per target: unloaded latency, and connections/s at 1.
for t in "${targets[@]}"; do
	# shellcheck disable=SC2046
	run_load lat "$t" 1 cps $(xarg "$t") -d "127.0.0.1:$echo_port" -c 1 -w 0.5 -t "$lat_s" -p 64
done
for r in $(seq "$rounds"); do
	for i in $(seq 0 $((nt - 1))); do
		t=${targets[$(((i + r - 1) % nt))]}
		for n in 1 8; do
			# shellcheck disable=SC2046
			run_load "s${n}up" "$t" "$r" stream $(xarg "$t") -c "$n" -b "$stream_bytes" -t "$stream_s"
			# shellcheck disable=SC2046
			run_load "s${n}down" "$t" "$r" stream $(xarg "$t") -c "$n" -b "$stream_bytes" -t "$stream_s" -r
		done
	done
done
for t in "${proxies[@]}"; do stop_proxy "$t"; done

# ---- sockpool's workers = 1, 2, auto: CPS and CPU per connection ----
for w in $sp_workers; do
	t=sockpool-w$w
	port[$t]=$(pick_port)
	sed -e "s/^listen = .*/listen = 127.0.0.1:${port[$t]}/" -e "s/^workers = .*/workers = $w/" \
		"$tmp/sockpool-splice.ini" >"$tmp/$t.ini"
	start_proxy "$t"
	for r in $(seq "$rounds"); do
		run_load cps "$t" "$r" cps -x "127.0.0.1:${port[$t]}" -d "127.0.0.1:$echo_port" \
			-c "$workers" -w "$warm_s" -t "$cps_s" -p 64
	done
	stop_proxy "$t"
done

# ---- aggregate ----
clk=$(getconf CLK_TCK)

median() { sort -g | awk '{ v[n++] = $1 } END { if (!n) print "nan"; else print (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2 }'; }

# One value of a results line, derived ones included: cpu_us_per_conn (the
# proxy's CPU), load_us_per_conn (load generator and destination server),
# total_us_per_conn (both), cpu_s_per_gb (the proxy's CPU seconds per 10^9
# bytes relayed), load_s_per_gb (the stream client's, sink or source thread
# included), idle_kib / idle_pss_kib (per idle connection), idle_fds (per
# idle connection), after_pct (RSS after close against before, percent).
value_awk='
	function value(k) {
		# A tree whose children exited unreaped by its root loses their
		# CPU (dante): no figure rather than a wrong one.
		if ((k == "cpu_us_per_conn" || k == "cpu_s_per_gb" || k == "total_us_per_conn") && f["cpu_ticks"] < 0) return "nan"
		if (k == "cpu_us_per_conn") return f["ok_total"] ? f["cpu_ticks"] * 1e6 / clk / f["ok_total"] : "nan"
		if (k == "load_us_per_conn") return f["ok_total"] ? (f["cpu_us"] + f["srv_ticks"] * 1e6 / clk) / f["ok_total"] : "nan"
		if (k == "total_us_per_conn") return f["ok_total"] ? (f["cpu_us"] + (f["srv_ticks"] + f["cpu_ticks"]) * 1e6 / clk) / f["ok_total"] : "nan"
		if (k == "cpu_s_per_gb") return f["bytes"] ? f["cpu_ticks"] / clk / (f["bytes"] / 1e9) : "nan"
		if (k == "load_s_per_gb") return f["bytes"] ? f["cpu_us"] / 1e6 / (f["bytes"] / 1e9) : "nan"
		if (k == "idle_kib") return f["opened"] ? (f["rss1"] - f["rss0"]) / f["opened"] : "nan"
		if (k == "idle_pss_kib") return f["opened"] ? (f["pss1"] - f["pss0"]) / f["opened"] : "nan"
		if (k == "idle_fds") return f["opened"] ? (f["fds1"] - f["fds0"]) / f["opened"] : "nan"
		if (k == "after_pct") return f["rss0"] ? (f["rss2"] - f["rss0"]) * 100 / f["rss0"] : "nan"
		return (k in f) ? f[k] : "nan"
	}
	function parse() { delete f; for (i = 4; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }'

# Median over rounds of one value: phase target key.
med() {
	awk -v ph="$1" -v tg="$2" -v k="$3" -v clk="$clk" "$value_awk"'
		$1 == ph && $2 == tg { parse(); v = value(k); if (v != "nan") print v }' "$results" | median
}

# Sum of errors over rounds: phase target.
errs() {
	awk -v ph="$1" -v tg="$2" '$1 == ph && $2 == tg {
		for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "errors") s += kv[2] } }
		END { print s + 0 }' "$results"
}

# Median over rounds of self's value divided by another target's, each
# round's ratio from that round's own runs. other: a target, "best" (the
# higher of microsocks and dante) or "best_low" (the lower). With inverse = 1
# the other's value is divided by self's: for costs, so the ratio reads like
# one of rates.
ratio() { # phase key self other [inverse]
	awk -v ph="$1" -v k="$2" -v self="$3" -v other="$4" -v inv="${5:-0}" -v clk="$clk" "$value_awk"'
		$1 == ph { parse(); val[$3, $2] = value(k); rounds[$3] = 1 }
		END {
			for (r in rounds) {
				s = val[r, self]
				m = val[r, "microsocks"]; d = val[r, "dante"]
				if (other == "best") o = (m > d) ? m : d
				else if (other == "best_low") o = (m < d) ? m : d
				else o = val[r, other]
				if (s == "nan" || o == "nan" || s == "" || o == "") continue
				if (inv && s > 0) print o / s
				else if (!inv && o > 0) print s / o
			}
		}' "$results" | median | awk '{ if ($1 == "nan") print; else printf "%.2f\n", $1 }'
}

best_peer() { # phase key [low]: the peer with the higher (low: lower) median
	local a b
	a=$(med "$1" microsocks "$2") b=$(med "$1" dante "$2")
	awk -v a="$a" -v b="$b" -v low="${3:-0}" 'BEGIN {
		if (b == "nan" || (low ? a <= b : a >= b)) print "microsocks"; else print "dante" }'
}

fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "nan" || v == "") print "–"; else printf "%.*f\n", d, v }'; }
with_err() { # figure errors
	if [ "$2" -gt 0 ]; then echo "$1 (**$2 errors**)"; else echo "$1"; fi
}
yesno() { awk -v v="$1" -v op="$2" -v lim="$3" 'BEGIN {
	if (v == "nan" || v == "") { print "**not measured**"; exit }
	ok = (op == ">=") ? (v >= lim) : (v <= lim); print ok ? "**met**" : "**not met**" }'; }

# One table row: label, then a cell per target from `cell_fn target`, then
# the ratio cells given.
row() { # label cell_fn ratio-cells...
	local label=$1 fn=$2 t line
	shift 2
	line="| $label |"
	for t in "${targets[@]}"; do line="$line $($fn "$t") |"; done
	for t in "$@"; do line="$line $t |"; done
	echo "$line"
}

cps_cell() { with_err "$(fmt "$(med "$ph" "$1" cps)")" "$(errs "$ph" "$1")"; }
lat_cell() { with_err "$(fmt "$(med "$ph" "$1" p50_us)") / $(fmt "$(med "$ph" "$1" p99_us)")" "$(errs "$ph" "$1")"; }
cpu_cell() { if [ "$1" = direct ]; then echo "–"; else fmt "$(med "$ph" "$1" cpu_us_per_conn)"; fi; }
load_cell() { fmt "$(med "$ph" "$1" load_us_per_conn)"; }
tot_cell() { fmt "$(med "$ph" "$1" total_us_per_conn)"; }
mbps_cell() { with_err "$(fmt "$(med "$ph" "$1" mbps)")" "$(errs "$ph" "$1")"; }
gb_cell() { if [ "$1" = direct ]; then echo "–"; else fmt "$(med "$ph" "$1" cpu_s_per_gb)" 2; fi; }
lgb_cell() { fmt "$(med "$ph" "$1" load_s_per_gb)" 2; }
idle_cell() {
	local t=$1 o e a
	if [ "$t" = direct ]; then echo "–"; return; fi
	o=$(med "$ph" "$t" opened) e=$(med "$ph" "$t" errors) a=$(med "$ph" "$t" alive)
	local c
	c="$(fmt "$(med "$ph" "$t" idle_kib)" 2) (Pss $(fmt "$(med "$ph" "$t" idle_pss_kib)" 2))"
	if [ "${e:-1}" != 0 ] || [ "$a" != "$o" ] || [ "$o" != "$idle_n" ]; then
		c="$c (**opened $o, alive $a, errors $e**)"
	fi
	echo "$c"
}
fds_cell() { if [ "$1" = direct ]; then echo "–"; else fmt "$(med "$ph" "$1" idle_fds)" 2; fi; }
after_cell() {
	if [ "$1" = direct ]; then echo "–"; return; fi
	echo "$(fmt "$(med "$ph" "$1" rss0)") → $(fmt "$(med "$ph" "$1" rss1)") → $(fmt "$(med "$ph" "$1" rss2)") (+$(fmt "$(med "$ph" "$1" after_pct)" 1)%)"
}

# Ratio cells for a rate (higher is better): splice/direct copy/direct splice/best copy/best.
rate_ratios() { # phase key
	local bp
	bp=$(best_peer "$1" "$2")
	echo "$(ratio "$1" "$2" sockpool-splice direct)" "$(ratio "$1" "$2" sockpool-copy direct)" \
		"$(ratio "$1" "$2" sockpool-splice best) ($bp)" "$(ratio "$1" "$2" sockpool-copy best) ($bp)"
}
# For a cost: other / sockpool, against the cheaper peer.
cost_ratios() { # phase key [with-direct]
	local bp d1="" d2=""
	bp=$(best_peer "$1" "$2" 1)
	if [ "${3:-0}" = 1 ]; then d1=$(ratio "$1" "$2" sockpool-splice direct 1) d2=$(ratio "$1" "$2" sockpool-copy direct 1); fi
	echo "$d1" "$d2" "$(ratio "$1" "$2" sockpool-splice best_low 1) ($bp)" "$(ratio "$1" "$2" sockpool-copy best_low 1) ($bp)"
}
mem_ratios() { # phase key: sockpool / the lower peer (lower is better)
	local bp b s1 s2
	bp=$(best_peer "$1" "$2" 1)
	b=$(med "$1" "$bp" "$2") s1=$(med "$1" sockpool-splice "$2") s2=$(med "$1" sockpool-copy "$2")
	awk -v s1="$s1" -v s2="$s2" -v b="$b" -v bp="$bp" 'BEGIN {
		if (b > 0 && s1 != "nan") printf "%.2f (%s) ", s1 / b, bp; else printf "– (%s) ", bp
		if (b > 0 && s2 != "nan") printf "%.2f (%s)\n", s2 / b, bp; else printf "– (%s)\n", bp }'
}

table() {
	local -a rr
	echo "| | direct | sockpool splice | sockpool copy | microsocks | dante | splice / direct | copy / direct | splice / best peer | copy / best peer |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	ph=lat; read -ra rr <<<"$(rate_ratios lat cps)"
	row "connections/s, 1 client" cps_cell "${rr[0]}" "${rr[1]}" "${rr[2]} ${rr[3]}" "${rr[4]} ${rr[5]}"
	ph=cps; read -ra rr <<<"$(rate_ratios cps cps)"
	row "connections/s, $workers clients" cps_cell "${rr[0]}" "${rr[1]}" "${rr[2]} ${rr[3]}" "${rr[4]} ${rr[5]}"
	ph=cps512; read -ra rr <<<"$(rate_ratios cps512 cps)"
	row "connections/s, 512 clients" cps_cell "${rr[0]}" "${rr[1]}" "${rr[2]} ${rr[3]}" "${rr[4]} ${rr[5]}"
	ph=lat; row "CONNECT→reply p50 / p99, µs, 1 client (direct: connect)" lat_cell "" "" "" ""
	ph=cps; row "CONNECT→reply p50 / p99, µs, $workers clients" lat_cell "" "" "" ""
	ph=cps512; row "CONNECT→reply p50 / p99, µs, 512 clients" lat_cell "" "" "" ""
	ph=cps; read -ra rr <<<"$(cost_ratios cps cpu_us_per_conn)"
	row "proxy CPU per connection, µs, $workers clients" cpu_cell "" "" "${rr[0]} ${rr[1]}" "${rr[2]} ${rr[3]}"
	ph=cps512; read -ra rr <<<"$(cost_ratios cps512 cpu_us_per_conn)"
	row "proxy CPU per connection, µs, 512 clients" cpu_cell "" "" "${rr[0]} ${rr[1]}" "${rr[2]} ${rr[3]}"
	ph=cps; row "client + destination CPU per connection, µs, $workers clients" load_cell "" "" "" ""
	read -ra rr <<<"$(cost_ratios cps total_us_per_conn 1)"
	row "all CPU per connection, µs, $workers clients (ratios: CPU-normalised CPS)" tot_cell "${rr[0]}" "${rr[1]}" "${rr[2]} ${rr[3]}" "${rr[4]} ${rr[5]}"
	for s in s1up s1down s8up s8down; do
		local label="1 stream"
		[ "${s:1:1}" = 8 ] && label="8 streams"
		local dir="up (client → destination)"
		[ "${s#s?}" = down ] && dir="down (destination → client)"
		ph=$s; read -ra rr <<<"$(rate_ratios "$s" mbps)"
		row "$label $dir, MB/s" mbps_cell "${rr[0]}" "${rr[1]}" "${rr[2]} ${rr[3]}" "${rr[4]} ${rr[5]}"
		read -ra rr <<<"$(cost_ratios "$s" cpu_s_per_gb)"
		row "$label $dir, proxy CPU s per GB" gb_cell "" "" "${rr[0]} ${rr[1]}" "${rr[2]} ${rr[3]}"
		row "$label $dir, client + destination CPU s per GB" lgb_cell "" "" "" ""
	done
	for m in gradual burst; do
		ph=idle-$m; read -ra rr <<<"$(mem_ratios "idle-$m" idle_kib)"
		row "RSS per idle relayed connection, KiB, $m (ratios: lower is better)" idle_cell "" "" "${rr[0]} ${rr[1]}" "${rr[2]} ${rr[3]}"
	done
	ph=idle-burst; row "fds per idle relayed connection, burst" fds_cell "" "" "" ""
	ph=idle-burst; row "RSS before → holding → after the burst closed, KiB (after vs before)" after_cell "" "" "" ""
}

machine="\`nproc\` = $(nproc), $(lscpu | grep 'Model name' | sed 's/  */ /g'), kernel $(uname -r), load average before the run $(cut -d' ' -f1-3 /proc/loadavg)"
when=$(date -u '+%Y-%m-%d %H:%M UTC')
day=$(date -u '+%Y-%m-%d')
versions="$("$sockpool" --version 2>&1 | head -1) (tree $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)); microsocks $(dpkg-query -W -f='${Version}' microsocks); dante-server $(dpkg-query -W -f='${Version}' dante-server)"
idle_note="$idle_n"
[ "$idle_n" = "$idle_req" ] || idle_note="$idle_n (asked for $idle_req; open-files hard limit $nofile allows 2 sockets each)"

target_rows() {
	local v w
	for relay in splice copy; do
		v=$(fmt "$(med idle-burst "sockpool-$relay" idle_kib)" 2)
		echo "| ≤ 2 KiB RSS per idle relayed connection after a burst, relay = $relay | $v KiB | $(yesno "$v" "<=" 2) |"
	done
	for relay in splice copy; do
		v=$(fmt "$(med idle-burst "sockpool-$relay" after_pct)" 1)
		echo "| RSS within 10% of before once the burst closed, relay = $relay | +$v% | $(yesno "$v" "<=" 10) |"
	done
	v=$(fmt "$(med idle-burst sockpool-splice idle_fds)" 2)
	echo "| 2 fds per idle relayed connection (splice) | $v | $(yesno "$v" "<=" 2.05) |"
	for s in s1up s1down s8up s8down; do
		for relay in splice copy; do
			v=$(ratio "$s" mbps "sockpool-$relay" direct)
			echo "| throughput ≥ 0.8× direct, $s, relay = $relay | ${v}× | $(yesno "$v" ">=" 0.8) |"
		done
	done
	for s in s1up s1down; do
		v=$(fmt "$(med "$s" sockpool-splice cpu_s_per_gb)" 2) w=$(fmt "$(med "$s" sockpool-copy cpu_s_per_gb)" 2)
		echo "| proxy CPU per GB, splice below copy, $s | $v s vs $w s | $(awk -v a="$v" -v b="$w" 'BEGIN { print (a < b) ? "**met**" : "**not met**" }') |"
	done
	for relay in splice copy; do
		v=$(fmt "$(med cps "sockpool-$relay" cpu_us_per_conn)")
		echo "| proxy CPU ≤ 100 µs per connection, relay = $relay | $v µs | $(yesno "$v" "<=" 100) |"
	done
	for relay in splice copy; do
		v=$(ratio cps cps "sockpool-$relay" best) w=$(ratio cps total_us_per_conn "sockpool-$relay" best_low 1)
		echo "| CPS ≥ 1.5× the best peer, $workers clients, relay = $relay | ${v}× (CPU-normalised ${w}×) | $(yesno "$v" ">=" 1.5) (CPU-normalised $(yesno "$w" ">=" 1.5)) |"
	done
}

report() {
	cat <<EOF
### Run of $when

- Machine: $machine
- Command: \`$cmdline\` (build: \`meson setup $(basename "$build") --buildtype=release\`, \`ninja -C $(basename "$build") proxy/sockpool tests/bench/socks_load\`; socks_load at -O2)
- Versions: $versions
- Settings: sockpool \`workers = auto\` (one event loop unless the tree acts on it), once with \`relay = splice\` and once with \`relay = copy\`; microsocks as packaged (it has no tuning options); dante \`-N $dante_n\` (one main server per CPU, its advice for busy servers).
- $rounds round(s); each figure is the median over rounds, each ratio the median of the per-round ratios (sockpool and the other target measured one after the other in the same round). CPS: 1, $workers and 512 clients, ${cps_s} s measured after ${warm_s} s warm-up (1 client: one ${lat_s} s run per target), 64 B each way. Throughput: $(awk -v b="$stream_bytes" 'BEGIN { printf "%.0f MiB", b / 1048576 }') or ${stream_s} s, whichever first, MB = 10^6 bytes, GB = 10^9 bytes. Idle: $idle_note connections per proxy, each proxy freshly started, opened 128 at a time (gradual) and all at once (burst).

$(table)

CPU-normalised CPS ratio: the other target's total CPU per connection divided by sockpool's, i.e. the connections/s ratio if every process had the CPU it needs. On a shared machine it moves much less than the wall-clock ratio, which also measures how the scheduler split the CPUs in that round. Proxy CPU per GB: the proxy's utime + stime over the stream run divided by the bytes that arrived.

Idle RSS: VmRSS summed over the proxy's processes, after minus before, divided by the connections opened (Pss likewise; it shares library pages between dante's processes). "After": once the loader closed every connection and the proxy had closed both sides of each (no connection established or in CLOSE-WAIT left on its port or to the hold port). Every idle connection was proven with a 1-byte echo before the measurement and again after it.

| SPEC 7 target | today | |
|---|---|---|
$(target_rows)
EOF
	if [ "$any_errors" = 1 ]; then
		echo
		echo "**This run had errors** (marked in the table above); its figures are not clean."
	fi
}

# One row per sockpool `workers =` setting; ratios against workers = 1.
report_workers() {
	local w t c1 u1 c u tot
	[ -n "$sp_workers" ] || return 0
	c1=$(med cps sockpool-w1 cps) u1=$(med cps sockpool-w1 cpu_us_per_conn)
	cat <<EOT

sockpool's own \`workers\` (the sockpool splice config, CPS as above, $rounds round(s) each, run one after the other; \`auto\` = $(nproc) here). On this machine the load generator and the destination server share the same CPUs, so the wall-clock CPS measures the split of $(nproc) CPUs between them; the CPU per connection is what a worker costs.

| sockpool workers | connections/s | proxy CPU per connection, µs | all CPU per connection, µs | CPS vs workers = 1 | proxy CPU per connection vs workers = 1 |
|---|---|---|---|---|---|
EOT
	for w in $sp_workers; do
		t=sockpool-w$w
		c=$(med cps "$t" cps) u=$(med cps "$t" cpu_us_per_conn) tot=$(med cps "$t" total_us_per_conn)
		echo "| $w | $(with_err "$(fmt "$c")" "$(errs cps "$t")") | $(fmt "$u" 1) | $(fmt "$tot" 1) |" \
			"$(awk -v a="$c" -v b="$c1" 'BEGIN { if (b > 0 && a != "nan") printf "%.2f", a / b; else print "–" }') |" \
			"$(awk -v a="$u" -v b="$u1" 'BEGIN { if (b > 0 && a != "nan") printf "%.2f", a / b; else print "–" }') |"
	done
}

{ report; report_workers; } | tee "$tmp/report.md"

if [ "$write_docs" = 1 ]; then
	if [ ! -f "$doc" ]; then
		# shellcheck disable=SC2016 # backquotes are Markdown
		printf '# sockpool benchmarks\n\nResults of `scripts/bench.sh --write-docs`, newest last.\n\n' >"$doc"
	fi
	# Replace today's section if there is one, else append it.
	awk -v day="$day" -v body="$tmp/report.md" '
		function emit() { print "<!-- bench-run " day " -->"; while ((getline l < body) > 0) print l; print "<!-- /bench-run " day " -->" }
		$0 == "<!-- bench-run " day " -->" { skip = 1; emit(); done = 1; next }
		skip && $0 == "<!-- /bench-run " day " -->" { skip = 0; next }
		!skip { print }
		END { if (!done) { print ""; emit() } }' "$doc" >"$tmp/doc.md"
	cp "$tmp/doc.md" "$doc"
	echo "bench: wrote the $day section of $doc" >&2
fi

[ "$any_errors" = 0 ] || exit 1
