// brokerctl (#7) end to end: the real build/bin/brokerctl binary against the real API in-process
// (ApiFixture on a scratch database), and against small fake servers for what a healthy broker
// never does (a tampered manifest, a connection cut mid-body).
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "common/crypto.hpp"
#include "db/dataset_store.hpp"
#include "support/dataset_fixture.hpp"
#include "support/process.hpp"
#include "tools/brokerctl/brokerctl.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kBrokerctl =
    std::string(LABELBROKER_BINARY).substr(0, std::string(LABELBROKER_BINARY).rfind('/')) + "/brokerctl";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A fresh directory for one test's files.
std::string scratch_dir() {
  static std::atomic<int> n{0};
  auto dir = fs::temp_directory_path() / ("brokerctl-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

class Brokerctl : public DatasetFixture {
 public:
  RunResult ctl(std::vector<std::string> args, const std::string& key) {
    args.insert(args.begin(), kBrokerctl);
    return run_process(args, {{"LABELBROKER_URL", "http://127.0.0.1:" + std::to_string(port())},
                              {"LABELBROKER_API_KEY", key}});
  }
  // brokerctl run in this process against this API, writing to `out` and `err` (either of which
  // the test may then call a terminal).
  brokerctl::Context in_process(const std::string& key, std::ostringstream& out, std::ostringstream& err) {
    brokerctl::Context context;
    context.base_url = "http://127.0.0.1:" + std::to_string(port());
    context.api_key = key;
    context.out = &out;
    context.err = &err;
    return context;
  }
};

struct FileId {
  ino_t inode;
  std::int64_t mtime_ns;
  bool operator==(const FileId&) const = default;
};
FileId file_id(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return {st.st_ino, static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// A stand-in for the broker serving one dataset version "fake@1" with a manifest of our choosing.
// `cut_first` requests for the bytes send the headers and half the body, then drop the connection.
class FakeDatasetServer {
 public:
  FakeDatasetServer(std::string bytes, std::string manifest_sha, int cut_first)
      : bytes_(std::move(bytes)), manifest_sha_(std::move(manifest_sha)), cuts_left_(cut_first) {
    server_.router().add("GET", "/v1/datasets/fake/versions/1", [this](http::Request&) {
      json m = {{"name", "fake"},
                {"version", 1},
                {"status", "ready"},
                {"files", {{{"path", "items.jsonl"}, {"bytes", bytes_.size()}, {"sha256", manifest_sha_}, {"rows", 3}}}}};
      return http::Response::json(200, m.dump());
    });
    server_.router().add("GET", "/v1/datasets/fake/versions/1/items.jsonl", [this](http::Request& request) {
      ++requests;
      std::size_t first = 0, last = bytes_.size() - 1;
      int status = 200;
      if (auto range = request.header("Range")) {
        unsigned long long a = 0, b = 0;
        if (std::sscanf(std::string(*range).c_str(), "bytes=%llu-%llu", &a, &b) == 2) {
          first = a;
          last = std::min<std::size_t>(b, bytes_.size() - 1);
          status = 206;
        }
      }
      http::Response response;
      response.status = status;
      response.headers.set("Content-Type", "application/x-ndjson");
      if (status == 206)
        response.headers.set("Content-Range", "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
                                                  std::to_string(bytes_.size()));
      auto body = bytes_.substr(first, last - first + 1);
      if (cuts_left_-- > 0)
        response.source = std::make_shared<CutSource>(std::move(body));
      else
        response.body = std::move(body);
      return response;
    });
    server_.start();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }
  std::atomic<int> requests{0};

 private:
  // Half the body, then an error: the server cuts the connection short of Content-Length.
  class CutSource : public http::BodySource {
   public:
    explicit CutSource(std::string body) : body_(std::move(body)) {}
    std::uint64_t length() const override { return body_.size(); }
    bool next(std::string& out, std::size_t) override {
      if (sent_) throw std::runtime_error("connection cut for the test");
      out += body_.substr(0, body_.size() / 2);
      sent_ = true;
      return true;
    }

   private:
    std::string body_;
    bool sent_ = false;
  };

  std::string bytes_;
  std::string manifest_sha_;
  std::atomic<int> cuts_left_;
  TestServer server_;
};

RunResult ctl_at(const std::string& url, std::vector<std::string> args) {
  args.insert(args.begin(), kBrokerctl);
  return run_process(args, {{"LABELBROKER_URL", url}, {"LABELBROKER_API_KEY", "whatever"}});
}

}  // namespace

TEST_CASE("brokerctl: datasets create and pull, a second pull downloads nothing, versions keep their bytes",
          "[.db][brokerctl]") {
  Brokerctl api;
  const auto dir = scratch_dir();
  const auto one = api.completed_job(200, api.submitter, 300);

  // --wait polls until the builder (here: the test) has made the version ready.
  ChildProcess create({kBrokerctl, "datasets", "create", "train", "--jobs", one, "--min-confidence", "0.1",
                       "--include", "judgments", "--wait", "--timeout", "60"},
                      {{"LABELBROKER_URL", "http://127.0.0.1:" + std::to_string(api.port())},
                       {"LABELBROKER_API_KEY", api.submitter}});
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(create.running());  // still waiting: nothing built yet
  api.build_all();
  REQUIRE(create.wait(std::chrono::seconds(30)) == 0);
  CHECK(create.output() == "train@1\n");
  CHECK(create.errors().empty());  // no progress bar when stderr is not a terminal

  const auto m1 = api.manifest("train", "1");
  REQUIRE(m1["status"] == "ready");
  const std::string sha1 = m1["files"][0]["sha256"];
  const std::string file = dir + "/train.jsonl";

  auto first = api.ctl({"datasets", "pull", "train", "-o", file}, api.viewer);
  INFO(first.err);
  REQUIRE(first.exit_code == 0);
  CHECK(first.out.find("train@1") != std::string::npos);
  CHECK(first.err.empty());  // no progress bar off a terminal
  const auto v1_bytes = slurp(file);
  CHECK(v1_bytes.size() == m1["files"][0]["bytes"].get<std::size_t>());
  CHECK(common::sha256_hex(v1_bytes) == sha1);
  CHECK_FALSE(fs::exists(file + ".part"));
  const auto before = file_id(file);

  // The second pull finds the hash already there: no download, the file untouched.
  auto second = api.ctl({"datasets", "pull", "train@latest", "-o", file}, api.viewer);
  REQUIRE(second.exit_code == 0);
  CHECK(second.out.find("up to date") != std::string::npos);
  CHECK(file_id(file) == before);

  // Another job, a new version: v1 still serves the same bytes; latest moves to v2.
  const auto two = api.completed_job(50, api.submitter);
  auto created2 = api.ctl({"datasets", "create", "train", "--jobs", one + "," + two, "--min-confidence", "0.1",
                           "--include", "judgments"},
                          api.submitter);
  REQUIRE(created2.exit_code == 0);
  CHECK(created2.out == "train@2\n");
  // Not built yet: pulling that version is "not ready".
  CHECK(api.ctl({"datasets", "pull", "train@2", "-o", dir + "/v2.jsonl"}, api.viewer).exit_code == 3);
  api.build_all();
  const auto m2 = api.manifest("train", "2");
  CHECK(m2["files"][0]["sha256"] != sha1);

  REQUIRE(api.ctl({"datasets", "pull", "train@1", "-o", dir + "/again-v1.jsonl"}, api.viewer).exit_code == 0);
  CHECK(slurp(dir + "/again-v1.jsonl") == v1_bytes);
  CHECK(api.manifest("train", "1") == m1);

  // On a terminal, a progress bar on stderr (in-process, with stderr "a terminal").
  std::ostringstream out, err;
  auto context = api.in_process(api.viewer, out, err);
  context.err_is_tty = true;
  REQUIRE(brokerctl::run({"datasets", "pull", "train@2", "-o", dir + "/tty.jsonl"}, context) == 0);
  CHECK(err.str().find("\rtrain@2 [") != std::string::npos);
  CHECK(err.str().find("100%") != std::string::npos);
  CHECK(out.str().find("train@2") != std::string::npos);

  // The same destination, now for latest: replaced (by rename) with v2's verified bytes.
  auto latest = api.ctl({"datasets", "pull", "train", "-o", file}, api.viewer);
  REQUIRE(latest.exit_code == 0);
  CHECK(latest.out.find("train@2") != std::string::npos);
  CHECK(common::sha256_hex(slurp(file)) == m2["files"][0]["sha256"]);
  CHECK(slurp(file).substr(0, v1_bytes.size()) == v1_bytes);  // the second job's items follow the first's
  fs::remove_all(dir);
}

TEST_CASE("brokerctl: a partial download is resumed, a wrong one is removed with exit 4", "[.db][brokerctl]") {
  Brokerctl api;
  const auto dir = scratch_dir();
  // About 10 MB: more than one 8 MiB range request.
  const auto job = api.completed_job(2000, api.submitter, 5000);
  REQUIRE(api.ctl({"datasets", "create", "big", "--jobs", job}, api.submitter).exit_code == 0);
  api.build_all();
  const auto m = api.manifest("big", "1");
  const std::size_t size = m["files"][0]["bytes"];
  REQUIRE(size > 8 * 1024 * 1024);
  const std::string file = dir + "/big.jsonl";
  REQUIRE(api.ctl({"datasets", "pull", "big", "-o", dir + "/reference.jsonl"}, api.viewer).exit_code == 0);
  const auto bytes = slurp(dir + "/reference.jsonl");
  REQUIRE(common::sha256_hex(bytes) == m["files"][0]["sha256"]);

  SECTION("the first bytes are there: only the rest is fetched") {
    spit(file + ".part", bytes.substr(0, 3 * 1024 * 1024 + 17));
    auto r = api.ctl({"datasets", "pull", "big@1", "-o", file}, api.viewer);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.find("resuming big@1 at byte " + std::to_string(3 * 1024 * 1024 + 17)) != std::string::npos);
    CHECK(slurp(file) == bytes);
    CHECK_FALSE(fs::exists(file + ".part"));
  }
  SECTION("a .part longer than the file is started again") {
    spit(file + ".part", bytes + "trailing junk");
    REQUIRE(api.ctl({"datasets", "pull", "big@1", "-o", file}, api.viewer).exit_code == 0);
    CHECK(slurp(file) == bytes);
  }
  SECTION("garbage in the .part: checksum mismatch, exit 4, neither file left") {
    spit(file + ".part", std::string(1000, 'z'));
    auto r = api.ctl({"datasets", "pull", "big@1", "-o", file}, api.viewer);
    CHECK(r.exit_code == 4);
    CHECK(r.err.find("checksum mismatch") != std::string::npos);
    CHECK_FALSE(fs::exists(file));
    CHECK_FALSE(fs::exists(file + ".part"));
  }
  fs::remove_all(dir);
}

TEST_CASE("brokerctl: a tampered manifest is exit 4 with no file, a cut connection is retried", "[brokerctl][http]") {
  const auto dir = scratch_dir();
  std::string bytes;
  for (int i = 0; i < 3; ++i) bytes += "{\"item_id\":\"i-" + std::to_string(i) + "\",\"label\":\"a\"}\n";

  {
    FakeDatasetServer fake(bytes, common::sha256_hex(bytes + "tampered"), 0);
    auto r = ctl_at(fake.url(), {"datasets", "pull", "fake@1", "-o", dir + "/f.jsonl"});
    CHECK(r.exit_code == 4);
    CHECK(r.err.find("checksum mismatch") != std::string::npos);
    CHECK_FALSE(fs::exists(dir + "/f.jsonl"));
    CHECK_FALSE(fs::exists(dir + "/f.jsonl.part"));
  }
  {
    FakeDatasetServer fake(bytes, common::sha256_hex(bytes), 1);
    auto r = ctl_at(fake.url(), {"datasets", "pull", "fake@1", "-o", dir + "/f.jsonl"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(fake.requests >= 2);  // the cut one, then the retry
    CHECK(slurp(dir + "/f.jsonl") == bytes);
  }
  // Nobody listening: a network error.
  CHECK(ctl_at("http://127.0.0.1:" + std::to_string(free_port()), {"datasets", "pull", "x", "-o", dir + "/x"}).exit_code == 5);
  fs::remove_all(dir);
}

TEST_CASE("brokerctl: other teams, roles and bad input map to the documented exit codes", "[.db][brokerctl]") {
  Brokerctl api;
  const auto dir = scratch_dir();
  const auto job = api.completed_job(5, api.submitter);

  // A viewer can pull but not create.
  auto denied = api.ctl({"datasets", "create", "d", "--jobs", job}, api.viewer);
  CHECK(denied.exit_code == 6);
  CHECK(denied.err.find("403") != std::string::npos);
  REQUIRE(api.ctl({"datasets", "create", "d", "--jobs", job}, api.submitter).exit_code == 0);
  api.build_all();
  CHECK(api.ctl({"datasets", "pull", "d", "-o", dir + "/d.jsonl"}, api.viewer).exit_code == 0);
  // No key or a wrong key: 401.
  CHECK(api.ctl({"datasets", "pull", "d", "-o", dir + "/d2.jsonl"}, "").exit_code == 6);
  CHECK(api.ctl({"datasets", "pull", "d", "-o", dir + "/d2.jsonl"}, "lb_not-a-key").exit_code == 6);

  // Another team sees nothing: 404 with the server's detail, exit 5, no file.
  auto theirs = api.ctl({"datasets", "pull", "d", "-o", dir + "/theirs.jsonl"}, api.other_team);
  CHECK(theirs.exit_code == 5);
  CHECK(theirs.err.find("404") != std::string::npos);
  CHECK(theirs.err.find("\"d\"") != std::string::npos);
  CHECK_FALSE(fs::exists(dir + "/theirs.jsonl"));
  CHECK(api.ctl({"datasets", "pull", "nope@3", "-o", dir + "/n"}, api.viewer).exit_code == 5);
  CHECK(api.ctl({"datasets", "create", "d", "--jobs", job}, api.other_team).exit_code == 5);  // 422: not their job

  // The server refuses: min_confidence outside [0, 1] is a 422 with its pointer.
  auto bad = api.ctl({"datasets", "create", "d", "--jobs", job, "--min-confidence", "1.5"}, api.submitter);
  CHECK(bad.exit_code == 5);
  CHECK(bad.err.find("/min_confidence") != std::string::npos);

  // Waiting for a version nobody builds: exit 3 after --timeout.
  auto slow = api.ctl({"datasets", "create", "d", "--jobs", job, "--wait", "--timeout", "1"}, api.submitter);
  CHECK(slow.exit_code == 3);
  CHECK(slow.out == "");

  // Usage errors: exit 2 with the usage on stderr.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {},
           {"datasets"},
           {"frobnicate"},
           {"datasets", "frobnicate"},
           {"datasets", "pull", "d"},
           {"datasets", "pull", "-o", dir + "/x"},
           {"datasets", "pull", "d", "-o", dir + "/x", "--bogus"},
           {"datasets", "create", "d"},
           {"datasets", "create", "d", "--jobs", job, "--min-confidence", "high"},
           {"datasets", "create", "d", "--jobs", job, "--wait", "--timeout", "-1"},
           {"jobs", "submit"},
           {"jobs", "submit", dir + "/missing.json"},
           {"jobs", "status"},
           {"jobs", "results", job},
           {"vendors", "scores", "extra"}}) {
    auto r = api.ctl(args, api.submitter);
    INFO(json(args).dump());
    CHECK(r.exit_code == 2);
    CHECK_FALSE(r.err.empty());
  }
  // --help everywhere: exit 0, usage and the exit codes on stdout.
  for (const auto& args : std::vector<std::vector<std::string>>{{"--help"},
                                                                 {"jobs", "--help"},
                                                                 {"jobs", "submit", "--help"},
                                                                 {"jobs", "status", "--help"},
                                                                 {"jobs", "results", "--help"},
                                                                 {"jobs", "cancel", "--help"},
                                                                 {"datasets", "--help"},
                                                                 {"datasets", "create", "--help"},
                                                                 {"datasets", "pull", "--help"},
                                                                 {"vendors", "--help"},
                                                                 {"vendors", "scores", "--help"}}) {
    auto r = api.ctl(args, api.submitter);
    INFO(json(args).dump());
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("usage:") != std::string::npos);
    CHECK(r.out.find("6  authentication") != std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("brokerctl: jobs submit, status, results and cancel", "[.db][brokerctl]") {
  Brokerctl api;
  const auto dir = scratch_dir();
  spit(dir + "/job.json", Brokerctl::job_body(3).dump());

  auto submitted = api.ctl({"jobs", "submit", dir + "/job.json", "--idempotency-key", "ci-1"}, api.submitter);
  INFO(submitted.err);
  REQUIRE(submitted.exit_code == 0);
  const std::string id = submitted.out.substr(0, submitted.out.find('\n'));
  CHECK(api.text("SELECT status FROM jobs WHERE id = '" + id + "'") == "queued");
  // The same key and body: the same job.
  auto again = api.ctl({"jobs", "submit", dir + "/job.json", "--idempotency-key", "ci-1"}, api.submitter);
  CHECK(again.out == submitted.out);
  CHECK(api.count("SELECT count(*) FROM jobs") == 1);

  auto status = api.ctl({"jobs", "status", id}, api.viewer);
  REQUIRE(status.exit_code == 0);
  CHECK(json::parse(status.out)["id"] == id);

  // Nothing dispatches here: --wait gives up after --timeout.
  spit(dir + "/job2.json", Brokerctl::job_body(2).dump());
  auto waited = api.ctl({"jobs", "submit", dir + "/job2.json", "--wait", "--timeout", "1"}, api.submitter);
  CHECK(waited.exit_code == 3);
  CHECK(waited.out.size() > 1);  // the id was printed first

  auto canceled = api.ctl({"jobs", "cancel", id}, api.submitter);
  REQUIRE(canceled.exit_code == 0);
  CHECK(canceled.out == "canceled\n");
  CHECK(api.ctl({"jobs", "cancel", id}, api.submitter).exit_code == 5);  // 409: already finished
  CHECK(api.ctl({"jobs", "cancel", id}, api.viewer).exit_code == 6);
  CHECK(api.ctl({"jobs", "status", "00000000-0000-0000-0000-000000000000"}, api.viewer).exit_code == 5);

  // Results across pages (Link rel="next"), written whole.
  const auto done = api.completed_job(7, api.submitter);
  auto results = api.ctl({"jobs", "results", done, "-o", dir + "/out.jsonl", "--limit", "3"}, api.viewer);
  INFO(results.err);
  REQUIRE(results.exit_code == 0);
  std::istringstream lines(slurp(dir + "/out.jsonl"));
  std::vector<std::string> ids;
  for (std::string line; std::getline(lines, line);) ids.push_back(json::parse(line)["item_id"]);
  CHECK(ids.size() == 8);  // 7 labeled + 1 unlabeled; the gold item never
  CHECK(ids.front() == "i-101");
  CHECK(ids.back() == "i-108");
  CHECK_FALSE(fs::exists(dir + "/out.jsonl.part"));
  fs::remove_all(dir);
}

TEST_CASE("brokerctl: vendors scores is JSON off a terminal and a table on one", "[.db][brokerctl]") {
  Brokerctl api;
  auto r = api.ctl({"vendors", "scores", "--window", "7d"}, api.viewer);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto scores = json::parse(r.out);
  REQUIRE(scores["vendors"].size() == 2);
  CHECK(scores["vendors"][0]["vendor"] == "scale");
  CHECK(api.ctl({"vendors", "scores", "--window", "nonsense"}, api.viewer).exit_code == 5);

  // In-process with stdout "a terminal": a table, one row per vendor.
  std::ostringstream out, err;
  auto context = api.in_process(api.viewer, out, err);
  context.out_is_tty = true;
  REQUIRE(brokerctl::run({"vendors", "scores"}, context) == 0);
  CHECK(out.str().rfind("vendor ", 0) == 0);
  CHECK(out.str().find("\nscale ") != std::string::npos);
  CHECK(out.str().find("\nsurge ") != std::string::npos);
  out.str("");
  REQUIRE(brokerctl::run({"vendors", "scores", "--json"}, context) == 0);
  CHECK(json::parse(out.str())["vendors"].size() == 2);
}

TEST_CASE("brokerctl: Link rel=next parsing", "[brokerctl]") {
  CHECK(brokerctl::next_link("</v1/jobs/x/results?limit=3&cursor=abc&format=jsonl>; rel=\"next\"") ==
        "/v1/jobs/x/results?limit=3&cursor=abc&format=jsonl");
  CHECK(brokerctl::next_link("</a>; rel=\"prev\", </b>; rel=\"next\"") == "/b");
  CHECK(brokerctl::next_link("</a>; rel=\"prev\"") == "");
  CHECK(brokerctl::next_link("") == "");
}
