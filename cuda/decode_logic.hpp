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
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

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
  std::uint32_t first_channel;  // its C words in the channel array
  std::uint32_t coded;          // C': the channels its words code, before the constant tail
};

struct PlanSubstream {
  std::uint32_t words;       // byte offset of its word stream in the chunk
  std::uint32_t word_count;  // 16-bit words
  std::uint32_t states;      // byte offset of its L lane states in the chunk
  std::uint32_t t_begin, t_end;
  std::uint32_t refs;  // predicted segments: its C references in the reference scratch
};

// A channel's side information in one word: its table (an index into the chunk's table list),
// its step code (quantized coding) and its center (int16), so that a value needs one load.
KVS_HD std::uint32_t pack_channel(std::uint32_t table, std::uint32_t step_code,
                                  std::int32_t center) {
  return table | step_code << 8 | static_cast<std::uint32_t>(center) << 16;
}
KVS_HD std::uint32_t channel_table(std::uint32_t ch) {
  return ch & 0xFFu;
}
KVS_HD std::uint32_t channel_step_code(std::uint32_t ch) {
  return (ch >> 8) & 0xFFu;
}
KVS_HD std::int32_t channel_center(std::uint32_t ch) {
  return static_cast<std::int16_t>(static_cast<std::uint16_t>(ch >> 16));
}

// The slot -> token lookups of the tables a chunk uses, small enough for shared memory: per
// table, the token at the first slot of each 2-slot bucket (a bucket holds at most two tokens,
// since every token has a frequency of at least 1), and per token freq | cum << 12 | n << 24 |
// head << 28 (codec/table_bank.hpp's entry fields, cum in place of the offset).
inline constexpr std::uint32_t kBuckets = 2048;
struct Luts {
  const std::uint8_t* buckets;  // table * kBuckets + slot / 2
  const std::uint32_t* tokens;  // table * 64 + token
  const float* steps;           // the 256 quantization steps
};

// The packed decode entry of codec/table_bank.hpp (freq | offset << 12 | n << 24 | head << 28)
// for `slot` of table `table`.
KVS_HD std::uint32_t lookup(const Luts& luts, std::uint32_t table, std::uint32_t slot) {
  const std::uint32_t* info = luts.tokens + table * 64;
  const std::uint32_t tok = luts.buckets[table * kBuckets + (slot >> 1)];
  std::uint32_t e = info[tok];
  if (slot >= (e & 0xFFFu) + ((e >> 12) & 0xFFFu)) e = info[tok + 1];
  return (e & 0xFF000FFFu) | (slot - ((e >> 12) & 0xFFFu)) << 12;
}

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
  const std::uint32_t* channels = nullptr;  // pack_channel() words
  const PlanTask* tasks = nullptr;
  std::uint32_t task_count = 0;
  const std::uint32_t* tables = nullptr;  // the bank ids of the tables the chunk uses
  std::uint32_t table_count = 0;
  // Where the kernel gathers its shared-memory Luts from: every bank table in compact form.
  const std::uint8_t* bank_buckets = nullptr;
  const std::uint32_t* bank_tokens = nullptr;
  const float* steps = nullptr;
  std::int32_t* refs = nullptr;        // predicted segments' running references
  std::uint32_t* failures = nullptr;   // per substream: a kFail code, zeroed before the launch
  std::uint32_t* next_task = nullptr;  // the kernel's task counter, zeroed before the launch
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

KVS_HD std::uint32_t load_u16(const std::byte* p) {
  // Word streams start at any byte; most do at an even one.
  if ((reinterpret_cast<std::uintptr_t>(p) & 1u) == 0) {
    return *reinterpret_cast<const std::uint16_t*>(p);
  }
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8;
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

// A quantized value (finite or infinite, never NaN) into the destination dtype: the device's
// conversion instructions round as half.hpp does.
template <std::uint32_t kOut>
KVS_HD void store_quantized(std::byte* row, std::uint32_t c, float f) {
  if constexpr (kOut == 0) {
    reinterpret_cast<float*>(row)[c] = f;
  } else {
#if defined(__CUDA_ARCH__)
    reinterpret_cast<std::uint16_t*>(row)[c] = kOut == 1
                                                   ? __half_as_ushort(__float2half_rn(f))
                                                   : __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
    reinterpret_cast<std::uint16_t*>(row)[c] = kOut == 1 ? float_to_half(f) : float_to_bf16(f);
#endif
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
  std::uint32_t before = 0;  // those of them below it
  bool active = false;       // the task has a substream for it
  std::uint32_t cursor = 0;  // next word of its substream (every lane of it keeps a copy)
  PlanSubstream s{};
  const std::byte* words = nullptr;  // its substream's word stream
  // A window of 2L words of the stream from the cursor on: w0 = word cursor + j, w1 = word
  // cursor + L + j (zero past the end). A refill takes its word from a neighbour's w0 by a
  // shuffle instead of a dependent load, and the window's next words load a refill early.
  std::uint32_t w0 = 0, w1 = 0;
  std::uint32_t t = 0, c = 0;  // token (in the chunk) and channel of its value in this group
  std::byte* row = nullptr;    // token t's row in the destination
  std::uint32_t ch = 0;        // channel c's pack_channel() word
  std::uint32_t ch_next = 0;   // the next group's, loaded a group ahead
  bool has = false;            // it has a value in this group
  std::uint32_t entry = 0;     // the value's slot lookup entry
  std::uint32_t u = 0;         // the value's zigzagged difference
  std::int32_t v = 0;          // the value
  std::uint32_t extra = 0;     // lossless raw fields
  std::uint32_t fail = kFailNone;
  std::uint32_t extra_w = 0;  // a word in passing between two shuffles
};

KVS_HD std::uint32_t stream_word(const Lane& ln, std::uint32_t at) {
  return at < ln.s.word_count ? load_u16(ln.words + 2 * std::size_t{at}) : 0u;
}

// Takes the word each lane that needs one is owed, in lane order within its substream, then
// moves the substream's window past the words taken. kFull: every lane of the warp has a value
// in this group (the common case), which spares the per-lane checks.
template <bool kFull, class Team>
KVS_HD void refill(Team& team, typename Team::template Var<Lane>& lanes, std::uint32_t lanes_per) {
  // A full group is one 32-lane substream: its width and masks are constants.
  const std::uint32_t L = kFull ? 32u : lanes_per;
  const std::uint32_t need =
      team.ballot([&](unsigned l) { return (kFull || lanes[l].has) && lanes[l].x < (1u << 16); });
  // The word of a lane that needs one is w0 of the lane `before` of its substream's needy lanes.
  // A word past the end reads as 0 (the window holds zeros there), as the CPU decoder's does;
  // the substream's final cursor tells that it ran out.
  team.shuffle(
      L, [&](unsigned l) { return lanes[l].w0; },
      [&](unsigned l) { return popcount32(need & lanes[l].before); },
      [&](unsigned l, std::uint32_t word) {
        Lane& ln = lanes[l];
        if ((need >> l) & 1u) ln.x = (ln.x << 16) | word;
      });
  // Window moved by k words: lane j's w0 is old word k + j, from w0 or w1 of lane (k + j) % L.
  const auto k = [&](unsigned l) { return popcount32(kFull ? need : need & lanes[l].mask); };
  const auto from = [&](unsigned l) { return (k(l) + (kFull ? l : lanes[l].j)) & (L - 1); };
  team.shuffle(
      L, [&](unsigned l) { return lanes[l].w1; }, from,
      [&](unsigned l, std::uint32_t w1_there) { lanes[l].extra_w = w1_there; });
  team.shuffle(
      L, [&](unsigned l) { return lanes[l].w0; }, from,
      [&](unsigned l, std::uint32_t w0_there) {
        Lane& ln = lanes[l];
        if (!kFull && !ln.active) return;
        const std::uint32_t taken = k(l);
        const bool inside = taken + ln.j < L;  // old word k + j is in w0, else in w1
        ln.w0 = inside ? w0_there : ln.extra_w;
        const std::uint32_t loaded = inside ? 0u : stream_word(ln, ln.cursor + taken + L + ln.j);
        ln.w1 = inside ? ln.extra_w : loaded;
        ln.cursor += taken;
      });
}

// Reads a raw field of `bits` bits (0..16) from every lane that has a value.
template <bool kFull, class Team, class Bits, class Keep>
KVS_HD void raw_field(Team& team, typename Team::template Var<Lane>& lanes, std::uint32_t L,
                      Bits&& bits, Keep&& keep) {
  team.each([&](unsigned l) {
    Lane& ln = lanes[l];
    if (!kFull && !ln.has) return;
    const std::uint32_t b = bits(ln);
    keep(ln, ln.x & ((1u << b) - 1u));
    ln.x >>= b;
  });
  refill<kFull>(team, lanes, L);
}

// Decodes task `task_index` of `a` into a.dst; kCoding is the chunk's coding (all its segments
// share it) and kOut the destination dtype.
template <std::uint32_t kCoding, std::uint32_t kOut, class Team>
KVS_HD void decode_task(Team& team, const DecodeArgs& a, const Luts& luts,
                        std::uint32_t task_index) {
  const PlanTask task = a.tasks[task_index];
  const PlanSegment seg = a.segments[task.segment];
  // Lanes walk the coded channels of each row; the constant tail is written at the end.
  const std::uint32_t L = seg.lanes, C = seg.coded;
  const std::uint32_t* channels = a.channels + seg.first_channel;
  typename Team::template Var<Lane> lanes;
  team.each([&](unsigned l) {
    Lane& ln = lanes[l];
    ln.sub = l / L;
    ln.j = l % L;
    ln.mask = (L == 32 ? 0xFFFFFFFFu : ((1u << L) - 1u)) << (ln.sub * L);
    ln.before = ln.mask & ((1u << l) - 1u);
    ln.active = ln.sub < task.count;
    if (!ln.active) return;
    ln.s = a.substreams[task.first + ln.sub];
    ln.x = load_u32(a.chunk + ln.s.states + 4 * std::size_t{ln.j});
    ln.words = a.chunk + ln.s.words;
    ln.cursor = 0;
    ln.w0 = stream_word(ln, ln.j);
    ln.w1 = stream_word(ln, L + ln.j);
    ln.t = C == 0 ? ln.s.t_end : ln.s.t_begin + ln.j / C;  // value j of the substream
    ln.c = C == 0 ? 0 : ln.j % C;
    ln.has = ln.t < ln.s.t_end;
    if (ln.has) ln.row = a.dst.row(task.segment, a.token_begin + ln.t);
    ln.ch_next = ln.has ? channels[ln.c] : 0u;
    if (seg.predicted) {
      for (std::uint32_t c = ln.j; c < C; c += L)
        a.refs[ln.s.refs + c] = channel_center(channels[c]);
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
  const std::uint32_t rounds = seg.predicted && C != 0 && C < L ? (L - 1) / C + 1 : 1;

  const auto group = [&]<bool kFull>() {
    team.each([&](unsigned l) {  // step 1: tokens
      Lane& ln = lanes[l];
      if (!kFull && !ln.has) return;
      ln.ch = ln.ch_next;
      const std::uint32_t e = lookup(luts, channel_table(ln.ch), ln.x & 4095u);
      ln.x = (e & 0xFFFu) * (ln.x >> 12) + ((e >> 12) & 0xFFFu);
      ln.entry = e;
    });
    refill<kFull>(team, lanes, L);
    raw_field<kFull>(  // step 2: the token's raw bits
        team, lanes, L, [](const Lane& ln) { return (ln.entry >> 24) & 0xFu; },
        [](Lane& ln, std::uint32_t raw) {
          ln.u = ((ln.entry >> 28) << ((ln.entry >> 24) & 0xFu)) | raw;
        });
    for (std::uint32_t r = 0; r < rounds; ++r) {
      team.each([&](unsigned l) {
        Lane& ln = lanes[l];
        if ((!kFull && !ln.has) || (rounds > 1 && ln.j / C != r)) return;
        if (seg.predicted) {
          std::int32_t& ref = a.refs[ln.s.refs + ln.c];
          ln.v = wrap16_32(unzigzag32(ln.u) + ref);
          ref = ln.v;
        } else {
          ln.v = wrap16_32(unzigzag32(ln.u) + channel_center(ln.ch));
        }
      });
      if (seg.predicted) team.sync();
    }
    if constexpr (kCoding == 0) {
      team.each([&](unsigned l) {
        Lane& ln = lanes[l];
        if (!kFull && !ln.has) return;
        store_quantized<kOut>(ln.row, ln.c,
                              static_cast<float>(ln.v) * luts.steps[channel_step_code(ln.ch)]);
      });
    } else {
      raw_field<kFull>(  // step 3
          team, lanes, L, [&](const Lane&) { return extra_bits; },
          [](Lane& ln, std::uint32_t raw) { ln.extra = raw; });
      if constexpr (kCoding == 2) {  // step 4: split32's high field
        raw_field<kFull>(
            team, lanes, L, [&](const Lane&) { return extra2_bits; },
            [](Lane& ln, std::uint32_t raw) { ln.extra |= raw << 16; });
      }
      team.each([&](unsigned l) {
        Lane& ln = lanes[l];
        if (!kFull && !ln.has) return;
        if (ln.v < 0 || ln.v >= v_limit) {
          ln.fail = ln.fail > kFailExponent ? ln.fail : kFailExponent;
          return;
        }
        const std::uint32_t bits = ((ln.extra & 1u) << sign_shift) |
                                   (static_cast<std::uint32_t>(ln.v) << R) | (ln.extra >> 1);
        store_bits(ln.row, ln.c, a.source_dtype, kOut, bits);
      });
    }
    team.each([&](unsigned l) {  // the lane's value in the next group
      Lane& ln = lanes[l];
      if (!kFull && !ln.has) return;
      ln.c += L;
      if (ln.c >= C) {
        do {
          ln.c -= C;
          ++ln.t;
        } while (ln.c >= C);
        ln.has = ln.t < ln.s.t_end;
        if (!ln.has) return;
        ln.row = a.dst.row(task.segment, a.token_begin + ln.t);
      }
      ln.ch_next = channels[ln.c];
    });
  };
  for (;;) {
    const std::uint32_t has = team.ballot([&](unsigned l) { return lanes[l].has; });
    if (has == 0) break;
    if (has == 0xFFFFFFFFu && L == 32) {
      group.template operator()<true>();
    } else {
      group.template operator()<false>();  // a partial group, or substreams of fewer lanes
    }
  }
  if (kCoding == 0 && C < a.channels_per_row) {  // the constant tail: each value its center
    team.each([&](unsigned l) {
      const Lane& ln = lanes[l];
      if (!ln.active) return;
      for (std::uint32_t t = ln.s.t_begin; t < ln.s.t_end; ++t) {
        std::byte* row = a.dst.row(task.segment, a.token_begin + t);
        for (std::uint32_t c = C + ln.j; c < a.channels_per_row; c += L) {
          const std::uint32_t ch = channels[c];
          store_quantized<kOut>(
              row, c, static_cast<float>(channel_center(ch)) * luts.steps[channel_step_code(ch)]);
        }
      }
    });
  }
  team.each([&](unsigned l) {
    Lane& ln = lanes[l];
    if (!ln.active) return;
    std::uint32_t f = ln.cursor > ln.s.word_count ? kFailWordsOut : ln.fail;
    if (ln.cursor != ln.s.word_count && f < kFailWordsLeft) f = kFailWordsLeft;
    if (ln.x != (1u << 16) && f < kFailFinalState) f = kFailFinalState;
    if (f != kFailNone) team.report(a.failures + task.first + ln.sub, f);
  });
}

// Calls f.template operator()<kCoding, kOut>() for a chunk's coding and a destination dtype.
template <class F>
inline void dispatch(std::uint32_t coding, std::uint32_t out, F&& f) {
  const auto by_out = [&]<std::uint32_t kCoding>() {
    if (out == 0)
      f.template operator()<kCoding, 0>();
    else if (out == 1)
      f.template operator()<kCoding, 1>();
    else
      f.template operator()<kCoding, 2>();
  };
  if (coding == 0)
    by_out.template operator()<0>();
  else if (coding == 1)
    by_out.template operator()<1>();
  else
    by_out.template operator()<2>();
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
  // Lane l gets put(l, get(m)) with m the lane src(l) of l's group of `width` lanes, every
  // get() taken before any put(), as __shfl_sync does.
  template <class Get, class Src, class Put>
  void shuffle(std::uint32_t width, Get&& get, Src&& src, Put&& put) {
    std::uint32_t v[32];
    for (unsigned l = 0; l < 32; ++l)
      v[l] = get(l);
    for (unsigned l = 0; l < 32; ++l)
      put(l, v[(l / width) * width + (src(l) & (width - 1))]);
  }
  void sync() {}
  void report(std::uint32_t* at, std::uint32_t code) { *at = *at > code ? *at : code; }
};

}  // namespace kvstream::gpu
