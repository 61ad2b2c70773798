#!/usr/bin/env bash
# Builds TimescaleDB 2.28.3 (with its TSL part: compression/columnstore, continuous aggregates, policies)
# from its source tarball and installs it into Debian's PostgreSQL 15 (/usr/lib/postgresql/15), the
# server `make test`'s TimescaleDB half and `--warehouse timescaledb` run.
#
#   sudo tools/install_timescaledb.sh SOURCE [PATCH]
#
# SOURCE: the 2.28.3 source tarball, a file or an http(s) URL, e.g. the release's
#   https://github.com/timescale/timescaledb/archive/refs/tags/2.28.3.tar.gz
# PATCH: applied to the source before the build; default the one beside this script.
#
# Needs root and the Debian package registry (the build tools and PostgreSQL 15's headers come from
# apt). Idempotent: does nothing when that version is installed (SOURCE is then not read); FORCE=1
# rebuilds anyway. Takes about 5 minutes on 2 cores. Prints the pg_config it installed into on its
# last line.
#
# Why 2.28.3: it is the newest TimescaleDB that builds against PostgreSQL 15 (2.29 dropped PG 15), and
# Debian bookworm's PostgreSQL is 15. The patch fixes background jobs on PostgreSQL 15.19+, which otherwise
# fail at their end with 'cannot drop portal "" while it is being set up' (their work is committed anyway).
set -euo pipefail
version=2.28.3
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: $0 SOURCE [PATCH]: SOURCE is TimescaleDB $version's source tarball (a file or an http(s) URL)"
source=${1:?$usage}
patch_file=${2:-$here/timescaledb-$version-pg15.20-portal.patch}
pgc=/usr/lib/postgresql/15/bin/pg_config
if [ -z "${FORCE:-}" ] && [ -x "$pgc" ] && [ -f "$($pgc --pkglibdir)/timescaledb-$version.so" ] && [ -f "$($pgc --pkglibdir)/timescaledb-tsl-$version.so" ]; then
  echo "timescaledb $version already installed"; echo "$pgc"; exit 0
fi
[ -f "$patch_file" ] || { echo "$0: patch $patch_file: no such file" >&2; exit 2; }
patch_file=$(cd "$(dirname "$patch_file")" && pwd)/$(basename "$patch_file")
case "$source" in
  http://* | https://*) ;;
  *) [ -f "$source" ] || { echo "$0: source tarball $source: no such file ($usage)" >&2; exit 2; }
     source=$(cd "$(dirname "$source")" && pwd)/$(basename "$source") ;;
esac
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql-15 postgresql-server-dev-15 cmake build-essential libssl-dev libkrb5-dev curl >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
case "$source" in
  http://* | https://*) curl -fsSL --retry 3 -o "$work/source.tar.gz" "$source"; source=$work/source.tar.gz ;;
esac
mkdir "$work/src"
tar -xzf "$source" -C "$work/src" --strip-components=1
cd "$work/src"
found=$(sed -n 's/^version = //p' version.config 2>/dev/null || true)
[ "$found" = "$version" ] || { echo "$0: $1 holds TimescaleDB '${found:-?}', not $version" >&2; exit 2; }
patch -p1 -s < "$patch_file"
./bootstrap -DPG_CONFIG="$pgc" -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
  -DAPACHE_ONLY=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
make -C build -j"$(nproc)" >/dev/null
make -C build install >/dev/null
echo "timescaledb $version installed"
echo "$pgc"
