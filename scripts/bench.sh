#!/usr/bin/env bash
# Benchmark sockpool side by side with direct TCP, microsocks and dante on
# loopback (SPEC section 7): connections per second, single- and 8-stream
# throughput, RSS per idle relayed connection. Prints a results table on
# stdout; with --write-docs also writes it as a dated section of
# docs/BENCHMARKS.md. Exit status: 0 clean, 1 the run saw errors (they are in
# the table), 2 setup failure.
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
  --workers N         concurrent CPS workers (default 64)
  --stream-bytes N    bytes per throughput run (default 1073741824 = 1 GiB)
  --stream-seconds S  time cap per throughput run (default 5)
  --idle-conns N      idle relayed connections per proxy (default 10000; capped
                      by the open-files hard limit, two sockets per connection)
  --build-dir DIR     meson build directory (default build-bench)
  --sockpool-workers "LIST"  sockpool's own `workers =` rows, CPS only
                      (default "1 2 auto"; "" skips them)
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

declare -A port pid
port[sockpool]=$(pick_port)
port[microsocks]=$(pick_port)
port[dante]=$(pick_port)
while [ "${port[microsocks]}" = "${port[sockpool]}" ]; do port[microsocks]=$(pick_port); done
while [ "${port[dante]}" = "${port[sockpool]}" ] || [ "${port[dante]}" = "${port[microsocks]}" ]; do
	port[dante]=$(pick_port)
done

cat >"$tmp/sockpool.ini" <<EOF
[server]
listen = 127.0.0.1:${port[sockpool]}
admin_listen =
log_level = warn
default_pool = bench
max_connections = 100000
max_connections_per_client = 0

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

start_proxy() { # name
	case "$1" in
	sockpool) "$sockpool" -c "$tmp/sockpool.ini" 2>>"$tmp/sockpool.log" & ;;
	sockpool-w*) "$sockpool" -c "$tmp/$1.ini" 2>>"$tmp/$1.log" & ;;
	microsocks) microsocks -i 127.0.0.1 -p "${port[microsocks]}" >>"$tmp/microsocks.log" 2>&1 & ;;
	dante) danted -f "$tmp/danted.conf" -N 1 -p "$tmp/danted.pid" >>"$tmp/dante.log" 2>&1 & ;;
	esac
	pid[$1]=$!
	pids+=("${pid[$1]}")
	wait_listen "${port[$1]}" "${pid[$1]}" "$1"
}

stop_proxy() {
	stop_pid "${pid[$1]}"
	local keep=() p
	for p in "${pids[@]}"; do [ "$p" = "${pid[$1]}" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

proxies=(sockpool microsocks dante)
targets=(direct sockpool microsocks dante)
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
	"$workers workers; idle $idle_n connections" >&2

# ---- idle RSS, each proxy fresh ----
declare -A idle_line alive_line rss0 rss1 pss0 pss1 nproc0 nproc1
for t in "${proxies[@]}"; do
	start_proxy "$t"
	sleep 0.5
	rss0[$t]=$(mem_kib "${pid[$t]}" VmRSS)
	pss0[$t]=$(mem_kib "${pid[$t]}" Pss)
	nproc0[$t]=$(tree_pids "${pid[$t]}" | wc -l)
	# No timeout(1) wrapper: SIGUSR1 must reach the loader; its own
	# per-connection timeouts and -t bound it.
	"$load" idle -x "127.0.0.1:${port[$t]}" -d "127.0.0.1:$hold_port" \
		-n "$idle_n" -c 128 -t 120 >"$tmp/idle.$t" 2>&1 &
	lp=$!
	for i in $(seq 1200); do
		grep -q '^RESULT' "$tmp/idle.$t" && break
		kill -0 "$lp" 2>/dev/null || break
		sleep 0.1
	done
	sleep 0.2
	rss1[$t]=$(mem_kib "${pid[$t]}" VmRSS)
	pss1[$t]=$(mem_kib "${pid[$t]}" Pss)
	nproc1[$t]=$(tree_pids "${pid[$t]}" | wc -l)
	kill -USR1 "$lp" 2>/dev/null || true
	rc=0
	wait "$lp" || rc=$?
	idle_line[$t]=$(grep '^RESULT' "$tmp/idle.$t" || echo "RESULT opened=0 errors=1")
	alive_line[$t]=$(grep '^ALIVE' "$tmp/idle.$t" || echo "ALIVE alive=0 dead=?")
	[ "$rc" -eq 0 ] || any_errors=1
	echo "  [$SECONDS s] idle $t: ${idle_line[$t]:0:110} ${alive_line[$t]} rss ${rss0[$t]} -> ${rss1[$t]} KiB" >&2
	stop_proxy "$t"
done

# ---- CPS and throughput, rounds in rotating order ----
for t in "${proxies[@]}"; do start_proxy "$t"; done
for r in $(seq "$rounds"); do
	for i in 0 1 2 3; do
		t=${targets[$(((i + r - 1) % 4))]}
		x=()
		[ "$t" = direct ] || x=(-x "127.0.0.1:${port[$t]}")
		run_load cps "$t" "$r" cps "${x[@]}" -d "127.0.0.1:$echo_port" -c "$workers" \
			-w "$warm_s" -t "$cps_s" -p 64
	done
done
# Unloaded latency: one worker, once; the saturated p50 above is mostly queueing.
for t in "${targets[@]}"; do
	x=()
	[ "$t" = direct ] || x=(-x "127.0.0.1:${port[$t]}")
	run_load lat "$t" 1 cps "${x[@]}" -d "127.0.0.1:$echo_port" -c 1 -w 0.5 -t "$lat_s" -p 64
done
for r in $(seq "$rounds"); do
	for i in 0 1 2 3; do
		t=${targets[$(((i + r - 1) % 4))]}
		x=()
		[ "$t" = direct ] || x=(-x "127.0.0.1:${port[$t]}")
		run_load s1 "$t" "$r" stream "${x[@]}" -c 1 \
			-b "$stream_bytes" -t "$stream_s"
		run_load s8 "$t" "$r" stream "${x[@]}" -c 8 \
			-b "$stream_bytes" -t "$stream_s"
	done
done
for t in "${proxies[@]}"; do stop_proxy "$t"; done

# ---- sockpool's workers = 1, 2, auto: CPS and CPU per connection ----
for w in $sp_workers; do
	t=sockpool-w$w
	port[$t]=$(pick_port)
	sed -e "s/^listen = .*/listen = 127.0.0.1:${port[$t]}/" -e "/^\[server\]/a workers = $w" \
		"$tmp/sockpool.ini" >"$tmp/$t.ini"
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

# Median over rounds of one value: phase target key (cpu_us_per_conn, the
# proxy's CPU, and load_us_per_conn, the load generator's and the destination
# server's, are derived).
med() {
	awk -v ph="$1" -v tg="$2" -v k="$3" -v clk="$clk" '
		$1 == ph && $2 == tg {
			for (i = 4; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
			if (k == "cpu_us_per_conn") print (f["ok_total"] ? f["cpu_ticks"] * 1e6 / clk / f["ok_total"] : 0)
			else if (k == "load_us_per_conn") print (f["ok_total"] ? (f["cpu_us"] + f["srv_ticks"] * 1e6 / clk) / f["ok_total"] : 0)
			else if (k == "total_us_per_conn") print (f["ok_total"] ? (f["cpu_us"] + (f["srv_ticks"] + f["cpu_ticks"]) * 1e6 / clk) / f["ok_total"] : 0)
			else print f[k]
		}' "$results" | median
}

# Sum of errors over rounds: phase target.
errs() {
	awk -v ph="$1" -v tg="$2" '$1 == ph && $2 == tg {
		for (i = 4; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "errors") s += kv[2] } }
		END { print s + 0 }' "$results"
}

# Median over rounds of sockpool's value divided by another target's (or by
# the best peer's: "best" = the higher of microsocks and dante, "best_low"
# = the lower), each round's ratio from that round's own runs. With
# inverse = 1 the other's value is divided by sockpool's: for costs, so the
# ratio reads like one of rates.
ratio() { # phase key other [inverse]
	awk -v ph="$1" -v k="$2" -v other="$3" -v inv="${4:-0}" -v clk="$clk" '
		$1 == ph {
			for (i = 4; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
			if (k == "cpu_us_per_conn") val[$3, $2] = f["ok_total"] ? f["cpu_ticks"] * 1e6 / clk / f["ok_total"] : 0
			else if (k == "total_us_per_conn") val[$3, $2] = f["ok_total"] ? (f["cpu_us"] + (f["srv_ticks"] + f["cpu_ticks"]) * 1e6 / clk) / f["ok_total"] : 0
			else val[$3, $2] = f[k]
			rounds[$3] = 1
		}
		END {
			for (r in rounds) {
				s = val[r, "sockpool"]
				m = val[r, "microsocks"]; d = val[r, "dante"]
				if (other == "best") o = (m > d) ? m : d
				else if (other == "best_low") o = (m < d) ? m : d
				else o = val[r, other]
				if (inv && s > 0) print o / s
				else if (!inv && o > 0) print s / o
			}
		}' "$results" | median | awk '{ if ($1 == "nan") print; else printf "%.2f\n", $1 }'
}

best_peer() { # phase key: the peer with the higher median
	local a b
	a=$(med "$1" microsocks "$2") b=$(med "$1" dante "$2")
	awk -v a="$a" -v b="$b" 'BEGIN { print (a >= b) ? "microsocks" : "dante" }'
}

fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN { if (v == "nan") print "–"; else printf "%.*f\n", d, v }'; }
with_err() { # figure errors
	if [ "$2" -gt 0 ]; then echo "$1 (**$2 errors**)"; else echo "$1"; fi
}
yesno() { awk -v v="$1" -v op="$2" -v lim="$3" 'BEGIN {
	ok = (op == ">=") ? (v >= lim) : (v <= lim); print ok ? "**met**" : "**not met**" }'; }

per_conn() { # target -> KiB per idle relayed connection (VmRSS, Pss)
	local t=$1 n
	n=$(field "${idle_line[$t]}" opened)
	awk -v a="${rss1[$t]}" -v b="${rss0[$t]}" -v c="${pss1[$t]}" -v d="${pss0[$t]}" -v n="$n" \
		'BEGIN { if (n > 0) printf "%.2f %.2f\n", (a - b) / n, (c - d) / n; else print "nan nan" }'
}

row_cps=() row_p=() row_lat=() row_cpu=() row_load=() row_tot=() row_s1=() row_s8=()
for t in "${targets[@]}"; do
	e=$(errs cps "$t")
	row_cps+=("$(with_err "$(fmt "$(med cps "$t" cps)")" "$e")")
	row_p+=("$(fmt "$(med cps "$t" p50_us)") / $(fmt "$(med cps "$t" p99_us)")")
	row_lat+=("$(with_err "$(fmt "$(med lat "$t" p50_us)") / $(fmt "$(med lat "$t" p99_us)")" "$(errs lat "$t")")")
	if [ "$t" = direct ]; then row_cpu+=("–"); else row_cpu+=("$(fmt "$(med cps "$t" cpu_us_per_conn)")"); fi
	row_load+=("$(fmt "$(med cps "$t" load_us_per_conn)")")
	row_tot+=("$(fmt "$(med cps "$t" total_us_per_conn)")")
	row_s1+=("$(with_err "$(fmt "$(med s1 "$t" mbps)")" "$(errs s1 "$t")")")
	row_s8+=("$(with_err "$(fmt "$(med s8 "$t" mbps)")" "$(errs s8 "$t")")")
done
bp_cps=$(best_peer cps cps) bp_s1=$(best_peer s1 mbps) bp_s8=$(best_peer s8 mbps)
r_cps_d=$(ratio cps cps direct) r_cps_b=$(ratio cps cps best)
r_cpu_b=$(ratio cps cpu_us_per_conn best_low)
r_tot_d=$(ratio cps total_us_per_conn direct 1) r_tot_b=$(ratio cps total_us_per_conn best_low 1)
bp_tot=$(awk -v a="$(med cps microsocks total_us_per_conn)" -v b="$(med cps dante total_us_per_conn)" \
	'BEGIN { print (a <= b) ? "microsocks" : "dante" }')
bp_cpu=$(awk -v a="$(med cps microsocks cpu_us_per_conn)" -v b="$(med cps dante cpu_us_per_conn)" \
	'BEGIN { print (a <= b) ? "microsocks" : "dante" }')
r_s1_d=$(ratio s1 mbps direct) r_s1_b=$(ratio s1 mbps best)
r_s8_d=$(ratio s8 mbps direct) r_s8_b=$(ratio s8 mbps best)

declare -A kib pss
for t in "${proxies[@]}"; do read -r "kib[$t]" "pss[$t]" < <(per_conn "$t"); done
best_rss=$(awk -v a="${kib[microsocks]}" -v b="${kib[dante]}" 'BEGIN { print (a <= b) ? "microsocks" : "dante" }')
r_rss=$(awk -v s="${kib[sockpool]}" -v b="${kib[$best_rss]}" 'BEGIN { if (b > 0) printf "%.2f\n", s / b; else print "nan" }')
idle_cell() {
	local t=$1 o e a
	o=$(field "${idle_line[$t]}" opened) e=$(field "${idle_line[$t]}" errors)
	a=$(field "${alive_line[$t]}" alive)
	local s="${kib[$t]} (Pss ${pss[$t]})"
	if [ "${e:-1}" -gt 0 ] || [ "${a:-0}" != "$o" ] || [ "$o" != "$idle_n" ]; then
		s="$s (**opened $o, alive $a, errors $e**)"
	fi
	echo "$s"
}

machine="\`nproc\` = $(nproc), $(lscpu | grep 'Model name' | sed 's/  */ /g'), kernel $(uname -r), load average before the run $(cut -d' ' -f1-3 /proc/loadavg)"
when=$(date -u '+%Y-%m-%d %H:%M UTC')
day=$(date -u '+%Y-%m-%d')
versions="$("$sockpool" --version 2>&1 | head -1) (tree $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)); microsocks $(dpkg-query -W -f='${Version}' microsocks); dante-server $(dpkg-query -W -f='${Version}' dante-server)"
idle_note="$idle_n"
[ "$idle_n" = "$idle_req" ] || idle_note="$idle_n (asked for $idle_req; open-files hard limit $nofile allows 2 sockets each)"

report() {
	cat <<EOF
### Run of $when

- Machine: $machine
- Command: \`$cmdline\` (build: \`meson setup $(basename "$build") --buildtype=release\`, \`ninja -C $(basename "$build") proxy/sockpool tests/bench/socks_load\`; socks_load at -O2)
- Versions: $versions
- $rounds round(s); each figure is the median over rounds, each ratio the median of the per-round ratios (sockpool and the other target measured one after the other in the same round). CPS: $workers workers, ${cps_s} s measured after ${warm_s} s warm-up, 64 B each way; the 1-worker latency row is one ${lat_s} s run per target. Throughput: $(awk -v b="$stream_bytes" 'BEGIN { printf "%.0f MiB", b / 1048576 }') or ${stream_s} s, whichever first, MB = 10^6 bytes. Idle: $idle_note connections per proxy, each proxy freshly started.

| | direct | sockpool | microsocks | dante | sockpool / direct | sockpool / best peer |
|---|---|---|---|---|---|---|
| connections/s | ${row_cps[0]} | ${row_cps[1]} | ${row_cps[2]} | ${row_cps[3]} | $r_cps_d | $r_cps_b ($bp_cps) |
| CONNECT→reply p50 / p99, µs, $workers workers (direct: connect) | ${row_p[0]} | ${row_p[1]} | ${row_p[2]} | ${row_p[3]} | | |
| CONNECT→reply p50 / p99, µs, 1 worker (direct: connect) | ${row_lat[0]} | ${row_lat[1]} | ${row_lat[2]} | ${row_lat[3]} | | |
| proxy CPU per connection, µs | ${row_cpu[0]} | ${row_cpu[1]} | ${row_cpu[2]} | ${row_cpu[3]} | | $r_cpu_b ($bp_cpu, lower is better) |
| client + destination CPU per connection, µs | ${row_load[0]} | ${row_load[1]} | ${row_load[2]} | ${row_load[3]} | | |
| all CPU per connection (client + destination + proxy), µs | ${row_tot[0]} | ${row_tot[1]} | ${row_tot[2]} | ${row_tot[3]} | $r_tot_d (CPU-normalised CPS ratio) | $r_tot_b ($bp_tot, CPU-normalised CPS ratio) |
| 1 stream, MB/s | ${row_s1[0]} | ${row_s1[1]} | ${row_s1[2]} | ${row_s1[3]} | $r_s1_d | $r_s1_b ($bp_s1) |
| 8 streams, MB/s | ${row_s8[0]} | ${row_s8[1]} | ${row_s8[2]} | ${row_s8[3]} | $r_s8_d | $r_s8_b ($bp_s8) |
| RSS per idle relayed connection, KiB | – | $(idle_cell sockpool) | $(idle_cell microsocks) | $(idle_cell dante) | | $r_rss ($best_rss, lower is better) |

CPU-normalised CPS ratio: the other target's total CPU per connection divided by sockpool's, i.e. the connections/s ratio if every process had the CPU it needs. On a shared machine it moves much less than the wall-clock ratio, which also measures how the scheduler split the CPUs in that round.

Idle RSS: VmRSS summed over the proxy's processes, after minus before, divided by the connections opened (Pss likewise; it shares library pages between dante's processes). Processes before → after: sockpool ${nproc0[sockpool]} → ${nproc1[sockpool]}, microsocks ${nproc0[microsocks]} → ${nproc1[microsocks]} (threads not counted), dante ${nproc0[dante]} → ${nproc1[dante]}. Every idle connection was proven with a 1-byte echo before the measurement and again after it.

| SPEC 7 target | today | |
|---|---|---|
| CPS with source binding ≥ 0.5× direct | ${r_cps_d}× (CPU-normalised ${r_tot_d}×) | $(yesno "$r_cps_d" ">=" 0.5) (CPU-normalised $(yesno "$r_tot_d" ">=" 0.5)) |
| CPS with source binding ≥ 1.3× the best peer | ${r_cps_b}× ($bp_cps) (CPU-normalised ${r_tot_b}×, $bp_tot) | $(yesno "$r_cps_b" ">=" 1.3) (CPU-normalised $(yesno "$r_tot_b" ">=" 1.3)) |
| throughput ≥ 0.6× direct, 1 stream | ${r_s1_d}× | $(yesno "$r_s1_d" ">=" 0.6) |
| throughput ≥ 0.6× direct, 8 streams | ${r_s8_d}× | $(yesno "$r_s8_d" ">=" 0.6) |
| ≤ 4 KiB RSS per idle relayed connection | ${kib[sockpool]} KiB | $(yesno "${kib[sockpool]}" "<=" 4) |
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
	cat <<EOF

sockpool's own \`workers\` (same config, CPS as above, $rounds round(s) each, run one after the other; \`auto\` = $(nproc) here). On this machine the load generator and the destination server share the same CPUs, so the wall-clock CPS measures the split of $(nproc) CPUs between them; the CPU per connection is what a worker costs.

| sockpool workers | connections/s | proxy CPU per connection, µs | all CPU per connection, µs | CPS vs workers = 1 | proxy CPU per connection vs workers = 1 |
|---|---|---|---|---|---|
EOF
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
