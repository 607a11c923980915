// HMAC-SHA256 through OpenSSL's libcrypto; secrets from files or the environment.
#include "auth.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

namespace kvstream::transport {

namespace {

Expected<Secret> checked(std::vector<std::byte> bytes, const std::string& where) {
  if (bytes.size() < kMinSecretSize) {
    return Status(Errc::invalid_argument,
                  fmt::format("secret from {} has {} bytes; at least {} are needed", where,
                              bytes.size(), kMinSecretSize));
  }
  return Secret::from_bytes(bytes);
}

Mac mac_of(const Secret& secret, const char* label, const Nonce& a, const Nonce& b) {
  std::vector<unsigned char> msg(std::strlen(label) + 2 * kNonceSize);
  std::memcpy(msg.data(), label, std::strlen(label));
  std::memcpy(msg.data() + std::strlen(label), a.data(), kNonceSize);
  std::memcpy(msg.data() + std::strlen(label) + kNonceSize, b.data(), kNonceSize);
  Mac out{};
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.bytes().data(), static_cast<int>(secret.bytes().size()), msg.data(),
       msg.size(), reinterpret_cast<unsigned char*>(out.data()), &length);
  return out;
}

}  // namespace

Expected<Secret> Secret::from_bytes(std::span<const std::byte> bytes) {
  Secret s;
  s.bytes_.assign(bytes.begin(), bytes.end());
  return s;
}

Expected<Secret> Secret::from_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status(Errc::not_found,
                  fmt::format("secret file {}: {}", path.string(), std::strerror(errno)));
  }
  if ((st.st_mode & 077) != 0) {
    return Status(Errc::invalid_argument,
                  fmt::format("secret file {} is readable by others (mode {:o}); chmod 600 it",
                              path.string(), st.st_mode & 0777));
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status(Errc::io_error, fmt::format("cannot read secret file {}", path.string()));
  std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (!raw.empty() && raw.back() == '\n') raw.pop_back();
  std::vector<std::byte> bytes(raw.size());
  std::memcpy(bytes.data(), raw.data(), raw.size());
  return checked(std::move(bytes), "file " + path.string());
}

Expected<Secret> Secret::from_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) {
    return Status(Errc::not_found, fmt::format("environment variable {} is not set", name));
  }
  std::vector<std::byte> bytes(std::strlen(value));
  std::memcpy(bytes.data(), value, bytes.size());
  return checked(std::move(bytes), fmt::format("environment variable {}", name));
}

Expected<Nonce> make_nonce() {
  Nonce n{};
  if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), kNonceSize) != 1) {
    return Status(Errc::internal, "RAND_bytes failed: no randomness for a nonce");
  }
  return n;
}

Mac client_mac(const Secret& secret, const Nonce& server, const Nonce& client) {
  return mac_of(secret, "kvstream/1 client", server, client);
}

Mac server_mac(const Secret& secret, const Nonce& server, const Nonce& client) {
  return mac_of(secret, "kvstream/1 server", client, server);
}

bool same_mac(std::span<const std::byte> a, const Mac& b) noexcept {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), b.size()) == 0;
}

}  // namespace kvstream::transport
