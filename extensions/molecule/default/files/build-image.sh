#!/usr/bin/env bash
# Builds the lab's Debian 12 base image: a debootstrap root file system with runc, CRIU, NFS and
# SSH, turned into a qcow2 disk plus the kernel and initrd for direct boot.
# Usage: build-image.sh OUTPUT_DIR
# OUTPUT_DIR receives base.qcow2, vmlinuz, initrd.img and id_ed25519[.pub] (the lab's SSH key).
# The mirror is the first Debian archive found in this machine's apt sources; without one,
# debootstrap uses its own default.
set -euo pipefail

out_dir=$1
suite=bookworm
disk_size=8G
# python3-apt: Ansible's apt module (behind ansible.builtin.package) would otherwise fetch it in every fresh VM.
packages=(
  linux-image-amd64 systemd-sysv udev kmod iproute2 openssh-server python3
  runc criu iptables nfs-kernel-server nfs-common busybox-static procps
  python3-apt
)

apt_mirror() {
  local sources=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  { cat "${sources[@]}" 2>/dev/null || true; } | awk '
    /^deb[ \t]/ && !/security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; exit } }
    /^URIs:/ && !/security/ { print $2; exit }'
}

configure_rootfs() {
  local root=$1
  printf '/dev/vda / ext4 defaults 0 0\n' > "$root/etc/fstab"
  printf 'ferry-lab\n' > "$root/etc/hostname"
  : > "$root/etc/machine-id"
  install -d -m 0700 "$root/root/.ssh"
  install -m 0600 "$out_dir/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
  cat > "$root/etc/systemd/network/10-mgmt.network" <<'NET'
[Match]
Name=eth0

[Network]
DHCP=ipv4
NET
  # The private link's address comes from the kernel command line (ferry.lab_addr=ADDR/PREFIX),
  # so one image serves both VMs and the inventory stays the only place that names addresses.
  cat > "$root/usr/local/sbin/ferry-lab-addr" <<'SH'
#!/bin/sh
set -e
addr=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^ferry\.lab_addr=//p')
[ -n "$addr" ] || exit 0
ip link set eth1 up
ip addr replace "$addr" dev eth1
SH
  chmod 0755 "$root/usr/local/sbin/ferry-lab-addr"
  cat > "$root/etc/systemd/system/ferry-lab-addr.service" <<'UNIT'
[Unit]
Description=Address on the lab's private link, from the kernel command line
Wants=sys-subsystem-net-devices-eth1.device
After=sys-subsystem-net-devices-eth1.device

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/ferry-lab-addr

[Install]
WantedBy=multi-user.target
UNIT
  chroot "$root" systemctl enable systemd-networkd ssh ferry-lab-addr
  chroot "$root" apt-get clean
}

main() {
  install -d -m 0700 "$out_dir"
  work=$(mktemp -d "$out_dir/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  local rootfs=$work/rootfs

  [ -f "$out_dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-lab -f "$out_dir/id_ed25519"
  local include mirror
  include=$(IFS=,; echo "${packages[*]}")
  mirror=$(apt_mirror)
  debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" ${mirror:+"$mirror"}
  configure_rootfs "$rootfs"
  cp "$rootfs"/boot/vmlinuz-* "$work/vmlinuz"
  cp "$rootfs"/boot/initrd.img-* "$work/initrd.img"
  truncate -s "$disk_size" "$work/base.raw"
  mkfs.ext4 -q -F -L root -d "$rootfs" "$work/base.raw"
  qemu-img convert -O qcow2 "$work/base.raw" "$work/base.qcow2"
  mv "$work/vmlinuz" "$work/initrd.img" "$out_dir/"
  mv "$work/base.qcow2" "$out_dir/base.qcow2"
}

main
