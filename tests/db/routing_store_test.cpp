// Routing's storage against a real PostgreSQL: planning ahead, the facts and writes of a decision,
// discounted gold evidence, and the rebalancer's moves (never-sent units now, sent ones only after
// the vendor confirmed the cancel; one rebalancer at a time).
#include "db/routing_store.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "db/dispatch_store.hpp"
#include "db/migrations.hpp"
#include "routing/router.hpp"
#include "support/scratch_db.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;

namespace {

// A queued job of `items` items (i-01 ...), medical classification, redundancy 1.
std::string make_job(pqxx::connection& c, int items, const std::string& status = "queued") {
  db::apply_migrations(c, db::builtin_migrations());
  pqxx::work tx(c);
  auto team = tx.exec("SELECT id FROM teams WHERE name = 't'");
  const auto team_id =
      team.empty() ? tx.exec1("INSERT INTO teams (name) VALUES ('t') RETURNING id")[0].as<long>() : team[0][0].as<long>();
  const auto job = tx.exec_params1(
                         "INSERT INTO jobs (team_id, name, status, task_type, domain, expertise, labels, redundancy, "
                         "  budget_micros, deadline, eligible_vendors, optimize) "
                         "VALUES ($1, 'j', $2, 'classification', 'medical', 'general', '[\"a\",\"b\"]', 1, 1000000000, "
                         "  now() + interval '1 day', '{scale,surge}', 'balanced') RETURNING id::text",
                         team_id, status)[0]
                       .as<std::string>();
  for (int i = 1; i <= items; ++i) {
    char id[8];
    std::snprintf(id, sizeof id, "i-%02d", i);
    tx.exec_params0("INSERT INTO job_items (job_id, item_id, data) VALUES ($1, $2, '{}')", job, std::string(id));
  }
  tx.commit();
  return job;
}

long count(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx(c);
  return tx.exec1(sql)[0].as<long>();
}

// Every item to one vendor, counters and a decision as the broker writes them.
db::PlanChunkFn plan_to(const std::string& vendor, std::vector<db::RoutingSnapshot>* seen = nullptr) {
  return [vendor, seen](const db::DispatchJob&, const std::vector<std::string>& ids, const db::RoutingSnapshot& facts) {
    if (seen) seen->push_back(facts);
    db::PlannedChunk chunk;
    for (const auto& id : ids) chunk.items.push_back({id, {{vendor, 40000}}});
    chunk.routing.counters[vendor] = 0.25;
    chunk.routing.decision = {{"chosen", vendor}};
    return chunk;
  };
}

db::DispatchRules rules_rerouting_to(const std::string& vendor) {
  db::DispatchRules rules;
  rules.reroute = [vendor](const db::DispatchJob&, const std::vector<std::string>& used) -> std::optional<db::RerouteChoice> {
    if (std::find(used.begin(), used.end(), vendor) != used.end()) return std::nullopt;
    return db::RerouteChoice{vendor, 150000, {{"chosen", vendor}}};
  };
  rules.aggregate = [](const db::DispatchJob&, const std::vector<std::string>&) { return std::nullopt; };
  return rules;
}

}  // namespace

TEST_CASE("routing store: a job is planned a chunk at a time while its unsent queue is short, with its "
          "counters, window and decision",
          "[.db][routing-store]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  const auto job = make_job(c, 10);
  db::PlanOptions options;
  options.chunk = 4;
  options.plan_ahead = 4;
  std::vector<db::RoutingSnapshot> seen;

  REQUIRE(db::plan_next_chunk(c, options, plan_to("scale", &seen)));
  CHECK(count(c, "SELECT count(*) FROM assignments WHERE state = 'queued'") == 4);
  // Four units wait unsent: no more planning until they go.
  CHECK_FALSE(db::plan_next_chunk(c, options, plan_to("scale", &seen)));
  pqxx::nontransaction(c).exec0("UPDATE assignments SET state = 'submitted', batch_id = gen_random_uuid()");
  REQUIRE(db::plan_next_chunk(c, options, plan_to("scale", &seen)));
  CHECK(count(c, "SELECT count(*) FROM assignments") == 8);

  // The second decision saw the first one's counters, window and the units outstanding.
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].vendors.at("scale").counter == Approx(0.25));
  CHECK(seen[1].vendors.at("scale").window_judgments == 4);
  CHECK(seen[1].vendors.at("scale").outstanding == 4);
  CHECK(seen[1].team_name == "t");
  CHECK(count(c, "SELECT count(*) FROM routing_decisions WHERE kind = 'plan' AND items = 4 AND decision->>'chosen' = "
                 "'scale' AND job_id = '" + job + "'") == 2);
  CHECK(count(c, "SELECT sum(judgments) FROM routing_window WHERE domain = 'medical' AND vendor_id = 'scale'") == 8);

  // The job's decisions read back newest first, a page at a time, for its own team only.
  auto first = db::list_routing_decisions(c, 1, job, std::nullopt, 1);
  REQUIRE(first.job_found);
  REQUIRE(first.decisions.size() == 1);
  REQUIRE(first.next_before);
  auto second = db::list_routing_decisions(c, 1, job, first.next_before, 5);
  REQUIRE(second.decisions.size() == 1);
  CHECK(second.decisions[0].id < first.decisions[0].id);
  CHECK_FALSE(second.next_before);
  CHECK_FALSE(db::list_routing_decisions(c, 999, job, std::nullopt, 5).job_found);
}

TEST_CASE("routing store: gold evidence is discounted as routing::DiscountedEvidence does", "[.db][routing-store]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  make_job(c, 1);
  routing::DiscountedEvidence expected;
  for (auto [correct, n] : {std::pair{18.0, 20.0}, std::pair{3.0, 10.0}, std::pair{0.0, 5.0}}) {
    pqxx::work tx(c);
    db::add_gold_evidence(tx, {{"scale", "medical", "classification", correct, n}}, 0.98);
    tx.commit();
    expected.observe(correct, n, 0.98);
  }
  pqxx::work tx(c);
  db::SnapshotRequest request;
  request.team_id = 1;
  request.domain = "medical";
  request.task_type = "classification";
  const auto snapshot = db::load_routing_snapshot(tx, request);
  CHECK(snapshot.vendors.at("scale").gold_n == Approx(expected.n));
  CHECK(snapshot.vendors.at("scale").gold_correct == Approx(expected.correct));
  CHECK(snapshot.vendors.at("scale").evidence_age_hours < 0.1);
}

TEST_CASE("routing store: the rebalancer moves never-sent units now and sent ones only after the vendor "
          "confirmed the cancel",
          "[.db][routing-store]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  const auto job = make_job(c, 4);
  db::PlanOptions options;
  REQUIRE(db::plan_next_chunk(c, options, plan_to("scale")));
  // i-01 and i-02 were sent and acknowledged; i-03 was sent without an answer (a retry is
  // pending, so it may exist at the vendor); i-04 was never sent.
  pqxx::nontransaction(c).exec0(
      "UPDATE assignments SET state = 'submitted', batch_id = gen_random_uuid(), vendor_task_id = 't-' || item_id "
      "WHERE item_id IN ('i-01', 'i-02');"
      "UPDATE assignments SET batch_id = gen_random_uuid(), attempts = 1 WHERE item_id = 'i-03'");
  const auto rules = rules_rerouting_to("surge");
  std::vector<db::MoveOrder> orders = {{"scale", job, std::nullopt, "breaker_open"}};

  // Another process is rebalancing: this one does nothing.
  {
    pqxx::connection other(scratch.url());
    pqxx::nontransaction(other).exec("SELECT pg_advisory_lock(hashtext('labelbroker.rebalancer'))");
    CHECK_FALSE(db::rebalance_units(c, orders, 100, rules));
    // Released here, not by closing: a closed session's locks go only when its backend has exited.
    pqxx::nontransaction(other).exec("SELECT pg_advisory_unlock(hashtext('labelbroker.rebalancer'))");
  }

  const auto result = db::rebalance_units(c, orders, 100, rules);
  REQUIRE(result);
  CHECK(result->moved == 1);
  CHECK(result->cancel_requested == 2);
  auto vendors_of = [&](const std::string& item) {
    pqxx::nontransaction tx(c);
    return tx.exec_params1("SELECT string_agg(vendor_id || ':' || state, ',' ORDER BY created_at, vendor_id) "
                           "FROM assignments WHERE item_id = $1",
                           item)[0]
        .as<std::string>();
  };
  CHECK(vendors_of("i-04") == "scale:failed,surge:queued");  // moved at once
  CHECK(vendors_of("i-03") == "scale:queued");                // may be at the vendor: stays
  CHECK(vendors_of("i-01") == "scale:submitted");             // waits for the vendor's answer
  CHECK(count(c, "SELECT count(*) FROM assignments WHERE move_reason = 'breaker_open' AND "
                 "cancel_requested_at IS NOT NULL") == 2);
  CHECK(count(c, "SELECT sum(judgments) FROM routing_window WHERE vendor_id = 'scale'") == 3);
  CHECK(count(c, "SELECT sum(judgments) FROM routing_window WHERE vendor_id = 'surge'") == 1);
  CHECK(count(c, "SELECT count(*) FROM routing_decisions WHERE kind = 'rebalance' AND decision->>'reason' = "
                 "'breaker_open' AND (decision->>'cancel_requested')::int = 2") == 1);
  CHECK(count(c, "SELECT count(*) FROM routing_decisions WHERE kind = 'reroute' AND decision->>'item_id' = 'i-04'") ==
        1);

  // The canceller claims them as moves, so it cancels them one by one, not the whole job.
  const auto targets = db::claim_units_to_cancel(c, "scale", 10, std::chrono::seconds(30));
  REQUIRE(targets.size() == 2);
  for (const auto& t : targets) CHECK(t.move);

  // The vendor canceled i-01 but had started i-02: only i-01's item goes elsewhere.
  std::string i01, i02;
  {
    pqxx::nontransaction tx(c);
    i01 = tx.exec1("SELECT id::text FROM assignments WHERE item_id = 'i-01'")[0].as<std::string>();
    i02 = tx.exec1("SELECT id::text FROM assignments WHERE item_id = 'i-02'")[0].as<std::string>();
  }
  db::record_cancel_outcomes(c, {i01}, {i02}, rules);
  CHECK(vendors_of("i-01") == "scale:canceled,surge:queued");
  CHECK(vendors_of("i-02") == "scale:submitted");

  // A job's own cancel is not a move: canceled units of a canceled job stay canceled.
  const auto other_job = make_job(c, 1, "running");
  {
    pqxx::nontransaction tx(c);
    tx.exec_params0("INSERT INTO assignments (job_id, item_id, vendor_id, state, vendor_task_id) "
                    "VALUES ($1, 'i-01', 'scale', 'submitted', 'x')",
                    other_job);
    tx.exec_params0("UPDATE jobs SET status = 'canceled' WHERE id = $1", other_job);
  }
  const auto unit = pqxx::nontransaction(c)
                        .exec_params1("SELECT id::text FROM assignments WHERE job_id = $1", other_job)[0]
                        .as<std::string>();
  db::record_cancel_outcomes(c, {unit}, {}, rules);
  CHECK(count(c, "SELECT count(*) FROM assignments WHERE job_id = '" + other_job + "'") == 1);

  // A unit no other vendor can take is not moved: it stays queued where it was.
  const auto lone = make_job(c, 1);
  REQUIRE(db::plan_next_chunk(c, options, plan_to("scale")));
  const auto stuck = db::rebalance_units(c, {{"scale", lone, std::nullopt, "breaker_open"}}, 100, rules_rerouting_to("scale"));
  REQUIRE(stuck);
  CHECK(stuck->moved == 0);
  CHECK(count(c, "SELECT count(*) FROM assignments WHERE job_id = '" + lone + "' AND state = 'queued' AND "
                 "error_class IS NULL AND move_reason IS NULL") == 1);
  CHECK(count(c, "SELECT count(*) FROM routing_decisions WHERE kind = 'rebalance' AND job_id = '" + lone + "'") == 0);
}
