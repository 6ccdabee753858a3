#!/bin/sh
# Installs Debian's Chromium for the browser tests (integration/browser),
# unless a Chromium is already there. Called from .ci/run. The tests skip
# themselves when no Chromium is installed.
set -eu
for c in chromium chromium-browser; do
	if command -v "$c" >/dev/null 2>&1; then
		echo "ci-install-chromium: $(command -v "$c") is installed"
		exit 0
	fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	SUDO="sudo"
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
command -v chromium
