#!/usr/bin/env bash
# Prints "kvm" when a Debian kernel really boots under KVM on this machine, else "tcg".
# /dev/kvm can exist on hosts where guests hang before the kernel prints anything (a PVM host), so the
# probe boots the lab's kernel and waits for its first lines on the serial console.
# Usage: probe-accel.sh KERNEL INITRD SECONDS
set -uo pipefail

kernel=$1
initrd=$2
seconds=$3

if [ ! -w /dev/kvm ]; then
  echo tcg
  exit 0
fi

probe_dir=$(mktemp -d)
trap 'kill "$(cat "$probe_dir/pid" 2>/dev/null)" 2>/dev/null; rm -rf "$probe_dir"' EXIT

qemu-system-x86_64 -accel kvm -cpu host -m 256 -display none -no-reboot \
  -kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 panic=-1" \
  -serial "file:$probe_dir/console" -daemonize -pidfile "$probe_dir/pid" >/dev/null 2>&1 || { echo tcg; exit 0; }

for _ in $(seq "$((seconds * 10))"); do
  if grep -q "Linux version" "$probe_dir/console" 2>/dev/null; then
    echo kvm
    exit 0
  fi
  sleep 0.1
done
echo tcg
