#!/usr/bin/env bash
# Installs what Tally needs on Debian 12, idempotently: only what is missing, and `apt-get update`
# only when the package lists cannot offer it. Safe to run on every `./x run` and `./x test`.
#
#   g++, make, libsnappy-dev, liblz4-dev, libzstd-dev  to build RocksDB once (below)
#   libclang-dev    bindgen, which generates RocksDB's C bindings
#
#   graphite-web    the reference the compatibility tests compare /render against (`setup.sh test`)
#   graphite-carbon the carbon-cache that feeds it the same plaintext Tally gets
#   gunicorn        serves graphite-web on a loopback port during the tests
#   prometheus-alertmanager  the real Alertmanager 0.25 the alerting tests page through
#   carbon-c-relay  the real relay 3.7 the placement tests compare the agent's ring with, and
#                   that routes plaintext to several stores in tests and benches/relay_compare.py
#   chromium, chromium-driver  the headless browser the web page's test drives (WebDriver)
#
#   mtail, victoria-metrics  the peers benches/*_compare.py measure against (`setup.sh bench`)
#   curl            times the big answers of benches/functions_compare.py (`setup.sh bench`)
#   collectd-core   collectd 5.12 and its plugins (tail, write_graphite): the second peer of
#                   benches/agent_compare.py (`setup.sh bench`)
#
#   Etsy statsd $STATSD_VERSION (npm, run with Debian's node) the statsd differential test and
#                   benches/statsd_compare.py compare the agent's `[statsd]` against (`setup.sh test`
#                   and `setup.sh bench`), in $STATSD_PREFIX: `node $STATSD_PREFIX/node_modules/statsd/stats.js`
#
# RocksDB: the `rocksdb` crate (0.20.1) binds the headers of RocksDB 7.9.2, and links the shared
# library in ROCKSDB_LIB_DIR (.cargo/config.toml) rather than compiling the C++ in every profile.
# Debian's librocksdb 7.8 is built with assertions, and one of them aborts the process on a WAL
# write error (a full disk: issue 17), so this script builds the crate's own bundled 7.9.2
# sources once, with NDEBUG (DEBUG_LEVEL=0), into a machine-wide cache, $ROCKSDB_PREFIX/lib, and
# makes it loadable (an /etc/ld.so.conf.d entry). Built only when the cache lacks it; about
# 45 minutes on 2 busy cores, a few on a free 8-core machine.
#
#   setup.sh [test|bench]          packages, then RocksDB if missing
#   setup.sh rocksdb-install DIR   install a RocksDB tree already built with the same make line
#                                  (`make DEBUG_LEVEL=0 ... shared_lib` in DIR) instead of
#                                  building again; checked like a build of our own
set -euo pipefail

ROCKSDB_VERSION=7.9.2
ROCKSDB_CRATE=librocksdb-sys-0.10.0+$ROCKSDB_VERSION
ROCKSDB_PREFIX=${TALLY_ROCKSDB_PREFIX:-/opt/tally/rocksdb-$ROCKSDB_VERSION}
ROCKSDB_LDCONF=/etc/ld.so.conf.d/tally-rocksdb.conf
ROCKSDB_SONAME=librocksdb.so.7.9

# Etsy's statsd, pinned, from the npm registry; tests/it/statsd_compat.rs finds it here.
STATSD_VERSION=0.9.0
STATSD_PREFIX=${TALLY_STATSD_PREFIX:-/opt/tally/statsd-$STATSD_VERSION}

PKGS=(g++ make libsnappy-dev liblz4-dev libzstd-dev libclang-dev)
# Extra packages for the test suite (peers the tests run as references); `setup.sh test`.
TEST_PKGS=(graphite-web graphite-carbon gunicorn python3-whisper prometheus-alertmanager carbon-c-relay chromium chromium-driver nodejs npm)

# Peers for the side-by-side benchmark harnesses; `setup.sh bench`.
BENCH_PKGS=(mtail collectd-core victoria-metrics graphite-web graphite-carbon gunicorn python3-whisper carbon-c-relay nodejs npm curl)

SUDO=
need_root() {
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to $1" >&2; exit 1; }
    SUDO=sudo
  fi
}

install_packages() {
  local want=("$@") missing=() p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0

  echo "setup: installing ${missing[*]}" >&2
  need_root "install ${missing[*]}"
  local need_update=0 cand
  ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || need_update=1
  if [ $need_update = 0 ]; then
    for p in "${missing[@]}"; do
      cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
      if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then need_update=1; break; fi
    done
  fi
  [ $need_update = 1 ] && $SUDO apt-get update -q

  # Package scripts must not start daemons (there is no init system here, and tests start their
  # own on loopback): a policy-rc.d that says no, only for the length of the install.
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || { [ $made_policy = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d; exit 1; }
  [ $made_policy = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
  return 0
}

# On x86-64 the library is built with SSE4.2 (hardware CRC32C; see rocksdb_build).
sse_env() { [ "$(uname -m)" = x86_64 ] && echo USE_SSE=1; return 0; }
want_sse() { [ "$(uname -m)" = x86_64 ]; }

# Whether the cache holds a usable library: installed by rocksdb_install (which checked it),
# the loader finds it there, and every library it needs is present (a package removed since
# makes it build again).
rocksdb_ready() {
  local lib=$ROCKSDB_PREFIX/lib/librocksdb.so.$ROCKSDB_VERSION
  [ -f "$lib" ] && [ -f "$ROCKSDB_PREFIX/BUILD-INFO" ] && [ -f "$ROCKSDB_LDCONF" ] || return 1
  # A cache from before USE_SSE (software CRC32C) is built again, once.
  if want_sse && ! grep -q -- '-DHAVE_SSE42' "$ROCKSDB_PREFIX/BUILD-INFO"; then return 1; fi
  # The outputs are read whole before grep looks at them: `ldconfig -p | grep -q` under pipefail
  # fails whenever grep stops reading first and ldconfig dies of SIGPIPE, which made a cached
  # library look missing and started a 40-minute rebuild.
  local cache deps
  cache=$(/sbin/ldconfig -p)
  grep -qF "$ROCKSDB_SONAME (libc6,x86-64) => $ROCKSDB_PREFIX/lib/$ROCKSDB_SONAME" <<<"$cache" \
    || return 1
  deps=$(ldd "$lib")
  ! grep -q 'not found' <<<"$deps"
}

# Checks a built tree (DIR) and installs its library into the cache, then makes it loadable.
rocksdb_install() {
  local tree=$1 lib
  lib=$tree/librocksdb.so.$ROCKSDB_VERSION
  [ -f "$lib" ] || { echo "setup: $lib is missing: build RocksDB $ROCKSDB_VERSION there first" >&2; exit 1; }
  grep -q '^ROCKSDB_MAJOR=7$' "$tree/make_config.mk" && grep -q '^ROCKSDB_MINOR=9$' "$tree/make_config.mk" \
    && grep -q '^ROCKSDB_PATCH=2$' "$tree/make_config.mk" \
    || { echo "setup: $tree is not RocksDB $ROCKSDB_VERSION (make_config.mk)" >&2; exit 1; }
  # The store compresses its archives with lz4, and zstd at the bottom level
  # (store/src/layout.rs), and its other families with RocksDB's default, snappy (as Debian's
  # library did, so databases it wrote still open): a library without them cannot open them.
  for c in SNAPPY LZ4 ZSTD; do
    grep -q -- "-D$c\b" "$tree/make_config.mk" \
      || { echo "setup: $tree was built without $c (install libsnappy-dev liblz4-dev libzstd-dev and rebuild)" >&2; exit 1; }
  done
  if want_sse && ! grep -q -- '-DHAVE_SSE42' "$tree/make_config.mk"; then
    echo "setup: $tree was built without SSE4.2 (make USE_SSE=1 ...): its CRC32C would be software" >&2
    exit 1
  fi
  # NDEBUG: no assert() may be left, since one aborts the process on a recoverable WAL error.
  local undefined
  undefined=$(nm -D --undefined-only "$lib")
  if grep -qw __assert_fail <<<"$undefined"; then
    echo "setup: $lib still calls __assert_fail: it was not built with DEBUG_LEVEL=0 (NDEBUG)" >&2
    exit 1
  fi
  need_root "install RocksDB into $ROCKSDB_PREFIX"
  $SUDO mkdir -p "$ROCKSDB_PREFIX/lib"
  $SUDO install -m 0755 "$lib" "$ROCKSDB_PREFIX/lib/"
  # The symbols stay (backtraces); the debug info (250 of 262 MB) goes.
  $SUDO strip --strip-debug "$ROCKSDB_PREFIX/lib/librocksdb.so.$ROCKSDB_VERSION"
  for link in librocksdb.so.7.9 librocksdb.so.7 librocksdb.so; do
    $SUDO ln -sfn "librocksdb.so.$ROCKSDB_VERSION" "$ROCKSDB_PREFIX/lib/$link"
  done
  {
    echo "RocksDB $ROCKSDB_VERSION from $ROCKSDB_CRATE, built in $tree"
    echo "installed $(date -u +%FT%TZ)"
    echo "needs: $(objdump -p "$lib" | awk '/NEEDED/{print $2}' | tr '\n' ' ')"
    grep -E '^(PLATFORM_LDFLAGS|PLATFORM_CXXFLAGS)=' "$tree/make_config.mk"
    if [ -f "$tree/tally-build-time" ]; then cat "$tree/tally-build-time"; fi
  } | $SUDO tee "$ROCKSDB_PREFIX/BUILD-INFO" >/dev/null
  echo "$ROCKSDB_PREFIX/lib" | $SUDO tee "$ROCKSDB_LDCONF" >/dev/null
  $SUDO /sbin/ldconfig
  rocksdb_ready || { echo "setup: the loader does not find $ROCKSDB_SONAME in $ROCKSDB_PREFIX/lib" >&2; exit 1; }
  echo "setup: RocksDB $ROCKSDB_VERSION installed in $ROCKSDB_PREFIX/lib" >&2
}

# Builds the crate's bundled sources (fetched by cargo) in a scratch copy, then installs them.
rocksdb_build() {
  local root src build jobs started
  root=$(cd "$(dirname "$0")/.." && pwd)
  (cd "$root" && cargo fetch --locked >&2)
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$ROCKSDB_CRATE"/rocksdb 2>/dev/null | head -n1)
  [ -n "$src" ] && [ -f "$src/Makefile" ] \
    || { echo "setup: no RocksDB sources under ${CARGO_HOME:-$HOME/.cargo}/registry/src/*/$ROCKSDB_CRATE" >&2; exit 1; }
  build=${TMPDIR:-/var/tmp}/tally-rocksdb-$ROCKSDB_VERSION
  jobs=${ROCKSDB_BUILD_JOBS:-$(nproc)}
  echo "setup: building RocksDB $ROCKSDB_VERSION (once; -j$jobs) in $build, log in $build/build.log" >&2
  rm -rf "$build"
  mkdir -p "$build"
  cp -a "$src/." "$build/"
  started=$(date +%s)
  # Only snappy, lz4 and zstd (what the store's families use) and no optional library the loader
  # would then need: these are environment variables, which build_detect_platform reads (as make
  # variables they do not reach it). DEBUG_LEVEL=0 is the release build: -O2 and NDEBUG.
  # PORTABLE=1 keeps -march=native out (the library may move to another machine of the same
  # kind); on x86-64, USE_SSE=1 then adds the extensions every x86-64 since 2013 has (SSE4.2,
  # PCLMUL, AVX2, BMI, LZCNT), which RocksDB uses for its hardware CRC32C: without them every
  # WAL record and block checksum is computed in software, which perf showed at 2.3% of the
  # 1M-series ingest and 7.8% of the float ingest (issue 15).
  if ! (cd "$build" && env ROCKSDB_DISABLE_GFLAGS=1 ROCKSDB_DISABLE_ZLIB=1 \
      ROCKSDB_DISABLE_BZIP=1 ROCKSDB_DISABLE_NUMA=1 ROCKSDB_DISABLE_TBB=1 ROCKSDB_DISABLE_JEMALLOC=1 \
      ROCKSDB_USE_IO_URING=0 $(sse_env) \
      make -j"$jobs" DEBUG_LEVEL=0 PORTABLE=1 DISABLE_WARNING_AS_ERROR=1 shared_lib >build.log 2>&1); then
    tail -n 30 "$build/build.log" >&2
    echo "setup: the RocksDB build failed; the log is $build/build.log" >&2
    exit 1
  fi
  echo "build: $(($(date +%s) - started)) s with -j$jobs on $(nproc) cores" >"$build/tally-build-time"
  rocksdb_install "$build"
  rm -rf "$build"
}

# Etsy statsd from npm into its own prefix (never into the repository), once: an installed
# package.json of the pinned version is the mark. npm and node come from install_packages (or are
# already on the machine: they are not required to be Debian's).
statsd_install() {
  local pkg=$STATSD_PREFIX/node_modules/statsd/package.json
  if [ -f "$pkg" ] && grep -q "\"version\": \"$STATSD_VERSION\"" "$pkg"; then return 0; fi
  command -v npm >/dev/null || { echo "setup: npm is missing (apt-get install npm)" >&2; exit 1; }
  echo "setup: installing Etsy statsd $STATSD_VERSION from npm into $STATSD_PREFIX" >&2
  need_root "install statsd into $STATSD_PREFIX"
  $SUDO mkdir -p "$STATSD_PREFIX"
  $SUDO npm install --prefix "$STATSD_PREFIX" --no-audit --no-fund --omit=dev --save-exact \
    "statsd@$STATSD_VERSION" >&2
  [ -f "$STATSD_PREFIX/node_modules/statsd/stats.js" ] \
    || { echo "setup: npm did not install statsd into $STATSD_PREFIX" >&2; exit 1; }
}

# node and npm need not come from Debian: present on the PATH is enough.
have_node() { command -v node >/dev/null && command -v npm >/dev/null; }

case "${1:-}" in
  rocksdb-install)
    [ $# -eq 2 ] || { echo "usage: setup.sh rocksdb-install DIR" >&2; exit 2; }
    install_packages "${PKGS[@]}"
    rocksdb_install "$(cd "$2" && pwd)"
    exit 0
    ;;
esac

want=("${PKGS[@]}")
[ "${1:-}" = test ] && want+=("${TEST_PKGS[@]}")
[ "${1:-}" = bench ] && want+=("${BENCH_PKGS[@]}")
if have_node; then
  # A node on the PATH (nodesource, nvm) conflicts with Debian's nodejs/npm packages: keep it.
  filtered=()
  for p in "${want[@]}"; do [ "$p" = nodejs ] || [ "$p" = npm ] || filtered+=("$p"); done
  want=("${filtered[@]}")
fi
install_packages "${want[@]}"
case "${1:-}" in test|bench) statsd_install ;; esac
rocksdb_ready || rocksdb_build
