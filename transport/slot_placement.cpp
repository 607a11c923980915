#include "slot_placement.hpp"

#include <fmt/format.h>

namespace kvstream::transport {

SlotChoice choose_slot_placement(bool gpu_decode, const MemoryTypes& ucx, bool device_slots_built) {
  if (!gpu_decode) return {SlotPlacement::host, "receive slots in host memory: CPU decode"};
  if (!ucx.cuda) {
    return {SlotPlacement::staged,
            fmt::format("receive slots staged in host memory and copied to the GPU: this UCX "
                        "cannot register CUDA memory (its memory types: {})",
                        ucx.describe())};
  }
  if (!device_slots_built) {
    return {SlotPlacement::staged,
            "receive slots staged in host memory and copied to the GPU: this UCX can register "
            "CUDA memory, but this build has no device receive slots yet"};
  }
  return {SlotPlacement::device,
          "receive slots in device memory: this UCX registers CUDA memory and writes them "
          "directly"};
}

}  // namespace kvstream::transport
