#include "cli/eval_methods.hpp"

#include <fmt/format.h>
#include <zstd.h>

#include "cli/eval_cachegen.hpp"
#include "cli/eval_rows.hpp"
#include "kvstream/half.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace kvstream::cli {

namespace {

class Fp16 final : public EvalMethod {
 public:
  const std::string& name() const override { return name_; }
  Status encode(const KvView& kv, std::uint32_t b, std::uint32_t n, Encoded& out) override {
    out.data = gather(kv, b, n);
    out.wire_bits = 8.0 * static_cast<double>(out.data.size());
    return Status::ok();
  }
  Status decode(const Encoded& in, const KvView& kv, std::uint32_t b, std::uint32_t n) override {
    return scatter(in.data, kv, b, n);
  }

 private:
  std::string name_ = "fp16";
};

class Zstd final : public EvalMethod {
 public:
  explicit Zstd(int level) : level_(level), name_(fmt::format("zstd-{}", level)) {}
  ~Zstd() override {
    ZSTD_freeCCtx(cctx_);
    ZSTD_freeDCtx(dctx_);
  }
  const std::string& name() const override { return name_; }
  Status encode(const KvView& kv, std::uint32_t b, std::uint32_t n, Encoded& out) override {
    raw_ = gather(kv, b, n);
    out.data.resize(ZSTD_compressBound(raw_.size()));
    const std::size_t r = ZSTD_compressCCtx(cctx_, out.data.data(), out.data.size(), raw_.data(),
                                            raw_.size(), level_);
    if (ZSTD_isError(r)) return Status(Errc::internal, ZSTD_getErrorName(r));
    out.data.resize(r);
    out.wire_bits = 8.0 * static_cast<double>(r);
    return Status::ok();
  }
  Status decode(const Encoded& in, const KvView& kv, std::uint32_t b, std::uint32_t n) override {
    raw_.resize(2 * std::size_t{kv.layout().layers} * n * kv.layout().row_bytes());
    const std::size_t r =
        ZSTD_decompressDCtx(dctx_, raw_.data(), raw_.size(), in.data.data(), in.data.size());
    if (ZSTD_isError(r)) return Status(Errc::corrupt_data, ZSTD_getErrorName(r));
    return scatter(raw_, kv, b, n);
  }

 private:
  int level_;
  std::string name_;
  ZSTD_CCtx* cctx_ = ZSTD_createCCtx();
  ZSTD_DCtx* dctx_ = ZSTD_createDCtx();
  std::vector<std::byte> raw_;
};

// Per-token absmax int8 (255 levels) with an fp16 scale per (layer, K|V, token).
class Int8 final : public EvalMethod {
 public:
  const std::string& name() const override { return name_; }
  Status encode(const KvView& kv, std::uint32_t b, std::uint32_t n, Encoded& out) override {
    const auto raw = gather(kv, b, n);
    const std::size_t C = kv.layout().row_values();
    const std::size_t rows = raw.size() / (2 * C);
    out.data.resize(rows * (2 + C));
    x_.resize(C);
    float* x = x_.data();
    for (std::size_t r = 0; r < rows; ++r) {
      float absmax = 0;
      for (std::size_t c = 0; c < C; ++c) {
        std::uint16_t h;
        std::memcpy(&h, raw.data() + 2 * (r * C + c), 2);
        x[c] = half_to_float(h);
        absmax = std::max(absmax, std::fabs(x[c]));
      }
      const std::uint16_t scale_h = float_to_half(absmax / 127.0f);
      const float scale = half_to_float(scale_h);
      std::memcpy(out.data.data() + r * (2 + C), &scale_h, 2);
      for (std::size_t c = 0; c < C; ++c) {
        const float q = scale > 0 ? std::clamp(std::nearbyint(x[c] / scale), -127.0f, 127.0f) : 0;
        out.data[r * (2 + C) + 2 + c] = static_cast<std::byte>(static_cast<std::int8_t>(q));
      }
    }
    out.wire_bits = 8.0 * static_cast<double>(out.data.size());
    return Status::ok();
  }
  Status decode(const Encoded& in, const KvView& kv, std::uint32_t b, std::uint32_t n) override {
    const std::size_t C = kv.layout().row_values();
    const std::size_t rows = in.data.size() / (2 + C);
    std::vector<std::byte> raw(rows * C * 2);
    for (std::size_t r = 0; r < rows; ++r) {
      std::uint16_t scale_h;
      std::memcpy(&scale_h, in.data.data() + r * (2 + C), 2);
      const float scale = half_to_float(scale_h);
      for (std::size_t c = 0; c < C; ++c) {
        const auto q = static_cast<std::int8_t>(in.data[r * (2 + C) + 2 + c]);
        const std::uint16_t h = float_to_half(static_cast<float>(q) * scale);
        std::memcpy(raw.data() + 2 * (r * C + c), &h, 2);
      }
    }
    return scatter(raw, kv, b, n);
  }

 private:
  std::string name_ = "int8";
  std::vector<float> x_;
};

class Level final : public EvalMethod {
 public:
  Level(std::uint8_t level, const CodecProfile& profile) : name_(fmt::format("level{}", level)) {
    options_.level = level;
    options_.profile = &profile;
  }
  const std::string& name() const override { return name_; }
  Status encode(const KvView& kv, std::uint32_t b, std::uint32_t n, Encoded& out) override {
    KVS_RETURN_IF_ERROR(encoder_.encode(kv, b, n, options_, out.data));
    out.wire_bits = 8.0 * static_cast<double>(out.data.size());
    return Status::ok();
  }
  Status decode(const Encoded& in, const KvView& kv, std::uint32_t, std::uint32_t) override {
    return decoder_.decode(in.data, kv, options_.profile);
  }

 private:
  std::string name_;
  EncodeOptions options_;
  ChunkEncoder encoder_;
  ChunkDecoder decoder_;
};

}  // namespace

std::vector<std::unique_ptr<EvalMethod>> make_eval_methods(const CodecProfile& profile) {
  std::vector<std::unique_ptr<EvalMethod>> m;
  m.push_back(std::make_unique<Fp16>());
  m.push_back(std::make_unique<Int8>());
  for (auto& c : make_cachegen_methods())
    m.push_back(std::move(c));
  m.push_back(std::make_unique<Zstd>(1));
  m.push_back(std::make_unique<Zstd>(19));
  for (std::uint32_t level = 0; level <= profile.levels(); ++level) {
    m.push_back(std::make_unique<Level>(static_cast<std::uint8_t>(level), profile));
  }
  return m;
}

}  // namespace kvstream::cli
