// The host half of GPU decoding: validates a chunk exactly as the CPU decoder does and turns it
// into the flat tables the kernel reads (decode_logic.hpp), and runs those tables through the
// kernel's logic on the CPU (what the tests use where there is no GPU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "decode_logic.hpp"
#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"
#include "synthesis_logic.hpp"

namespace kvstream::gpu {

struct DecodePlan {
  ChunkInfo info;
  std::vector<PlanSegment> segments;
  std::vector<PlanSubstream> substreams;
  std::vector<std::uint32_t> channels;  // pack_channel() words
  std::vector<std::uint32_t> tables;    // the bank tables its channels use, in first-use order
  std::vector<PlanTask> tasks;
  std::uint32_t ref_values = 0;  // the reference scratch that predicted segments need
};

// Builds plans with reusable scratch memory. Not thread-safe.
class DecodePlanner {
 public:
  DecodePlanner();
  ~DecodePlanner();
  DecodePlanner(DecodePlanner&&) noexcept;
  DecodePlanner& operator=(DecodePlanner&&) noexcept;

  // Validates the whole chunk (header, checksums, every segment's side information) and fills
  // `plan`. A transform-coded chunk's plan decodes its coefficients (see SynthesisArgs).
  Status plan(std::span<const std::byte> chunk, DecodePlan& plan);

  struct Scratch;

 private:
  std::unique_ptr<Scratch> scratch_;
};

// The kernel's view of a KvView whose pointers (pools and block table included) are valid
// where the kernel runs: `pools` and `blocks` point at copies of dst.pools() and
// dst.block_table() there.
ViewDesc view_desc(const KvView& dst, std::byte* const* pools, const std::uint32_t* blocks);

// Every bank table's lookups in decode_logic.hpp's compact form (Luts::buckets and ::tokens
// layouts, for tables 0..79), and the 256 quantization steps.
const std::uint8_t* bank_buckets();
const std::uint32_t* bank_tokens();
const float* quantization_step_table();

// Copies the lookups of `tables` (bank ids) into `buckets` and `tokens`, in that order: what
// a decode of the chunk keeps in shared memory.
void gather_luts(std::span<const std::uint32_t> tables, std::vector<std::uint8_t>& buckets,
                 std::vector<std::uint32_t>& tokens);

// The status of a finished decode from its per-substream failure codes.
Status failures_status(const DecodePlan& plan, std::span<const std::uint32_t> failures);

// A transform-coded chunk's synthesis, less its buffers (coefficients, synthesis_t, angles) and
// destination.
SynthesisArgs synthesis_args(const ChunkInfo& info, const KvTransform& t);
// The (cos, sin) of every token and pair of the chunk, as SynthesisArgs::angles wants them.
void rope_angles(const ChunkInfo& info, const KvTransform& t, std::vector<float>& out);

// Decodes a planned chunk into a host view by running every task through HostTeam, lane by lane,
// and a transform-coded chunk's synthesis item by item: the kernels' logic, on the CPU.
// `profile` as for decode_chunk.
Status decode_on_host(std::span<const std::byte> chunk, const DecodePlan& plan, const KvView& dst,
                      const CodecProfile* profile = nullptr);

}  // namespace kvstream::gpu
