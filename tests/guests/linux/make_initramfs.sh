#!/usr/bin/env bash
# Builds the Linux test guest's initramfs: a newc cpio (uncompressed) with the static busybox
# and tests/guests/linux/init. No device nodes are needed (init mounts devtmpfs), so no root.
#   make_initramfs.sh OUTPUT
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
busybox=$(command -v busybox || true)
[[ -n $busybox ]] || busybox=/bin/busybox
# A dynamically linked busybox has a program interpreter; the static one (busybox-static) not.
if [[ ! -x $busybox ]] || readelf -l "$busybox" | grep -q "program interpreter"; then
  echo "make_initramfs.sh: $busybox is missing or not static; install busybox-static" >&2
  exit 1
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin"
cp "$busybox" "$stage/bin/busybox"
install -m 0755 "$here/init" "$stage/init"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$out.tmp"
mv "$out.tmp" "$out"
