#pragma once
// Test helper: a fresh directory under the system temp dir, removed with its contents on
// destruction. Names are unique per process and per instance.
#include <atomic>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

namespace kiln::testing {

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix = "kiln_test") {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace kiln::testing
