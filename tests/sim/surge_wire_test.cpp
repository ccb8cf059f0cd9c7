// Surge-style wire format: projects, lifecycle PUTs, task creation (single and bulk), page-based
// bare arrays, callbacks.
#include "sim_fixture.hpp"

using namespace labelbroker::vendors::sim::testing;

namespace {

const Headers kAuth = basic("surge-key");

json project_body(const std::string& callback_url = "") {
  json p = {{"name", "triage"},
            {"instructions", "Label urgency"},
            {"questions",
             {{{"id", "q1"},
               {"text", "How urgent?"},
               {"type", "multiple_choice"},
               {"options", {"urgent", "routine"}},
               {"required", true}}}},
            {"num_workers_per_task", 2},
            {"payment_per_response", 0.25},
            {"tags", {"domain:medical", "expertise:expert"}}};
  if (!callback_url.empty()) p["callback_url"] = callback_url;
  return p;
}

}  // namespace

TEST_CASE("surge: project lifecycle with PUT launch, pause, resume, cancel", "[sim][surge]") {
  Sim sim;
  json p = sim.call_json("POST", "/sg/api/projects", project_body(), kAuth);
  const std::string id = p["id"];
  CHECK(id.size() == 36);
  CHECK(p["status"] == "unlaunched");
  CHECK(p["name"] == "triage");
  CHECK(p["num_tasks"] == 0);
  CHECK(p["num_tasks_completed"] == 0);
  CHECK(p["num_workers_per_task"] == 2);
  CHECK(p["payment_per_response"] == 0.25);
  for (const char* key : {"created_at", "callback_url", "avg_gold_standard_score", "interrater_agreement", "questions"})
    CHECK(p.contains(key));

  CHECK(sim.call("POST", "/sg/api/projects/" + id + "/launch", "", kAuth).status == 405);  // PUT only
  CHECK(sim.call_json("PUT", "/sg/api/projects/" + id + "/launch", nullptr, kAuth)["status"] == "in_progress");
  CHECK(sim.call_json("PUT", "/sg/api/projects/" + id + "/launch", nullptr, kAuth)["status"] == "in_progress");
  CHECK(sim.call_json("PUT", "/sg/api/projects/" + id + "/pause", nullptr, kAuth)["status"] == "paused");
  CHECK(sim.call_json("PUT", "/sg/api/projects/" + id + "/resume", nullptr, kAuth)["status"] == "in_progress");
  CHECK(sim.call_json("PUT", "/sg/api/projects/" + id + "/cancel", nullptr, kAuth)["status"] == "canceled");
  auto relaunch = sim.call("PUT", "/sg/api/projects/" + id + "/launch", "", kAuth);
  CHECK(relaunch.status == 400);
  CHECK(json::parse(relaunch.body)["error"].is_string());
  CHECK(sim.call("PUT", "/sg/api/projects/00000000-0000-0000-0000-000000000000/launch", "", kAuth).status == 404);
  CHECK(sim.call_json("GET", "/sg/api/projects/" + id, nullptr, kAuth)["status"] == "canceled");
}

TEST_CASE("surge: tasks wait for launch - bulk create with launch - fields incl. _broker_ref round-trip",
          "[sim][surge]") {
  Sim sim;
  json p = sim.call_json("POST", "/sg/api/projects", project_body(), kAuth);
  const std::string pid = p["id"];
  json one = sim.call_json("POST", "/sg/api/projects/" + pid + "/tasks",
                           {{"fields", {{"text", "chest pain"}, {"_broker_ref", "asg-1"}}}}, kAuth);
  CHECK(one["project_id"] == pid);
  CHECK(one["status"] == "pending");
  CHECK(one["is_complete"] == false);
  CHECK(one["is_gold_standard"] == false);
  CHECK(one["responses"] == json::array());
  CHECK(one["fields"] == json({{"text", "chest pain"}, {"_broker_ref", "asg-1"}}));

  // Not launched: nothing is worked.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(sim.call_json("GET", "/sg/api/tasks/" + one["id"].get<std::string>(), nullptr, kAuth)["status"] == "pending");

  json bulk =
      sim.call_json("POST", "/sg/api/projects/" + pid + "/tasks/create_tasks",
                    {{"tasks", {{{"text", "a"}, {"_broker_ref", "asg-2"}}, {{"text", "b"}, {"_broker_ref", "asg-3"}}}},
                     {"launch", true}},
                    kAuth);
  REQUIRE(bulk.is_array());
  REQUIRE(bulk.size() == 2);
  CHECK(bulk[1]["fields"]["_broker_ref"] == "asg-3");
  json done;
  REQUIRE(eventually([&] {
    done = sim.call_json("GET", "/sg/api/tasks/" + one["id"].get<std::string>(), nullptr, kAuth);
    return done["is_complete"] == true;
  }));
  CHECK(done["status"] == "completed");
  REQUIRE(done["responses"].size() == 2);  // num_workers_per_task
  for (const auto& r : done["responses"]) {
    CHECK(r["id"].is_string());
    CHECK(r["worker_id"].is_string());
    CHECK(r["completed_at"].is_string());
    CHECK((r["data"]["q1"] == "urgent" || r["data"]["q1"] == "routine"));
  }
  REQUIRE(eventually(
      [&] { return sim.call_json("GET", "/sg/api/projects/" + pid, nullptr, kAuth)["status"] == "completed"; }));
  json proj = sim.call_json("GET", "/sg/api/projects/" + pid, nullptr, kAuth);
  CHECK(proj["num_tasks"] == 3);
  CHECK(proj["num_tasks_completed"] == 3);
  CHECK(sim.stats("sg")["charged_micros"] == 3 * 2 * 250000);
}

TEST_CASE("surge: task listing is a bare array paged by page (1-based) and per_page (default 100)", "[sim][surge]") {
  Sim sim;
  const std::string pid = sim.call_json("POST", "/sg/api/projects", project_body(), kAuth)["id"];
  json tasks = json::array();
  for (int i = 0; i < 105; ++i)
    tasks.push_back({{"text", "t" + std::to_string(i)}, {"_broker_ref", "r" + std::to_string(i)}});
  sim.call_json("POST", "/sg/api/projects/" + pid + "/tasks/create_tasks", {{"tasks", tasks}, {"launch", false}},
                kAuth);

  json page1 = sim.call_json("GET", "/sg/api/projects/" + pid + "/tasks", nullptr, kAuth);
  json page2 = sim.call_json("GET", "/sg/api/projects/" + pid + "/tasks?page=2", nullptr, kAuth);
  json page3 = sim.call_json("GET", "/sg/api/projects/" + pid + "/tasks?page=3", nullptr, kAuth);
  REQUIRE(page1.is_array());
  CHECK(page1.size() == 100);
  CHECK(page2.size() == 5);
  CHECK(page3.empty());
  CHECK(page2[4]["fields"]["_broker_ref"] == "r104");
  json small = sim.call_json("GET", "/sg/api/projects/" + pid + "/tasks?page=3&per_page=10", nullptr, kAuth);
  CHECK(small.size() == 10);
  CHECK(small[0]["fields"]["_broker_ref"] == "r20");
  CHECK(sim.call("GET", "/sg/api/projects/" + pid + "/tasks?page=0", "", kAuth).status == 400);
  json projects = sim.call_json("GET", "/sg/api/projects?page=1", nullptr, kAuth);
  CHECK(projects.size() == 1);
  CHECK(sim.call_json("GET", "/sg/api/projects?page=2", nullptr, kAuth).empty());
}

TEST_CASE("surge: cancel via the project cancels tasks not yet started", "[sim][surge]") {
  Sim sim;
  const std::string pid = sim.call_json("POST", "/sg/api/projects", project_body(), kAuth)["id"];
  json t = sim.call_json("POST", "/sg/api/projects/" + pid + "/tasks", {{"fields", {{"text", "x"}}}}, kAuth);
  sim.call_json("PUT", "/sg/api/projects/" + pid + "/cancel", nullptr, kAuth);
  CHECK(sim.call_json("GET", "/sg/api/tasks/" + t["id"].get<std::string>(), nullptr, kAuth)["status"] == "canceled");
  CHECK(sim.call("POST", "/sg/api/projects/" + pid + "/tasks", R"({"fields":{"text":"y"}})", kAuth).status == 400);
  CHECK(sim.stats("sg")["cancels"] == 1);
  CHECK(sim.stats("sg")["charged_micros"] == 0);
}

TEST_CASE("surge: auth, 404 and bad input in Surge's error format", "[sim][surge]") {
  Sim sim;
  auto unauth = sim.call("POST", "/sg/api/projects", project_body().dump(), basic("nope"));
  CHECK(unauth.status == 401);
  CHECK(json::parse(unauth.body)["error"].is_string());
  CHECK(sim.call("GET", "/sg/api/tasks/missing", "", kAuth).status == 404);
  CHECK(sim.call("GET", "/sg/api/projects/missing/tasks", "", kAuth).status == 404);
  for (const std::string body :
       {"{", R"({"name":"x"})", R"({"name":"x","questions":[{"text":"q","type":"essay"}]})",
        R"({"name":"x","questions":[{"text":"q","options":["only"]}]})",
        R"({"name":"x","questions":[{"text":"q","options":["a","b"]}],"num_workers_per_task":0})"}) {
    auto r = sim.call("POST", "/sg/api/projects", body, kAuth);
    INFO(body << " -> " << r.body);
    CHECK(r.status == 400);
    CHECK(json::parse(r.body).contains("error"));
  }
  const std::string pid = sim.call_json("POST", "/sg/api/projects", project_body(), kAuth)["id"];
  CHECK(sim.call("POST", "/sg/api/projects/" + pid + "/tasks", R"({"fields":[1]})", kAuth).status == 400);
  CHECK(sim.call("POST", "/sg/api/projects/" + pid + "/tasks/create_tasks", R"({"tasks":[{"a":1},2]})", kAuth).status ==
        400);
  CHECK(sim.call_json("GET", "/sg/api/projects/" + pid, nullptr, kAuth)["num_tasks"] == 0);  // all or nothing
}

TEST_CASE("surge: callback posts the task with its responses to the project's callback_url", "[sim][surge]") {
  Receiver receiver;
  Sim sim;
  const std::string pid =
      sim.call_json("POST", "/sg/api/projects", project_body(receiver.url("surge") + "?token=abc"), kAuth)["id"];
  sim.call_json("POST", "/sg/api/projects/" + pid + "/tasks/create_tasks",
                {{"tasks", {{{"text", "x"}, {"_broker_ref", "asg-9"}}}}, {"launch", true}}, kAuth);
  REQUIRE(receiver.wait_for(1));
  auto got = receiver.got()[0];
  CHECK(got.target.find("?token=abc") != std::string::npos);
  json task = json::parse(got.body);
  CHECK(task["project_id"] == pid);
  CHECK(task["is_complete"] == true);
  CHECK(task["fields"]["_broker_ref"] == "asg-9");
  CHECK(task["responses"].size() == 2);
}
