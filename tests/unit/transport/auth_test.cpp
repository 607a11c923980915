// Secrets and the handshake's MACs.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "auth.hpp"
#include "test_models.hpp"  // temp_dir

namespace kvstream::transport {
namespace {

std::filesystem::path write_secret(const std::string& name, const std::string& text,
                                   unsigned mode) {
  const auto p = kvstream::testing::temp_dir() / name;
  std::ofstream(p) << text;
  ::chmod(p.c_str(), mode);
  return p;
}

TEST(Secret, FromFileDropsOneTrailingNewline) {
  const auto s = Secret::from_file(write_secret("ok", "0123456789abcdef\n", 0600));
  ASSERT_TRUE(s.has_value()) << s.error().to_string();
  EXPECT_EQ(s->bytes().size(), 16u);
}

TEST(Secret, BadFilesAreRefusedWithTheReason) {
  const auto missing = Secret::from_file(kvstream::testing::temp_dir() / "nope");
  EXPECT_EQ(missing.error().code(), Errc::not_found);
  const auto open = Secret::from_file(write_secret("open", "0123456789abcdef", 0644));
  EXPECT_NE(open.error().message().find("readable by others (mode 644)"), std::string::npos)
      << open.error().message();
  const auto short_one = Secret::from_file(write_secret("short", "abc\n", 0600));
  EXPECT_NE(short_one.error().message().find("3 bytes; at least 16"), std::string::npos)
      << short_one.error().message();
}

TEST(Secret, FromEnvironment) {
  ::setenv("KVSTREAM_TEST_SECRET", "a secret of 24 bytes....", 1);
  EXPECT_TRUE(Secret::from_env("KVSTREAM_TEST_SECRET").has_value());
  ::unsetenv("KVSTREAM_TEST_SECRET");
  EXPECT_EQ(Secret::from_env("KVSTREAM_TEST_SECRET").error().code(), Errc::not_found);
}

Secret secret_of(const char* text) {
  return *Secret::from_bytes(std::as_bytes(std::span(text, std::strlen(text))));
}

TEST(Auth, MacsBindTheSecretBothNoncesAndTheDirection) {
  const Nonce a = *make_nonce(), b = *make_nonce();
  EXPECT_NE(a, b);
  const Secret s = secret_of("0123456789abcdef"), t = secret_of("0123456789abcdeF");
  const Mac m = client_mac(s, a, b);
  EXPECT_TRUE(same_mac(m, client_mac(s, a, b)));
  EXPECT_FALSE(same_mac(m, client_mac(t, a, b)));
  EXPECT_FALSE(same_mac(m, client_mac(s, b, a)));
  EXPECT_FALSE(same_mac(m, server_mac(s, a, b)));
  EXPECT_FALSE(same_mac(std::span(m).first(31), m));
}

std::string hex(const Mac& m) {
  std::string out;
  for (std::byte b : m) {
    static const char* digits = "0123456789abcdef";
    out += digits[static_cast<unsigned>(b) >> 4];
    out += digits[static_cast<unsigned>(b) & 15];
  }
  return out;
}

// Known answers from an independent implementation (Python's hmac module):
// hmac.new(b"kvstream test secret", b"kvstream/1 client" + bytes(64), hashlib.sha256).
TEST(Auth, MacsMatchAnIndependentHmacSha256) {
  const Secret s = secret_of("kvstream test secret");
  const Nonce zero{};
  EXPECT_EQ(hex(client_mac(s, zero, zero)),
            "f274279ed604800130802cf3c12b9a27a62899cdc6193d0b2a9a531b32b6e96f");
  EXPECT_EQ(hex(server_mac(s, zero, zero)),
            "a585b6505dc63aff3e45b7092b89c17538e0f42410a588ae02486eec093fa8f1");
}

}  // namespace
}  // namespace kvstream::transport
