#!/usr/bin/env bash
# Installs what imgcore needs on a fresh machine of this kind (Debian bookworm, root, Rust + Python 3.11 present).
#   scripts/install-deps.sh            system packages for the demo and the build
#   scripts/install-deps.sh --test     + the independent tools the test suite talks to (skopeo, umoci, registry)
set -euo pipefail
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# libisal-dev: ISA-L inflate for gzip layers (the build falls back to zlib-rs without it, about 2x slower);
# busybox-static: the shell tools inside the demo's base image; file: to check that it is static.
# runc: the OCI runtime that runs the demo's containers from imgcore's config.json (crun 1.8 fails on hybrid cgroups).
# docker-registry: the demo pushes its images to a real distribution server on loopback and pulls them back.
pkgs=(pkg-config libisal-dev busybox-static file runc docker-registry)
if [ "$want_test" = 1 ]; then
  # skopeo/umoci: independent OCI peers for interop tests; docker-registry: a real distribution server on
  # loopback; bubblewrap: unprivileged exec; libarchive-tools (bsdtar) and zstd: independent archive readers;
  # openssl + apache2-utils: TLS certificates and htpasswd for the registry auth tests.
  pkgs+=(skopeo umoci bubblewrap libarchive-tools zstd pigz openssl apache2-utils e2fsprogs)
  # tmux: a real terminal for the interactive attach/exec tests (raw mode, window size, detach keys).
  pkgs+=(tmux)
  # podman, containerd (ctr): the odd-image corpus is read from the store by podman (vfs) and a private containerd.
  pkgs+=(podman containerd)
  # gcc: builds the LD_PRELOAD library of tests/integration/test_hostile_env.py (the build's C shim needs it too).
  pkgs+=(gcc)
  # python3-numpy: the unprivileged-run test drives the library as user nobody with Debian's own python3 (the
  # project's interpreter lives under /root), and the library imports numpy (a runtime dependency).
  pkgs+=(python3-numpy)
  # chromium: a real browser renders the `analyze --html` report in the tests (headless screenshot).
  pkgs+=(chromium)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to apt-get install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
