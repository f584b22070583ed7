#!/usr/bin/env bash
# Installs every Debian package glassbox needs to build, test, fuzz and benchmark.
# Idempotent: it runs apt-get only when a package is missing, and `apt-get update` at most once.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev clang-format
  libcli11-dev libfmt-dev libspdlog-dev nlohmann-json3-dev libssl-dev libcapstone-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -e /dev/kvm ]; then
  echo "setup: warning: /dev/kvm does not exist; glassbox needs KVM to run guests" >&2
elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "setup: warning: no read/write access to /dev/kvm (add yourself to the kvm group or run as root)" >&2
fi
