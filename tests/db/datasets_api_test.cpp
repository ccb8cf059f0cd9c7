// Datasets (#7, first part) against a real PostgreSQL: creating versions from completed jobs,
// building them (the builder's store call, as the engine's loop makes it), manifests, listing,
// idempotency, immutability and deterministic bytes, roles and tenant isolation, bad input.
#include <filesystem>
#include <set>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "common/crypto.hpp"
#include "datasets/file_cache.hpp"
#include "db/dataset_store.hpp"
#include "support/dataset_fixture.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;
using json = nlohmann::json;

namespace {

class DatasetApi : public DatasetFixture {
 public:
  HttpResult create(const json& body, const std::string& key, Headers extra = {}) {
    return post("/v1/datasets", body.dump(), key, std::move(extra));
  }
};

}  // namespace

TEST_CASE("datasets: a version is built from completed jobs, with a manifest whose sha256 is its bytes'",
          "[.db][datasets]") {
  DatasetApi api;
  const auto job = api.completed_job(10, api.submitter);

  auto created = api.create({{"name", "triage-train"}, {"jobs", {job}}, {"min_confidence", 0.35}}, api.submitter);
  REQUIRE(created.status == 202);
  CHECK(json::parse(created.body) == json{{"name", "triage-train"}, {"version", 1}, {"status", "building"}});
  CHECK(created.header("Location").value_or("") == "/v1/datasets/triage-train/versions/1");
  CHECK(json::parse(api.get("/v1/datasets/triage-train/versions/1", api.viewer).body)["status"] == "building");
  CHECK(api.get("/v1/datasets/triage-train/versions/latest", api.viewer).status == 404);  // nothing ready yet

  api.build_all();
  auto got = api.get("/v1/datasets/triage-train/versions/1", api.viewer);
  REQUIRE(got.status == 200);
  const auto m = json::parse(got.body);
  INFO(m.dump(2));
  CHECK(m["status"] == "ready");
  CHECK(m["source_jobs"] == json::array({job}));
  CHECK(m["item_count"] == 7);      // confidence 0.4 .. 1.0
  CHECK(m["excluded_count"] == 3);  // 0.1, 0.2, 0.3; the unlabeled and the gold item are neither
  CHECK(m["label_counts"] == json{{"a", 3}, {"b", 4}});
  // Judgments of the exported items: scale 7, surge on the 4 even ones.
  CHECK(m["vendor_mix"]["scale"].get<double>() == Approx(7.0 / 11).margin(1e-4));
  CHECK(m["vendor_mix"]["surge"].get<double>() == Approx(4.0 / 11).margin(1e-4));
  REQUIRE(m["files"].size() == 1);
  const auto bytes = api.bytes_of("triage-train", 1);
  CHECK(m["files"][0]["path"] == "items.jsonl");
  CHECK(m["files"][0]["bytes"] == bytes.size());
  CHECK(m["files"][0]["rows"] == 7);
  CHECK(m["files"][0]["sha256"] == common::sha256_hex(bytes));
  CHECK(bytes.find("\"g-1\"") == std::string::npos);
  const auto first = json::parse(bytes.substr(0, bytes.find('\n')));
  CHECK(first == json{{"item_id", "i-104"}, {"data", {{"text", "note 4"}}}, {"label", "b"}, {"confidence", 0.4},
                      {"method", "majority"}});
  CHECK(json::parse(api.get("/v1/datasets/triage-train/versions/latest", api.viewer).body)["version"] == 1);

  // Judgments and provenance when asked for.
  REQUIRE(api.create({{"name", "triage-full"}, {"jobs", {job}}, {"include", {"provenance", "judgments"}}},
                     api.submitter)
              .status == 202);
  api.build_all();
  const auto full = api.bytes_of("triage-full", 1);
  const auto line = json::parse(full.substr(0, full.find('\n')));
  CHECK(line["judgments"] == json::array({{{"vendor", "scale"}, {"label", "a"}, {"worker", "scale-w"}}}));
  CHECK(line["provenance"]["job_id"] == job);
  CHECK(line["provenance"]["vendors"][0]["vendor"] == "scale");
  CHECK(line["provenance"]["vendors"][0]["estimated_accuracy"] == 0.5);  // no gold evidence yet: the prior

  auto list = json::parse(api.get("/v1/datasets", api.viewer).body)["datasets"];
  REQUIRE(list.size() == 2);
  CHECK(list[1]["name"] == "triage-train");
  CHECK(list[1]["latest_ready"] == 1);
  CHECK(list[1]["versions"][0]["item_count"] == 7);
}

TEST_CASE("datasets: versions are immutable and deterministic, a new one leaves the old bytes alone",
          "[.db][datasets]") {
  DatasetApi api;
  const auto one = api.completed_job(6, api.submitter);
  const auto two = api.completed_job(4, api.submitter);
  REQUIRE(api.create({{"name", "d"}, {"jobs", {one}}}, api.submitter).status == 202);
  api.build_all();
  const auto v1 = json::parse(api.get("/v1/datasets/d/versions/1", api.viewer).body);
  const auto v1_bytes = api.bytes_of("d", 1);

  // The same request again is a new version with the same bytes: the export is a function of
  // its inputs.
  REQUIRE(api.create({{"name", "d"}, {"jobs", {one}}}, api.submitter).status == 202);
  // Another job added: version 3.
  auto v3_created = api.create({{"name", "d"}, {"jobs", {one, two}}}, api.submitter);
  REQUIRE(v3_created.status == 202);
  CHECK(json::parse(v3_created.body)["version"] == 3);
  api.build_all();
  const auto v2 = json::parse(api.get("/v1/datasets/d/versions/2", api.viewer).body);
  const auto v3 = json::parse(api.get("/v1/datasets/d/versions/3", api.viewer).body);
  CHECK(v2["files"][0]["sha256"] == v1["files"][0]["sha256"]);
  CHECK(v3["files"][0]["sha256"] != v1["files"][0]["sha256"]);
  CHECK(v3["item_count"] == 10);
  CHECK(api.bytes_of("d", 1) == v1_bytes);
  CHECK(json::parse(api.get("/v1/datasets/d/versions/1", api.viewer).body) == v1);
  CHECK(json::parse(api.get("/v1/datasets/d/versions/latest", api.viewer).body)["version"] == 3);
  // Items of the second job follow the first job's, as listed.
  const auto v3_bytes = api.bytes_of("d", 3);
  CHECK(v3_bytes.substr(0, v1_bytes.size()) == v1_bytes);
}

TEST_CASE("datasets: Idempotency-Key, roles, other teams and bad input", "[.db][datasets]") {
  DatasetApi api;
  const auto job = api.completed_job(3, api.submitter);
  const json body = {{"name", "d"}, {"jobs", {job}}};

  // The same key and request: the same version; another request under that key: refused.
  auto first = api.create(body, api.submitter, {{"Idempotency-Key", "ci-run-42"}});
  REQUIRE(first.status == 202);
  auto again = api.create(body, api.submitter, {{"Idempotency-Key", "ci-run-42"}});
  CHECK(again.status == 200);
  CHECK(json::parse(again.body)["version"] == 1);
  auto changed = api.create({{"name", "d"}, {"jobs", {job}}, {"min_confidence", 0.5}}, api.submitter,
                            {{"Idempotency-Key", "ci-run-42"}});
  CHECK(changed.status == 422);
  CHECK(problem_type(changed) == "/problems/idempotency-key-reused");
  CHECK(api.count("SELECT count(*) FROM dataset_versions") == 1);

  // Viewers read but do not create; other teams see nothing of it.
  CHECK(api.create(body, api.viewer).status == 403);
  api.build_all();
  CHECK(api.get("/v1/datasets/d/versions/1", api.other_team).status == 404);
  CHECK(json::parse(api.get("/v1/datasets", api.other_team).body)["datasets"].empty());

  // Unknown names and versions: 404 with a detail naming what was asked for.
  auto unknown = api.get("/v1/datasets/nope/versions/latest", api.viewer);
  CHECK(unknown.status == 404);
  CHECK(json::parse(unknown.body)["detail"].get<std::string>().find("\"nope\"") != std::string::npos);
  CHECK(api.get("/v1/datasets/d/versions/9", api.viewer).status == 404);
  CHECK(api.get("/v1/datasets/d/versions/abc", api.viewer).status == 404);
  CHECK(api.get("/v1/datasets/d/versions/0", api.viewer).status == 404);

  // Bad requests: every problem with its pointer.
  auto bad = api.create({{"name", "Bad Name"}, {"jobs", {"x", job, job}}, {"min_confidence", 1.5},
                         {"include", {"everything"}}, {"extra", 1}},
                        api.submitter);
  REQUIRE(bad.status == 422);
  CHECK(problem_type(bad) == "/problems/invalid-dataset");
  std::set<std::string> pointers;
  const auto bad_body = json::parse(bad.body);
  for (const auto& e : bad_body["errors"]) pointers.insert(e["pointer"].get<std::string>());
  CHECK(pointers == std::set<std::string>{"/name", "/jobs/0", "/jobs/2", "/min_confidence", "/include/0", "/extra"});
  CHECK(api.create({{"name", "d"}, {"jobs", json::array()}}, api.submitter).status == 422);
  CHECK(api.post("/v1/datasets", "{not json", api.submitter).status == 400);

  // A job that is not completed, and another team's job: refused, nothing created.
  const auto running = api.completed_job(2, api.submitter);
  api.exec("UPDATE jobs SET status = 'running' WHERE id = '" + running + "'");
  const auto theirs = api.completed_job(2, api.other_team);
  auto refused = api.create({{"name", "d"}, {"jobs", {job, running, theirs}}}, api.submitter);
  REQUIRE(refused.status == 422);
  const auto errors = json::parse(refused.body)["errors"];
  REQUIRE(errors.size() == 2);
  CHECK(errors[0]["pointer"] == "/jobs/1");
  CHECK(errors[0]["message"].get<std::string>().find("running") != std::string::npos);
  CHECK(errors[1]["pointer"] == "/jobs/2");
  CHECK(errors[1]["message"] == "no job with this id");
  CHECK(api.count("SELECT count(*) FROM dataset_versions") == 1);
}

TEST_CASE("datasets: items.jsonl streams the version's bytes with ETag, 304, ranges and Content-Length",
          "[.db][datasets]") {
  DatasetApi api;
  // About 2.5 MB: the body is produced and written in several pieces.
  const auto job = api.completed_job(1000, api.submitter, 2500);
  REQUIRE(api.create({{"name", "big"}, {"jobs", {job}}, {"include", {"judgments"}}}, api.submitter).status == 202);
  const std::string path = "/v1/datasets/big/versions/1/items.jsonl";
  auto early = api.get(path, api.viewer);
  CHECK(early.status == 409);
  CHECK(problem_type(early) == "/problems/dataset-not-ready");
  api.build_all();
  const auto bytes = api.bytes_of("big", 1);
  REQUIRE(bytes.size() > 2 * 1024 * 1024);
  const auto sha = common::sha256_hex(bytes);

  auto whole = api.get(path, api.viewer);
  REQUIRE(whole.status == 200);
  CHECK(whole.body.size() == bytes.size());
  CHECK(whole.body == bytes);
  CHECK(whole.header("ETag").value_or("") == "\"" + sha + "\"");
  CHECK(whole.header("Content-Length").value_or("") == std::to_string(bytes.size()));
  CHECK(whole.header("Content-Type").value_or("") == "application/x-ndjson");
  CHECK(whole.header("Accept-Ranges").value_or("") == "bytes");
  // Also by "latest".
  CHECK(api.get("/v1/datasets/big/versions/latest/items.jsonl", api.viewer).body == bytes);

  // The client has it already: 304, no body.
  auto same = api.get(path, api.viewer, {{"If-None-Match", "\"" + sha + "\""}});
  CHECK(same.status == 304);
  CHECK(same.body.empty());
  CHECK(api.get(path, api.viewer, {{"If-None-Match", "\"other\""}}).status == 200);

  // Ranges: a middle slice across a piece boundary, an open end (a resumed download), a suffix.
  const std::size_t a = 1024 * 1024 - 100, b = 1024 * 1024 + 5000;
  auto middle = api.get(path, api.viewer, {{"Range", "bytes=" + std::to_string(a) + "-" + std::to_string(b)}});
  REQUIRE(middle.status == 206);
  CHECK(middle.body == bytes.substr(a, b - a + 1));
  CHECK(middle.header("Content-Range").value_or("") ==
        "bytes " + std::to_string(a) + "-" + std::to_string(b) + "/" + std::to_string(bytes.size()));
  auto rest = api.get(path, api.viewer, {{"Range", "bytes=" + std::to_string(bytes.size() - 7000) + "-"}});
  REQUIRE(rest.status == 206);
  CHECK(rest.body == bytes.substr(bytes.size() - 7000));
  auto tail = api.get(path, api.viewer, {{"Range", "bytes=-10"}});
  REQUIRE(tail.status == 206);
  CHECK(tail.body == bytes.substr(bytes.size() - 10));
  auto beyond = api.get(path, api.viewer, {{"Range", "bytes=" + std::to_string(bytes.size()) + "-"}});
  CHECK(beyond.status == 416);
  CHECK(beyond.header("Content-Range").value_or("") == "bytes */" + std::to_string(bytes.size()));
  // Several ranges, or an If-Range for another version: the whole file.
  CHECK(api.get(path, api.viewer, {{"Range", "bytes=0-1,5-6"}}).body == bytes);
  auto stale = api.get(path, api.viewer, {{"Range", "bytes=0-9"}, {"If-Range", "\"old\""}});
  CHECK(stale.status == 200);
  CHECK(stale.body.size() == bytes.size());

  // Another team: as if it did not exist.
  CHECK(api.get(path, api.other_team).status == 404);
  CHECK(api.get("/v1/datasets/big/versions/2/items.jsonl", api.viewer).status == 404);
  // The connection stays usable after a streamed body (keep-alive is exercised by the client
  // closing each time; the server must still answer the next request).
  CHECK(api.healthy());
}

TEST_CASE("datasets: a version built with the file cache serves the same bytes from disk", "[.db][datasets]") {
  DatasetApi api;
  const auto job = api.completed_job(300, api.submitter, 500);
  REQUIRE(api.create({{"name", "cached"}, {"jobs", {job}}}, api.submitter).status == 202);
  const auto dir = std::filesystem::temp_directory_path() / ("lb-dataset-cache-test-" + common::random_hex(6));
  datasets::FileCache cache(dir.string());
  REQUIRE(cache.enabled());
  std::string version_id;
  {
    pqxx::connection c(api.url());
    std::unique_ptr<datasets::FileCache::Writer> writer;
    REQUIRE(db::build_next_dataset_version(c, [&](const std::string& id) {
      version_id = id;
      writer = cache.start(id);
      REQUIRE(writer);
      return db::BuildSink{[&](std::string_view line) { writer->line(line); }, [&] { writer->finish(); }};
    }));
  }
  const auto bytes = api.bytes_of("cached", 1);
  auto read_all = [](http::BodySource& source) {
    std::string out;
    while (source.next(out, 4096)) {
    }
    return out;
  };
  auto whole = cache.open(version_id, bytes.size(), 0, bytes.size());
  REQUIRE(whole);
  CHECK(whole->length() == bytes.size());
  CHECK(read_all(*whole) == bytes);
  auto slice = cache.open(version_id, bytes.size(), 1000, 50000);
  REQUIRE(slice);
  CHECK(read_all(*slice) == bytes.substr(1000, 49000));
  // A file of another size is not trusted (the download then reads the database).
  CHECK_FALSE(cache.open(version_id, bytes.size() + 1, 0, bytes.size() + 1));
  CHECK_FALSE(cache.open("00000000-0000-0000-0000-000000000000", 10, 0, 10));
  // A writer dropped before finish() leaves nothing behind; a disabled cache writes nothing.
  cache.start("abandoned")->line("x");
  CHECK_FALSE(std::filesystem::exists(dir / "abandoned.jsonl"));
  CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator()) == 1);
  datasets::FileCache off("");
  CHECK_FALSE(off.enabled());
  CHECK_FALSE(off.start(version_id));
  std::filesystem::remove_all(dir);
}

TEST_CASE("datasets: a process that did not build a version fills its file cache on the first whole download",
          "[.db][datasets]") {
  const auto dir = std::filesystem::temp_directory_path() / ("lb-dataset-fill-test-" + common::random_hex(6));
  datasets::FileCache cache(dir.string());
  REQUIRE(cache.enabled());
  DatasetFixture api(&cache);
  const auto job = api.completed_job(300, api.submitter, 500);
  REQUIRE(api.post("/v1/datasets", json({{"name", "filled"}, {"jobs", {job}}}).dump(), api.submitter).status == 202);
  REQUIRE(api.post("/v1/datasets", json({{"name", "tampered"}, {"jobs", {job}}}).dump(), api.submitter).status == 202);
  api.build_all();  // built by "another process": nothing on this one's disk
  const auto files_in_cache = [&] {
    return std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator());
  };
  REQUIRE(files_in_cache() == 0);
  const auto bytes = api.bytes_of("filled", 1);
  REQUIRE(bytes.size() > 100000);
  const std::string path = "/v1/datasets/filled/versions/1/items.jsonl";

  // A range is served from the database and fills nothing.
  auto part = api.get(path, api.viewer, {{"Range", "bytes=0-999"}});
  REQUIRE(part.status == 206);
  CHECK(part.body == bytes.substr(0, 1000));
  CHECK(files_in_cache() == 0);

  // The first whole download comes from the database and leaves the verified file behind.
  auto first = api.get(path, api.viewer);
  REQUIRE(first.status == 200);
  CHECK(first.body == bytes);
  REQUIRE(files_in_cache() == 1);
  const auto version_id = api.text(
      "SELECT v.id::text FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id WHERE d.name = 'filled'");
  REQUIRE(std::filesystem::file_size(dir / (version_id + ".jsonl")) == bytes.size());

  // From now on the file answers: even bytes changed in the database behind its back do not show.
  api.exec("UPDATE dataset_items SET line = replace(line, 'note', 'NOTE') WHERE version_id = '" + version_id + "'");
  CHECK(api.get(path, api.viewer).body == bytes);
  CHECK(api.get(path, api.viewer, {{"Range", "bytes=5000-"}}).body == bytes.substr(5000));

  // Bytes that do not hash to the manifest's sha256 are never kept (the client, which checks the
  // sha256 itself, sees the mismatch; brokerctl exits 4).
  const auto tampered_id = api.text(
      "SELECT v.id::text FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id WHERE d.name = 'tampered'");
  api.exec("UPDATE dataset_items SET line = replace(line, 'note', 'NOTE') WHERE version_id = '" + tampered_id + "'");
  REQUIRE(api.get("/v1/datasets/tampered/versions/1/items.jsonl", api.viewer).status == 200);
  CHECK_FALSE(std::filesystem::exists(dir / (tampered_id + ".jsonl")));
  CHECK(files_in_cache() == 1);  // no temporary file left either
  std::filesystem::remove_all(dir);
}
