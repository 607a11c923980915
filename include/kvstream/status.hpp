// The one error vocabulary of kvstream: every fallible call returns a Status or an Expected<T>.
// No exception crosses a kvstream API; a failure carries a code (what kind of failure, for
// programs) and a message (what exactly was wrong, for people).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace kvstream {

enum class Errc : std::uint8_t {
  ok = 0,
  invalid_argument,    // the caller passed something unusable
  out_of_range,        // an index, token or size outside what the object holds
  not_found,           // a file, context or model that does not exist
  io_error,            // the operating system refused a read or write
  corrupt_data,        // a file or bitstream that fails validation
  unsupported,         // a valid request this build or peer cannot serve
  timeout,             // a wait passed its deadline
  disconnected,        // the peer went away
  protocol_error,      // the peer sent something the protocol forbids
  auth_failed,         // the peer could not prove it knows the secret
  resource_exhausted,  // memory, slots or descriptors ran out
  internal,            // a broken invariant inside kvstream: a bug
};

constexpr std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::ok:
      return "ok";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::out_of_range:
      return "out_of_range";
    case Errc::not_found:
      return "not_found";
    case Errc::io_error:
      return "io_error";
    case Errc::corrupt_data:
      return "corrupt_data";
    case Errc::unsupported:
      return "unsupported";
    case Errc::timeout:
      return "timeout";
    case Errc::disconnected:
      return "disconnected";
    case Errc::protocol_error:
      return "protocol_error";
    case Errc::auth_failed:
      return "auth_failed";
    case Errc::resource_exhausted:
      return "resource_exhausted";
    case Errc::internal:
      return "internal";
  }
  return "unknown";
}

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() noexcept { return {}; }

  bool is_ok() const noexcept { return code_ == Errc::ok; }
  Errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // "corrupt_data: segment 3 checksum mismatch"; "ok" for success.
  std::string to_string() const {
    std::string out(errc_name(code_));
    if (!message_.empty()) {
      out += ": ";
      out += message_;
    }
    return out;
  }

  // Adds what the caller was doing in front of the message, keeping the code.
  Status with_context(std::string_view context) const {
    if (is_ok()) return *this;
    return Status(code_, std::string(context) + ": " + message_);
  }

  // Marks a status as deliberately unchecked; grep-able, unlike a cast to void.
  void ignore() const noexcept {}

 private:
  Errc code_ = Errc::ok;
  std::string message_;
};

namespace detail {
[[noreturn]] inline void die_on_bad_access(const Status& s) noexcept {
  // Reading the value of a failed Expected is a bug in the caller, never an input error:
  // stop loudly rather than return garbage.
  std::fprintf(stderr, "kvstream: value() called on an error Expected (%s)\n",
               s.to_string().c_str());
  std::abort();
}
}  // namespace detail

template <typename T>
class [[nodiscard]] Expected {
  static_assert(!std::is_same_v<T, Status>, "use Status for operations without a value");
  static_assert(!std::is_reference_v<T>, "Expected holds values");

 public:
  Expected(T value) : data_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Expected(Status error) : data_(std::in_place_index<1>, std::move(error)) {  // NOLINT: implicit
    if (std::get<1>(data_).is_ok()) {
      data_.template emplace<1>(Errc::internal, "Expected built from an ok Status");
    }
  }

  bool has_value() const noexcept { return data_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & {
    check();
    return std::get<0>(data_);
  }
  const T& value() const& {
    check();
    return std::get<0>(data_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(data_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // The failure; an ok Status when there is a value.
  Status status() const { return has_value() ? Status::ok() : std::get<1>(data_); }
  const Status& error() const& {
    if (has_value()) detail::die_on_bad_access(Status(Errc::internal, "error() on a value"));
    return std::get<1>(data_);
  }

  template <typename U>
  T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(data_) : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  void check() const {
    if (!has_value()) detail::die_on_bad_access(std::get<1>(data_));
  }
  std::variant<T, Status> data_;
};

}  // namespace kvstream

// Propagation helpers: return the failure to the caller, keeping its code and message.
#define KVS_CONCAT_INNER(a, b) a##b
#define KVS_CONCAT(a, b) KVS_CONCAT_INNER(a, b)

// __COUNTER__ keeps the temporaries distinct when these nest (a lambda inside an argument).
#define KVS_RETURN_IF_ERROR(expr) \
  KVS_RETURN_IF_ERROR_IMPL(KVS_CONCAT(kvs_status_, __COUNTER__), expr)
#define KVS_RETURN_IF_ERROR_IMPL(tmp, expr) \
  do {                                      \
    ::kvstream::Status tmp = (expr);        \
    if (!tmp.is_ok()) return tmp;           \
  } while (0)

#define KVS_ASSIGN_OR_RETURN(lhs, expr) \
  KVS_ASSIGN_OR_RETURN_IMPL(KVS_CONCAT(kvs_expected_, __COUNTER__), lhs, expr)
#define KVS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.has_value()) return tmp.error();       \
  lhs = std::move(tmp).value()
