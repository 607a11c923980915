// Where a receiver's slots live when its chunks are decoded on a GPU. UCX can write straight
// into device memory only when it was built with CUDA support (ucp_context_query's memory
// types); otherwise chunks land in pinned host memory and are copied to the device before they
// decode. The choice is made once, at start-up, and said in the logs, so that a UCX without CUDA
// support shows up as "staged" rather than as a failed transfer later.
#pragma once

#include <string>

#include "ucx.hpp"

namespace kvstream::transport {

enum class SlotPlacement {
  host,    // chunks decode on the CPU
  staged,  // GPU decode; slots in pinned host memory, copied to the device
  device,  // GPU decode; slots in device memory, UCX writes them directly
};

struct SlotChoice {
  SlotPlacement placement = SlotPlacement::host;
  std::string reason;  // one line for the logs
};

// `gpu_decode`: chunks go to a GPU. `device_slots_built`: this build can place slots in device
// memory (false until the device pipeline has them; the reason then says so).
SlotChoice choose_slot_placement(bool gpu_decode, const MemoryTypes& ucx, bool device_slots_built);

}  // namespace kvstream::transport
