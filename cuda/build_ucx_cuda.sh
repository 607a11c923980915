#!/usr/bin/env bash
# Optional: builds UCX with CUDA support from Debian's own source package, the same version as
# the libucx-dev kvstream builds against, so that UCX can register device memory and write
# chunks straight into it (Debian's binary UCX has no CUDA support). Not a build requirement.
#   cuda/build_ucx_cuda.sh [PREFIX]        (default /opt/ucx-cuda; run as root on Debian 12)
# Then `KVSTREAM_UCX_PREFIX=PREFIX cuda/bundle.sh` packs this UCX, its CUDA modules included,
# into the GPU bundle instead of Debian's. kvstream needs no rebuild: the libraries keep
# Debian's sonames, and only the modules UCX loads at run time differ.
#
# Debian's sources are fetched with an apt configuration of the script's own (a deb-src line
# for main, and non-free for NVML's header, which UCX's CUDA support needs and the CUDA toolkit
# here lacks); the machine's apt sources and package lists are left as they were.
# KVSTREAM_DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian); CUDA is
# taken from /usr/local/cuda, or CUDA_HOME.
set -euo pipefail
prefix=$(realpath -m "${1:-/opt/ucx-cuda}")
cuda=${CUDA_HOME:-/usr/local/cuda}
mirror=${KVSTREAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[[ -f $cuda/include/cuda.h ]] || { echo "build_ucx_cuda: no CUDA toolkit at $cuda (set CUDA_HOME)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "build_ucx_cuda: run as root (it installs build packages)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q autoconf automake libtool make pkg-config libucx-dev libibverbs-dev \
  libnuma-dev librdmacm-dev dpkg-dev >/dev/null
version=$(dpkg-query -W -f='${Version}' libucx-dev)

work=$(mktemp -d /tmp/ucx-cuda-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/src" "$work/nvml"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$work/sources.list" <<EOF
deb-src [signed-by=$keyring] $mirror bookworm main
deb [signed-by=$keyring] $mirror bookworm non-free
EOF
apt_own=(-o Dir::Etc::SourceList="$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt_own[@]}" update -q >/dev/null
(cd "$work/src" && apt-get "${apt_own[@]}" source -q "ucx=$version" >/dev/null)
# NVML's header and library to link against: the GPU machine's driver brings its own
# libnvidia-ml.so.1 at run time.
(cd "$work/nvml" && apt-get "${apt_own[@]}" download -q libnvidia-ml-dev libnvidia-ml1 >/dev/null &&
  for deb in ./*.deb; do dpkg -x "$deb" root; done)
nvml_h=$(find "$work/nvml/root" -name nvml.h | head -n 1)
nvml_so=$(find "$work/nvml/root" -name 'libnvidia-ml.so' | head -n 1)
[[ -n $nvml_h && -n $nvml_so ]] || { echo "build_ucx_cuda: no NVML in libnvidia-ml-dev" >&2; exit 1; }

src=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name 'ucx-*' | head -n 1)
cd "$src"
./autogen.sh >"$work/autogen.log" 2>&1 || { tail -20 "$work/autogen.log" >&2; exit 1; }
# Debian's own configure flags (debian/rules), plus CUDA.
./configure --prefix="$prefix" --enable-mt --with-verbs --enable-cma --disable-logging \
  --disable-backtrace-detail --enable-devel-headers --without-java --without-go \
  --disable-doxygen-doc --with-cuda="$cuda" \
  CPPFLAGS="-I$(dirname "$nvml_h")" LDFLAGS="-L$(dirname "$nvml_so")" >"$work/configure.log" 2>&1 ||
  { tail -20 "$work/configure.log" >&2; exit 1; }
grep -q 'UCT modules:.*cuda' "$work/configure.log" ||
  { grep 'modules:' "$work/configure.log" >&2; echo "build_ucx_cuda: configure left CUDA out" >&2; exit 1; }
# The libraries, their modules, ucx_info and ucx_perftest only: UCX 1.13's test apps call
# cuCtxCreate with CUDA 12's arguments and do not build against CUDA 13.
dirs=(src/ucm src/ucs src/uct src/ucp src/tools/vfs src/tools/info src/tools/perf)
for d in "${dirs[@]}"; do
  make -C "$d" -j"$(nproc)" >>"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
done
for d in "${dirs[@]}"; do
  make -C "$d" install >>"$work/install.log" 2>&1 || { tail -20 "$work/install.log" >&2; exit 1; }
done
make install-pkgconfigDATA >>"$work/install.log" 2>&1 || { tail -20 "$work/install.log" >&2; exit 1; }
echo "build_ucx_cuda: UCX $version with CUDA installed in $prefix"
grep 'modules:' "$work/configure.log" | sed 's/^configure: */  /'
