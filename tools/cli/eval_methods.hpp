// What `kvstream codec eval` compares: our codec's levels and the baselines, each turning a
// token range of an fp16 KV cache into bytes and back.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream::cli {

struct Encoded {
  std::vector<std::byte> data;
  double wire_bits = 0;  // what would travel, side information included
};

// One instance per thread: encode and decode may keep scratch state.
class EvalMethod {
 public:
  virtual ~EvalMethod() = default;
  virtual const std::string& name() const = 0;
  // False for methods whose size is computed (ideal coding) rather than produced by a real
  // coder, so their speed is not measured.
  virtual bool timed() const { return true; }
  virtual Status encode(const KvView& kv, std::uint32_t begin, std::uint32_t count,
                        Encoded& out) = 0;
  // Writes tokens [begin, begin + count) of `kv` from `in`.
  virtual Status decode(const Encoded& in, const KvView& kv, std::uint32_t begin,
                        std::uint32_t count) = 0;
};

// fp16, int8, cachegen, zstd-1, zstd-19 and our levels 0..profile.levels().
std::vector<std::unique_ptr<EvalMethod>> make_eval_methods(const CodecProfile& profile);

}  // namespace kvstream::cli
