// Mercor-style wire format: requisition -> matches -> engagement -> work items, Idempotency-Key,
// cancel rules, timesheets with the weekly cap, HMAC-signed callbacks.
#include "sim_fixture.hpp"

using namespace labelbroker::vendors::sim::testing;

namespace {

const std::string kKey = "mercor-key";
int g_key = 0;
Headers auth() {
  return bearer(kKey, "key-" + std::to_string(++g_key));
}

json requisition(const std::string& callback_url = "") {
  json r = {{"title", "Medical triage"},  {"domain", "medical"},    {"expertise", "expert"}, {"skills", {"triage"}},
            {"hourly_rate_max_usd", 150}, {"weekly_cap_hours", 10}, {"headcount", 2},        {"contract", "hourly"}};
  if (!callback_url.empty()) r["callback_url"] = callback_url;
  return r;
}

json items(int n, const std::string& prefix = "it") {
  json list = json::array();
  for (int i = 0; i < n; ++i)
    list.push_back({{"ref", prefix + std::to_string(i)},
                    {"task_type", "classification"},
                    {"instructions", "label"},
                    {"labels", {"urgent", "routine"}},
                    {"data", {{"text", prefix + std::to_string(i)}}}});
  return {{"items", list}};
}

// requisition + engagement with `expert`; returns the engagement id.
std::string engage(Sim& sim, const std::string& expert, const std::string& callback_url = "") {
  json req = sim.call_json("POST", "/mc/v1/requisitions", requisition(callback_url), auth(), 201);
  json eng =
      sim.call_json("POST", "/mc/v1/engagements", {{"requisition_id", req["id"]}, {"expert_id", expert}}, auth(), 201);
  return eng["id"];
}

}  // namespace

TEST_CASE("mercor: requisition, matches, engagement, work items, polling", "[sim][mercor]") {
  Sim sim;
  json req = sim.call_json("POST", "/mc/v1/requisitions", requisition(), auth(), 201);
  CHECK(req["status"] == "open");
  CHECK(req["domain"] == "medical");
  const std::string rid = req["id"];
  CHECK(sim.call_json("GET", "/mc/v1/requisitions/" + rid, nullptr, auth())["id"] == rid);

  json matches = sim.call_json("GET", "/mc/v1/requisitions/" + rid + "/matches", nullptr, auth());
  REQUIRE(matches.size() == 2);            // "pricey" is above hourly_rate_max_usd
  CHECK(matches[0]["expert_id"] == "md");  // best medical score first
  CHECK(matches[0]["hourly_rate_usd"] == 120.0);
  CHECK(matches[0]["available_hours"] == 1);
  CHECK(matches[0]["domain_scores"]["medical"] == 0.97);

  json eng =
      sim.call_json("POST", "/mc/v1/engagements", {{"requisition_id", rid}, {"expert_id", "cheap"}}, auth(), 201);
  CHECK(eng["status"] == "active");
  CHECK(eng["hourly_rate_usd"] == 60.0);
  CHECK(eng["weekly_cap_hours"] == 10);
  const std::string eid = eng["id"];
  auto too_pricey =
      sim.call("POST", "/mc/v1/engagements", json{{"requisition_id", rid}, {"expert_id", "pricey"}}.dump(), auth());
  CHECK(too_pricey.status == 422);
  CHECK(json::parse(too_pricey.body)["error"]["code"] == "rate_above_max");

  json accepted = sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", items(2), auth(), 201);
  REQUIRE(accepted["accepted"].size() == 2);
  CHECK(accepted["accepted"][0]["ref"] == "it0");
  const std::string wid = accepted["accepted"][0]["work_item_id"];
  json item;
  REQUIRE(eventually([&] {
    item = sim.call_json("GET", "/mc/v1/work-items/" + wid, nullptr, auth());
    return item["status"] == "done";
  }));
  CHECK((item["answer"] == "urgent" || item["answer"] == "routine"));
  CHECK(item["minutes_spent"] == 30.0);
  CHECK(item["completed_at"].is_string());
  REQUIRE(eventually([&] { return sim.stats("mc")["completed"] == 2; }));
  CHECK(sim.stats("mc")["charged_micros"] == 2 * 30 * 1000000);  // 30 min at $60/h each

  json ended = sim.call_json("POST", "/mc/v1/engagements/" + eid + "/end", nullptr, auth());
  CHECK(ended["status"] == "ended");
  auto after_end = sim.call("POST", "/mc/v1/engagements/" + eid + "/work-items", items(1).dump(), auth());
  CHECK(after_end.status == 422);
  CHECK(json::parse(after_end.body)["error"]["code"] == "engagement_not_active");
}

TEST_CASE("mercor: Idempotency-Key replays the same answer - a different body is 422", "[sim][mercor]") {
  Sim sim;
  const Headers h = bearer(kKey, "same-key");
  json first = sim.call_json("POST", "/mc/v1/requisitions", requisition(), h, 201);
  auto replay = sim.call("POST", "/mc/v1/requisitions", requisition().dump(), h);
  CHECK(replay.status == 201);
  CHECK(json::parse(replay.body) == first);
  json other = requisition();
  other["title"] = "something else";
  auto conflict = sim.call("POST", "/mc/v1/requisitions", other.dump(), h);
  CHECK(conflict.status == 422);
  CHECK(json::parse(conflict.body)["error"]["code"] == "idempotency_key_reused");

  // Work items: a retried submission with the same key creates nothing new.
  const std::string eid = engage(sim, "cheap");
  const Headers wh = bearer(kKey, "work-1");
  json a = sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", items(3), wh, 201);
  json b = sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", items(3), wh, 201);
  CHECK(a == b);
  CHECK(sim.stats("mc")["tasks_created"] == 3);
  CHECK(sim.stats("mc")["idempotent_replays"] == 2);

  auto missing = sim.call("POST", "/mc/v1/requisitions", requisition().dump(), bearer(kKey));
  CHECK(missing.status == 400);
  CHECK(json::parse(missing.body)["error"]["code"] == "invalid_request");
}

TEST_CASE("mercor: a lost response is recovered by retrying with the same Idempotency-Key", "[sim][mercor]") {
  Sim sim;
  const std::string eid = engage(sim, "cheap");
  sim.patch("mc", {{"fail_next", {{"count", 1}, {"status", 502}, {"after_commit", true}}}});
  const Headers h = bearer(kKey, "lost-1");
  CHECK(sim.call("POST", "/mc/v1/engagements/" + eid + "/work-items", items(1).dump(), h).status == 502);
  json retry = sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", items(1), h, 201);
  CHECK(retry["accepted"].size() == 1);
  CHECK(sim.stats("mc")["tasks_created"] == 1);
}

TEST_CASE("mercor: cancel only while queued, else 409 - unknown ids 404", "[sim][mercor]") {
  Sim sim;
  const std::string eid = engage(sim, "cheap");
  sim.patch("mc", {{"paused", true}});
  json a = sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", items(1, "q"), auth(), 201);
  const std::string queued = a["accepted"][0]["work_item_id"];
  CHECK(sim.call_json("GET", "/mc/v1/work-items/" + queued, nullptr, auth())["status"] == "queued");
  CHECK(sim.call_json("POST", "/mc/v1/work-items/" + queued + "/cancel", nullptr, auth())["status"] == "canceled");

  sim.patch("mc", {{"paused", false}});
  json b = sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", items(1, "d"), auth(), 201);
  const std::string done = b["accepted"][0]["work_item_id"];
  REQUIRE(eventually(
      [&] { return sim.call_json("GET", "/mc/v1/work-items/" + done, nullptr, auth())["status"] == "done"; }));
  auto refused = sim.call("POST", "/mc/v1/work-items/" + done + "/cancel", "", auth());
  CHECK(refused.status == 409);
  CHECK(json::parse(refused.body)["error"]["code"] == "not_cancelable");

  for (const std::string target : {"/mc/v1/work-items/wi_none", "/mc/v1/requisitions/req_none/matches",
                                   "/mc/v1/engagements/eng_none/timesheets"}) {
    auto r = sim.call("GET", target, "", auth());
    INFO(target);
    CHECK(r.status == 404);
    CHECK(json::parse(r.body)["error"]["code"] == "not_found");
  }
  auto unauth = sim.call("GET", "/mc/v1/work-items/" + done, "", basic(kKey));
  CHECK(unauth.status == 401);
  CHECK(json::parse(unauth.body)["error"]["code"] == "unauthorized");
}

TEST_CASE("mercor: timesheet caps billable minutes at the weekly cap - more work is 429 until next week",
          "[sim][mercor]") {
  Sim sim;
  const std::string eid = engage(sim, "md");  // available 1 hour a week: cap 60 minutes
  sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", items(3), auth(), 201);
  REQUIRE(eventually([&] { return sim.stats("mc")["completed"] == 3; }));
  json sheet = sim.call_json("GET", "/mc/v1/engagements/" + eid + "/timesheets", nullptr, auth());
  CHECK(sheet["entries"].size() == 3);
  CHECK(sheet["entries"][0]["minutes"] == 30.0);
  CHECK(sheet["billable_minutes"] == 60.0);
  CHECK(sheet["amount_usd"] == "120.000000");  // 60 minutes at $120/h
  CHECK(sheet["status"] == "open");
  CHECK(sim.stats("mc")["charged_micros"] == 120 * 1000000);

  auto capped = sim.call("POST", "/mc/v1/engagements/" + eid + "/work-items", items(1).dump(), auth());
  CHECK(capped.status == 429);
  CHECK(json::parse(capped.body)["error"]["code"] == "weekly_cap_reached");
  REQUIRE(capped.header("Retry-After"));
  CHECK(std::stol(*capped.header("Retry-After")) > 0);
  CHECK(std::stol(*capped.header("Retry-After")) <= 7 * 86400);

  json old = sim.call_json("GET", "/mc/v1/engagements/" + eid + "/timesheets?week=2020-W01", nullptr, auth());
  CHECK(old["entries"].empty());
  CHECK(old["status"] == "locked");
  CHECK(old["amount_usd"] == "0.000000");
  for (const char* bad : {"2020-W54", "2021-W53", "2020-01", "W01"}) {
    INFO(bad);
    CHECK(sim.call("GET", "/mc/v1/engagements/" + eid + "/timesheets?week=" + bad, "", auth()).status == 400);
  }
  CHECK(sim.call("GET", "/mc/v1/engagements/" + eid + "/timesheets?week=2020-W53", "", auth()).status == 200);
}

TEST_CASE("mercor: callback is signed with X-Signature HMAC over the body and X-Timestamp", "[sim][mercor]") {
  Receiver receiver;
  Sim sim;
  const std::string eid = engage(sim, "cheap", receiver.url("mercor"));
  json a = sim.call_json("POST", "/mc/v1/engagements/" + eid + "/work-items", items(1), auth(), 201);
  REQUIRE(receiver.wait_for(1));
  auto got = receiver.got()[0];
  const auto signature = got.headers.get("X-Signature");
  REQUIRE(signature);
  CHECK(std::string(*signature) == "sha256=" + labelbroker::common::hmac_sha256_hex("mercor-secret", got.body));
  const auto ts = got.headers.get("X-Timestamp");
  REQUIRE(ts);
  const long long now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(std::llabs(std::stoll(std::string(*ts)) - now) < 300);
  json payload = json::parse(got.body);
  CHECK(payload["event"] == "work_item.done");
  CHECK(payload["work_item"]["id"] == a["accepted"][0]["work_item_id"]);
  CHECK(payload["work_item"]["status"] == "done");
  CHECK(payload["work_item"]["ref"] == "it0");
}

TEST_CASE("mercor: bad input is 400 in Mercor's error format", "[sim][mercor]") {
  Sim sim;
  for (const std::string body : {"{", "[]", R"({"title":"t"})", R"({"title":"t","domain":"d"})",
                                 R"({"title":"t","domain":"d","hourly_rate_max_usd":"a lot"})",
                                 R"({"title":"t","domain":"d","hourly_rate_max_usd":10,"contract":"gig"})",
                                 R"({"title":"t","domain":"d","hourly_rate_max_usd":10,"contract":"deliverable"})"}) {
    auto r = sim.call("POST", "/mc/v1/requisitions", body, auth());
    INFO(body << " -> " << r.body);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body)["error"]["code"] == (body == "{" ? "invalid_json" : "invalid_request"));
  }
  const std::string eid = engage(sim, "cheap");
  for (const std::string body : {R"({"items":[]})", R"({"items":[{"ref":"a"}]})",
                                 R"({"items":[{"ref":"a","task_type":"classification","data":"x"}]})",
                                 R"({"items":[{"ref":"a","task_type":"classification","labels":[1],"data":{}}]})"}) {
    auto r = sim.call("POST", "/mc/v1/engagements/" + eid + "/work-items", body, auth());
    INFO(body << " -> " << r.body);
    CHECK(r.status == 400);
  }
  CHECK(sim.stats("mc")["tasks_created"] == 0);
}
