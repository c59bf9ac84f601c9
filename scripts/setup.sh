#!/usr/bin/env bash
# Installs lmkit's dependencies from Debian (idempotent: apt runs only when something is missing)
# and builds a Release binary into build/. Usage: ./scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libpcre2-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev libopenmpi-dev openmpi-bin
  python3 python3-torch python3-numpy
  nodejs npm chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  # Node from another source (e.g. NodeSource's nodejs, which bundles npm) is fine as it is.
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all Debian packages present"
fi

# The server's end-to-end tests (tests/server/js: the openai SDK, puppeteer-core) need their npm
# packages: `npm ci` from the lock file when node_modules is missing or the lock changed.
js=tests/server/js
lock_sum=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
stamp="$js/node_modules/.lmkit-lock.sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
  echo "setup: npm packages for $js up to date"
else
  echo "setup: npm ci in $js"
  (cd "$js" && npm ci --no-audit --no-fund)
  echo "$lock_sum" > "$stamp"
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMKIT_WERROR=ON > build.configure.log || { cat build.configure.log; exit 1; }
cmake --build build --target lmkit
echo "setup: built build/lmkit. Try: ./build/lmkit demo"
