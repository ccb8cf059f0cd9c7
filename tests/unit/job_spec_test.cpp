// Job validation: the whole job at once, every problem with its JSON Pointer.
#include "jobs/job_spec.hpp"

#include <algorithm>

#include <catch2/catch.hpp>

using namespace labelbroker;
using namespace labelbroker::jobs;
using nlohmann::json;

namespace {

const auto kNow = std::chrono::sys_days{std::chrono::year{2026} / 11 / 28};

std::vector<VendorView> fleet() {
  vendors::Capabilities general;
  general.task_types = {vendors::TaskType::classification, vendors::TaskType::preference};
  general.expertise = {vendors::Expertise::general, vendors::Expertise::skilled, vendors::Expertise::expert};
  vendors::Capabilities experts = general;
  experts.domains = {"medical", "legal"};
  experts.expertise = {vendors::Expertise::expert};
  return {{"scale", general, true}, {"surge", general, true}, {"mercor", experts, true}, {"vendor-x", general, true}};
}

// The job from the product brief.
json brief_job() {
  return json::parse(R"({
    "name": "triage-notes-7", "task_type": "classification", "domain": "medical", "expertise": "expert",
    "instructions": "Label how urgent each note is.", "labels": ["urgent", "routine", "not_medical"],
    "items": [{"id": "n-1", "data": {"text": "Chest pain since this morning"}}],
    "gold": [{"id": "g-1", "data": {"text": "Sprained ankle, walking fine"}, "answer": "routine"}],
    "redundancy": 2, "quality": {"min_vendor_accuracy": 0.8}, "budget_usd": "250.00",
    "deadline": "2026-12-01T00:00:00Z", "vendors": {"deny": ["vendor-x"]}, "optimize": "balanced",
    "callback_url": "https://ml.example/hooks/labels"})");
}

std::vector<std::string> pointers(const ParseResult& r) {
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.pointer);
  return out;
}

bool has(const ParseResult& r, const std::string& pointer, const std::string& fragment = "") {
  return std::any_of(r.errors.begin(), r.errors.end(), [&](const http::FieldError& e) {
    return e.pointer == pointer && e.message.find(fragment) != std::string::npos;
  });
}

}  // namespace

TEST_CASE("jobs: the brief's example job is valid", "[jobs]") {
  auto r = parse_job(brief_job(), fleet(), kNow);
  INFO(json(pointers(r)).dump());
  REQUIRE(r.job);
  const auto& job = *r.job;
  CHECK(job.name == "triage-notes-7");
  CHECK(job.task_type == vendors::TaskType::classification);
  CHECK(job.expertise == vendors::Expertise::expert);
  CHECK(job.items.size() == 1);
  CHECK(job.gold.at(0).answer == "routine");
  CHECK(job.budget_micros == 250000000);
  CHECK(job.min_vendor_accuracy == 0.8);
  CHECK(job.deny == std::vector<std::string>{"vendor-x"});
  // vendor-x is denied; all others take expert medical classification.
  CHECK(job.eligible_vendors == std::vector<std::string>{"scale", "surge", "mercor"});
}

TEST_CASE("jobs: every problem is reported at once, with its JSON Pointer", "[jobs]") {
  json job = brief_job();
  job["task_type"] = "ranking";
  job["labels"] = {"urgent", "urgent", ""};
  job["items"].push_back({{"id", "n-1"}, {"data", "not an object"}});
  job["items"].push_back({{"data", json::object()}});
  job["gold"][0]["answer"] = "critical";
  job["gold"].push_back({{"id", "n-1"}, {"data", json::object()}, {"answer", "urgent"}});
  job["budget_usd"] = 250.0;
  job["deadline"] = "2026-11-01T00:00:00Z";
  job["vendors"]["allow"] = {"nobody"};
  job["optimize"] = "fast";
  job["callback_url"] = "ftp://x";
  job["colour"] = "blue";
  job["quality"]["min_vendor_accuracy"] = 1.5;
  auto r = parse_job(job, fleet(), kNow);
  CHECK_FALSE(r.job);
  INFO(json(pointers(r)).dump());
  CHECK(has(r, "/task_type", "classification, preference, rating"));
  CHECK(has(r, "/labels/1", "duplicates"));
  CHECK(has(r, "/labels/2", "non-empty"));
  CHECK(has(r, "/items/1/id", "duplicates an earlier item id"));
  CHECK(has(r, "/items/1/data", "an object"));
  CHECK(has(r, "/items/2/id", "is required"));
  CHECK(has(r, "/gold/0/answer", "'critical' is not one of the labels"));
  CHECK(has(r, "/gold/1/id", "duplicates an item or gold id"));
  CHECK(has(r, "/budget_usd", "must be a string"));
  CHECK(has(r, "/deadline", "in the future"));
  CHECK(has(r, "/vendors/allow/0", "no vendor 'nobody'"));
  CHECK(has(r, "/optimize"));
  CHECK(has(r, "/callback_url"));
  CHECK(has(r, "/colour", "not a known field"));
  CHECK(has(r, "/quality/min_vendor_accuracy"));
}

TEST_CASE("jobs: redundancy cannot exceed the vendors able to judge each item", "[jobs]") {
  json job = brief_job();
  job["redundancy"] = 4;  // three eligible vendors
  auto r = parse_job(job, fleet(), kNow);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].pointer == "/redundancy");
  CHECK(r.errors[0].message.find("only 3 eligible vendors") != std::string::npos);

  job["redundancy"] = 1;
  job["domain"] = "finance";
  job["vendors"] = {{"allow", {"mercor"}}};  // experts in medical and legal only
  auto none = parse_job(job, fleet(), kNow);
  REQUIRE(none.errors.size() == 1);
  CHECK(none.errors[0].pointer == "/vendors");
  CHECK(none.errors[0].message.find("no configured vendor takes classification work in finance") != std::string::npos);
}

TEST_CASE("jobs: shapes and limits", "[jobs]") {
  CHECK(parse_job(json::array(), fleet(), kNow).errors.at(0).message == "the job must be a JSON object");
  auto empty = parse_job(json::object(), fleet(), kNow);
  for (const auto* required : {"/name", "/task_type", "/domain", "/labels", "/items", "/budget_usd", "/deadline"})
    CHECK(has(empty, required));

  json job = brief_job();
  job["task_type"] = "preference";  // needs exactly two options
  CHECK(has(parse_job(job, fleet(), kNow), "/labels", "exactly two"));

  job = brief_job();
  ValidationLimits small;
  small.max_items = 1;
  job["items"].push_back({{"id", "n-2"}, {"data", json::object()}});
  CHECK(has(parse_job(job, fleet(), kNow, small), "/items", "POST /v1/jobs/{id}/items"));
  job["budget_usd"] = "0.00";
  CHECK(has(parse_job(job, fleet(), kNow), "/budget_usd", "positive"));
  job["budget_usd"] = "1e3";
  CHECK(has(parse_job(job, fleet(), kNow), "/budget_usd", "positive"));
}

TEST_CASE("jobs: a draft may come without items, appended lists are checked like a job's", "[jobs]") {
  json job = brief_job();
  job["items"] = json::array();
  job.erase("gold");
  CHECK(has(parse_job(job, fleet(), kNow), "/items", "non-empty"));
  ValidationLimits draft;
  draft.allow_no_items = true;
  auto r = parse_job(job, fleet(), kNow, draft);
  INFO(json(pointers(r)).dump());
  REQUIRE(r.job);
  CHECK(r.job->items.empty());

  // The rvalue overload moves the data out of the document instead of copying it.
  auto moved = parse_job(brief_job(), fleet(), kNow);
  REQUIRE(moved.job);
  CHECK(moved.job->items.at(0).data == json{{"text", "Chest pain since this morning"}});
  CHECK(moved.job->gold.at(0).answer == "routine");

  const std::vector<std::string> labels = {"urgent", "routine"};
  auto ok = parse_items(json::parse(R"({"items": [{"id": "a", "data": {"t": 1}}],
                                        "gold": [{"id": "g", "data": {}, "answer": "urgent"}]})"),
                        labels);
  CHECK(ok.errors.empty());
  CHECK(ok.items.size() == 1);
  CHECK(ok.items.at(0).data == json{{"t", 1}});
  CHECK(ok.gold.size() == 1);
  CHECK(parse_items(json::parse(R"({"gold": [{"id": "g", "data": {}, "answer": "routine"}]})"), labels).errors.empty());

  auto bad = parse_items(json::parse(R"({"items": [{"id": "a", "data": {}}, {"id": "a", "data": 3}],
                                         "gold": [{"id": "g", "data": {}, "answer": "maybe"}], "extra": 1})"),
                         labels);
  std::vector<std::string> where;
  for (const auto& e : bad.errors) where.push_back(e.pointer);
  CHECK(where == std::vector<std::string>{"/extra", "/items/1/data", "/items/1/id", "/gold/0/answer"});
  CHECK(parse_items(json::object(), labels).errors.at(0).pointer == "/items");
  CHECK(parse_items(json::array(), labels).errors.at(0).pointer == "");
}
