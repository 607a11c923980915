// Deadline-driven fetches over the shared fake link: the planner's choices land and decode as
// the archive says, a slow link gets smaller levels, the engine recomputes in chunk order after
// the chunks before it, and its failures end the fetch with a clear error.
#include "adaptive.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>
#include <vector>

#include "chunk_damage.hpp"
#include "session_fixture.hpp"

namespace kvstream::transport {
namespace {

using scheduler::Choice;

// Fetches into `kv` and checks every fetched chunk against the archive at its level.
void expect_chunks_match(const Served& served, const KvBuffer& kv, const AdaptiveReport& report) {
  for (const ChunkReport& c : report.chunks) {
    if (!c.choice.fetched()) continue;
    const std::uint32_t begin = c.chunk * 32, end = std::min(begin + 32, 116u);
    EXPECT_TRUE(same_tokens(kv, served.expected(c.choice.level), begin, end)) << c.chunk;
  }
}

struct Receiving {
  Served served;
  Session session;
  StreamReceiver receiver;
  StreamInfo info;
  KvBuffer kv;
  explicit Receiving(double bits_per_second = 0)
      : session(bits_per_second > 0 ? Session(served.dir, bits_per_second) : Session(served.dir)),
        receiver(*session.control, *session.link),
        info(receiver.open("ctx", Clock::now() + 5s).value()),
        kv(KvBuffer::create(served.layout).value()) {}
  ~Receiving() { receiver.close(Clock::now() + 5s); }
};

TEST(Adaptive, AGenerousDeadlineFetchesEveryChunkLossless) {
  Receiving r;
  AdaptiveOptions a;
  a.deadline_s = 30;
  a.seed_bytes_per_s = 1e9;
  AdaptiveReport report;
  const Status s = fetch_adaptive(r.receiver, r.info, r.kv.view(), {}, a, report);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(report.policy, "planner");
  ASSERT_EQ(report.chunks.size(), 4u);
  for (const ChunkReport& c : report.chunks)
    EXPECT_EQ(c.choice, Choice::fetch(0)) << c.chunk;
  EXPECT_TRUE(report.met);
  EXPECT_EQ(report.expected_loss, 0);
  // The planner probes: its second request waits for the first chunk to land.
  EXPECT_GE(report.chunks[1].decided, report.chunks[0].landed);
  EXPECT_TRUE(same_tokens(r.kv, r.served.expected(0), 0, 116));
}

TEST(Adaptive, AProbeSentSmallOnAWrongSeedIsFetchedAgainAtTheBestLevel) {
  Receiving r;
  AdaptiveOptions a;
  a.deadline_s = 5;
  // Far below the link: the first chunk goes at its smallest level; the link then proves fast.
  a.seed_bytes_per_s = 100;
  for (bool thread : {false, true}) {
    StreamReceiver::FetchOptions o;
    o.progress_thread = thread;
    AdaptiveReport report;
    const KvBuffer kv = KvBuffer::create(r.served.layout).value();
    const Status s = fetch_adaptive(r.receiver, r.info, kv.view(), o, a, report);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_TRUE(report.met);
    ASSERT_TRUE(report.chunks[0].upgraded_from.has_value());
    EXPECT_NE(*report.chunks[0].upgraded_from, 0u);
    EXPECT_EQ(report.chunks[0].bytes,
              r.info.size(0, *report.chunks[0].upgraded_from) + r.info.size(0, 0));
    std::uint64_t bytes = 0;
    for (const ChunkReport& c : report.chunks) {
      EXPECT_EQ(c.choice, Choice::fetch(0)) << c.chunk;
      bytes += c.bytes;
    }
    EXPECT_EQ(report.bytes, bytes);
    EXPECT_EQ(report.expected_loss, 0);
    // The second copy was decoded over the first.
    EXPECT_TRUE(same_tokens(kv, r.served.expected(0), 0, 116));
  }
}

// Serves the archives in `dir`, but chunk 0 at level 0 damaged under valid checksums, so that it
// fails the decoder's last checks, after its values were written.
class DamagedUpgradeSource final : public ChunkSource {
 public:
  explicit DamagedUpgradeSource(const std::filesystem::path& dir, const KvLayout& layout)
      : inner_(dir), layout_(layout) {}
  Expected<std::unique_ptr<SourceStream>> open(const std::string& id) override {
    KVS_ASSIGN_OR_RETURN(std::unique_ptr<SourceStream> s, inner_.open(id));
    return std::unique_ptr<SourceStream>(std::make_unique<Stream>(std::move(s), layout_));
  }

 private:
  class Stream final : public SourceStream {
   public:
    Stream(std::unique_ptr<SourceStream> inner, const KvLayout& layout)
        : inner_(std::move(inner)), layout_(layout) {}
    const StreamInfo& info() const override { return inner_->info(); }
    Expected<std::span<const std::byte>> read(std::uint32_t chunk, std::uint32_t level,
                                              std::vector<std::byte>& scratch) override {
      KVS_ASSIGN_OR_RETURN(const auto bytes, inner_->read(chunk, level, scratch));
      if (chunk != 0 || level != 0) return bytes;
      damaged_.assign(bytes.begin(), bytes.end());
      std::uint32_t offset, size;
      std::memcpy(&offset, damaged_.data() + 48, 4);
      std::memcpy(&size, damaged_.data() + 52, 4);
      // The first flip of segment 0's last word bits that only the end-of-stream check sees.
      KvBuffer scratch_kv = KvBuffer::create(layout_).value();
      for (std::uint32_t bit = 0; bit < 64; ++bit) {
        std::vector<std::byte> bad = damaged_;
        bad[offset + size - 1 - bit / 8] ^= std::byte{static_cast<unsigned char>(1u << (bit % 8))};
        testing_data::reseal(bad, 0);
        const Status s = decode_chunk(bad, scratch_kv.view());
        if (s.code() == Errc::corrupt_data) {
          damaged_ = std::move(bad);
          return std::span<const std::byte>(damaged_);
        }
      }
      return Status(Errc::internal, "no damage found that the decoder sees");
    }

   private:
    std::unique_ptr<SourceStream> inner_;
    KvLayout layout_;
    std::vector<std::byte> damaged_;
  };
  ArchiveSource inner_;
  KvLayout layout_;
};

TEST(Adaptive, AnUpgradeThatFailsLeavesTheFirstCopyWhole) {
  Served served;
  DamagedUpgradeSource source(served.dir, served.layout);
  Session session(source);
  StreamReceiver receiver(*session.control, *session.link);
  const StreamInfo info = receiver.open("ctx", Clock::now() + 5s).value();
  const KvBuffer kv = KvBuffer::create(served.layout).value();
  AdaptiveOptions a;
  a.deadline_s = 5;
  a.seed_bytes_per_s = 100;  // the probe goes small; its upgrade to level 0 is the damaged one
  AdaptiveReport report;
  const Status s = fetch_adaptive(receiver, info, kv.view(), {}, a, report);
  EXPECT_EQ(s.code(), Errc::corrupt_data) << s.to_string();
  EXPECT_EQ(s.message().rfind("chunk 0: ", 0), 0u) << s.message();
  ASSERT_TRUE(report.chunks[0].upgraded_from.has_value());
  // Chunk 0 still holds its first copy, whole; the others their level 0.
  EXPECT_TRUE(same_tokens(kv, served.expected(*report.chunks[0].upgraded_from), 0, 32));
  EXPECT_TRUE(same_tokens(kv, served.expected(0), 32, 116));
  receiver.close(Clock::now() + 5s);
}

TEST(Adaptive, ASlowLinkGetsSmallerLevels) {
  // Paced so that level 0 throughout would take about 2 s; the deadline is 1 s.
  Receiving probe;
  std::uint64_t l0 = 0;
  for (std::uint32_t c = 0; c < probe.info.chunk_count; ++c)
    l0 += probe.info.size(c, 0);
  Receiving r(static_cast<double>(l0) * 8 / 2.0);
  AdaptiveOptions a;
  a.deadline_s = 1;
  a.seed_bytes_per_s = static_cast<double>(l0) / 2.0;
  for (bool thread : {false, true}) {
    StreamReceiver::FetchOptions o;
    o.progress_thread = thread;
    AdaptiveReport report;
    const Status s = fetch_adaptive(r.receiver, r.info, r.kv.view(), o, a, report);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_LT(report.bytes, l0);
    EXPECT_GT(report.expected_loss, 0);
    expect_chunks_match(r.served, r.kv, report);
    for (const ChunkReport& c : report.chunks)
      EXPECT_LE(c.decided, c.landed) << c.chunk;
  }
}

// The chunks an engine callback was given, in order (it runs on the fetch's engine thread).
class CallLog {
 public:
  void add(std::uint32_t chunk) {
    std::lock_guard lock(mu_);
    calls_.push_back(chunk);
  }
  std::vector<std::uint32_t> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::uint32_t> calls_;
};

// Recomputes the chunks it is told to, fetches the rest at level 1.
class SplitPolicy final : public scheduler::Policy {
 public:
  explicit SplitPolicy(std::vector<bool> recompute, bool revokes = true)
      : recompute_(std::move(recompute)), revokes_(revokes) {}
  std::string name() const override { return "split"; }
  bool revokes_late_recomputes() const override { return revokes_; }
  scheduler::Decision decide(const scheduler::Situation& s) override {
    return {recompute_[s.next()] ? Choice::recomputed() : Choice::fetch(1), 0, 0};
  }

 private:
  std::vector<bool> recompute_;
  bool revokes_;
};

TEST(Adaptive, TheEngineRecomputesInOrderOnceTheChunksBeforeAreThere) {
  Receiving r;
  const KvBuffer lossless = r.served.expected(0);
  SplitPolicy policy({true, false, true, false});
  CallLog log;
  AdaptiveOptions a;
  a.deadline_s = 30;
  a.policy = &policy;
  a.recompute_tokens_per_s = 1e6;
  a.recompute = [&](std::uint32_t chunk, std::uint32_t begin,
                    std::span<const std::int32_t> tokens) -> Status {
    // A chunk's recompute needs every chunk before it.
    EXPECT_TRUE(same_tokens(r.kv, r.served.expected(1), 32, 64) || chunk == 0) << chunk;
    EXPECT_EQ(tokens[0], r.info.tokens[begin]);
    const auto end = static_cast<std::uint32_t>(begin + tokens.size());
    for (std::uint32_t l = 0; l < lossless.layout().layers; ++l)
      for (KvPart p : {KvPart::key, KvPart::value})
        for (std::uint32_t t = begin; t < end; ++t)
          std::memcpy(r.kv.view().row(l, p, t), lossless.view().row(l, p, t),
                      lossless.layout().row_bytes());
    log.add(chunk);
    return Status::ok();
  };
  AdaptiveReport report;
  const Status s = fetch_adaptive(r.receiver, r.info, r.kv.view(), {}, a, report);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(log.calls(), (std::vector<std::uint32_t>{0, 2}));
  EXPECT_TRUE(same_tokens(r.kv, lossless, 0, 32));
  EXPECT_TRUE(same_tokens(r.kv, lossless, 64, 96));
  expect_chunks_match(r.served, r.kv, report);
  EXPECT_EQ(report.bytes, std::uint64_t{r.info.size(1, 1)} + r.info.size(3, 1));
  EXPECT_EQ(report.chunks[2].choice, Choice::recomputed());
  EXPECT_GE(report.chunks[2].ready, report.chunks[1].ready);
}

TEST(Adaptive, AQueuedRecomputeThatWouldBeLateIsFetchedInstead) {
  Receiving r;
  // Chunks 0, 1 and 3 to the engine, 0.3 s each and one at a time: chunk 3 would be ready at
  // 0.9 s, past the 0.75 s deadline, while the link could bring it at once.
  SplitPolicy policy({true, true, false, true});
  CallLog log;
  AdaptiveOptions a;
  a.deadline_s = 0.75;
  a.policy = &policy;
  a.recompute_tokens_per_s = 32 / 0.3;
  a.recompute = [&](std::uint32_t chunk, std::uint32_t, std::span<const std::int32_t>) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    log.add(chunk);
    return Status::ok();
  };
  AdaptiveReport report;
  ASSERT_TRUE(fetch_adaptive(r.receiver, r.info, r.kv.view(), {}, a, report).is_ok());
  EXPECT_EQ(log.calls(), (std::vector<std::uint32_t>{0, 1}));
  const ChunkReport& c3 = report.chunks[3];
  EXPECT_TRUE(c3.revoked_recompute);
  EXPECT_EQ(c3.choice, Choice::fetch(0));          // level 0 is in time: the least loss
  EXPECT_GE(c3.decided, report.chunks[2].landed);  // decided again once the link was measured
  EXPECT_FALSE(report.chunks[1].revoked_recompute);
  EXPECT_TRUE(report.met) << report.load_s;
  expect_chunks_match(r.served, r.kv, report);
  EXPECT_EQ(report.bytes, std::uint64_t{r.info.size(2, 1)} + r.info.size(3, 0));
}

TEST(Adaptive, AFailedRecomputeEndsTheFetchNamingTheChunk) {
  Receiving r;
  SplitPolicy policy({false, true, false, false});
  AdaptiveOptions a;
  a.policy = &policy;
  a.recompute_tokens_per_s = 1e6;
  a.recompute = [](std::uint32_t, std::uint32_t, std::span<const std::int32_t>) {
    return Status(Errc::resource_exhausted, "the engine is out of KV blocks");
  };
  AdaptiveReport report;
  const Status s = fetch_adaptive(r.receiver, r.info, r.kv.view(), {}, a, report);
  EXPECT_EQ(s.code(), Errc::resource_exhausted);
  EXPECT_NE(s.message().find("recompute of chunk 1"), std::string::npos) << s.message();
  EXPECT_FALSE(report.met);
}

TEST(Adaptive, RejectsLossesForAnotherNumberOfLevels) {
  Receiving r;
  AdaptiveOptions a;
  a.level_loss = {0, 1};  // the stream has 4 levels
  AdaptiveReport report;
  EXPECT_EQ(fetch_adaptive(r.receiver, r.info, r.kv.view(), {}, a, report).code(),
            Errc::invalid_argument);
  a.level_loss.clear();
  a.deadline_s = 0;
  EXPECT_EQ(fetch_adaptive(r.receiver, r.info, r.kv.view(), {}, a, report).code(),
            Errc::invalid_argument);
}

}  // namespace
}  // namespace kvstream::transport
