// The dispatch store's failure handling against a real PostgreSQL: what happens to a unit a vendor
// refused, depending on whether another vendor can take it.
#include "db/dispatch_store.hpp"

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "db/migrations.hpp"
#include "support/scratch_db.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;

namespace {

// One running job with three items, each with one unit at "mercor" claimed by "me".
struct Setup {
  std::string job_id;
  std::map<std::string, std::string> unit_of;  // item id -> assignment id
};

Setup make_job(const std::string& url) {
  pqxx::connection c(url);
  db::apply_migrations(c, db::builtin_migrations());
  pqxx::work tx(c);
  const auto team = tx.exec1("INSERT INTO teams (name) VALUES ('t') RETURNING id")[0].as<long>();
  Setup s;
  s.job_id = tx.exec_params1(
                   "INSERT INTO jobs (team_id, name, status, task_type, domain, expertise, labels, redundancy, "
                   "  budget_micros, deadline, eligible_vendors, optimize, planned_at) "
                   "VALUES ($1, 'j', 'running', 'classification', 'general', 'expert', '[\"a\",\"b\"]', 1, 0, "
                   "  now() + interval '1 day', '{mercor,scale}', 'balanced', now()) RETURNING id::text",
                   team)[0]
                 .as<std::string>();
  for (const auto* item : {"i-1", "i-2", "i-3"}) {
    tx.exec_params0("INSERT INTO job_items (job_id, item_id, data) VALUES ($1, $2, '{}')", s.job_id, item);
    s.unit_of[item] = tx.exec_params1(
                            "INSERT INTO assignments (job_id, item_id, vendor_id, state, attempts, batch_id, claimed_by, "
                            "  lease_expires_at) VALUES ($1, $2, 'mercor', 'sending', 1, gen_random_uuid(), 'me', "
                            "  now() + interval '1 minute') RETURNING id::text",
                            s.job_id, item)[0]
                        .as<std::string>();
  }
  tx.commit();
  return s;
}

db::DispatchRules rules_rerouting_to(std::optional<std::string> vendor) {
  db::DispatchRules rules;
  rules.reroute = [vendor](const db::DispatchJob&, const std::vector<std::string>& used)
      -> std::optional<db::RerouteChoice> {
    if (!vendor || std::find(used.begin(), used.end(), *vendor) != used.end()) return std::nullopt;
    return db::RerouteChoice{*vendor, 1000, nullptr};
  };
  rules.aggregate = [](const db::DispatchJob&, const std::vector<std::string>&) { return std::nullopt; };
  return rules;
}

}  // namespace

TEST_CASE("dispatch store: a vendor's refusal moves the unit, or waits for the vendor when nothing else can take it",
          "[.db][dispatch-store]") {
  ScratchDatabase scratch;
  const auto s = make_job(scratch.url());
  pqxx::connection c(scratch.url());
  const auto in_an_hour = std::chrono::system_clock::now() + std::chrono::hours(1);
  auto state_of = [&](const std::string& item) {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params1(
        "SELECT a.state, a.next_attempt_at > now() + interval '30 minutes', i.state, "
        "  (SELECT count(*) FROM assignments b WHERE b.job_id = a.job_id AND b.item_id = a.item_id) "
        "FROM assignments a JOIN job_items i USING (job_id, item_id) WHERE a.id = $1",
        s.unit_of.at(item));
    return std::make_tuple(r[0].as<std::string>(), r[1].as<bool>(), r[2].as<std::string>(), r[3].as<int>());
  };

  // Out of capacity, no other vendor: the unit waits at mercor (queued, not before the vendor's
  // time) and its item stays open.
  db::record_send(c, "me", {}, {{s.unit_of.at("i-1"), vendors::ErrorClass::capacity, "weekly cap", std::nullopt, in_an_hour}},
                  rules_rerouting_to(std::nullopt));
  CHECK(state_of("i-1") == std::make_tuple(std::string("queued"), true, std::string("open"), 1));

  // Out of capacity, another vendor eligible: the unit moves there.
  auto moved = db::record_send(c, "me", {},
                               {{s.unit_of.at("i-2"), vendors::ErrorClass::capacity, "weekly cap", std::nullopt, in_an_hour}},
                               rules_rerouting_to("scale"));
  CHECK(moved == 1);
  CHECK(state_of("i-2") == std::make_tuple(std::string("failed"), false, std::string("open"), 2));

  // A permanent refusal with nowhere else to go ends the item unlabeled.
  db::record_send(c, "me", {},
                  {{s.unit_of.at("i-3"), vendors::ErrorClass::permanent, "bad request", std::nullopt, std::nullopt}},
                  rules_rerouting_to(std::nullopt));
  CHECK(state_of("i-3") == std::make_tuple(std::string("failed"), false, std::string("unlabeled"), 1));

  // Only the claim's owner records outcomes: a stale claimer changes nothing.
  {
    pqxx::work tx(c);
    tx.exec_params0("UPDATE assignments SET state = 'sending', claimed_by = 'other' WHERE id = $1", s.unit_of.at("i-1"));
    tx.commit();
  }
  db::record_send(c, "me", {{s.unit_of.at("i-1"), "task-1", false}}, {}, rules_rerouting_to(std::nullopt));
  CHECK(std::get<0>(state_of("i-1")) == "sending");
}
