// The host half of GPU encoding: the checks and sizes of an encode, the choices made between the
// statistics and the tokens (codec/segment_encoding, as the CPU encoder makes them), the
// assembly of the chunk from what the passes leave, and all of encode_logic.hpp's passes run
// item by item on the CPU (what the tests compare with the CPU encoder where there is no GPU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "encode_logic.hpp"
#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"
#include "segment_encoding.hpp"

namespace kvstream::gpu {

// An encode of one chunk, checked, with the sizes of its passes. Holds its built-in profile,
// so it stays where it was prepared.
struct EncodeJob {
  EncodeJob() = default;
  EncodeJob(const EncodeJob&) = delete;
  EncodeJob& operator=(const EncodeJob&) = delete;

  std::uint8_t level = 0;
  CodecProfile builtin;
  const CodecProfile* profile = nullptr;   // null at level 0
  const KvTransform* transform = nullptr;  // transform coding
  KvLayout layout;                         // the source's
  std::uint32_t token_begin = 0;
  codec::Coding coding = codec::Coding::quantized;
  std::uint32_t segments = 0, channels = 0, tokens = 0;
  std::uint32_t per = 0, substreams = 0, lanes = 0;  // per segment
  std::uint32_t shift = 0;                           // lossless: R
  std::uint64_t region_words = 0;                    // per substream

  std::uint64_t values() const { return std::uint64_t{segments} * tokens * channels; }
  std::size_t segment_channels() const { return std::size_t{segments} * channels; }
  std::size_t all_substreams() const { return std::size_t{segments} * substreams; }
};

// Checks the encode as encode_chunk does and sizes its passes.
Status prepare_encode(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                      const EncodeOptions& o, EncodeJob& job);

// EncodeArgs for `job` with its sizes and the bank's tables (host copies: a GPU needs its own),
// less the buffers of the passes. `src` is where the coded values are: the source, or the
// coefficients of a transform (then from token 0).
EncodeArgs encode_args(const EncodeJob& job, const ViewDesc& src);

// The analysis of a transform-coded job, less its buffers (angles, z, analysis_t, coefficients).
AnalysisArgs analysis_args(const EncodeJob& job, const ViewDesc& src);

// Every bank table's costs, table * 64 + token (EncodeArgs::bank_costs).
const std::uint32_t* bank_costs();

// The analysis's (cos, sin) of the job's tokens and RoPE pairs (AnalysisArgs::angles).
void job_angles(const EncodeJob& job, std::vector<float>& out);

// Reads value c of a row of a view, wherever its memory is (an error message quotes it).
using ReadValue =
    std::function<Expected<float>(const std::byte* row, std::uint32_t c, std::uint32_t dtype)>;

// The error for the least bad-value keys the passes reported, or ok when both are kNoBadValue:
// `source_key` from a transform's source check of `src` (check_item), which comes first as in
// the CPU encoder, then `coded_key` from the statistics of `coded`'s values (sums_item).
Status bad_values_status(const EncodeJob& job, const ViewDesc& src, const EncodeArgs& coded,
                         std::uint64_t source_key, std::uint64_t coded_key, const ReadValue& read);

// Per segment and channel, from the sums and deviations the statistics passes leave: the
// predictor (per segment), step codes, steps and centers.
struct Choices {
  std::vector<std::uint8_t> predicted, step_code;
  std::vector<float> step;
  std::vector<std::int32_t> center;
};
void choose_on_host(const EncodeJob& job, std::span<const std::int64_t> sum,
                    std::span<const std::int64_t> dev, std::span<const std::int64_t> step_dev,
                    std::span<const std::int64_t> absmax, Choices& out);

// What the passes leave that goes into the chunk; words(s) are substream s's (segment * S + k).
struct EncodedParts {
  std::span<const std::uint8_t> predicted, step_code, table;
  std::span<const std::int32_t> center;
  std::span<const std::uint32_t> coded;   // per segment: C' (FORMAT.md "Constant tail")
  std::span<const std::uint32_t> states;  // 32 per substream
  std::function<std::span<const std::uint16_t>(std::uint64_t)> words;
};
Status assemble_chunk(const EncodeJob& job, const EncodedParts& parts, std::vector<std::byte>& out);

// Encodes like encode_chunk by running every pass of encode_logic.hpp item by item on the CPU.
Status encode_on_host(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                      const EncodeOptions& o, std::vector<std::byte>& out);

}  // namespace kvstream::gpu
