#!/usr/bin/env bash
# Installs lmkit's dependencies from Debian (idempotent: apt runs only when something is missing)
# and builds a Release binary into build/. Usage: ./scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libpcre2-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev
  python3 python3-torch python3-numpy
)

missing=()
for p in "${PACKAGES[@]}"; do
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

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DLMKIT_WERROR=ON > build.configure.log || { cat build.configure.log; exit 1; }
cmake --build build --target lmkit
echo "setup: built build/lmkit. Try: ./build/lmkit demo"
