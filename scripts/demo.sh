#!/usr/bin/env bash
# The demo: builds glassbox and boots its own guest kernel on two vCPUs with introspection on,
# with a real introspection tool attached.
#
#   scripts/demo.sh                 # both parts below, one after the other
#   scripts/demo.sh guardian        # part 1 only
#   scripts/demo.sh stop-the-world  # part 2 only
#
# 1. guardian (examples/guardian.cpp): the guest runs in attack mode, where a user process tries
#    to patch kernel text, overwrite a syscall-table entry and rewrite LSTAR. The guardian
#    write-protects the kernel's pages and tracks LSTAR from outside the guest; the guest reports
#    each attack "blocked" and finishes normally.
# 2. stop the world (examples/stop_the_world.cpp): the guest runs in beacon mode; the tool stops
#    the whole VM, reads both vCPUs' registers and LSTAR, translates RIP, and ends the guest's
#    "beacon" process by writing a register while its vCPU is paused.
#
# Without a usable /dev/kvm the build runs here and the VMs in the KVM lab (scripts/lab.sh);
# GLASSBOX_LAB=1 forces the lab, GLASSBOX_LAB=0 forbids it.
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
case "$part" in
  all | guardian | stop-the-world) ;;
  *)
    echo "usage: scripts/demo.sh [guardian|stop-the-world]" >&2
    exit 2
    ;;
esac
source scripts/kvm_place.sh
place=$(kvm_place demo.sh)
if [ -z "${GLASSBOX_IN_LAB-}" ]; then
  scripts/setup.sh
  scripts/build.sh release >/dev/null
  if [ "$place" = lab ]; then
    echo "=== no usable /dev/kvm here: the demo's VMs run in the KVM lab (scripts/lab.sh, QEMU with nested SVM)"
    exec scripts/lab.sh --timeout 900 scripts/demo.sh "$@"
  fi
fi
bin=build/release/bin
guest=build/release/guest/glassbox-guest.elf
echo "=== glassbox host facts"
"$bin/glassbox" host-info

guardian_demo() {
  local sock log status
  sock=$(mktemp -u /tmp/glassbox-guardian.XXXXXX.sock)
  log=$(mktemp /tmp/glassbox-guardian.XXXXXX.log)
  echo "=== part 1: the guardian protects the guest kernel from an attacker inside the guest"
  # The guardian listens and the VMM connects to it as it starts; --start-paused holds every vCPU
  # before its first instruction until the guardian has armed, so the kernel is protected before
  # any guest code runs, however fast the guest is.
  "$bin/glassbox-example-guardian" --guest build/release/guest/glassbox-guest.json \
    --accept "$sock" >"$log" 2>&1 &
  local guardian=$!
  trap 'kill $guardian 2>/dev/null || true' EXIT
  for _ in $(seq 600); do [ -S "$sock" ] && break; sleep 0.1; done
  echo "--- guest console (attack mode, guardian attached on $sock)"
  status=0
  "$bin/glassbox" --log-level warn run --kernel "$guest" --cpus 2 --cmdline attack \
    --name guardian-demo \
    --introspect "unix:$sock" --start-paused --console-input none | tee "$log.guest" || status=$?
  wait $guardian || true
  trap - EXIT
  echo "--- guardian log"
  cat "$log"
  local blocked
  blocked=$(grep -c '^attack .*: blocked' "$log.guest" || true)
  rm -f "$log" "$log.guest"
  echo "=== part 1: the VM exited with status $status; $blocked of 3 attacks blocked"
  [ "$status" -eq 0 ] && [ "$blocked" -eq 3 ]
}

stop_the_world_demo() {
  local sock status
  sock=$(mktemp -u /tmp/glassbox-demo.XXXXXX.sock)
  echo "=== part 2: stop the world (beacon mode, introspection on $sock)"
  "$bin/glassbox" run --kernel "$guest" --cpus 2 --cmdline beacon --name demo \
    --introspect "listen:unix:$sock" &
  local vm=$!
  trap 'kill $vm 2>/dev/null || true' EXIT
  "$bin/glassbox-example-stop-the-world" "$sock"
  status=0
  wait $vm || status=$?
  trap - EXIT
  echo "=== part 2: the VM exited with status $status"
  [ "$status" -eq 0 ]
}

case "$part" in
  guardian) guardian_demo ;;
  stop-the-world) stop_the_world_demo ;;
  all) guardian_demo && stop_the_world_demo ;;
esac
