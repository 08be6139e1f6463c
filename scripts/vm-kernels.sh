#!/usr/bin/env bash
# Fetches the Debian kernels of the kernel matrix (tests/tests/kernel_matrix.rs)
# into target/vm/<arch>/, each as vmlinuz + the modules the VM loads; for a
# foreign architecture also that architecture's static busybox, the VM's
# userland (the host's busybox cannot run there).
# Uses a private apt configuration under target/vm/apt: the machine's sources,
# lists and cache stay untouched. Idempotent: a kernel already unpacked is kept.
#
#   scripts/vm-kernels.sh [ARCH]      ARCH: x86_64 (default), aarch64
set -euo pipefail

ARCH="${1:-x86_64}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VM="${SIPGUARD_VM_DIR:-$ROOT/target/vm}"
# One package pattern per matrix row: name, apt suites, package regex.
# The newest match wins (sort -V), so a security update is picked up by itself.
case "$ARCH" in
  x86_64)
    DEB_ARCH=amd64
    ROWS=(
      "5.10|bullseye bullseye-security|^linux-image-5\.10\.0-[0-9]+-amd64\$"
      "6.1|bookworm bookworm-security|^linux-image-6\.1\.0-[0-9]+-amd64\$"
      "6.12|bookworm-security|^linux-image-6\.12\.[0-9.]+\+deb12-amd64\$"
    )
    # veth and what it needs, plus the modules insmod must load first.
    MODULES=(veth)
    BUSYBOX=0
    ;;
  aarch64)
    DEB_ARCH=arm64
    # One row: emulating another CPU costs several times more, and 6.12's
    # verifier needs a fifth of 6.1's steps for the filter (docs/KERNELS.md).
    ROWS=(
      "6.12|bookworm-security|^linux-image-6\.12\.[0-9.]+\+deb12-arm64\$"
    )
    # No end-to-end part on this row: no veth.
    MODULES=()
    BUSYBOX=1
    ;;
  *) echo "vm-kernels.sh: no kernel set for arch '$ARCH' (known: x86_64, aarch64)" >&2; exit 2 ;;
esac

APT="$VM/apt/$DEB_ARCH"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/sources.d" "$VM/$ARCH"
SOURCES="$APT/sources.list"
{
  echo "deb [arch=$DEB_ARCH signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main"
  echo "deb [arch=$DEB_ARCH signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bullseye-security main"
  echo "deb [arch=$DEB_ARCH signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main"
  echo "deb [arch=$DEB_ARCH signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main"
} >"$SOURCES"
APT_OPTS=(
  -o "Dir::Etc::SourceList=$SOURCES"
  -o "Dir::Etc::SourceParts=$APT/sources.d"
  -o "Dir::State::Lists=$APT/lists"
  -o "Dir::Cache=$APT/cache"
  -o "APT::Architecture=$DEB_ARCH"
  -o "APT::Sandbox::User=root"
)

all_present() {
  for row in "${ROWS[@]}"; do
    [ -f "$VM/$ARCH/${row%%|*}/vmlinuz" ] || return 1
  done
  [ "$BUSYBOX" = 0 ] || [ -f "$VM/$ARCH/busybox" ]
}
if all_present; then
  echo "vm-kernels: all kernels present under $VM/$ARCH"
  exit 0
fi

apt-get "${APT_OPTS[@]}" update -qq || { sleep 3; apt-get "${APT_OPTS[@]}" update -qq; }

for row in "${ROWS[@]}"; do
  IFS='|' read -r name suites regex <<<"$row"
  dest="$VM/$ARCH/$name"
  [ -f "$dest/vmlinuz" ] && continue
  pkg="$(apt-cache "${APT_OPTS[@]}" pkgnames linux-image- | grep -E "$regex" | sort -V | tail -1)"
  if [ -z "$pkg" ]; then
    echo "vm-kernels: no package matches $regex in $suites" >&2
    exit 1
  fi
  echo "vm-kernels: $name <- $pkg"
  work="$(mktemp -d "$VM/$ARCH/.unpack.XXXXXX")"
  (cd "$work" && apt-get "${APT_OPTS[@]}" download -qq "$pkg")
  dpkg-deb -x "$work"/*.deb "$work/root"
  kver="$(ls "$work/root/lib/modules")"
  mkdir -p "$work/out/modules"
  cp "$work/root/boot/vmlinuz-$kver" "$work/out/vmlinuz"
  # The modules and their dependencies, in load order (a dependency first).
  # The .deb has no modules.dep (depmod runs at install), so each module's
  # own "depends=" field from its .modinfo section is followed.
  moddir="$work/root/lib/modules/$kver"
  : >"$work/out/modules/order"
  add_module() {
    local name="$1" file dep
    file="$(find "$moddir" -name "$name.ko" -o -name "$name.ko.xz" | head -1)"
    if [ -z "$file" ]; then
      file="$(find "$moddir" -name "${name//_/-}.ko" -o -name "${name//_/-}.ko.xz" | head -1)"
    fi
    [ -n "$file" ] || return 0 # built into this kernel
    local ko="$work/out/modules/$name.ko"
    [ -f "$ko" ] && return 0
    if [[ "$file" == *.xz ]]; then xz -dc "$file" >"$ko"; else cp "$file" "$ko"; fi
    for dep in $(tr '\0' '\n' <"$ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
      add_module "$dep"
    done
    echo "$name.ko" >>"$work/out/modules/order"
  }
  for m in "${MODULES[@]}"; do add_module "$m"; done
  echo "$pkg" >"$work/out/package"
  echo "$kver" >"$work/out/release"
  rm -rf "$dest"
  mv "$work/out" "$dest"
  rm -rf "$work"
done
if [ "$BUSYBOX" = 1 ] && [ ! -f "$VM/$ARCH/busybox" ]; then
  work="$(mktemp -d "$VM/$ARCH/.unpack.XXXXXX")"
  (cd "$work" && apt-get "${APT_OPTS[@]}" download -qq busybox-static)
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/root"
  mv "$work/root/bin/busybox" "$VM/$ARCH/busybox"
  rm -rf "$work"
  echo "vm-kernels: $ARCH busybox <- busybox-static:$DEB_ARCH"
fi
echo "vm-kernels: kernels under $VM/$ARCH: $(cd "$VM/$ARCH" && echo */)"
