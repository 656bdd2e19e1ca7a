#!/bin/sh
# meson install step: put the example configuration at TARGET (under
# $DESTDIR) unless a file is already there, mode 0640, group sockpool when
# that group exists (the systemd unit's user must read it for every reload).
#   install-config.sh SOURCE TARGET
set -eu
src=$1
dst="${DESTDIR:-}$2"
if [ -e "$dst" ]; then
	echo "install-config.sh: keeping the existing $dst"
	exit 0
fi
mkdir -p "$(dirname "$dst")"
install -m 0640 "$src" "$dst"
if [ -z "${DESTDIR:-}" ] && getent group sockpool >/dev/null 2>&1; then
	chgrp sockpool "$dst"
fi
echo "Installing $src to $dst"
