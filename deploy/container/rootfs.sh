#!/bin/sh
# Lays out the runtime root file system of the kafclaw image (deploy/container/Containerfile):
#   deploy/container/rootfs.sh BINARY DEST
# DEST/rootfs/ receives the stripped BINARY as /usr/local/bin/kafclaw, exactly the shared
# libraries `ldd BINARY` lists (and the ELF interpreter), an /etc/passwd and /etc/group with the
# unprivileged user kafclaw (uid/gid 65532), /tmp (1777), the state folder /var/lib/kafclaw
# (owned by 65532) and the CA bundle librdkafka reads for TLS brokers, when the build host has
# one. No shell and no package manager: the image runs kafclaw and nothing else.
# Used by the image's build stage and, on the test binary, by engine/tests/it/deploy/container.rs.
set -eu

[ $# -eq 2 ] || { echo "usage: $0 BINARY DEST" >&2; exit 2; }
bin=$1
root=$2/rootfs
uid=65532

rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/var/lib/kafclaw" "$root/etc/kafclaw"
cp "$bin" "$root/usr/local/bin/kafclaw"
strip --strip-all "$root/usr/local/bin/kafclaw"

# Every library the dynamic loader resolves, and the loader itself, at the same paths.
# ldd prints `name => /path (addr)` for libraries and `/path (addr)` for the interpreter.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
  while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
# A loader reached through a symlinked folder (/lib64 -> usr/lib64 on merged-/usr systems)
# is copied at the path the binary names, which is the one that matters.

printf 'root:x:0:0:root:/root:/sbin/nologin\nkafclaw:x:%s:%s:kafclaw:/var/lib/kafclaw:/sbin/nologin\n' "$uid" "$uid" \
  >"$root/etc/passwd"
printf 'root:x:0:\nkafclaw:x:%s:\n' "$uid" >"$root/etc/group"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi

chmod 1777 "$root/tmp"
chmod 0755 "$root/usr/local/bin/kafclaw"
# Owned by the runtime user: a numeric chown works without that user on the build host.
# Unprivileged builds (no CAP_CHOWN) leave root ownership; the image's VOLUME then gets its
# owner from the container engine or from the pod's fsGroup.
chown "$uid:$uid" "$root/var/lib/kafclaw" 2>/dev/null || true
