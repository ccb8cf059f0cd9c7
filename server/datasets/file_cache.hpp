#pragma once
// Ready dataset versions' items.jsonl as local files, so that downloads read a file (from the
// page cache, at disk speed) instead of the database. A version never changes once ready, so a
// file written while it was built stays right; a download trusts a file only when it is there with
// exactly the manifest's byte count, and otherwise streams from the database. Each broker process
// has its own cache directory: a process that did not build a version fills its cache on the first
// whole download it serves from the database, keeping the file only if its SHA-256 is the
// manifest's.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http/request.hpp"

namespace labelbroker::datasets {

class FileCache {
 public:
  // dir: where the files go (created if missing); empty disables the cache.
  explicit FileCache(std::string dir);
  bool enabled() const { return !dir_.empty(); }
  const std::string& dir() const { return dir_; }

  // Receives a version's lines in order while it is built; finish() moves the complete file into
  // place. Dropped without finish(), it removes what it wrote.
  class Writer {
   public:
    virtual ~Writer() = default;
    virtual void line(std::string_view text) = 0;  // one line, without its newline
    virtual void append(std::string_view bytes) = 0;  // raw bytes, newlines included
    virtual void finish() = 0;
  };
  // nullptr when the cache is disabled or the file cannot be created (the build goes on without).
  std::unique_ptr<Writer> start(const std::string& version_id) const;

  // Bytes [from, to) of the version's file as a response body, if the file has `bytes` bytes.
  std::shared_ptr<http::BodySource> open(const std::string& version_id, std::uint64_t bytes, std::uint64_t from,
                                         std::uint64_t to) const;

 private:
  std::string path(const std::string& version_id) const;
  std::string dir_;
};

}  // namespace labelbroker::datasets
