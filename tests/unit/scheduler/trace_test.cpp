#include "trace.hpp"

#include <gtest/gtest.h>

namespace kvstream::scheduler {
namespace {

TEST(Trace, ParsesSegmentsAndComments) {
  const auto t = Trace::parse("# a step down\n0 5\n\n  2.5   0.5  # from here\n");
  ASSERT_TRUE(t) << t.error().to_string();
  ASSERT_EQ(t->segments().size(), 2u);
  EXPECT_DOUBLE_EQ(t->rate_at(1), 5 * kBytesPerGbit);
  EXPECT_DOUBLE_EQ(t->rate_at(2.5), 0.5 * kBytesPerGbit);
  EXPECT_DOUBLE_EQ(t->rate_at(100), 0.5 * kBytesPerGbit);
  const auto again = Trace::parse(t->to_text());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->segments().size(), 2u);
}

TEST(Trace, RejectsMalformedLinesByNumber) {
  const auto check = [](const char* text, const char* says) {
    const auto t = Trace::parse(text);
    ASSERT_FALSE(t) << text;
    EXPECT_EQ(t.error().code(), Errc::invalid_argument);
    EXPECT_NE(t.error().message().find(says), std::string::npos) << t.error().message();
  };
  check("", "no segments");
  check("1 5\n", "start at 0");
  check("0 5\n0 4\n", "line 2");
  check("0 5\n1 0\n", "not positive");
  check("0 fast\n", "'fast'");
  check("0 5 6\n", "3 fields");
  check("0 nan\n", "not a number");
}

TEST(Trace, FinishIntegratesAcrossRateChanges) {
  const Trace t = Trace::step(8, 0.8, 1);  // 1e9 B/s, then 1e8 B/s from 1 s
  EXPECT_DOUBLE_EQ(t.finish(0, 5e8), 0.5);
  // From 0.5 s: 5e8 bytes by 1 s, the other 5e8 at 1e8 B/s take 5 s.
  EXPECT_DOUBLE_EQ(t.finish(0.5, 1e9), 6);
  EXPECT_DOUBLE_EQ(t.mean_rate(0, 2), (1e9 + 1e8) / 2);
}

TEST(Trace, UniformDrawsAreReproducibleAndInRange) {
  const Trace a = Trace::uniform(0.1, 10, 0.05, 2, 7), b = Trace::uniform(0.1, 10, 0.05, 2, 7);
  const Trace c = Trace::uniform(0.1, 10, 0.05, 2, 8);
  ASSERT_EQ(a.segments().size(), 40u);
  bool differs = false;
  for (std::size_t i = 0; i < a.segments().size(); ++i) {
    EXPECT_EQ(a.segments()[i].bytes_per_s, b.segments()[i].bytes_per_s);
    EXPECT_GE(a.segments()[i].bytes_per_s, 0.1 * kBytesPerGbit);
    EXPECT_LE(a.segments()[i].bytes_per_s, 10 * kBytesPerGbit);
    differs |= a.segments()[i].bytes_per_s != c.segments()[i].bytes_per_s;
  }
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace kvstream::scheduler
