#!/usr/bin/env bash
# Installs what Tally needs on Debian 12, idempotently: only what is missing, and `apt-get update`
# only when the package lists cannot offer it. Safe to run on every `./x run` and `./x test`.
#
#   librocksdb-dev  the RocksDB library the `rocksdb` crate links against (no C++ build of our own)
#   libclang-dev    bindgen, which generates RocksDB's C bindings
#
#   graphite-web    the reference the compatibility tests compare /render against (`setup.sh test`)
#   graphite-carbon the carbon-cache that feeds it the same plaintext Tally gets
#   gunicorn        serves graphite-web on a loopback port during the tests
#   prometheus-alertmanager  the real Alertmanager 0.25 the alerting tests page through
#   chromium, chromium-driver  the headless browser the web page's test drives (WebDriver)
#
#   mtail, victoria-metrics  the peers benches/*_compare.py measure against (`setup.sh bench`)
set -euo pipefail

PKGS=(librocksdb-dev libclang-dev)
# Extra packages for the test suite (peers the tests run as references); `setup.sh test`.
TEST_PKGS=(graphite-web graphite-carbon gunicorn python3-whisper prometheus-alertmanager chromium chromium-driver)

# Peers for the side-by-side benchmark harnesses; `setup.sh bench`.
BENCH_PKGS=(mtail victoria-metrics graphite-web graphite-carbon gunicorn python3-whisper)

want=("${PKGS[@]}")
[ "${1:-}" = test ] && want+=("${TEST_PKGS[@]}")
[ "${1:-}" = bench ] && want+=("${BENCH_PKGS[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi

need_update=0
ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || need_update=1
if [ $need_update = 0 ]; then
  for p in "${missing[@]}"; do
    cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/{print $2}')
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then need_update=1; break; fi
  done
fi
[ $need_update = 1 ] && $SUDO apt-get update -q

# Package scripts must not start daemons (there is no init system here, and tests start their own
# on loopback): a policy-rc.d that says no, only for the length of the install.
made_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  made_policy=1
fi
trap '[ $made_policy = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
