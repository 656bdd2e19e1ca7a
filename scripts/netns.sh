#!/bin/sh
# Network namespaces for trying sockpool's source binding, by hand or from the
# integration tests: a namespace with only `lo`, up, carrying TEST-NET
# addresses that can be added and removed while sockpool runs in it.
#
#   netns.sh create NAME [ADDR...]   new namespace, lo up, addresses on lo
#   netns.sh add NAME ADDR...        plumb addresses (IPv6 without DAD)
#   netns.sh remove NAME ADDR...     unplumb addresses
#   netns.sh exec NAME CMD [ARG...]  run a command inside
#   netns.sh del NAME                stop the processes inside, delete it
#   netns.sh cleanup [PREFIX]        del every namespace named PREFIX* (default sp-)
#   netns.sh list                    namespaces and their addresses
#
# ADDR is 192.0.2.10 or 2001:db8::10, optionally with /LEN (default /32 or
# /128). Example session:
#   scripts/netns.sh create demo 192.0.2.10 192.0.2.11 2001:db8::10
#   scripts/netns.sh exec demo build/proxy/sockpool -c examples/sockpool.ini &
#   scripts/netns.sh remove demo 192.0.2.11    # watch the WARN line
#   scripts/netns.sh del demo
set -eu

die() {
	echo "netns.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

need_name() {
	[ -n "${1:-}" ] || usage
	case "$1" in
	*/* | .*) die "bad namespace name: $1" ;;
	esac
}

exists() {
	[ -e "/var/run/netns/$1" ]
}

with_len() {
	case "$1" in
	*/*) echo "$1" ;;
	*:*) echo "$1/128" ;;
	*) echo "$1/32" ;;
	esac
}

addr_add() {
	ns=$1
	shift
	for a in "$@"; do
		a=$(with_len "$a")
		case "$a" in
		*:*) ip -n "$ns" -6 addr add "$a" dev lo nodad ;;
		*) ip -n "$ns" addr add "$a" dev lo ;;
		esac
	done
}

addr_remove() {
	ns=$1
	shift
	for a in "$@"; do
		ip -n "$ns" addr del "$(with_len "$a")" dev lo
	done
}

# Stop what still runs inside: TERM, then KILL after a bounded wait.
stop_pids() {
	pids=$(ip netns pids "$1" 2>/dev/null || true)
	[ -n "$pids" ] || return 0
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null || true
	i=0
	while [ $i -lt 30 ]; do
		pids=$(ip netns pids "$1" 2>/dev/null || true)
		[ -n "$pids" ] || return 0
		sleep 0.1
		i=$((i + 1))
	done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
}

ns_del() {
	exists "$1" || return 0
	stop_pids "$1"
	ip netns del "$1"
}

cmd=${1:-}
[ -n "$cmd" ] || usage
shift
case "$cmd" in
create)
	need_name "${1:-}"
	ns=$1
	shift
	exists "$ns" && die "namespace $ns already exists"
	ip netns add "$ns"
	if ! { ip -n "$ns" link set lo up && addr_add "$ns" "$@"; }; then
		ip netns del "$ns"
		die "could not set up $ns"
	fi
	;;
add)
	need_name "${1:-}"
	ns=$1
	shift
	addr_add "$ns" "$@"
	;;
remove)
	need_name "${1:-}"
	ns=$1
	shift
	addr_remove "$ns" "$@"
	;;
exec)
	need_name "${1:-}"
	ns=$1
	shift
	[ $# -gt 0 ] || usage
	exec ip netns exec "$ns" "$@"
	;;
del)
	need_name "${1:-}"
	ns_del "$1"
	;;
cleanup)
	prefix=${1:-sp-}
	for ns in $(ip netns list | awk '{print $1}'); do
		case "$ns" in
		"$prefix"*) ns_del "$ns" ;;
		esac
	done
	;;
list)
	for ns in $(ip netns list | awk '{print $1}'); do
		echo "$ns:$(ip -n "$ns" -br addr show dev lo 2>/dev/null | awk '{$1 = $2 = ""; print}' | tr -s ' ')"
	done
	;;
-h | --help | help)
	usage
	;;
*)
	usage
	;;
esac
