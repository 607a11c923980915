#!/usr/bin/env bash
# Builds the GPU tests and benchmarks with CUDA and bundles them with the shared libraries they
# need, the golden files and the stories260K checkpoint, into a folder that runs on a machine
# that has a GPU but not this build's packages:
#   cuda/bundle.sh [BUILD_DIR]          (default build-cuda; the bundle is BUILD_DIR/bundle)
#   BUILD_DIR/bundle/run.sh [tests|bench|all]   on the GPU machine
# KVSTREAM_CUDA_ARCH picks the architectures (default 90, Hopper); KVSTREAM_MODELS the folder
# holding stories260K.bin (default ../shared/models); KVSTREAM_UCX_PREFIX a UCX built with CUDA
# support by cuda/build_ucx_cuda.sh, packed instead of Debian's (its CUDA modules included), so
# that on the GPU machine UCX reports device memory it can register. The checkpoint is copied
# into the bundle, a build output, never into the source tree.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(realpath -m "${1:-$root/build-cuda}")
out=$build/bundle
models=${KVSTREAM_MODELS:-$root/../shared/models}
[[ -f $models/stories260K.bin ]] || { echo "bundle: no $models/stories260K.bin (set KVSTREAM_MODELS)" >&2; exit 1; }
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=/usr/bin/python3 \
  -DCMAKE_CUDA_ARCHITECTURES="${KVSTREAM_CUDA_ARCH:-90}" >/dev/null
[[ -n $(grep -s '^CMAKE_CUDA_COMPILER:' "$build/CMakeCache.txt") ]] ||
  { echo "bundle: no CUDA toolkit found (nvcc)" >&2; exit 1; }
bins=(tests/gpu/gpu_codec_test tests/bench/gpu_codec_bench tests/unit/unit_gpu_logic bin/kvstream)
cmake --build "$build" --target gpu_codec_test gpu_codec_bench unit_gpu_logic kvstream

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/models"
for b in "${bins[@]}"; do cp "$build/$b" "$out/bin/"; done
# UCX for kvstream perf: ucx_perftest as the baseline, and the modules UCX loads at run time
# (UCX_MODULE_DIR in run.sh; TCP and POSIX shared memory are in libuct): Debian's
# cross-memory-attach module, or every module of a UCX built with CUDA.
mkdir -p "$out/lib/ucx"
if [[ -n ${KVSTREAM_UCX_PREFIX:-} ]]; then
  ucx=$(realpath "$KVSTREAM_UCX_PREFIX")
  ls "$ucx"/lib/ucx/libuct_cuda.so.0 >/dev/null ||
    { echo "bundle: $ucx holds no UCX built with CUDA (cuda/build_ucx_cuda.sh)" >&2; exit 1; }
  cp "$ucx/bin/ucx_perftest" "$ucx/bin/ucx_info" "$out/bin/"
  cp -L "$ucx"/lib/ucx/*.so.0 "$out/lib/ucx/"
  # ldd below then finds this UCX's libraries, which keep Debian's sonames.
  export LD_LIBRARY_PATH=$ucx/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
  cp "$(command -v ucx_perftest)" "$out/bin/"
  cp -L "$(pkg-config --variable=libdir ucx)/ucx/libuct_cma.so.0" "$out/lib/ucx/"
fi
cp "$root/tools/bench/perf_compare.sh" "$out/bin/"
# Every shared library the binaries load, except the C library's own and the CUDA driver's
# (libcuda, NVML), which belong to the GPU machine.
for b in "$out"/bin/* "$out"/lib/ucx/*; do
  [[ $b == *.sh ]] || ldd "$b" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libcuda.so*|libnvidia-ml.so*) ;;
    *) cp -L "$lib" "$out/lib/" ;;
  esac
done
cp -r "$root/tests/golden" "$out/golden"
cp "$models/stories260K.bin" "$out/models/"
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the bundled GPU tests and/or the decode and encode benchmark: run.sh [tests|bench|all]
# [bench args];
# run.sh perf [ROUNDS]: kvstream perf kv_stream_bw, chunks decoded on the GPU (-m cuda, with and
# without the progress thread that keeps UCX moving while the GPU decodes), on the
# CPU (one thread, and eight with the progress thread) and not at all, against ucx_perftest
# tag_bw on loopback (tools/bench/perf_compare.sh).
# run.sh timeline [SIZE]: one stream of 32 chunks of about SIZE bytes (8 MiB) on loopback,
# decoded on the GPU through staged slots; prints when each chunk landed and was ready, and
# whether the load ended within one chunk's decode of the last landing.
# run.sh ucx: the bundled UCX's version, memory domains and transports (ucx_info; bundles made
# with KVSTREAM_UCX_PREFIX), to see whether it loaded its CUDA transports.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LD_LIBRARY_PATH=$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export KVSTREAM_GOLDEN_DIR=$here/golden KVSTREAM_MODELS=$here/models
export UCX_MODULE_DIR=$here/lib/ucx PATH=$here/bin:$PATH
if [[ ${1:-} == perf ]]; then
  rounds=${2:-3}
  rc=0
  for extra in "-m cuda --progress-thread" "-m cuda" "" "--decode-threads 8 --progress-thread" \
    "--no-decode"; do
    echo "== kv_stream_bw ${extra:-(CPU decode)}"
    PERF_WINDOW=${PERF_WINDOW:-2} PERF_SIZES=${PERF_SIZES:-1048576 8388608 33554432} \
      "$here/bin/perf_compare.sh" "$here/bin/kvstream" "$rounds" $extra || rc=1
  done
  exit $rc
fi
if [[ ${1:-} == ucx ]]; then
  [[ -x $here/bin/ucx_info ]] || { echo "run.sh: no ucx_info (bundle made without KVSTREAM_UCX_PREFIX)" >&2; exit 1; }
  "$here/bin/ucx_info" -v && "$here/bin/ucx_info" -d | grep -E 'Memory domain|Component|Transport'
  exit
fi
if [[ ${1:-} == timeline ]]; then
  export KVSTREAM_SECRET=${KVSTREAM_SECRET:-bundle-timeline-secret-0123456789}
  "$here/bin/kvstream" perf -t kv_stream_bw -p 13399 &
  server=$!
  sleep 2
  "$here/bin/kvstream" perf 127.0.0.1 -p 13399 -t kv_stream_bw -m cuda --progress-thread \
    --timeline -s "${2:-8388608}" -n 32 -w 4 -O 2 --chunks 8
  rc=$?
  wait "$server" || rc=1
  exit $rc
fi
what=${1:-all}
shift || true
rc=0
if [[ $what == tests || $what == all ]]; then
  "$here/bin/unit_gpu_logic" || rc=1
  "$here/bin/gpu_codec_test" || rc=1
fi
if [[ $what == bench || $what == all ]]; then
  "$here/bin/gpu_codec_bench" "$@" || rc=1
fi
exit $rc
RUN
chmod +x "$out/run.sh"
du -sh "$out"
