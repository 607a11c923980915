#include "runner/runner.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "runner/model_shaped.hpp"
#include "runner/sampling.hpp"
#include "test_models.hpp"

namespace kvstream::runner {
namespace {

using kvstream::testing::pydoc_bytelm;
using kvstream::testing::stories260k;

std::vector<std::int32_t> greedy(Runner& r, std::vector<std::int32_t> prompt, std::size_t count) {
  r.reset();
  std::vector<std::int32_t> out;
  std::int32_t next = 0;
  for (std::int32_t t : prompt)
    next = argmax(*r.step(t));
  for (std::size_t i = 0; i < count; ++i) {
    out.push_back(next);
    next = argmax(*r.step(next));
  }
  return out;
}

TEST(Runner, StoriesGreedyFromBosMatchesReference) {
  // ../shared/models/README.md: the first 40 greedy ids from BOS at position 0.
  const std::vector<std::int32_t> expected = {461, 461, 401, 401, 401, 461, 378, 455, 473, 456,
                                              435, 299, 362, 409, 283, 264, 283, 452, 288, 13,
                                              431, 431, 431, 431, 431, 431, 431, 431, 431, 431,
                                              431, 431, 431, 293, 430, 417, 363, 416, 315, 342};
  Runner r(stories260k());
  EXPECT_EQ(greedy(r, {kBosToken}, 40), expected);
}

TEST(Runner, PydocGreedyContinuationMatchesReference) {
  const std::string prompt = "onding method on";
  const std::string expected = " the standard library an";
  Runner r(pydoc_bytelm());
  const auto out =
      greedy(r, std::vector<std::int32_t>(prompt.begin(), prompt.end()), expected.size());
  EXPECT_EQ(std::string(out.begin(), out.end()), expected);
}

std::vector<std::int32_t> sample(const Model& m, std::uint32_t length, std::uint64_t stream) {
  Runner r(m);
  Sampler s(11, stream, 1.0f, 0.9f);
  return *sample_context(r, s, length);
}

// All logits of a sequence run in one pass.
std::vector<float> logits_at_once(const Model& m, const std::vector<std::int32_t>& tokens) {
  Runner r(m);
  std::vector<float> all;
  for (std::int32_t t : tokens) {
    const auto l = *r.step(t);
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

class CaptureContinue : public ::testing::TestWithParam<int> {};

TEST_P(CaptureContinue, TwoPartsGiveTheSameLogitsAsOnePass) {
  const Model& m = GetParam() == 0 ? stories260k() : pydoc_bytelm();
  const auto tokens = sample(m, 96, 3);
  const std::uint32_t split = 40;
  const auto whole = logits_at_once(m, tokens);
  const std::size_t vocab = m.config().vocab;
  const std::vector<float> tail(whole.begin() + split * vocab, whole.end());

  // Contiguous fp32 capture.
  Runner a(m);
  auto kv = KvBuffer::create(m.kv_layout(split, DType::f32));
  ASSERT_TRUE(kv);
  ASSERT_TRUE(capture_kv(a, std::span(tokens).first(split), kv->view()).is_ok());
  Runner b(m);
  auto cont = continue_from(b, kv->view(), split, std::span(tokens).subspan(split));
  ASSERT_TRUE(cont) << cont.error().to_string();
  EXPECT_EQ(*cont, tail);  // bit-identical: same arithmetic in the same order

  // Paged fp32 capture, blocks out of order.
  const std::vector<std::uint32_t> table = {4, 1, 3, 0, 2};
  auto paged = PagedKvBuffer::create(m.kv_layout(split, DType::f32), 8, 5, table);
  ASSERT_TRUE(paged);
  ASSERT_TRUE(capture_kv(a, std::span(tokens).first(split), paged->view()).is_ok());
  auto cont_paged = continue_from(b, paged->view(), split, std::span(tokens).subspan(split));
  ASSERT_TRUE(cont_paged);
  EXPECT_EQ(*cont_paged, tail);
}

INSTANTIATE_TEST_SUITE_P(Models, CaptureContinue, ::testing::Values(0, 1));

TEST(Runner, Fp16CacheChangesLogitsOnlySlightly) {
  const Model& m = stories260k();
  const auto tokens = sample(m, 64, 5);
  const std::uint32_t split = 32;
  const std::size_t vocab = m.config().vocab;
  const auto whole = logits_at_once(m, tokens);
  Runner r(m);
  auto kv = KvBuffer::create(m.kv_layout(split, DType::f16));
  ASSERT_TRUE(capture_kv(r, std::span(tokens).first(split), kv->view()).is_ok());
  auto cont = continue_from(r, kv->view(), split, std::span(tokens).subspan(split));
  ASSERT_TRUE(cont);
  double max_diff = 0.0;
  int same_top1 = 0;
  for (std::size_t t = 0; t < tokens.size() - split; ++t) {
    const std::span<const float> got(cont->data() + t * vocab, vocab);
    const std::span<const float> want(whole.data() + (split + t) * vocab, vocab);
    for (std::size_t i = 0; i < vocab; ++i) {
      max_diff = std::max(max_diff, std::abs(double{got[i]} - want[i]));
    }
    same_top1 += argmax(got) == argmax(want);
  }
  // fp16 rounding reaches the logits (stories260K is very sensitive to KV noise: logits move
  // by up to ~0.08 of their range of ~20) but does not change what the model predicts.
  EXPECT_GT(max_diff, 0.0);
  EXPECT_LT(max_diff, 0.25);
  EXPECT_GE(same_top1, static_cast<int>(tokens.size() - split) - 1);
}

TEST(Runner, RecomputeReproducesCapturedKv) {
  const Model& m = pydoc_bytelm();
  const auto tokens = sample(m, 80, 9);
  Runner r(m);
  auto full = KvBuffer::create(m.kv_layout(80, DType::f32));
  ASSERT_TRUE(capture_kv(r, tokens, full->view()).is_ok());

  // Keep the KV of tokens [0, 48) and recompute [48, 80) into a paged cache.
  std::vector<std::uint32_t> table(10);
  std::iota(table.rbegin(), table.rend(), 0u);
  auto paged = PagedKvBuffer::create(m.kv_layout(80, DType::f32), 8, 10, table);
  ASSERT_TRUE(copy_tokens(full->view(), 0, paged->view(), 0, 48).is_ok());
  Runner fresh(m);
  ASSERT_TRUE(recompute_kv(fresh, paged->view(), 48, std::span(tokens).subspan(48)).is_ok());

  auto back = KvBuffer::create(m.kv_layout(80, DType::f32));
  ASSERT_TRUE(copy_kv(paged->view(), back->view()).is_ok());
  EXPECT_TRUE(std::equal(back->bytes().begin(), back->bytes().end(), full->bytes().begin()));
}

TEST(Runner, RejectsBadTokensPositionsAndRanges) {
  const Model& m = stories260k();
  Runner r(m);
  EXPECT_EQ(r.step(-1).status().code(), Errc::out_of_range);
  EXPECT_EQ(r.step(512).status().code(), Errc::out_of_range);
  EXPECT_EQ(r.length(), 0u);  // a rejected token leaves the state as it was

  auto kv = KvBuffer::create(m.kv_layout(8, DType::f16));
  EXPECT_EQ(r.load_kv(kv->view(), 9).code(), Errc::out_of_range);
  EXPECT_EQ(r.store_kv(0, 1, kv->view(), 0).code(), Errc::out_of_range);  // nothing computed

  auto wrong_shape = KvBuffer::create(KvLayout{5, 4, 16, DType::f16, 8});
  EXPECT_EQ(r.load_kv(wrong_shape->view(), 4).code(), Errc::invalid_argument);

  const std::vector<std::int32_t> too_many(9, 1);
  EXPECT_EQ(capture_kv(r, too_many, kv->view()).code(), Errc::out_of_range);

  for (std::uint32_t i = 0; i < m.config().seq_len; ++i)
    ASSERT_TRUE(r.step(1));
  EXPECT_EQ(r.step(1).status().code(), Errc::out_of_range);  // past seq_len
}

TEST(Sampler, SameSeedAndStreamGiveTheSameContext) {
  const Model& m = stories260k();
  EXPECT_EQ(sample(m, 50, 1), sample(m, 50, 1));
  EXPECT_NE(sample(m, 50, 1), sample(m, 50, 2));
  const auto s = sample(m, 50, 1);
  EXPECT_EQ(s.front(), kBosToken);
  EXPECT_EQ(s.size(), 50u);
}

TEST(Sampler, TopPKeepsTheNucleusOnly) {
  // Probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.7 keeps the first two tokens.
  const std::vector<float> logits = {std::log(0.3f), std::log(0.05f), std::log(0.5f),
                                     std::log(0.15f)};
  Sampler s(1, 0, 1.0f, 0.7f);
  std::vector<int> seen(4, 0);
  for (int i = 0; i < 4000; ++i)
    ++seen[static_cast<std::size_t>(s.sample(logits))];
  EXPECT_EQ(seen[1], 0);
  EXPECT_EQ(seen[3], 0);
  EXPECT_NEAR(seen[2] / 4000.0, 0.5 / 0.8, 0.03);
  EXPECT_NEAR(seen[0] / 4000.0, 0.3 / 0.8, 0.03);
  Sampler greedy_sampler(1, 0, 0.0f, 0.9f);
  EXPECT_EQ(greedy_sampler.sample(logits), 2);
}

// kvstream perf builds its stream from one sampled cache: a shorter model-shaped cache must be
// the longer one's first tokens, and past the contexts' length the tokens repeat.
TEST(ModelShaped, ShorterCachesArePrefixesAndLongOnesRepeat) {
  const Model& m = stories260k();
  const KvLayout wide{3, 2, 40, DType::f16, 600};  // rows of 80 values: 2.5 of stories' 32
  KvLayout short_shape = wide;
  short_shape.tokens = 40;
  const auto long_kv = model_shaped_kv(m, wide, 2, 7);
  const auto short_kv = model_shaped_kv(m, short_shape, 2, 7);
  ASSERT_TRUE(long_kv.has_value()) << long_kv.error().to_string();
  ASSERT_TRUE(short_kv.has_value()) << short_kv.error().to_string();
  const std::size_t row = wide.row_bytes();
  const std::uint32_t length = m.config().seq_len;
  ASSERT_LT(length, wide.tokens);
  for (std::uint32_t l = 0; l < wide.layers; ++l) {
    for (KvPart p : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = 0; t < short_shape.tokens; ++t)
        ASSERT_EQ(std::memcmp(long_kv->view().row(l, p, t), short_kv->view().row(l, p, t), row), 0)
            << l << " " << t;
      for (std::uint32_t t = length; t < wide.tokens; ++t)
        ASSERT_EQ(
            std::memcmp(long_kv->view().row(l, p, t), long_kv->view().row(l, p, t - length), row),
            0)
            << l << " " << t;
    }
  }
  EXPECT_EQ(model_shaped_kv(m, wide, 0, 7).error().code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace kvstream::runner
