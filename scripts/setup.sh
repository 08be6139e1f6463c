#!/usr/bin/env bash
# Idempotent set-up for building and testing sipguard on Debian 12 (bookworm).
# Installs only what is missing; safe to run again on a developer's box, in CI
# or on a router. Versions are explained in docs/TOOLCHAIN.md.
set -euo pipefail

EBPF_TOOLCHAIN="${SIPGUARD_EBPF_TOOLCHAIN:-nightly}"
PINNED_NIGHTLY="nightly-2026-05-20"
BPF_LINKER_VERSION="0.13.0"
CARGO_FUZZ_VERSION="0.13.2"
CARGO_DEB_VERSION="3.8.0"
WITH_TEST_TOOLS=0
for arg in "$@"; do
  case "$arg" in
    --tests) WITH_TEST_TOOLS=1 ;;
    *) echo "setup.sh: unknown argument '$arg' (known: --tests)" >&2; exit 2 ;;
  esac
done

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || { sleep 3; $SUDO apt-get update -qq; }
  # A concurrent apt run on these images can delete downloaded .debs mid-install: retry once.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || { sleep 5; $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; }
}

APT_PKGS=(llvm-22-dev libpolly-22-dev libzstd-dev bpftool iproute2 pkg-config)
had_kamailio=0
if [ "$WITH_TEST_TOOLS" = 1 ]; then
  # kamailio: the lab's second SIP endpoint (tests/lab/kamailio.cfg).
  APT_PKGS+=(sip-tester tcpdump iptables nftables dnsmasq kamailio)
  # The kernel matrix (tests/tests/kernel_matrix.rs): qemu boots Debian kernels
  # from an initramfs around a static busybox; xz unpacks their modules.
  # qemu-system-arm emulates the arm64 row (qemu-system-aarch64).
  APT_PKGS+=(qemu-system-x86 qemu-system-arm busybox-static xz-utils)
  # The package and its test under real systemd (docs/INSTALL.md): lintian
  # checks the .deb, debootstrap + systemd-nspawn boot Debian 12 around it,
  # the cross gcc links the arm64 build, patch mends the older release the
  # upgrade test builds.
  APT_PKGS+=(lintian debootstrap systemd-container gcc-aarch64-linux-gnu libc6-dev-arm64-cross patch)
  # The benchmark's XDP peer: xdp-filter's own BPF objects (docs/BENCHMARKS.md).
  APT_PKGS+=(xdp-tools)
  dpkg-query -W -f='${Status}' kamailio 2>/dev/null | grep -q "install ok installed" && had_kamailio=1
fi
apt_install "${APT_PKGS[@]}"
if [ "$WITH_TEST_TOOLS" = 1 ] && [ "$had_kamailio" = 0 ] && command -v systemctl >/dev/null 2>&1; then
  # The package enables a system-wide kamailio on port 5060; the lab starts
  # its own instances inside namespaces, so the service we just installed is
  # switched off (an existing installation is left alone).
  $SUDO systemctl disable --now kamailio >/dev/null 2>&1 || true
fi

if [ "$WITH_TEST_TOOLS" = 1 ] && ! dpkg-query -W -f='${Status}' crowdsec 2>/dev/null | grep -q "install ok installed"; then
  # crowdsec: the real Local API the fleet tests start on their own (offline,
  # own config under a temporary directory). The package would register to
  # the Central API on install (network) and start a system-wide service:
  # the credentials file holding only a comment is the package's documented
  # opt-out (README.Debian), and a policy-rc.d keeps the service from starting.
  $SUDO install -d -m 0755 /etc/crowdsec
  [ -e /etc/crowdsec/online_api_credentials.yaml ] \
    || echo "# no Central API: sipguard tests run the Local API offline" \
      | $SUDO tee /etc/crowdsec/online_api_credentials.yaml >/dev/null
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 0755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  rc=0
  apt_install crowdsec || rc=$?
  if [ "$own_policy" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  [ "$rc" = 0 ] || exit "$rc"
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now crowdsec >/dev/null 2>&1 || true
  fi
fi

# The eBPF crate needs a nightly whose LLVM major equals bpf-linker's (22).
llvm_major() { rustc +"$1" -vV 2>/dev/null | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p'; }
if [ "$(llvm_major "$EBPF_TOOLCHAIN")" != "22" ]; then
  log "toolchain '$EBPF_TOOLCHAIN' is not LLVM 22; installing $PINNED_NIGHTLY"
  rustup toolchain install "$PINNED_NIGHTLY" --profile minimal --component rust-src
  EBPF_TOOLCHAIN="$PINNED_NIGHTLY"
fi
if ! rustup component list --toolchain "$EBPF_TOOLCHAIN" --installed 2>/dev/null | grep -q '^rust-src'; then
  log "rustup component add rust-src --toolchain $EBPF_TOOLCHAIN"
  rustup component add rust-src --toolchain "$EBPF_TOOLCHAIN"
fi

if ! command -v bpf-linker >/dev/null 2>&1 || ! bpf-linker --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "cargo install bpf-linker@$BPF_LINKER_VERSION (llvm-22)"
  # Without LLVM_PREFIX its build finds Debian's default llvm-config (LLVM 14).
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install "bpf-linker@$BPF_LINKER_VERSION" --locked \
    --no-default-features --features llvm-22
fi

# `cargo xtask package` (the README's install command) drives cargo-deb.
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  log "cargo install cargo-deb@$CARGO_DEB_VERSION"
  cargo install "cargo-deb@$CARGO_DEB_VERSION" --locked
fi

if [ "$WITH_TEST_TOOLS" = 1 ]; then
  # CI runs rustfmt --check and clippy -D warnings on the default toolchain.
  for comp in clippy rustfmt; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
      log "rustup component add $comp"
      rustup component add "$comp"
    fi
  done
  # Fuzz targets (scripts/fuzz-smoke.sh) build with cargo-fuzz on nightly.
  if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    log "cargo install cargo-fuzz@$CARGO_FUZZ_VERSION"
    cargo install "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
  fi
  if ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-gnu$'; then
    log "rustup target add aarch64-unknown-linux-gnu"
    rustup target add aarch64-unknown-linux-gnu
  fi
  PY_PKGS=(scapy sipvicious)
  for p in "${PY_PKGS[@]}"; do
    python3 -m pip show -q "$p" >/dev/null 2>&1 || { log "pip install $p"; python3 -m pip install -q "$p" || python3 -m pip install -q "$p"; }
  done
  # The matrix's Debian kernels (and the arm64 row's busybox), under
  # target/vm/ (kept between runs).
  for vm_arch in x86_64 aarch64; do
    "$(dirname "$0")/vm-kernels.sh" "$vm_arch" || { sleep 5; "$(dirname "$0")/vm-kernels.sh" "$vm_arch"; }
  done
fi

# bpffs: the daemon pins under /sys/fs/bpf/sipguard; mount it when the box has none.
if [ -d /sys/fs/bpf ] && ! mountpoint -q /sys/fs/bpf; then
  log "mounting bpffs on /sys/fs/bpf"
  $SUDO mount -t bpf bpf /sys/fs/bpf || log "could not mount bpffs (not root?)"
fi

log "ready: ebpf toolchain $EBPF_TOOLCHAIN ($(rustc +"$EBPF_TOOLCHAIN" -V)), $(bpf-linker --version)"
