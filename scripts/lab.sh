#!/usr/bin/env bash
# The KVM lab: runs a command with /dev/kvm on a host that has none.
#
#   scripts/lab.sh [--timeout SECONDS] [--cpus N] [--memory MIB] [--] COMMAND [ARG...]
#
# It boots Debian's own kernel under QEMU (TCG, `-cpu max`, which offers AMD SVM with nested
# paging), loads kvm_amd there, mounts this machine's filesystem over virtio-9p and runs COMMAND in
# the current directory, in a chroot of it, with the lab's own /dev/kvm, /proc, /sys, /dev, /tmp
# and /run. COMMAND's output streams live; the lab's exit status is COMMAND's. The lab is a test
# harness: glassbox itself is a plain KVM VMM and needs none of this where /dev/kvm exists.
#
# It never hangs: COMMAND is ended after --timeout seconds (default $GLASSBOX_LAB_TIMEOUT or
# 3600) with status 124, and a lab kernel that panics or stops answering is reported with the
# tail of its console log (status 125). The initramfs is built from the installed kernel's
# modules and cached under build/lab, rebuilt when the kernel or this script changes.
#
# Environment passed in: GLASSBOX_*, CI, *SAN_OPTIONS, TERM, and PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
timeout_s=${GLASSBOX_LAB_TIMEOUT:-3600}
cpus=${GLASSBOX_LAB_CPUS:-$(nproc)}
memory_mib=${GLASSBOX_LAB_MEMORY:-8192}

usage() {
  echo "usage: scripts/lab.sh [--timeout SECONDS] [--cpus N] [--memory MIB] [--] COMMAND [ARG...]" >&2
  exit 2
}
number() { [[ $2 =~ ^[1-9][0-9]*$ ]] || {
  echo "lab: $1 needs a positive whole number, got '$2'" >&2
  exit 2
}; }
while (($#)); do
  case "$1" in
    --timeout) number "$1" "${2-}"; timeout_s=$2; shift 2 ;;
    --cpus) number "$1" "${2-}"; cpus=$2; shift 2 ;;
    --memory) number "$1" "${2-}"; memory_mib=$2; shift 2 ;;
    --) shift; break ;;
    -*) echo "lab: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
(($#)) || usage

"$root/scripts/setup.sh" lab >&2

# The newest installed kernel that has kvm_amd.
kernel_version=
for vmlinuz in $(ls -1v /boot/vmlinuz-* 2>/dev/null | tac); do
  v=${vmlinuz#/boot/vmlinuz-}
  if [ -n "$(modinfo -k "$v" -F filename kvm_amd 2>/dev/null)" ]; then
    kernel_version=$v
    break
  fi
done
[ -n "$kernel_version" ] || {
  echo "lab: no kernel in /boot with the kvm_amd module (scripts/setup.sh lab installs linux-image-amd64)" >&2
  exit 1
}

# --- initramfs: busybox, the modules for KVM, 9p and the virtio console, and scripts/lab/init.
cache="$root/build/lab"
mkdir -p "$cache"
initramfs="$cache/initramfs-$kernel_version.cpio.gz"
stamp="$kernel_version $(stat -c '%s %Y' "/boot/vmlinuz-$kernel_version") $(cat "$0" "$root/scripts/lab/init" /bin/busybox | sha1sum | cut -c1-40)"
if [ ! -f "$initramfs" ] || [ "$(cat "$initramfs.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "lab: building the initramfs for Linux $kernel_version" >&2
  staging=$(mktemp -d)
  trap 'rm -rf "$staging"' EXIT
  mkdir -p "$staging"/{bin,dev,proc,sys,host,lib/modules}
  cp /bin/busybox "$staging/bin/busybox"
  cp "$root/scripts/lab/init" "$staging/init"
  # Dependencies first, each module once, resolved from the modules' own metadata.
  declare -A placed=()
  order=()
  place() {
    local m=$1 dep
    [ -n "${placed[$m]-}" ] && return
    placed[$m]=1
    for dep in $(modinfo -k "$kernel_version" -F depends "$m" | tr ',' ' '); do place "$dep"; done
    local file
    file=$(modinfo -k "$kernel_version" -F filename "$m")
    case "$file" in
      /*) cp "$file" "$staging/lib/modules/$m.ko"; order+=("$m.ko") ;;
      *) ;; # built into the kernel
    esac
  }
  for m in virtio_pci virtio_console 9pnet_virtio 9p kvm_amd; do place "$m"; done
  printf '%s\n' "${order[@]}" >"$staging/modules.order"
  (cd "$staging" && find . | cpio -o -H newc --quiet | gzip -1) >"$initramfs.tmp"
  mv "$initramfs.tmp" "$initramfs"
  echo "$stamp" >"$initramfs.stamp"
  rm -rf "$staging"
  trap - EXIT
fi

# --- the kernel: booted as an uncompressed ELF through its PVH entry point when it has one,
# which skips the real-mode setup and the decompression, about 8 s under TCG.
kernel_image="/boot/vmlinuz-$kernel_version"
vmlinux="$cache/vmlinux-$kernel_version"
if [ ! -f "$vmlinux" ] || [ "$vmlinux" -ot "$kernel_image" ]; then
  rm -f "$vmlinux"
  for format in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
    offset=$(LC_ALL=C grep -obUaP "${format#*:}" "$kernel_image" | head -n 1 | cut -d: -f1)
    [ -n "$offset" ] || continue
    tail -c +$((offset + 1)) "$kernel_image" | "${format%%:*}" -dc >"$vmlinux.tmp" 2>/dev/null || true
    if readelf -n "$vmlinux.tmp" 2>/dev/null | grep -q 'Xen.*type: (0x00000012)'; then
      mv "$vmlinux.tmp" "$vmlinux"
      break
    fi
  done
  rm -f "$vmlinux.tmp"
fi
[ -f "$vmlinux" ] && kernel_image=$vmlinux

# --- the run directory: the command, written here, read inside through the share.
run=$(mktemp -d "$cache/run.XXXXXX")
console="$run/console.log"
cleanup() {
  [ -n "${qemu_pid-}" ] && kill -9 "$qemu_pid" 2>/dev/null || true
  rm -rf "$run"
}
trap cleanup EXIT
{
  echo "set -e"
  echo "cd $(printf '%q' "$PWD")"
  while IFS='=' read -r name value; do
    case "$name" in
      GLASSBOX_* | CI | ASAN_OPTIONS | UBSAN_OPTIONS | TSAN_OPTIONS | LSAN_OPTIONS | TERM | PATH)
        printf 'export %s=%q\n' "$name" "$value" ;;
    esac
  done < <(env)
  echo "export GLASSBOX_IN_LAB=1 HOME=/root"
  echo "set +e"
  printf 'exec'
  printf ' %q' "$@"
  echo
} >"$run/command.sh"

# Console on the emulated UART goes to a file (shown when the lab fails); the command's output
# goes through a virtio console to our stdout. panic=-1 + -no-reboot: a lab kernel panic ends QEMU.
inner_timeout=$timeout_s
# -cpu max: TCG offers SVM with nested paging. Without AVX: in the nested guest TCG's AVX faults
# (#UD, even with CR4.OSXSAVE and XCR0 set; measured with tests/guests/page_access.S), so the lab
# does not claim it, and guests see no AVX. Single-threaded TCG: with thread=multi the lab kernel
# stopped making progress under the test suite (both CPUs spinning, one in its int3 handler, as
# in a text_poke that never completed); single-threaded it ran every suite.
cpu_model="max,avx=off,avx2=off,fma=off,f16c=off"
kernel_log="quiet loglevel=4"
if [ -n "${GLASSBOX_LAB_CONSOLE-}" ]; then kernel_log="loglevel=7 printk.time=1"; fi
outer_timeout=$((timeout_s + 120))
qemu-system-x86_64 \
  -machine q35 -accel "tcg,thread=${GLASSBOX_LAB_TCG_THREAD:-single},tb-size=1024" -cpu "$cpu_model" -smp "$cpus" -m "$memory_mib" \
  -kernel "$kernel_image" -initrd "$initramfs" \
  -append "console=ttyS0 $kernel_log panic=-1 softlockup_panic=1 rcupdate.rcu_cpu_stall_suppress=0 glassbox.run=$run glassbox.timeout=$inner_timeout" \
  -display none -no-reboot -nodefaults \
  -serial "file:${GLASSBOX_LAB_CONSOLE:-$console}" \
  -device virtio-serial-pci -chardev stdio,id=out,signal=off -device virtconsole,chardev=out \
  -fsdev local,id=hostroot,path=/,security_model=none,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -monitor "unix:$run/monitor.sock,server=on,wait=off" \
  </dev/null 2> >(grep -v -e 'broken or compromised client' >&2) &
qemu_pid=$!

# Ends the lab VM after printing why, its console log and where its CPUs are.
give_up() {
  echo "lab: $1; ending the lab VM. Its console log ends:" >&2
  tail -n 60 "$console" >&2 || true
  if command -v socat >/dev/null && [ -S "$run/monitor.sock" ]; then
    echo "lab: the lab's CPUs:" >&2
    printf 'info registers -a\n' | timeout 10 socat - "UNIX-CONNECT:$run/monitor.sock" 2>/dev/null |
      grep -E '^(CPU#|RIP|CS |CR0)' >&2 || true
  fi
  kill -9 "$qemu_pid" 2>/dev/null || true
  exit 125
}
deadline=$((SECONDS + outer_timeout))
heard=$SECONDS
last_size=0
while kill -0 "$qemu_pid" 2>/dev/null; do
  ((SECONDS < deadline)) || give_up "the lab VM did not finish within ${outer_timeout}s"
  size=$(stat -c %s "$console" 2>/dev/null || echo 0)
  if ((size != last_size)); then
    last_size=$size
    heard=$SECONDS
  fi
  # The heartbeat comes every 10 s; under heavy load a minute of silence is still not a hang.
  ((SECONDS - heard < 90)) || give_up "the lab kernel stopped making progress (no heartbeat for 90 s)"
  sleep 1
done
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=

if [ ! -f "$run/status" ]; then
  echo "lab: the lab VM stopped before the command finished (kernel panic or init failure). Its console log ends:" >&2
  tail -n 60 "$console" >&2 || true
  exit 125
fi
status=$(cat "$run/status")
if [ "$status" = timeout ]; then
  echo "lab: '$*' ran past ${timeout_s}s and was ended" >&2
  exit 124
fi
exit "$status"
