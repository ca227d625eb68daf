#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet.
# Used by `make test` for what the tests drive as real peers (chromium, redis-server,
# nghttp2-client, ...). Where apt-get is missing or fails, it warns and carries on: the
# tests that need a missing program skip and say which package to install.
set -uo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "warning: no apt-get; install ${missing[*]} by hand (tests that need them skip)" >&2
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
echo "installing Debian packages: ${missing[*]}"
if ! $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
    $sudo apt-get update -q >/dev/null 2>&1
    $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
        || echo "warning: could not install ${missing[*]}; tests that need them skip" >&2
fi
exit 0
