#!/usr/bin/env bash
# The demo: builds glassbox, boots its own guest kernel on two vCPUs with introspection on, and
# runs an introspection tool against it (examples/stop_the_world.cpp): the tool stops the whole
# VM, reads both vCPUs' registers and LSTAR, translates RIP, and ends the guest's "beacon"
# process by writing a register while its vCPU is paused. The guest then finishes and powers off.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release >/dev/null
bin=build/release/bin
echo "=== glassbox host facts"
"$bin/glassbox" host-info
sock=$(mktemp -u /tmp/glassbox-demo.XXXXXX.sock)
echo "=== booting guest/glassbox-guest.elf on 2 vCPUs, introspection on $sock"
"$bin/glassbox" run --kernel build/release/guest/glassbox-guest.elf --cpus 2 --cmdline beacon \
  --name demo --introspect "listen:unix:$sock" &
vm=$!
trap 'kill $vm 2>/dev/null || true' EXIT
"$bin/glassbox-example-stop-the-world" "$sock"
wait $vm
status=$?
trap - EXIT
echo "=== the VM exited with status $status"
exit $status
