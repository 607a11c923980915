// The control plane's shared-secret authentication: HMAC-SHA256 challenge/response, both ways.
//
//   server -> client  hello    server nonce (32 random bytes)
//   client -> server  auth     client nonce, HMAC(secret, "kvstream/1 client" | sn | cn)
//   server -> client  auth_ok  HMAC(secret, "kvstream/1 server" | cn | sn)
//
// The server answers nothing else before `auth` checks out, so a client without the secret
// learns nothing (KV caches hold users' prompts); the client checks auth_ok before it sends a
// request, so it talks to no impostor. Fresh nonces on both sides make every MAC single-use.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream::transport {

inline constexpr std::size_t kNonceSize = 32, kMacSize = 32;
inline constexpr std::size_t kMinSecretSize = 16;
using Nonce = std::array<std::byte, kNonceSize>;
using Mac = std::array<std::byte, kMacSize>;

// A shared secret; its bytes never appear in messages or logs.
class Secret {
 public:
  // From a file: its bytes less one trailing newline. Refused when missing, shorter than
  // kMinSecretSize, or readable by group or others (as ssh refuses such keys).
  static Expected<Secret> from_file(const std::filesystem::path& path);
  // From an environment variable, same length rule.
  static Expected<Secret> from_env(const char* name);
  // Tests only: a secret from bytes.
  static Expected<Secret> from_bytes(std::span<const std::byte> bytes);

  std::span<const std::byte> bytes() const noexcept { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

// 32 bytes from OpenSSL's CSPRNG.
Expected<Nonce> make_nonce();

Mac client_mac(const Secret& secret, const Nonce& server, const Nonce& client);
Mac server_mac(const Secret& secret, const Nonce& server, const Nonce& client);

// Constant-time comparison (CRYPTO_memcmp).
bool same_mac(std::span<const std::byte> a, const Mac& b) noexcept;

}  // namespace kvstream::transport
