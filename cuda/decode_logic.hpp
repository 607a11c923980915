// The GPU decoder's per-thread logic (FORMAT.md's coding 0/1/2 segments), written once for both
// compilers: nvcc runs it as one warp per task, and the CPU tests run the same function lane by
// lane through HostTeam, so the kernel's logic is tested where there is no GPU.
//
// A task is up to 32 / L substreams of one segment (L = its lanes): lane `lane` of the warp is
// lane lane % L of substream lane / L. Each FORMAT.md step is taken by every lane of a group
// at once; the words a step's refills consume are handed out in lane order with a ballot and a
// population count, which is exactly the order of the format's serial description.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "kvstream/half.hpp"

#if defined(__CUDACC__)
#define KVS_HD __host__ __device__ inline
#else
#define KVS_HD inline
#endif

namespace kvstream::gpu {

// Where a decoded value goes: the same arithmetic as KvView::row, on plain fields.
struct ViewDesc {
  std::byte* base = nullptr;              // contiguous layout
  std::byte* const* pools = nullptr;      // paged: 2 * layers pools, K0, V0, K1, ...
  const std::uint32_t* blocks = nullptr;  // paged: the block table
  std::uint32_t block_size = 0;           // 0: contiguous
  std::uint32_t tokens = 0;
  std::uint64_t row_bytes = 0;
  std::uint32_t dtype = 1;  // DType: 0 f32, 1 f16, 2 bf16

  KVS_HD std::byte* row(std::uint32_t segment, std::uint32_t token) const {
    if (block_size == 0) return base + (std::uint64_t{segment} * tokens + token) * row_bytes;
    const std::uint64_t block = blocks[token / block_size];
    return pools[segment] + (block * block_size + token % block_size) * row_bytes;
  }
};

// A segment as the kernel needs it (the host validated everything it says).
struct PlanSegment {
  std::uint32_t coding;     // 0 quantized, 1 split16, 2 split32
  std::uint32_t predicted;  // previous-token predictor
  std::uint32_t lanes;
  std::uint32_t first_channel;  // its C entries in the channel array
};

struct PlanSubstream {
  std::uint32_t words;       // byte offset of its word stream in the chunk
  std::uint32_t word_count;  // 16-bit words
  std::uint32_t states;      // byte offset of its L lane states in the chunk
  std::uint32_t t_begin, t_end;
  std::uint32_t refs;  // predicted segments: its C references in the reference scratch
};

struct PlanChannel {
  std::uint32_t lut;  // table id * 4096: its slot lookup in the bank's lookups
  float step;         // quantized coding's step
  std::int32_t center;
};

struct PlanTask {
  std::uint32_t segment;
  std::uint32_t first;  // its first substream in the substream array
  std::uint32_t count;  // substreams: 1..32 / lanes
};

// Why a substream failed; a larger code wins when several apply (the CPU decoder's order).
enum : std::uint32_t {
  kFailNone = 0,
  kFailFinalState = 1,
  kFailWordsLeft = 2,
  kFailExponent = 3,
  kFailWordsOut = 4,
};

struct DecodeArgs {
  const std::byte* chunk = nullptr;
  const PlanSegment* segments = nullptr;
  const PlanSubstream* substreams = nullptr;
  const PlanChannel* channels = nullptr;
  const PlanTask* tasks = nullptr;
  std::uint32_t task_count = 0;
  const std::uint32_t* luts = nullptr;  // the table bank's packed slot lookups
  std::int32_t* refs = nullptr;         // predicted segments' running references
  std::uint32_t* failures = nullptr;    // per substream: a kFail code, zeroed before the launch
  ViewDesc dst;
  std::uint32_t channels_per_row = 0;  // C
  std::uint32_t token_begin = 0;       // the chunk's first token in the destination
  std::uint32_t source_dtype = 1;      // lossless codings: the bits' dtype
};

KVS_HD std::uint32_t popcount32(std::uint32_t v) {
#if defined(__CUDA_ARCH__)
  return static_cast<std::uint32_t>(__popc(v));
#else
  return static_cast<std::uint32_t>(__builtin_popcount(v));
#endif
}

KVS_HD std::uint32_t load_u32(const std::byte* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

KVS_HD std::int32_t unzigzag32(std::uint32_t u) {
  return (u & 1u) ? -static_cast<std::int32_t>(u >> 1) - 1 : static_cast<std::int32_t>(u >> 1);
}
KVS_HD std::int32_t wrap16_32(std::int32_t v) {
  return static_cast<std::int16_t>(static_cast<std::uint16_t>(static_cast<std::uint32_t>(v)));
}

KVS_HD void store_float(std::byte* row, std::uint32_t c, std::uint32_t dtype, float f) {
  if (dtype == 0) {
    *reinterpret_cast<float*>(row + 4 * std::size_t{c}) = f;
  } else {
    *reinterpret_cast<std::uint16_t*>(row + 2 * std::size_t{c}) =
        dtype == 1 ? float_to_half(f) : float_to_bf16(f);
  }
}

// A lossless value's source bits into the destination dtype: as is when the dtypes match.
KVS_HD void store_bits(std::byte* row, std::uint32_t c, std::uint32_t src, std::uint32_t dst,
                       std::uint32_t bits) {
  if (src == dst) {
    if (dst == 0) {
      *reinterpret_cast<std::uint32_t*>(row + 4 * std::size_t{c}) = bits;
    } else {
      *reinterpret_cast<std::uint16_t*>(row + 2 * std::size_t{c}) =
          static_cast<std::uint16_t>(bits);
    }
    return;
  }
  const float f = src == 0   ? std::bit_cast<float>(bits)
                  : src == 1 ? half_to_float(static_cast<std::uint16_t>(bits))
                             : bf16_to_float(static_cast<std::uint16_t>(bits));
  store_float(row, c, dst, f);
}

// One lane's state while its task runs.
struct Lane {
  std::uint32_t x = 0;       // rANS state
  std::uint32_t sub = 0;     // its substream within the task
  std::uint32_t j = 0;       // its lane within the substream
  std::uint32_t mask = 0;    // the lanes of its substream, as warp bits
  bool active = false;       // the task has a substream for it
  std::uint32_t cursor = 0;  // next word of its substream (every lane of it keeps a copy)
  PlanSubstream s{};
  std::uint32_t t = 0, c = 0;  // token (in the chunk) and channel of its value in this group
  bool has = false;            // it has a value in this group
  std::uint32_t entry = 0;     // the value's slot lookup entry
  std::uint32_t u = 0;         // the value's zigzagged difference
  std::int32_t v = 0;          // the value
  std::uint32_t extra = 0;     // lossless raw fields
  std::uint32_t fail = kFailNone;
};

// Takes the word each lane that needs one is owed, in lane order within its substream.
template <class Team>
KVS_HD void refill(Team& team, typename Team::template Var<Lane>& lanes, const std::byte* chunk) {
  const std::uint32_t need =
      team.ballot([&](unsigned l) { return lanes[l].has && lanes[l].x < (1u << 16); });
  team.each([&](unsigned l) {
    Lane& ln = lanes[l];
    if (!ln.active) return;
    const std::uint32_t mine = need & ln.mask;
    if ((mine >> l) & 1u) {
      const std::uint32_t at = ln.cursor + popcount32(mine & ((1u << l) - 1u));
      if (at < ln.s.word_count) {
        const std::byte* w = chunk + ln.s.words + 2 * std::size_t{at};
        ln.x =
            (ln.x << 16) | static_cast<std::uint32_t>(w[0]) | static_cast<std::uint32_t>(w[1]) << 8;
      } else {
        ln.x <<= 16;  // as the CPU decoder: a zero word, and the substream fails
        ln.fail = ln.fail > kFailWordsOut ? ln.fail : kFailWordsOut;
      }
    }
    ln.cursor += popcount32(mine);
  });
}

// Reads a raw field of `bits` bits (0..16) from every lane that has a value.
template <class Team, class Bits, class Keep>
KVS_HD void raw_field(Team& team, typename Team::template Var<Lane>& lanes, const std::byte* chunk,
                      Bits&& bits, Keep&& keep) {
  team.each([&](unsigned l) {
    Lane& ln = lanes[l];
    if (!ln.has) return;
    const std::uint32_t b = bits(ln);
    keep(ln, ln.x & ((1u << b) - 1u));
    ln.x >>= b;
  });
  refill(team, lanes, chunk);
}

// Decodes task `task_index` of `a` into a.dst.
template <class Team>
KVS_HD void decode_task(Team& team, const DecodeArgs& a, std::uint32_t task_index) {
  const PlanTask task = a.tasks[task_index];
  const PlanSegment seg = a.segments[task.segment];
  const std::uint32_t L = seg.lanes, C = a.channels_per_row;
  const PlanChannel* channels = a.channels + seg.first_channel;
  typename Team::template Var<Lane> lanes;
  team.each([&](unsigned l) {
    Lane& ln = lanes[l];
    ln.sub = l / L;
    ln.j = l % L;
    ln.mask = (L == 32 ? 0xFFFFFFFFu : ((1u << L) - 1u)) << (ln.sub * L);
    ln.active = ln.sub < task.count;
    if (!ln.active) return;
    ln.s = a.substreams[task.first + ln.sub];
    ln.x = load_u32(a.chunk + ln.s.states + 4 * std::size_t{ln.j});
    ln.cursor = 0;
    ln.t = ln.s.t_begin + ln.j / C;  // value j of the substream
    ln.c = ln.j % C;
    ln.has = ln.t < ln.s.t_end;
    if (seg.predicted) {
      for (std::uint32_t c = ln.j; c < C; c += L)
        a.refs[ln.s.refs + c] = channels[c].center;
    }
  });
  team.sync();
  // Lossless codings: the exponent field is v, R low mantissa bits and the sign travel raw.
  const std::uint32_t R = a.source_dtype == 0 ? 21 : a.source_dtype == 1 ? 8 : 5;
  const std::uint32_t sign_shift = a.source_dtype == 0 ? 31 : 15;
  const std::int32_t v_limit = 1 << (sign_shift - R);
  const std::uint32_t extra_bits = R + 1 < 16 ? R + 1 : 16;
  const std::uint32_t extra2_bits = R + 1 > 16 ? R + 1 - 16 : 0;
  // Values of one group that share a channel (C < L) take their references in value order.
  const std::uint32_t rounds = seg.predicted && C < L ? (L - 1) / C + 1 : 1;

  while (team.ballot([&](unsigned l) { return lanes[l].has; }) != 0) {
    team.each([&](unsigned l) {  // step 1: tokens
      Lane& ln = lanes[l];
      if (!ln.has) return;
      const std::uint32_t e = a.luts[channels[ln.c].lut + (ln.x & 4095u)];
      ln.x = (e & 0xFFFu) * (ln.x >> 12) + ((e >> 12) & 0xFFFu);
      ln.entry = e;
    });
    refill(team, lanes, a.chunk);
    raw_field(  // step 2: the token's raw bits
        team, lanes, a.chunk, [](const Lane& ln) { return (ln.entry >> 24) & 0xFu; },
        [](Lane& ln, std::uint32_t raw) {
          ln.u = ((ln.entry >> 28) << ((ln.entry >> 24) & 0xFu)) | raw;
        });
    for (std::uint32_t r = 0; r < rounds; ++r) {
      team.each([&](unsigned l) {
        Lane& ln = lanes[l];
        if (!ln.has || (rounds > 1 && ln.j / C != r)) return;
        if (seg.predicted) {
          std::int32_t& ref = a.refs[ln.s.refs + ln.c];
          ln.v = wrap16_32(unzigzag32(ln.u) + ref);
          ref = ln.v;
        } else {
          ln.v = wrap16_32(unzigzag32(ln.u) + channels[ln.c].center);
        }
      });
      if (seg.predicted) team.sync();
    }
    if (seg.coding == 0) {
      team.each([&](unsigned l) {
        Lane& ln = lanes[l];
        if (!ln.has) return;
        store_float(a.dst.row(task.segment, a.token_begin + ln.t), ln.c, a.dst.dtype,
                    static_cast<float>(ln.v) * channels[ln.c].step);
      });
    } else {
      raw_field(  // step 3
          team, lanes, a.chunk, [&](const Lane&) { return extra_bits; },
          [](Lane& ln, std::uint32_t raw) { ln.extra = raw; });
      if (seg.coding == 2) {  // step 4: split32's high field
        raw_field(
            team, lanes, a.chunk, [&](const Lane&) { return extra2_bits; },
            [](Lane& ln, std::uint32_t raw) { ln.extra |= raw << 16; });
      }
      team.each([&](unsigned l) {
        Lane& ln = lanes[l];
        if (!ln.has) return;
        if (ln.v < 0 || ln.v >= v_limit) {
          ln.fail = ln.fail > kFailExponent ? ln.fail : kFailExponent;
          return;
        }
        const std::uint32_t bits = ((ln.extra & 1u) << sign_shift) |
                                   (static_cast<std::uint32_t>(ln.v) << R) | (ln.extra >> 1);
        store_bits(a.dst.row(task.segment, a.token_begin + ln.t), ln.c, a.source_dtype, a.dst.dtype,
                   bits);
      });
    }
    team.each([&](unsigned l) {  // the lane's value in the next group
      Lane& ln = lanes[l];
      if (!ln.has) return;
      ln.c += L;
      while (ln.c >= C) {
        ln.c -= C;
        ++ln.t;
      }
      ln.has = ln.t < ln.s.t_end;
    });
  }
  team.each([&](unsigned l) {
    Lane& ln = lanes[l];
    if (!ln.active) return;
    std::uint32_t f = ln.fail;
    if (ln.cursor != ln.s.word_count && f < kFailWordsLeft) f = kFailWordsLeft;
    if (ln.x != (1u << 16) && f < kFailFinalState) f = kFailFinalState;
    if (f != kFailNone) team.report(a.failures + task.first + ln.sub, f);
  });
}

// The CPU's stand-in for a warp: every per-lane step runs for lanes 0..31 in turn, and a
// ballot sees every lane's answer, as the warp's lanes see each other's.
struct HostTeam {
  template <class T>
  struct Var {
    T v[32];
    T& operator[](unsigned l) { return v[l]; }
  };
  template <class F>
  void each(F&& f) {
    for (unsigned l = 0; l < 32; ++l)
      f(l);
  }
  template <class P>
  std::uint32_t ballot(P&& pred) {
    std::uint32_t m = 0;
    for (unsigned l = 0; l < 32; ++l)
      m |= pred(l) ? 1u << l : 0u;
    return m;
  }
  void sync() {}
  void report(std::uint32_t* at, std::uint32_t code) { *at = *at > code ? *at : code; }
};

}  // namespace kvstream::gpu
