#pragma once
// The real v1 API (ApiFixture) with two vendors, and helpers to make completed jobs by SQL as
// dispatch would leave them, build their dataset versions (the builder's store call, as the
// engine's loop makes it) and read what was built. Used by the datasets API and brokerctl tests.
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "db/dataset_store.hpp"
#include "support/api_fixture.hpp"

namespace labelbroker::testing {

class DatasetFixture : public ApiFixture {
 public:
  using json = nlohmann::json;
  explicit DatasetFixture(const datasets::FileCache* dataset_files = nullptr)
      : ApiFixture(kTwoVendors, {}, test_server_options(), dataset_files) {}

  // A job body of `items` items i-101... (each text padded with `padding` bytes) plus one more,
  // and one gold item.
  static json job_body(int items, std::size_t padding = 0) {
    json body = {{"name", "j"},
                 {"task_type", "classification"},
                 {"domain", "general"},
                 {"labels", {"a", "b"}},
                 {"items", json::array()},
                 {"gold", {{{"id", "g-1"}, {"data", {{"text", "gold"}}}, {"answer", "a"}}}},
                 {"budget_usd", "10.00"},
                 {"deadline", "2099-01-01T00:00:00Z"}};
    for (int k = 1; k <= items + 1; ++k)
      body["items"].push_back({{"id", "i-" + std::to_string(100 + k)},
                               {"data", {{"text", "note " + std::to_string(k) + std::string(padding, 'x')}}}});
    return body;
  }

  // job_body's job, made `completed`: item k labeled "a" (odd) or "b" (even) with confidence
  // k / items, judged by scale (and surge for even k); the last item unlabeled; the gold item
  // never exported.
  std::string completed_job(int items, const std::string& key, std::size_t padding = 0) {
    auto created = post("/v1/jobs", job_body(items, padding).dump(), key);
    REQUIRE(created.status == 201);
    const std::string id = json::parse(created.body)["id"];
    pqxx::connection c(url());
    pqxx::work tx(c);
    for (int k = 1; k <= items; ++k) {
      const std::string item = "i-" + std::to_string(100 + k);
      tx.exec_params0("UPDATE job_items SET state = 'labeled', label = $3, confidence = $4, method = 'majority' "
                      "WHERE job_id = $1 AND item_id = $2",
                      id, item, k % 2 ? "a" : "b", static_cast<double>(k) / items);
      for (const char* vendor : {"scale", "surge"}) {
        if (std::string(vendor) == "surge" && k % 2) continue;
        tx.exec_params0("INSERT INTO assignments (job_id, item_id, vendor_id, state, answer, worker_id) "
                        "VALUES ($1, $2, $3, 'completed', $4, $5)",
                        id, item, std::string(vendor), k % 2 ? "a" : "b", std::string(vendor) + "-w");
      }
    }
    tx.exec_params0("UPDATE job_items SET state = 'unlabeled' WHERE job_id = $1 AND item_id = $2", id,
                    "i-" + std::to_string(101 + items));
    tx.exec_params0("UPDATE jobs SET status = 'completed' WHERE id = $1", id);
    tx.commit();
    return id;
  }

  void build_all() {
    pqxx::connection c(url());
    while (db::build_next_dataset_version(c)) {
    }
  }

  // The version's bytes as a download serves them.
  std::string bytes_of(const std::string& name, int version) {
    pqxx::connection c(url());
    pqxx::nontransaction tx(c);
    std::string out;
    for (const auto& r : tx.exec_params(
             "SELECT d.line FROM dataset_items d JOIN dataset_versions v ON v.id = d.version_id "
             "JOIN datasets s ON s.id = v.dataset_id WHERE s.name = $1 AND v.version = $2 ORDER BY d.seq",
             name, version))
      out += r[0].as<std::string>() + "\n";
    return out;
  }

  json manifest(const std::string& name, const std::string& version) {
    auto got = get("/v1/datasets/" + name + "/versions/" + version, viewer);
    REQUIRE(got.status == 200);
    return json::parse(got.body);
  }
};

}  // namespace labelbroker::testing
