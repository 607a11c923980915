// The real checkpoints the tests run on, loaded once per test binary from
// $KVSTREAM_MODELS (default ../shared/models beside the source tree).
#pragma once

#include <filesystem>
#include <string>

#include "runner/model.hpp"

namespace kvstream::testing {

// Aborts the test binary with a clear message when the checkpoint is missing or bad: the
// tests that need real data must not pass without it.
const runner::Model& stories260k();
const runner::Model& pydoc_bytelm();

// A fresh, empty folder under the system temp dir, removed at exit.
std::filesystem::path temp_dir();

}  // namespace kvstream::testing
