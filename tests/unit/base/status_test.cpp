#include "kvstream/status.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

namespace kvstream {
namespace {

TEST(Status, DefaultIsOk) {
  const Status s;
  EXPECT_TRUE(s.is_ok());
  EXPECT_EQ(s.code(), Errc::ok);
  EXPECT_EQ(s.to_string(), "ok");
}

TEST(Status, CarriesCodeAndMessage) {
  const Status s(Errc::corrupt_data, "segment 3 checksum mismatch");
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Errc::corrupt_data);
  EXPECT_EQ(s.message(), "segment 3 checksum mismatch");
  EXPECT_EQ(s.to_string(), "corrupt_data: segment 3 checksum mismatch");
}

TEST(Status, WithContextPrefixesMessageAndKeepsCode) {
  const Status s = Status(Errc::timeout, "no reply").with_context("chunk 7");
  EXPECT_EQ(s.code(), Errc::timeout);
  EXPECT_EQ(s.message(), "chunk 7: no reply");
  EXPECT_TRUE(Status::ok().with_context("anything").is_ok());
}

TEST(Status, EveryCodeHasADistinctName) {
  std::set<std::string_view> names;
  for (int c = 0; c <= static_cast<int>(Errc::internal); ++c) {
    const auto name = errc_name(static_cast<Errc>(c));
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(names.insert(name).second) << name;
  }
}

Expected<int> parse_positive(int v) {
  if (v <= 0) return Status(Errc::invalid_argument, "not positive");
  return v;
}

TEST(Expected, HoldsValue) {
  auto e = parse_positive(5);
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(static_cast<bool>(e));
  EXPECT_EQ(*e, 5);
  EXPECT_EQ(e.value_or(0), 5);
  EXPECT_TRUE(e.status().is_ok());
}

TEST(Expected, HoldsError) {
  auto e = parse_positive(-1);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Errc::invalid_argument);
  EXPECT_EQ(e.status().message(), "not positive");
  EXPECT_EQ(e.value_or(42), 42);
}

TEST(Expected, OkStatusIsNotAValueAndBecomesInternalError) {
  Expected<int> e = Status::ok();
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Errc::internal);
}

TEST(Expected, MoveOnlyValues) {
  Expected<std::unique_ptr<int>> e = std::make_unique<int>(7);
  ASSERT_TRUE(e);
  std::unique_ptr<int> p = std::move(e).value();
  EXPECT_EQ(*p, 7);
}

TEST(ExpectedDeathTest, ValueOfErrorAbortsNamingTheError) {
  auto e = parse_positive(0);
  EXPECT_DEATH((void)e.value(), "not positive");
}

Status chain(int v, int& out) {
  KVS_ASSIGN_OR_RETURN(out, parse_positive(v));
  KVS_RETURN_IF_ERROR(out > 100 ? Status(Errc::out_of_range, "too big") : Status::ok());
  return Status::ok();
}

TEST(Macros, PropagateFirstFailure) {
  int out = 0;
  EXPECT_TRUE(chain(3, out).is_ok());
  EXPECT_EQ(out, 3);
  EXPECT_EQ(chain(-3, out).code(), Errc::invalid_argument);
  EXPECT_EQ(chain(300, out).code(), Errc::out_of_range);
}

}  // namespace
}  // namespace kvstream
