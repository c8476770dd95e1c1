#!/usr/bin/env bash
# Build a local liteport base image without any registry: debootstrap a minimal Debian,
# add ca-certificates + python3 + python3-venv (+ extra CA certificates), then `docker import` it.
#
#   images/base/build.sh --suite bookworm [--ca-cert FILE]... [--tag TAG] [--mirror URL]
#
# bookworm gives Python 3.11, bullseye Python 3.9 (the interpreters the environments pin).
# Default tag: liteport/base:<suite>-py<version>. Needs root, debootstrap and a running engine.
set -euo pipefail

suite=bookworm
tag=""
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
certs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    --ca-cert) certs+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

case "$suite" in
  bookworm) python=3.11 ;;
  bullseye) python=3.9 ;;
  *) echo "build.sh: unsupported suite $suite (bookworm or bullseye)" >&2; exit 2 ;;
esac
tag="${tag:-liteport/base:${suite}-py${python}}"
docker_cli="${DOCKER:-docker}"

for tool in debootstrap "$docker_cli"; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install -y docker.io debootstrap)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "build.sh: debootstrap needs root" >&2; exit 2; }

root="$(mktemp -d "${TMPDIR:-/tmp}/liteport-base-${suite}.XXXXXX")"
trap 'rm -rf "$root"' EXIT

echo "debootstrap $suite from $mirror into $root"
# minbase: essential packages + apt; passwd for useradd in the Dockerfiles.
debootstrap --variant=minbase --include=ca-certificates,python3,python3-venv,passwd \
  "$suite" "$root" "$mirror" > "$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"

if [ "${#certs[@]}" -gt 0 ]; then
  # Hosts behind an intercepting proxy: trust its CA inside the image too (pip, curl, ...).
  mkdir -p "$root/usr/local/share/ca-certificates"
  for cert in "${certs[@]}"; do
    cp "$cert" "$root/usr/local/share/ca-certificates/$(basename "${cert%.*}").crt"
  done
  chroot "$root" update-ca-certificates > /dev/null
fi

# Keep the image small and deterministic: no apt lists, caches, logs or pyc from the install.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/log/* "$root"/tmp/* "$root"/usr/share/doc/* "$root"/usr/share/man/*

version="$(chroot "$root" python3 -c 'import platform; print(platform.python_version())')"
echo "importing $tag (Python $version)"
tar --numeric-owner -C "$root" -c . | "$docker_cli" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  --message "liteport base: debian $suite, python $version" \
  - "$tag"
echo "built $tag"
