#pragma once
// A fresh, empty database per test on the cluster scripts/test started
// (LABELBROKER_TEST_DATABASE_URL). Dropped again when the object goes away. A missing URL fails
// the test: database tests never pass by skipping.
#include <string>

namespace labelbroker::testing {

// The admin URL from LABELBROKER_TEST_DATABASE_URL; fails the current test if unset.
std::string test_database_url();

// Replaces the database name in a postgresql:// URL.
std::string with_database_name(const std::string& url, const std::string& name);

class ScratchDatabase {
 public:
  ScratchDatabase();
  ~ScratchDatabase();
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

}  // namespace labelbroker::testing
