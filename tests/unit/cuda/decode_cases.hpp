// The chunks that the GPU decoder must decode exactly as the CPU decoder does: the golden files,
// synthetic caches over every lane count, dtype, level and predictor, and real stories260K
// caches. The CPU test of the kernel's logic and the GPU test both run them all.
#pragma once

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "golden_cases.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"
#include "runner/runner.hpp"
#include "runner/sampling.hpp"
#include "test_models.hpp"

namespace kvstream::testing_data {

struct DecodeCase {
  std::string name;
  KvLayout layout;  // of the destination: the chunk's shape and dtype, tokens to cover it
  std::vector<std::byte> chunk;
  std::shared_ptr<const CodecProfile> profile = nullptr;  // transform-coded chunks' profile
  // Encoded cases: what the chunk was encoded from, and how (the GPU encoder must match it).
  std::shared_ptr<const KvBuffer> source;
  std::uint32_t begin = 0, count = 0;
  EncodeOptions options;
};

inline std::filesystem::path golden_dir() {
  const char* env = std::getenv("KVSTREAM_GOLDEN_DIR");
  return env != nullptr ? env : KVSTREAM_GOLDEN_DIR;
}

inline std::vector<std::byte> read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(raw.size());
  std::memcpy(out.data(), raw.data(), raw.size());
  return out;
}

// A transform profile for KV of this shape (make_transform_profile), with the transform's
// pairing or rotation changed as asked.
inline std::shared_ptr<const CodecProfile> transform_profile(const KvLayout& l, std::uint64_t seed,
                                                             RopePairs pairs, bool rotated) {
  auto p = std::make_shared<CodecProfile>(
      make_transform_profile(l.layers, l.kv_heads, l.head_dim, seed));
  KvTransform t = *p->transform();
  t.pairs = pairs;
  if (!rotated) t.frequencies.clear();
  if (!p->set_transform(std::move(t)).is_ok()) throw std::runtime_error("set_transform");
  return p;
}

// Every golden chunk, decoded into its own dtype and into f32 (the transform-coded one with the
// profile it was made with: make_transform_profile(..., 3)).
inline std::vector<DecodeCase> golden_cases() {
  std::vector<DecodeCase> out;
  for (const auto& e : std::filesystem::directory_iterator(golden_dir())) {
    // Verbatim chunks are the CPU decoder's (the GPU one refuses them: decode_logic_test).
    if (e.path().stem().string().find("verbatim") != std::string::npos) continue;
    if (e.path().extension() != ".kvsc") continue;
    auto bytes = read_bytes(e.path());
    auto info = read_chunk_info(bytes);
    if (!info) throw std::runtime_error(e.path().string() + ": " + info.error().to_string());
    for (DType d : {info->dtype, DType::f32}) {
      KvLayout l{info->layers, info->kv_heads, info->head_dim, d,
                 info->token_begin + info->token_count};
      out.push_back(
          {e.path().stem().string() + "-to-" + std::string(dtype_name(d)), l, bytes,
           info->transformed ? transform_profile(l, 3, RopePairs::interleaved, true) : nullptr,
           nullptr, 0, 0, EncodeOptions{}});
    }
  }
  return out;
}

// The golden files as encoded cases: each file's bytes with the source and options it was
// encoded from (golden_cases.hpp).
inline std::vector<DecodeCase> golden_encode_cases() {
  std::vector<DecodeCase> out;
  for (const GoldenCase& g : kGoldenCases) {
    if (g.verbatim) continue;  // the CPU encoder's only
    auto profile = std::make_shared<const CodecProfile>(profile_of(g));
    out.push_back({g.name, g.layout, read_bytes(golden_dir() / (std::string(g.name) + ".kvsc")),
                   profile, std::make_shared<KvBuffer>(golden_source(g)), g.begin, g.count,
                   golden_options(g, *profile)});
  }
  return out;
}

inline DecodeCase encode_case(std::string name, const KvView& src, std::uint32_t begin,
                              std::uint32_t count, std::uint8_t level, std::uint32_t lanes,
                              std::uint32_t substream_values, DType out,
                              std::shared_ptr<const CodecProfile> profile = nullptr) {
  EncodeOptions o;
  o.level = level;
  o.lanes = lanes;
  o.substream_values = substream_values;
  o.profile = profile.get();
  DecodeCase c{std::move(name), src.layout(), {}, profile, nullptr, begin, count, o};
  c.layout.dtype = out;
  const Status s = encode_chunk(src, begin, count, o, c.chunk);
  if (!s.is_ok()) throw std::runtime_error(c.name + ": " + s.to_string());
  return c;
}

// The same, keeping the source for the encoder tests.
inline DecodeCase encode_case(std::string name, std::shared_ptr<const KvBuffer> src,
                              std::uint32_t begin, std::uint32_t count, std::uint8_t level,
                              std::uint32_t lanes, std::uint32_t substream_values, DType out,
                              std::shared_ptr<const CodecProfile> profile = nullptr) {
  DecodeCase c = encode_case(std::move(name), src->view(), begin, count, level, lanes,
                             substream_values, out, std::move(profile));
  c.source = std::move(src);
  return c;
}

inline std::shared_ptr<KvBuffer> make_buffer(const KvLayout& l) {
  return std::make_shared<KvBuffer>(KvBuffer::create(l).value());
}

// Synthetic caches: every lane count, every dtype, lossless and lossy, the predictor, fewer
// channels than lanes, many small substreams.
inline std::vector<DecodeCase> synthetic_cases() {
  std::vector<DecodeCase> out;
  struct Shape {
    std::uint32_t heads, dim;
  };
  for (DType dt : {DType::f16, DType::bf16, DType::f32}) {
    for (Shape sh : {Shape{2, 16}, Shape{1, 4}, Shape{3, 24}}) {
      const KvLayout l{2, sh.heads, sh.dim, dt, 96};
      auto specials = make_buffer(l);  // NaN, Inf, subnormals: lossless only
      fill_synthetic(specials->view(), 11 + sh.dim, true);
      auto buf = make_buffer(l);
      fill_synthetic(buf->view(), 11 + sh.dim, false);
      auto smooth = make_buffer(l);
      fill_smooth(smooth->view(), 5 + sh.dim, true);
      for (std::uint32_t lanes : {1u, 2u, 4u, 8u, 16u, 32u}) {
        const std::string base = std::string(dtype_name(dt)) + "-" + std::to_string(sh.heads) +
                                 "x" + std::to_string(sh.dim) + "-L" + std::to_string(lanes);
        out.push_back(encode_case(base + "-level0", specials, 8, 80, 0, lanes, 300, dt));
        for (std::uint8_t level : {1, 3, 5}) {
          for (DType d : {DType::f16, DType::bf16}) {
            out.push_back(encode_case(
                base + "-level" + std::to_string(level) + "-to-" + std::string(dtype_name(d)), buf,
                0, 96, level, lanes, 500, d));
          }
        }
        out.push_back(
            encode_case(base + "-smooth-level2", smooth, 3, 90, 2, lanes, 700, DType::f16));
        if (dt == DType::f32 || (lanes != 8 && lanes != 32)) continue;
        // Transform coding: both RoPE pairings, and K left unrotated.
        for (RopePairs pairs : {RopePairs::interleaved, RopePairs::halves}) {
          for (bool rotated : {true, false}) {
            const auto profile = transform_profile(l, lanes, pairs, rotated);
            for (DType d : {DType::f16, DType::bf16, DType::f32}) {
              out.push_back(encode_case(
                  base + "-transform-" + (pairs == RopePairs::halves ? "halves" : "interleaved") +
                      (rotated ? "" : "-unrotated") + "-to-" + std::string(dtype_name(d)),
                  buf, 5, 70, static_cast<std::uint8_t>(1 + lanes % 3), lanes, 600, d, profile));
            }
          }
        }
      }
    }
  }
  return out;
}

// Real KV: stories260K's cache of a sampled 384-token context, chunks of 128 tokens at every
// level the built-in profile has, with the encoder's default lanes and with 32.
inline std::vector<DecodeCase> stories_cases() {
  const runner::Model& model = kvstream::testing::stories260k();
  runner::Runner runner(model);
  runner::Sampler sampler(17, 0, 1.0f, 0.9f);
  const auto tokens = runner::sample_context(runner, sampler, 384).value();
  const KvLayout f32 = model.kv_layout(384, DType::f32);
  auto kv = KvBuffer::create(f32).value();
  runner::Runner capture(model);
  if (!runner::capture_kv(capture, tokens, kv.view()).is_ok()) throw std::runtime_error("capture");
  KvLayout f16 = f32;
  f16.dtype = DType::f16;
  auto half = make_buffer(f16);
  if (!copy_kv(kv.view(), half->view()).is_ok()) throw std::runtime_error("copy");
  std::vector<DecodeCase> out;
  const auto transform = transform_profile(f16, 7, RopePairs::interleaved, true);
  for (std::uint8_t level = 1; level <= transform->levels(); ++level) {
    out.push_back(encode_case("stories-transform-level" + std::to_string(level), half, 128, 128,
                              level, 32, 2048, DType::f16, transform));
  }
  const std::uint32_t levels = CodecProfile::builtin(f16.layers, 1).levels();
  for (std::uint32_t lanes : {8u, 32u}) {
    for (std::uint32_t begin = 0; begin < 384; begin += 128) {
      for (std::uint8_t level = 0; level <= levels; ++level) {
        out.push_back(encode_case("stories-L" + std::to_string(lanes) + "-t" +
                                      std::to_string(begin) + "-level" + std::to_string(level),
                                  half, begin, 128, level, lanes, 2048, DType::f16));
      }
    }
  }
  return out;
}

// Every encoded case through `encode(case, out)`, which must return the case's chunk: what the
// GPU encoder's logic on the CPU and the GPU encoder itself are held to. Returns how many ran.
template <class Encode>
int expect_cpu_encoder_bytes(const std::vector<DecodeCase>& cases, Encode&& encode) {
  int encoded = 0;
  for (const DecodeCase& c : cases) {
    if (!c.source) continue;
    std::vector<std::byte> got;
    const Status s = encode(c, got);
    EXPECT_TRUE(s.is_ok()) << c.name << ": " << s.to_string();
    EXPECT_EQ(got, c.chunk) << c.name;
    if (!s.is_ok() || got != c.chunk) return -1;  // one mismatch says enough
    ++encoded;
  }
  return encoded;
}

}  // namespace kvstream::testing_data
