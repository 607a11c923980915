// The byte layout the eval baselines work on: a token range of an fp16 KV cache as one array,
// [layer][K|V][token][channel], and back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream::cli {

std::vector<std::byte> gather(const KvView& kv, std::uint32_t begin, std::uint32_t count);
Status scatter(std::span<const std::byte> in, const KvView& kv, std::uint32_t begin,
               std::uint32_t count);

// Value `i` of an fp16 row array, and the fp16 of a float (round to nearest even).
float fp16_at(std::span<const std::byte> rows, std::size_t i);
void put_fp16(std::span<std::byte> rows, std::size_t i, float value);

}  // namespace kvstream::cli
