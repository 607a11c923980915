// Chunks decoded on a ring of decoders, each with its own CUDA stream: while one chunk copies
// to the device and decodes, the next is validated and staged on the next decoder, so that a
// receiver hands each chunk over as it lands and never waits for a decode unless every stream
// is busy. Readiness is reported in the order chunks were submitted (a stream reports its chunk
// only once every earlier one is reported), as a stream's own order would.
//
// Header-only over a decoder type with GpuDecoder's steps (stage, launch, finished, wait,
// decode_ms), so that CPU tests run it with a fake decoder; GpuDecodeRing (gpu_decoder.hpp) is
// it over GpuDecoders.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kvstream/codec.hpp"
#include "kvstream/gpu_decoder.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream::gpu {

// Decoder: Status stage(std::span<const std::byte>, const CodecProfile*) (the chunk's memory may
// be reused once it returns); Status launch(const KvView&); Expected<bool> finished() (does not
// block); Status wait() (blocks; the decode's status); Expected<double> decode_ms() (after
// wait: the device's time).
template <class Decoder>
class DecodeRing {
 public:
  using Ready = std::function<void(std::size_t id, const DecodeTimes& times)>;

  explicit DecodeRing(std::vector<Decoder> decoders) : decoders_(std::move(decoders)) {}

  std::size_t depth() const noexcept { return decoders_.size(); }
  std::size_t in_flight() const noexcept { return flight_.size(); }

  // Reports what has finished, then, when every decoder holds a chunk, waits for the oldest;
  // stages `chunk` on the next free decoder and launches its decode into `dst`. An error in an
  // earlier chunk's decode is returned before this one is staged (and every chunk reported
  // before it stays valid); after an error the ring takes nothing more.
  Status submit(std::size_t id, std::span<const std::byte> chunk, const KvView& dst,
                const CodecProfile* profile, const Ready& ready) {
    KVS_RETURN_IF_ERROR(failure_);
    KVS_RETURN_IF_ERROR(poll(ready));
    if (flight_.size() == decoders_.size()) KVS_RETURN_IF_ERROR(retire_oldest(ready));
    const std::size_t d = (next_ + flight_.size()) % decoders_.size();
    const auto began = std::chrono::steady_clock::now();
    Status s = decoders_[d].stage(chunk, profile);
    if (s.is_ok()) s = decoders_[d].launch(dst);
    if (!s.is_ok()) return fail(std::move(s));
    const std::chrono::duration<double, std::milli> staging =
        std::chrono::steady_clock::now() - began;
    flight_.push_back({id, staging.count()});
    return Status::ok();
  }

  // Reports every chunk that has finished, oldest first, up to the first that has not.
  Status poll(const Ready& ready) {
    KVS_RETURN_IF_ERROR(failure_);
    while (!flight_.empty()) {
      Expected<bool> done = decoders_[next_].finished();
      if (!done) return fail(done.error());
      if (!*done) break;
      KVS_RETURN_IF_ERROR(retire_oldest(ready));
    }
    return Status::ok();
  }

  // Waits for every chunk submitted, reporting each.
  Status drain(const Ready& ready) {
    KVS_RETURN_IF_ERROR(failure_);
    while (!flight_.empty())
      KVS_RETURN_IF_ERROR(retire_oldest(ready));
    return Status::ok();
  }

 private:
  Status retire_oldest(const Ready& ready) {
    const Flight f = flight_.front();
    const Status s = decoders_[next_].wait();
    if (!s.is_ok()) return fail(s.with_context(fmt_chunk(f.id)));
    const Expected<double> kernel = decoders_[next_].decode_ms();
    if (!kernel) return fail(kernel.error().with_context(fmt_chunk(f.id)));
    flight_.pop_front();
    next_ = (next_ + 1) % decoders_.size();
    if (ready) ready(f.id, DecodeTimes{f.staging_ms, *kernel});
    return Status::ok();
  }
  Status fail(Status s) {
    failure_ = s;
    return s;
  }
  static std::string fmt_chunk(std::size_t id) { return "chunk " + std::to_string(id); }

  struct Flight {
    std::size_t id;
    double staging_ms;
  };
  std::vector<Decoder> decoders_;
  std::deque<Flight> flight_;  // oldest first; the oldest is on decoders_[next_]
  std::size_t next_ = 0;
  Status failure_ = Status::ok();
};

}  // namespace kvstream::gpu
