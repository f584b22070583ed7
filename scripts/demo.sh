#!/usr/bin/env bash
# The demo: builds glassbox and boots its own guest kernel on two vCPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release >/dev/null
echo "=== glassbox host facts"
build/release/bin/glassbox host-info
echo "=== booting guest/glassbox-guest.elf on 2 vCPUs"
exec build/release/bin/glassbox run --kernel build/release/guest/glassbox-guest.elf --cpus 2 "$@"
