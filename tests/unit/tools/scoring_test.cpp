#include "runner/scoring.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "runner/sampling.hpp"
#include "test_models.hpp"

namespace kvstream::runner {
namespace {

using kvstream::testing::stories260k;
using kvstream::testing::temp_dir;

std::string write_text(const std::string& name, const std::string& text) {
  const auto p = temp_dir() / name;
  std::ofstream(p) << text;
  return p.string();
}

std::vector<std::vector<std::int32_t>> sampled(std::size_t n, std::uint32_t length) {
  return *sample_contexts(stories260k(), n, SampleOptions{length, 21}, 2);
}

TEST(LogProb, MatchesDirectComputation) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f};
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(log_prob(logits, 1), 2.0 - std::log(z), 1e-12);
  // Large logits do not overflow.
  const std::vector<float> big = {1000.0f, 1000.0f};
  EXPECT_NEAR(log_prob(big, 0), std::log(0.5), 1e-12);
}

TEST(ScoreContinuation, ScoresTokensAfterCtxPlusOne) {
  const auto ctxs = sampled(1, 40);
  Runner r(stories260k());
  auto kv = KvBuffer::create(stories260k().kv_layout(30, DType::f32));
  ASSERT_TRUE(capture_kv(r, std::span(ctxs[0]).first(30), kv->view()).is_ok());
  auto s = score_continuation(r, kv->view(), ctxs[0], 30);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->predicted, 9u);  // tokens 31..39
  EXPECT_GT(s->nll_sum, 0.0);

  // The same NLL computed by hand from a single pass over the whole context.
  Runner one(stories260k());
  double nll = 0.0;
  for (std::size_t p = 0; p + 1 < ctxs[0].size(); ++p) {
    const auto logits = *one.step(ctxs[0][p]);
    if (p >= 30) nll -= log_prob(logits, ctxs[0][p + 1]);
  }
  EXPECT_DOUBLE_EQ(s->nll_sum, nll);

  EXPECT_EQ(score_continuation(r, kv->view(), std::span(ctxs[0]).first(31), 30).status().code(),
            Errc::invalid_argument);
}

TEST(ScoreContexts, IndependentOfThreadCountAndLayout) {
  const auto ctxs = sampled(6, 64);
  auto one = score_contexts(stories260k(), ctxs, 48, KvFormat{}, 1);
  auto three = score_contexts(stories260k(), ctxs, 48, KvFormat{}, 3);
  auto paged = score_contexts(stories260k(), ctxs, 48, KvFormat{DType::f32, 16}, 2);
  ASSERT_TRUE(one && three && paged);
  EXPECT_EQ(one->predicted, 6u * 15);
  EXPECT_EQ(one->nll_sum, three->nll_sum);
  EXPECT_EQ(one->nll_sum, paged->nll_sum);
  EXPECT_NEAR(one->ppl(), std::exp(one->nll_sum / 90.0), 1e-12);

  auto half = score_contexts(stories260k(), ctxs, 48, KvFormat{DType::f16, 0}, 2);
  ASSERT_TRUE(half);
  EXPECT_NE(half->nll_sum, one->nll_sum);
  EXPECT_NEAR(half->ppl() / one->ppl(), 1.0, 0.01);
}

TEST(ScoreContexts, ShortContextIsAnErrorNamingIt) {
  auto ctxs = sampled(3, 64);
  ctxs[2].resize(49);
  auto s = score_contexts(stories260k(), ctxs, 48, KvFormat{}, 2);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::invalid_argument);
  EXPECT_NE(s.error().message().find("context 2"), std::string::npos) << s.error().message();
}

TEST(ScoreContexts, TokenOutsideVocabIsAnError) {
  auto ctxs = sampled(2, 64);
  ctxs[1][10] = 9999;
  auto s = score_contexts(stories260k(), ctxs, 48, KvFormat{}, 1);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Errc::out_of_range);
  EXPECT_NE(s.error().message().find("context 1"), std::string::npos);
}

TEST(TokenFile, ReadsContextsSkippingBlankLines) {
  auto c = read_token_file(write_text("ok.txt", "1 2 3\n\n4 5\r\n  6\t7 \n"));
  ASSERT_TRUE(c) << c.error().to_string();
  ASSERT_EQ(c->size(), 3u);
  EXPECT_EQ((*c)[0], (std::vector<std::int32_t>{1, 2, 3}));
  EXPECT_EQ((*c)[1], (std::vector<std::int32_t>{4, 5}));
  EXPECT_EQ((*c)[2], (std::vector<std::int32_t>{6, 7}));
}

TEST(TokenFile, ErrorsNameFileLineAndText) {
  auto bad = read_token_file(write_text("bad.txt", "1 2 3\n4 x5 6\n"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Errc::corrupt_data);
  EXPECT_NE(bad.error().message().find("bad.txt:2: 'x5'"), std::string::npos)
      << bad.error().message();
  EXPECT_EQ(read_token_file(write_text("neg.txt", "1 -2\n")).status().code(), Errc::corrupt_data);
  EXPECT_EQ(read_token_file(write_text("big.txt", "99999999999\n")).status().code(),
            Errc::corrupt_data);
  EXPECT_EQ(read_token_file(write_text("glued.txt", "12ab\n")).status().code(), Errc::corrupt_data);
  EXPECT_EQ(read_token_file(write_text("empty.txt", "\n\n")).status().code(), Errc::corrupt_data);
  EXPECT_EQ(read_token_file((temp_dir() / "missing.txt").string()).status().code(),
            Errc::not_found);
}

}  // namespace
}  // namespace kvstream::runner
