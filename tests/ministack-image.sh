#!/usr/bin/env bash
# Builds the MiniStack image the container test mode runs (LABS_TEST_TARGET=container), from
# Debian packages and PyPI, for machines that reach no image registry. It is tagged like the
# published image, ministackorg/ministack:<the version labs pins>, so where a registry is
# reachable `docker pull` gives the same tag (MINISTACK_PULL=1 tries that first). An image already
# present is kept (the cache); `docker rmi` it to rebuild. Needs root, docker and debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

version="$(sed -n 's/^pub const MINISTACK_VERSION: &str = "\(.*\)";$/\1/p' labs-cli/src/emulator.rs)"
[ -n "$version" ] || { echo "cannot read MINISTACK_VERSION from labs-cli/src/emulator.rs" >&2; exit 1; }
image="ministackorg/ministack:$version"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image is present"
  exit 0
fi

# Where a registry is reachable (GitHub's runners), the published image is the same thing.
if [ "${MINISTACK_PULL:-}" = 1 ] && docker pull "$image"; then
  exit 0
fi

# The host's own Debian release and mirror, so nothing else is contacted.
. /etc/os-release
suite="${DEBIAN_SUITE:-$VERSION_CODENAME}"
mirror="${DEBIAN_MIRROR:-$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
[ -n "$mirror" ] || mirror="$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$mirror" ] || { echo "no Debian mirror found in the apt sources: set DEBIAN_MIRROR" >&2; exit 1; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
echo "building $image from Debian $suite and ministack==$version (a few minutes, once)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror" >/dev/null
# The install uses the host's name resolution and trusted certificates (a proxy's CA, if any);
# neither stays in the image.
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/tmp/host-ca.crt"
chroot "$root" python3 -m venv /opt/ministack
# A clean environment: the host's certificate variables name files the chroot does not have.
chroot "$root" env -i PATH=/usr/bin:/bin HOME=/root /opt/ministack/bin/pip install --quiet \
  --disable-pip-version-check --no-cache-dir --cert /tmp/host-ca.crt "ministack==$version"
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* "$root/etc/resolv.conf" "$root/tmp/host-ca.crt"

# The published image's contract: MiniStack on GATEWAY_PORT (4566 by default), all interfaces.
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/opt/ministack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV GATEWAY_PORT=4566' \
  --change 'WORKDIR /tmp' \
  --change 'CMD ["ministack"]' \
  - "$image" >/dev/null
echo "$image built ($(docker image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
