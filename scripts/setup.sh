#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of xfer from Debian's
# packages. Idempotent: packages already present are skipped, and
# `apt-get update` runs at most once per invocation (and only when something
# is missing). Must run as root (or with sudo available) on Debian 12.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config clang clang-format
  libclang-rt-14-dev
  # libraries
  libgtest-dev libgmock-dev libbenchmark-dev libxxhash-dev libspdlog-dev
  libfmt-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libzstd-dev
  libssl-dev liburing-dev zlib1g-dev libsodium-dev libcurl4-openssl-dev libssh-dev libexpat1-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # test and benchmark peers / tools
  rsync rclone gnuplot-nox fio time python3 util-linux coreutils openssl
  openssh-server openssh-client iperf3
  # sftp: a peer of bench/sftp.py (pget -n, mirror --parallel)
  lftp
  # http(s): the test server and the download peers (bench/http.py)
  nginx-light curl wget aria2
  # packaging (CPack's .deb) and its tests: man pages, completion scripts
  dpkg-dev man-db groff-base zsh fish
  # the network lab (tools/netlab): namespaces, offloads, its accuracy tests
  iproute2 ethtool iputils-ping
  # the object stores' test servers run on Node and its npm (install_npm_servers)
  nodejs
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# The object stores' test servers, from the npm registry (docs/testing.md):
# s3rver (S3) in $XFER_NPM_DIR (default /opt/xfer-npm). s3rver 3.7.1 drops
# the folders below a folder from a delimited listing (its walk prunes a
# directory two levels under the prefix before reaching its objects, so
# "a/" is missing from the listing of "t/" when only "t/a/b/c" exists):
# that pruning is switched off here; the listing is then S3's.
install_npm_servers() {
  local dir="${XFER_NPM_DIR:-/opt/xfer-npm}"
  local s3rver="$dir/node_modules/s3rver/lib/stores/filesystem.js"
  if [ ! -f "$s3rver" ]; then
    echo "setup: installing s3rver from npm into $dir"
    $SUDO mkdir -p "$dir"
    $SUDO npm install --silent --no-audit --no-fund --prefix "$dir" s3rver@3.7.1 > /dev/null
  fi
  if ! grep -q "xfer: no pruning" "$s3rver"; then
    $SUDO python3 - "$s3rver" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = "          // avoid directories occurring beneath a common prefix\n          return false;"
assert old in s, "s3rver: the listing code is not the one patched"
s = s.replace(old, "          // avoid directories occurring beneath a common prefix\n          return true; // xfer: no pruning")
open(p, "w").write(s)
PY
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  install_npm_servers
  exit 0
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Servers among the packages (nginx, sshd) must not start on install: the
# tests start their own, on loopback, with their own configs.
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d > /dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
if [ -n "$made_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
install_npm_servers
