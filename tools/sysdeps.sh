#!/usr/bin/env bash
# Install the system packages the kit needs when they are missing:
#   bubblewrap (bwrap) and setpriv: the autograder's sandbox;
#   chromium: the test that checks the feedback pages' math in a real browser;
#   postgresql: the server binaries (initdb, pg_ctl in /usr/lib/postgresql/<version>/bin) that
#     the gradebook tests start in a temporary folder (the tests run it as `nobody` when root).
# As root with apt-get it installs them; otherwise it says what to install and goes on
# (the autograder then refuses to run unsandboxed, and those tests are skipped outside CI).
set -euo pipefail

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v setpriv >/dev/null || need+=(util-linux)
command -v chromium >/dev/null || need+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null \
  || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "sysdeps: installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "sysdeps: missing ${need[*]}; install them (e.g. sudo apt-get install -y ${need[*]})" >&2
fi
