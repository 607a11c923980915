#include "test_models.hpp"

#include <fmt/format.h>
#include <fmt/std.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace kvstream::testing {

namespace {
const runner::Model& load_or_die(const char* file) {
  const auto path = runner::models_dir() / file;
  auto model = runner::Model::load(path);
  if (!model) {
    fmt::print(stderr, "cannot load test model {}: {} (set KVSTREAM_MODELS)\n", path,
               model.error().to_string());
    std::abort();
  }
  return *new runner::Model(std::move(*model));  // lives for the whole test binary
}
}  // namespace

const runner::Model& stories260k() {
  static const runner::Model& m = load_or_die("stories260K.bin");
  return m;
}

const runner::Model& pydoc_bytelm() {
  static const runner::Model& m = load_or_die("pydoc-bytelm.bin");
  return m;
}

std::filesystem::path temp_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / fmt::format("kvstream-test-{}", getpid());
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(
          std::filesystem::temp_directory_path() / fmt::format("kvstream-test-{}", getpid()), ec);
    });
    return d;
  }();
  return dir;
}

}  // namespace kvstream::testing
