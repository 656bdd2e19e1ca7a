#!/usr/bin/env bash
# Install the Debian packages sockpool needs to build and test, if missing.
# Sourced by run.sh, test.sh and fuzz.sh; it sets no shell options, so a
# caller that counts failures (test.sh) keeps running after one.
SOCKPOOL_BUILD_PKGS="gcc libc6-dev pkg-config meson ninja-build libuv1-dev libinih-dev
  libcmocka-dev libcrypt-dev libmicrohttpd-dev libsystemd-dev"
# groff lints the man pages, systemd has systemd-analyze, podman and
# mmdebstrap build and run the container image, exim4-daemon-heavy is the
# real Exim that test_exim drives, prometheus has promtool for /metrics.
SOCKPOOL_TEST_PKGS="python3 python3-socks curl ncat iproute2 procps microsocks proxychains4
  groff systemd podman mmdebstrap exim4-daemon-heavy prometheus"

sockpool_install_missing() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "sockpool: missing packages: ${missing[*]} (run as root or install them)" >&2
		return 1
	fi
	echo "sockpool: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
