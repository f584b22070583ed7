#!/usr/bin/env bash
# Installs every Debian package glassbox needs to build, test, fuzz and benchmark.
# Idempotent: it runs apt-get only when a package is missing, and `apt-get update` at most once.
#   scripts/setup.sh        what building and testing need
#   scripts/setup.sh lab    what the KVM lab needs (scripts/lab.sh): QEMU, Debian's kernel, busybox
set -euo pipefail

if [ "${1-}" = lab ]; then
  packages=(qemu-system-x86 linux-image-amd64 busybox-static cpio kmod xz-utils zstd binutils socat)
else
  packages=(
    build-essential cmake ninja-build pkg-config
    clang libclang-rt-14-dev clang-format
    libcli11-dev libfmt-dev libspdlog-dev nlohmann-json3-dev libssl-dev libcapstone-dev
    libgtest-dev libgmock-dev libbenchmark-dev
    # The Linux guest the tests boot: Debian's own kernel and a busybox initramfs.
    linux-image-amd64 busybox-static cpio binutils
  )
fi

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

if [ "${1-}" = lab ]; then
  exit 0
fi
if [ ! -e /dev/kvm ]; then
  echo "setup: /dev/kvm does not exist here; the tests and the demo run their VMs in the lab (scripts/lab.sh)" >&2
elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "setup: warning: no read/write access to /dev/kvm (add yourself to the kvm group or run as root)" >&2
fi
