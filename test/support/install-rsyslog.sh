#!/bin/sh
# Installs rsyslog (the Debian package) for the export's rsyslog test when rsyslogd is missing; does nothing when it
# is there. Only installs: the test starts its own rsyslogd with a throwaway config, so the package's service must not
# start (and does not, where policy-rc.d denies it; where none exists, one denying every start is put in place for the
# install and removed after). Runs `apt-get update` only when the install fails without it.
set -eu

if command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "rsyslogd is missing and installing it needs root: apt-get install -y rsyslog" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
made_policy=no
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=yes
fi
cleanup() { if [ "$made_policy" = yes ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

if ! apt-get install -y --no-install-recommends rsyslog; then
  apt-get update
  apt-get install -y --no-install-recommends rsyslog
fi

command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ]
