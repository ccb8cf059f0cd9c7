#include "datasets/file_cache.hpp"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.hpp"

namespace labelbroker::datasets {
namespace {

class FileWriter final : public FileCache::Writer {
 public:
  FileWriter(std::string final_path, std::FILE* file, std::string temp_path)
      : final_(std::move(final_path)), temp_(std::move(temp_path)), file_(file) {}
  ~FileWriter() override {
    if (file_) {
      std::fclose(file_);
      std::remove(temp_.c_str());
    }
  }
  void line(std::string_view text) override {
    if (!file_) return;
    if (std::fwrite(text.data(), 1, text.size(), file_) != text.size() || std::fputc('\n', file_) == EOF) abandon();
  }
  void append(std::string_view bytes) override {
    if (!file_) return;
    if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) abandon();
  }
  void finish() override {
    if (!file_) return;
    const bool ok = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!ok || std::rename(temp_.c_str(), final_.c_str()) != 0) {
      std::remove(temp_.c_str());
      common::log::warn("dataset file cache: could not keep a built version", {{"path", final_}});
    }
  }

 private:
  void abandon() {
    common::log::warn("dataset file cache: write failed; serving from the database",
                      {{"path", temp_}, {"error", std::strerror(errno)}});
    std::fclose(file_);
    file_ = nullptr;
    std::remove(temp_.c_str());
  }
  std::string final_, temp_;
  std::FILE* file_;
};

class FileBody final : public http::BodySource {
 public:
  FileBody(int fd, std::uint64_t from, std::uint64_t to) : fd_(fd), position_(from), to_(to), length_(to - from) {}
  ~FileBody() override { ::close(fd_); }
  std::uint64_t length() const override { return length_; }
  bool next(std::string& out, std::size_t max_bytes) override {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(max_bytes, to_ - position_));
    const auto start = out.size();
    out.resize(start + want);
    std::size_t got = 0;
    while (got < want) {
      const auto n = ::pread(fd_, out.data() + start + got, want - got, static_cast<off_t>(position_ + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error("dataset file ended early or could not be read");
      got += static_cast<std::size_t>(n);
    }
    position_ += want;
    return position_ < to_;
  }

 private:
  int fd_;
  std::uint64_t position_, to_, length_;
};

}  // namespace

FileCache::FileCache(std::string dir) : dir_(std::move(dir)) {
  if (dir_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    common::log::warn("dataset file cache disabled: cannot create its directory", {{"dir", dir_}, {"error", ec.message()}});
    dir_.clear();
  }
}

std::string FileCache::path(const std::string& version_id) const { return dir_ + "/" + version_id + ".jsonl"; }

std::unique_ptr<FileCache::Writer> FileCache::start(const std::string& version_id) const {
  if (!enabled()) return nullptr;
  const auto final_path = path(version_id);
  // Unique per writer: two downloads of one version may fill the cache at once (the last rename
  // wins, with the same bytes).
  static std::atomic<std::uint64_t> writers{0};
  const auto temp_path = final_path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(++writers);
  std::FILE* file = std::fopen(temp_path.c_str(), "wb");
  if (!file) return nullptr;
  return std::make_unique<FileWriter>(final_path, file, temp_path);
}

std::shared_ptr<http::BodySource> FileCache::open(const std::string& version_id, std::uint64_t bytes,
                                                  std::uint64_t from, std::uint64_t to) const {
  if (!enabled()) return nullptr;
  const int fd = ::open(path(version_id).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) != bytes) {
    ::close(fd);
    return nullptr;
  }
  return std::make_shared<FileBody>(fd, from, to);
}

}  // namespace labelbroker::datasets
