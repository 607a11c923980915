#!/usr/bin/env bash
# Sets up a Debian 12 machine for kvstream and runs its main job or its whole test suite.
#   bash tools/bootstrap.sh demo   install packages, build, run `kvstream demo`
#   bash tools/bootstrap.sh test   install packages, check formatting, build, run every test,
#                                  then build and run the unit tests under ASan + UBSan
# Installing needs root (apt-get); already-installed packages are not touched.
set -euo pipefail

mode=${1:-}
if [[ $mode != demo && $mode != test ]]; then
  echo "usage: bash tools/bootstrap.sh demo|test" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc)

packages=(build-essential cmake ninja-build pkg-config libfmt-dev libzstd-dev python3
          libucx-dev libboost-dev libssl-dev)
if [[ $mode == test ]]; then
  # iproute2: the cluster tests' network namespaces and tc.
  packages+=(libgtest-dev libbenchmark-dev python3-numpy clang-format iproute2)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: installing packages needs root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian's own Python carries python3-numpy; another python3 earlier on PATH may not.
cmake_common=(-G Ninja -DPython3_EXECUTABLE=/usr/bin/python3 -DKVSTREAM_WERROR=ON)

if [[ $mode == demo ]]; then
  cmake -S "$root" -B "$root/build" "${cmake_common[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DKVSTREAM_BUILD_TESTS=OFF
  cmake --build "$root/build" -j "$jobs" --target kvstream
  exec "$root/build/bin/kvstream" demo
fi

echo "bootstrap: checking formatting (clang-format)"
mapfile -t sources < <(cd "$root" && find include codec scheduler transport cuda tools tests \
  \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort)
(cd "$root" && clang-format --dry-run --Werror "${sources[@]}")

echo "bootstrap: release build and full test suite"
cmake -S "$root" -B "$root/build" "${cmake_common[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKVSTREAM_BUILD_TESTS=ON
cmake --build "$root/build" -j "$jobs"
ctest --test-dir "$root/build" -j "$jobs" --output-on-failure --no-tests=error

echo "bootstrap: unit tests under ASan + UBSan"
cmake -S "$root" -B "$root/build-asan" "${cmake_common[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKVSTREAM_BUILD_TESTS=ON -DKVSTREAM_SANITIZE=ON
cmake --build "$root/build-asan" -j "$jobs"
ctest --test-dir "$root/build-asan" -j "$jobs" -L unit --output-on-failure --no-tests=error
