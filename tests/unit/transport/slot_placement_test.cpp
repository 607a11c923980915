// Which memory a UCX context moves, and where receive slots go for GPU decode.
#include "slot_placement.hpp"

#include <gtest/gtest.h>

namespace kvstream::transport {
namespace {

TEST(SlotPlacement, MemoryTypesComeFromUcxsMask) {
  const MemoryTypes none = memory_types_from_mask(0);
  EXPECT_FALSE(none.host || none.cuda || none.cuda_managed || none.rocm);
  EXPECT_EQ(none.describe(), "none");
  const MemoryTypes m = memory_types_from_mask(
      (1u << UCS_MEMORY_TYPE_HOST) | (1u << UCS_MEMORY_TYPE_CUDA) | (1u << UCS_MEMORY_TYPE_ROCM));
  EXPECT_TRUE(m.host && m.cuda && m.rocm);
  EXPECT_FALSE(m.cuda_managed);
  EXPECT_EQ(m.describe(), "host, cuda, rocm");
}

TEST(SlotPlacement, ThisUcxMovesHostMemory) {
  auto context = UcxContext::create();
  ASSERT_TRUE(context) << context.error().to_string();
  const auto types = (*context)->memory_types();
  ASSERT_TRUE(types) << types.error().to_string();
  EXPECT_TRUE(types->host) << types->describe();
  // Debian's UCX has no CUDA support; a CUDA-enabled one also lists cuda.
  RecordProperty("memory_types", types->describe());
}

TEST(SlotPlacement, GpuDecodeStagesUnlessUcxRegistersCudaMemory) {
  MemoryTypes host_only;
  host_only.host = true;
  MemoryTypes with_cuda = host_only;
  with_cuda.cuda = true;

  EXPECT_EQ(choose_slot_placement(false, with_cuda, true).placement, SlotPlacement::host);
  const SlotChoice staged = choose_slot_placement(true, host_only, true);
  EXPECT_EQ(staged.placement, SlotPlacement::staged);
  EXPECT_NE(staged.reason.find("cannot register CUDA memory (its memory types: host)"),
            std::string::npos)
      << staged.reason;
  const SlotChoice not_built = choose_slot_placement(true, with_cuda, false);
  EXPECT_EQ(not_built.placement, SlotPlacement::staged);
  EXPECT_NE(not_built.reason.find("no device receive slots"), std::string::npos);
  EXPECT_EQ(choose_slot_placement(true, with_cuda, true).placement, SlotPlacement::device);
}

}  // namespace
}  // namespace kvstream::transport
