#!/bin/sh
# Installs Chromium (Debian's `chromium` package) for the web console's browser tests when it is missing; does nothing
# when it is there. Runs `apt-get update` first, as a fresh image has no package lists. Idempotent.
set -eu

if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing and installing it needs root: apt-get update && apt-get install -y chromium" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium

command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]
