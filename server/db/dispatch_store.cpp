#include "db/dispatch_store.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include <pqxx/pqxx>

#include "common/crypto.hpp"
#include "common/strings.hpp"
#include "db/ledger.hpp"

namespace labelbroker::db {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::system_clock;

// Lists travel to PostgreSQL as one JSON parameter, unpacked with jsonb_to_recordset: one
// statement per batch instead of one per row, and still fully parameterised.
std::string as_param(const json& rows) { return rows.dump(); }

// A list of strings (ids) as one JSON parameter.
template <typename Strings>
std::string strings_param(const Strings& values) {
  json list = json::array();
  for (const auto& v : values) list.push_back(v);
  return list.dump();
}

// The key lists these transactions join against are small next to the tables (a batch against
// every open item of a job), but PostgreSQL cannot see inside a JSON parameter and estimates 100
// rows, which makes it hash-join, i.e. scan all of job_items or assignments per callback. Nested
// loops over the primary keys are right for every list size we send, so ask for them.
// The hot statements are prepared (below) with a generic plan, which these settings shape too.
void prefer_key_lookups(pqxx::work& tx) {
  tx.exec(
      "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "
      "SET LOCAL plan_cache_mode = force_generic_plan");
}

// Runs `sql` as a prepared statement of this connection, defined on first use (pqxx prepares it
// lazily and treats a repeated identical definition as a no-op). The result path runs these
// statements thousands of times a second; planning their LATERAL joins afresh each time cost more
// than running them.
template <typename... Args>
pqxx::result run_prepared(pqxx::work& tx, const std::string& name, const std::string& sql, Args&&... args) {
  tx.conn().prepare(name, sql);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

std::int64_t epoch_ms(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}


std::vector<std::string> json_strings(const std::string& text) {
  std::vector<std::string> out;
  auto parsed = json::parse(text, nullptr, false);
  if (!parsed.is_array()) return out;
  for (const auto& v : parsed)
    if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

constexpr const char* kJobColumns =
    "j.id::text, j.team_id, j.name, j.status, j.task_type, j.domain, j.expertise, j.instructions, j.labels::text, "
    "j.redundancy, array_to_json(j.eligible_vendors)::text, (extract(epoch from j.deadline) * 1000)::bigint, "
    "array_to_json(j.allow_vendors)::text, array_to_json(j.deny_vendors)::text, j.min_vendor_accuracy, j.optimize";
constexpr int kJobColumnCount = 16;

DispatchJob job_from_row(const pqxx::row& r) {
  DispatchJob job;
  job.id = r[0].as<std::string>();
  job.team_id = r[1].as<std::int64_t>();
  job.name = r[2].as<std::string>();
  job.status = r[3].as<std::string>();
  job.task_type = vendors::parse_task_type(r[4].as<std::string>()).value_or(vendors::TaskType::classification);
  job.domain = r[5].as<std::string>();
  job.expertise = vendors::parse_expertise(r[6].as<std::string>()).value_or(vendors::Expertise::general);
  job.instructions = r[7].as<std::string>();
  job.labels = json_strings(r[8].as<std::string>());
  job.redundancy = r[9].as<int>();
  job.eligible_vendors = json_strings(r[10].as<std::string>());
  job.deadline = Clock::time_point(std::chrono::milliseconds(r[11].as<std::int64_t>()));
  job.allow_vendors = json_strings(r[12].as<std::string>());
  job.deny_vendors = json_strings(r[13].as<std::string>());
  if (!r[14].is_null()) job.min_vendor_accuracy = r[14].as<double>();
  job.optimize = r[15].as<std::string>();
  return job;
}

// Jobs by id, read inside the caller's transaction.
std::map<std::string, DispatchJob> load_jobs(pqxx::work& tx, const std::set<std::string>& ids) {
  std::map<std::string, DispatchJob> jobs;
  if (ids.empty()) return jobs;
  auto rows = run_prepared(
      tx, "lb_load_jobs",
      std::string("SELECT ") + kJobColumns +
          " FROM jsonb_array_elements_text($1::jsonb) AS x(id) CROSS JOIN LATERAL "
          "(SELECT * FROM jobs WHERE id = x.id::uuid) j",
      strings_param(ids));
  for (const auto& r : rows) {
    auto job = job_from_row(r);
    jobs.emplace(job.id, std::move(job));
  }
  return jobs;
}

struct ItemKey {
  std::string job_id;
  std::string item_id;
  bool operator<(const ItemKey& o) const { return std::tie(job_id, item_id) < std::tie(o.job_id, o.item_id); }
};

json item_keys_param(const std::set<ItemKey>& items) {
  json rows = json::array();
  for (const auto& k : items) rows.push_back({{"job_id", k.job_id}, {"item_id", k.item_id}});
  return rows;
}

// Locks the items' rows (in key order, so concurrent transactions cannot deadlock on them). Call
// before reading the items' assignments: under READ COMMITTED the next statement then sees every
// transaction that touched these items and committed before us. Without it two results for one
// item, recorded concurrently, could each miss the other's and leave the item open forever.
// Returns each item's state as locked.
struct LockedItem {
  std::string state;
  bool gold = false;
};

std::map<ItemKey, LockedItem> lock_items(pqxx::work& tx, const std::set<ItemKey>& items) {
  std::map<ItemKey, LockedItem> states;
  if (items.empty()) return states;
  // One index lookup per key, in the list's (sorted) order.
  auto rows = run_prepared(tx, "lb_lock_items",
      "SELECT x.job_id::text, x.item_id, l.state, l.gold "
      "FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (job_id uuid, item_id text)) WITH ORDINALITY "
      "  AS x(job_id, item_id, n) "
      "CROSS JOIN LATERAL (SELECT i.state, i.gold_answer IS NOT NULL AS gold FROM job_items i "
      "                    WHERE i.job_id = x.job_id AND i.item_id = x.item_id FOR UPDATE) l "
      "ORDER BY x.n",
      as_param(item_keys_param(items)));
  for (const auto& r : rows)
    states.emplace(ItemKey{r[0].as<std::string>(), r[1].as<std::string>()},
                   LockedItem{r[2].as<std::string>(), r[3].as<bool>()});
  return states;
}

// Gives items whose units failed another vendor each (one not used for the item yet), if the
// job is still running and the item still open. Items left with nothing in flight are finalized by
// finalize_items afterwards.
std::set<ItemKey> reroute_items(pqxx::work& tx, const std::set<ItemKey>& items, const DispatchRules& rules) {
  if (items.empty() || !rules.reroute) return {};
  lock_items(tx, items);
  auto rows = tx.exec_params(
      "SELECT x.job_id::text, x.item_id, u.vendors, u.live "
      "FROM jsonb_to_recordset($1::jsonb) AS x(job_id uuid, item_id text) "
      "CROSS JOIN LATERAL (SELECT i.state FROM job_items i WHERE i.job_id = x.job_id AND i.item_id = x.item_id) i "
      "CROSS JOIN LATERAL (SELECT j.status FROM jobs j WHERE j.id = x.job_id) j "
      "CROSS JOIN LATERAL (SELECT coalesce(json_agg(a.vendor_id), '[]')::text AS vendors, "
      "                           count(*) FILTER (WHERE a.state IN ('queued', 'sending', 'submitted', 'completed')) "
      "                             AS live "
      "                    FROM assignments a WHERE a.job_id = x.job_id AND a.item_id = x.item_id) u "
      "WHERE i.state = 'open' AND j.status = 'running'",
      as_param(item_keys_param(items)));
  std::set<std::string> job_ids;
  for (const auto& r : rows) job_ids.insert(r[0].as<std::string>());
  const auto jobs = load_jobs(tx, job_ids);
  json inserts = json::array();
  std::map<std::string, std::map<std::string, std::int64_t>> window;  // domain -> vendor -> judgments
  std::vector<RoutingWrite> decisions;
  for (const auto& r : rows) {
    const auto job = jobs.find(r[0].as<std::string>());
    if (job == jobs.end()) continue;
    // Judgments still coming or already in: only the missing ones move elsewhere.
    if (r[3].as<int>() >= job->second.redundancy) continue;
    auto choice = rules.reroute(job->second, json_strings(r[2].as<std::string>()));
    if (!choice) continue;
    inserts.push_back({{"job_id", job->first},
                       {"item_id", r[1].as<std::string>()},
                       {"vendor_id", choice->vendor_id},
                       {"quote", choice->quote_micros}});
    ++window[job->second.domain][choice->vendor_id];
    if (!choice->decision.is_null()) {
      RoutingWrite logged;
      logged.job_id = job->first;
      logged.kind = "reroute";
      logged.items = 1;
      logged.decision = std::move(choice->decision);
      logged.decision["item_id"] = r[1].as<std::string>();
      decisions.push_back(std::move(logged));
    }
  }
  // Window rows in key order, as planning writes them, so the two never deadlock.
  for (auto& [domain, judgments] : window) {
    RoutingWrite counted;
    counted.domain = domain;
    counted.judgments = std::move(judgments);
    save_routing(tx, counted);
  }
  for (const auto& logged : decisions) save_routing(tx, logged);
  if (inserts.empty()) return {};
  auto inserted = tx.exec_params(
      "INSERT INTO assignments (job_id, item_id, vendor_id, quote_micros) "
      "SELECT x.job_id, x.item_id, x.vendor_id, x.quote FROM jsonb_to_recordset($1::jsonb) "
      "  AS x(job_id uuid, item_id text, vendor_id text, quote bigint) "
      "ON CONFLICT (job_id, item_id, vendor_id) DO NOTHING "
      "RETURNING job_id::text, item_id",
      as_param(inserts));
  std::set<ItemKey> rerouted;
  for (const auto& r : inserted) rerouted.insert({r[0].as<std::string>(), r[1].as<std::string>()});
  return rerouted;
}

// Aggregates items with no unit in flight (or all of them when `force`): labeled when they have a
// judgment, unlabeled otherwise. Locks the items, so a concurrent result cannot slip in between.
std::size_t finalize_items(pqxx::work& tx, const std::set<ItemKey>& items, const DispatchRules& rules, bool force) {
  if (items.empty()) return 0;
  std::set<ItemKey> open, gold;
  for (const auto& [key, item] : lock_items(tx, items)) {
    if (item.state != "open") continue;
    open.insert(key);
    if (item.gold) gold.insert(key);
  }
  if (open.empty()) return 0;
  // The items' assignments as plain rows (an index range per item), tallied here: cheaper for
  // PostgreSQL than aggregating them into JSON per item, and this runs for every result.
  struct Tally {
    long in_flight = 0;
    std::vector<std::string> answers;  // in vendor order: the aggregation sees a stable order
    std::vector<std::string> vendors;  // parallel to answers
  };
  std::map<ItemKey, Tally> tallies;
  auto rows = run_prepared(tx, "lb_item_assignments",
      "SELECT x.job_id::text, x.item_id, a.state, a.answer, a.vendor_id "
      "FROM jsonb_to_recordset($1::jsonb) AS x(job_id uuid, item_id text) "
      "CROSS JOIN LATERAL (SELECT a.state, a.answer, a.vendor_id FROM assignments a "
      "                    WHERE a.job_id = x.job_id AND a.item_id = x.item_id) a "
      "ORDER BY 1, 2, a.vendor_id",
      as_param(item_keys_param(open)));
  for (const auto& r : rows) {
    auto& tally = tallies[ItemKey{r[0].as<std::string>(), r[1].as<std::string>()}];
    const auto state = r[2].as<std::string>();
    if (state == "queued" || state == "sending" || state == "submitted") ++tally.in_flight;
    if (state == "completed" && !r[3].is_null()) {
      tally.answers.push_back(r[3].as<std::string>());
      tally.vendors.push_back(r[4].as<std::string>());
    }
  }
  std::set<std::string> job_ids;
  for (const auto& key : open) job_ids.insert(key.job_id);
  const auto jobs = load_jobs(tx, job_ids);
  json updates = json::array();
  json pairs = json::array();
  for (const auto& key : open) {
    const auto& tally = tallies[key];
    if (!force && tally.in_flight > 0) continue;
    const auto job = jobs.find(key.job_id);
    if (job == jobs.end()) continue;
    auto label = rules.aggregate ? rules.aggregate(job->second, tally.answers) : std::nullopt;
    json u = {{"job_id", key.job_id}, {"item_id", key.item_id}};
    if (label) {
      u["state"] = "labeled";
      u["label"] = label->label;
      u["confidence"] = label->confidence;
      u["method"] = label->method;
    } else {
      u["state"] = "unlabeled";
      u["label"] = nullptr;
      u["confidence"] = nullptr;
      u["method"] = nullptr;
    }
    updates.push_back(std::move(u));
    // Every pair of vendors that answered a real item, for agreement and kappa.
    if (gold.count(key)) continue;
    for (std::size_t a = 0; a < tally.vendors.size(); ++a)
      for (std::size_t b = a + 1; b < tally.vendors.size(); ++b) {
        const bool ordered = tally.vendors[a] < tally.vendors[b];
        const auto& [va, la] = ordered ? std::tie(tally.vendors[a], tally.answers[a]) : std::tie(tally.vendors[b], tally.answers[b]);
        const auto& [vb, lb] = ordered ? std::tie(tally.vendors[b], tally.answers[b]) : std::tie(tally.vendors[a], tally.answers[a]);
        pairs.push_back({{"a", va}, {"b", vb}, {"la", la}, {"lb", lb}, {"job_id", key.job_id}});
      }
  }
  if (!pairs.empty())
    tx.exec_params0(
        "INSERT INTO agreement_events (vendor_a, vendor_b, domain, task_type, expertise, label_a, label_b) "
        "SELECT x.a, x.b, j.domain, j.task_type, j.expertise, x.la, x.lb "
        "FROM jsonb_to_recordset($1::jsonb) AS x(a text, b text, la text, lb text, job_id uuid) "
        "CROSS JOIN LATERAL (SELECT j.domain, j.task_type, j.expertise FROM jobs j WHERE j.id = x.job_id) j",
        as_param(pairs));
  if (updates.empty()) return 0;
  run_prepared(tx, "lb_finalize_items",
      "UPDATE job_items i SET state = x.state, label = x.label, confidence = x.confidence, method = x.method, "
      "  finished_at = now() "
      "FROM jsonb_to_recordset($1::jsonb) AS x(job_id uuid, item_id text, state text, label text, "
      "  confidence double precision, method text) "
      "WHERE i.job_id = x.job_id AND i.item_id = x.item_id",
      as_param(updates));
  return updates.size();
}

constexpr const char* kRfc3339 = "YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"";

// Writes the job's end event to the webhook outbox (if the job has a callback_url), in the
// transaction that ended it. The event id is stable, so receivers can drop repeats of an
// at-least-once delivery.
void enqueue_job_event(pqxx::work& tx, const std::string& job_id) {
  auto r = tx.exec_params1(
      std::string("SELECT j.id::text, j.name, j.status, coalesce(j.end_reason, ''), coalesce(j.callback_url, ''), "
                  "to_char(j.created_at AT TIME ZONE 'UTC', '") +
          kRfc3339 + "'), to_char(coalesce(j.finished_at, now()) AT TIME ZONE 'UTC', '" + kRfc3339 +
          "'), j.team_id, "
          "(SELECT count(*) FROM job_items i WHERE i.job_id = j.id AND i.gold_answer IS NULL), "
          "(SELECT count(*) FROM job_items i WHERE i.job_id = j.id AND i.gold_answer IS NULL AND i.state = 'labeled'), "
          "(SELECT count(*) FROM job_items i WHERE i.job_id = j.id AND i.gold_answer IS NULL AND i.state = 'unlabeled') "
          "FROM jobs j WHERE j.id = $1",
      job_id);
  const std::string url = r[4].as<std::string>();
  if (url.empty()) return;
  const std::string type = "job." + r[2].as<std::string>();
  json job = {{"id", r[0].as<std::string>()},
              {"name", r[1].as<std::string>()},
              {"status", r[2].as<std::string>()},
              {"end_reason", r[3].as<std::string>().empty() ? json(nullptr) : json(r[3].as<std::string>())},
              {"created_at", r[5].as<std::string>()},
              {"finished_at", r[6].as<std::string>()},
              {"counts", {{"items", r[8].as<long>()}, {"labeled", r[9].as<long>()}, {"unlabeled", r[10].as<long>()}}},
              {"results_url", "/v1/jobs/" + r[0].as<std::string>() + "/results"}};
  json event = {{"id", "evt_" + common::sha256_hex(job_id + "/" + type).substr(0, 24)},
                {"type", type},
                {"created_at", r[6].as<std::string>()},
                {"data", {{"job", std::move(job)}}}};
  tx.exec_params0(
      "INSERT INTO webhook_deliveries (job_id, team_id, url, event, body) VALUES ($1, $2, $3, $4, $5) "
      "ON CONFLICT (job_id, event) DO NOTHING",
      job_id, r[7].as<std::int64_t>(), url, type, event.dump());
}

// Stops a job's outstanding work: units never sent are canceled, units that may be at a vendor are
// flagged for the canceller (a batch that was sent before is first re-sent as it was, so its
// vendor task ids are known and it can be canceled).
void stop_units(pqxx::work& tx, const std::string& job_id) {
  tx.exec_params0(
      "UPDATE assignments SET state = 'canceled', claimed_by = NULL, lease_expires_at = NULL "
      "WHERE job_id = $1 AND state IN ('queued', 'paused') AND batch_id IS NULL",
      job_id);
  tx.exec_params0(
      "UPDATE assignments SET cancel_requested_at = now() "
      "WHERE job_id = $1 AND state IN ('queued', 'sending', 'submitted') AND cancel_requested_at IS NULL",
      job_id);
}

std::set<ItemKey> open_items(pqxx::work& tx, const std::string& job_id) {
  std::set<ItemKey> items;
  auto rows = tx.exec_params("SELECT item_id FROM job_items WHERE job_id = $1 AND state = 'open' AND gold_answer IS NULL",
                             job_id);
  for (const auto& r : rows) items.insert({job_id, r[0].as<std::string>()});
  return items;
}

enum class Ending { canceled, deadline, done };

// Ends a job in the caller's transaction (which holds the job row's lock): outstanding work is
// stopped and open items labeled from what they have (unless every item is done already), the
// status set (canceled; else completed when some item got a label, failed when none did), and the
// job's webhook event written to the outbox.
// Relabels a job from all its judgments (rules.relabel, i.e. Dawid-Skene) and records each
// vendor's estimated accuracy on it as a quality event.
void relabel_job(pqxx::work& tx, const std::string& job_id, const DispatchRules& rules) {
  if (!rules.relabel) return;
  const auto jobs = load_jobs(tx, {job_id});
  if (jobs.empty()) return;
  const auto& job = jobs.begin()->second;
  std::vector<JobJudgment> judgments;
  {
    auto rows = tx.exec_params(
        "SELECT a.item_id, a.vendor_id, a.answer FROM assignments a "
        "JOIN job_items i ON i.job_id = a.job_id AND i.item_id = a.item_id "
        "WHERE a.job_id = $1 AND a.state = 'completed' AND a.answer IS NOT NULL AND i.gold_answer IS NULL "
        "  AND i.state = 'labeled' "
        "ORDER BY a.item_id, a.vendor_id",
        job_id);
    judgments.reserve(rows.size());
    for (const auto& r : rows)
      judgments.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>()});
  }
  if (judgments.empty()) return;
  const auto relabeled = rules.relabel(job, judgments);
  constexpr std::size_t kChunk = 5000;
  for (std::size_t from = 0; from < relabeled.items.size(); from += kChunk) {
    json updates = json::array();
    for (std::size_t i = from; i < std::min(relabeled.items.size(), from + kChunk); ++i) {
      const auto& item = relabeled.items[i];
      updates.push_back({{"job_id", job_id},
                         {"item_id", item.item_id},
                         {"label", item.label.label},
                         {"confidence", item.label.confidence},
                         {"method", item.label.method}});
    }
    // The job id rides in every row (not as its own parameter) so the only way in is the primary
    // key per row; given `job_id = $1` alone, a planner with stale statistics on a fast-growing
    // job_items scanned the job's items once per row.
    run_prepared(tx, "lb_relabel_items",
        "UPDATE job_items i SET label = x.label, confidence = x.confidence, method = x.method "
        "FROM jsonb_to_recordset($1::jsonb) AS x(job_id uuid, item_id text, label text, confidence double precision, "
        "  method text) "
        "WHERE i.job_id = x.job_id AND i.item_id = x.item_id AND i.state = 'labeled'",
        as_param(updates));
  }
  json estimates = json::array();
  for (const auto& v : relabeled.vendors)
    estimates.push_back({{"vendor", v.vendor_id}, {"n", v.judgments}, {"correct", v.accuracy * static_cast<double>(v.judgments)}});
  if (!estimates.empty())
    tx.exec_params0(
        "INSERT INTO quality_events (team_id, vendor_id, domain, task_type, expertise, ds_n, ds_correct) "
        "SELECT j.team_id, x.vendor, j.domain, j.task_type, j.expertise, x.n, x.correct "
        "FROM jsonb_to_recordset($2::jsonb) AS x(vendor text, n integer, correct double precision) "
        "CROSS JOIN (SELECT team_id, domain, task_type, expertise FROM jobs WHERE id = $1) j",
        job_id, as_param(estimates));
}

void end_job(pqxx::work& tx, const std::string& job_id, const DispatchRules& rules, Ending ending) {
  if (ending != Ending::done) {
    stop_units(tx, job_id);
    finalize_items(tx, open_items(tx, job_id), rules, true);
  }
  relabel_job(tx, job_id, rules);
  const bool labeled =
      !tx.exec_params("SELECT 1 FROM job_items WHERE job_id = $1 AND state = 'labeled' LIMIT 1", job_id).empty();
  std::string status = labeled ? "completed" : "failed";
  std::optional<std::string> reason;
  if (ending == Ending::canceled) {
    status = "canceled";
    reason = "canceled by the team";
  } else if (ending == Ending::deadline) {
    reason = "deadline";
  } else if (!labeled) {
    reason = "no item could be labeled";
  }
  tx.exec_params0(
      "UPDATE jobs SET status = $2, end_reason = $3, finished_at = now(), updated_at = now(), "
      "  planned_at = coalesce(planned_at, now()) WHERE id = $1",
      job_id, status, reason);
  enqueue_job_event(tx, job_id);
}

// Counts units handed to a vendor and units it refused (for its error rate), one event per
// vendor and job kind.
void record_send_events(pqxx::work& tx, const json& outcomes) {
  if (outcomes.empty()) return;
  tx.exec_params0(
      "INSERT INTO quality_events (team_id, vendor_id, domain, task_type, expertise, sends, errors) "
      "SELECT j.team_id, a.vendor_id, j.domain, j.task_type, j.expertise, count(*) FILTER (WHERE x.ok), "
      "  count(*) FILTER (WHERE NOT x.ok) "
      "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, ok boolean) "
      "CROSS JOIN LATERAL (SELECT a.vendor_id, a.job_id FROM assignments a WHERE a.id = x.id) a "
      "CROSS JOIN LATERAL (SELECT j.team_id, j.domain, j.task_type, j.expertise FROM jobs j WHERE j.id = a.job_id) j "
      "GROUP BY 1, 2, 3, 4, 5",
      as_param(outcomes));
}

// Quality events for recorded results: per answer, whether it was gold and right, its cost,
// latency and punctuality; per unit the vendor failed (not one we asked it to cancel), an error.
void record_result_events(pqxx::work& tx, const std::vector<std::string>& completed_ids,
                          const std::vector<std::string>& failed_ids) {
  if (!completed_ids.empty())
    run_prepared(tx, "lb_answer_events",
        "INSERT INTO quality_events (team_id, vendor_id, domain, task_type, expertise, judgments, gold_n, "
        "  gold_correct, cost_micros, on_time, latency_ms) "
        "SELECT j.team_id, a.vendor_id, j.domain, j.task_type, j.expertise, (i.gold_answer IS NULL)::int, "
        "  (i.gold_answer IS NOT NULL)::int, (i.gold_answer IS NOT NULL AND a.answer = i.gold_answer)::int, "
        "  coalesce(a.cost_micros, 0), "
        "  (a.completed_at <= j.deadline)::int, "
        "  greatest(0, (extract(epoch FROM a.completed_at - coalesce(a.submitted_at, a.completed_at)) * 1000))::bigint "
        "FROM jsonb_array_elements_text($1::jsonb) AS x(id) "
        "CROSS JOIN LATERAL (SELECT * FROM assignments a WHERE a.id = x.id::uuid) a "
        "CROSS JOIN LATERAL (SELECT j.team_id, j.domain, j.task_type, j.expertise, j.deadline FROM jobs j "
        "                    WHERE j.id = a.job_id) j "
        "CROSS JOIN LATERAL (SELECT i.gold_answer FROM job_items i WHERE i.job_id = a.job_id AND i.item_id = a.item_id) i",
        strings_param(completed_ids));
  if (!failed_ids.empty())
    tx.exec_params0(
        "INSERT INTO quality_events (team_id, vendor_id, domain, task_type, expertise, errors) "
        "SELECT j.team_id, a.vendor_id, j.domain, j.task_type, j.expertise, count(*) "
        "FROM jsonb_array_elements_text($1::jsonb) AS x(id) "
        "CROSS JOIN LATERAL (SELECT * FROM assignments a WHERE a.id = x.id::uuid AND a.state = 'failed') a "
        "CROSS JOIN LATERAL (SELECT j.team_id, j.domain, j.task_type, j.expertise FROM jobs j WHERE j.id = a.job_id) j "
        "GROUP BY 1, 2, 3, 4, 5",
        strings_param(failed_ids));
}

// Units the vendor's monthly cap refused move to another vendor, in a transaction of their own
// after the claim: rerouting locks items, which must never wait behind budget rows (see the lock
// order in docs/architecture.md). If the process dies in between, the units are still queued and
// the next claim refuses them again.
void move_off_capped_vendor(pqxx::connection& c, const std::vector<std::string>& ids, const DispatchRules& rules) {
  if (ids.empty()) return;
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  auto moved_rows = tx.exec_params(
      "UPDATE assignments a SET state = 'failed', error_class = 'budget', "
      "  last_error = 'the vendor''s monthly spend cap is reached' "
      "WHERE a.id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb)) AND a.state = 'queued' "
      "  AND a.batch_id IS NULL "
      "RETURNING a.job_id::text, a.item_id",
      strings_param(ids));
  std::set<ItemKey> moved;
  for (const auto& r : moved_rows) moved.insert({r[0].as<std::string>(), r[1].as<std::string>()});
  reroute_items(tx, moved, rules);
  finalize_items(tx, moved, rules, false);
  tx.commit();
}

// Claims due units of one vendor that have never been sent as a new batch, mixes in gold and
// holds the money, all in the caller's transaction. Units whose job or team budget is spent are
// paused (the maintenance loop then marks their jobs budget_exhausted); units over the vendor's
// monthly cap are returned in `over_vendor_cap` (they stay queued here). Returns the batch id, or
// "" when nothing can be sent.
std::string claim_new_batch(pqxx::work& tx, const std::string& vendor_id, std::size_t max_units,
                            const ClaimOptions& options, std::vector<std::string>& over_vendor_cap) {
  // Gold takes its share of the batch: of max_units, about max_units / (1 + rate) are real work.
  std::size_t real_wanted = max_units;
  if (options.gold_rate > 0 && max_units >= 2)
    real_wanted = std::max<std::size_t>(
        1, static_cast<std::size_t>(static_cast<double>(max_units) / (1.0 + options.gold_rate)));
  auto candidates = tx.exec_params(
      "SELECT a.id::text, a.job_id::text, a.quote_micros, j.team_id, j.budget_micros, t.monthly_budget_micros, "
      "  j.gold_count "
      "FROM (SELECT id, job_id, quote_micros, next_attempt_at FROM assignments "
      "      WHERE vendor_id = $1 AND state = 'queued' AND batch_id IS NULL AND next_attempt_at <= now() "
      "      ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) a "
      "JOIN jobs j ON j.id = a.job_id JOIN teams t ON t.id = j.team_id "
      "ORDER BY a.next_attempt_at, a.id",
      vendor_id, static_cast<long>(real_wanted));
  if (candidates.empty()) return {};

  struct JobShare {
    std::int64_t quote = 0;
    std::int64_t gold_count = 0;
    std::int64_t team_id = 0;
    std::int64_t budget = 0;
    std::optional<std::int64_t> team_budget;
  };
  std::vector<std::string> job_order;
  std::map<std::string, JobShare> jobs;
  std::vector<ledger::HoldRequest> real;
  for (const auto& r : candidates) {
    ledger::HoldRequest h;
    h.assignment_id = r[0].as<std::string>();
    h.job_id = r[1].as<std::string>();
    h.quote_micros = r[2].as<std::int64_t>();
    h.team_id = r[3].as<std::int64_t>();
    h.vendor_id = vendor_id;
    h.job_budget_micros = r[4].as<std::int64_t>();
    if (!r[5].is_null()) h.team_monthly_budget_micros = r[5].as<std::int64_t>();
    auto [it, fresh] = jobs.try_emplace(h.job_id);
    if (fresh) {
      job_order.push_back(h.job_id);
      it->second = {h.quote_micros, r[6].as<std::int64_t>(), h.team_id, h.job_budget_micros,
                    h.team_monthly_budget_micros};
    }
    real.push_back(std::move(h));
  }

  const auto refusals = ledger::hold(tx, real, options.vendor_monthly_budget_micros);
  json claim_ids = json::array(), paused = json::array();
  std::map<std::string, std::size_t> held_per_job;
  for (std::size_t i = 0; i < real.size(); ++i) {
    switch (refusals[i]) {
      case ledger::HoldRefusal::none:
        claim_ids.push_back(real[i].assignment_id);
        ++held_per_job[real[i].job_id];
        break;
      case ledger::HoldRefusal::job_budget:
        paused.push_back({{"id", real[i].assignment_id}, {"reason", "job budget"}});
        break;
      case ledger::HoldRefusal::team_budget:
        paused.push_back({{"id", real[i].assignment_id}, {"reason", "team monthly budget"}});
        break;
      case ledger::HoldRefusal::vendor_budget:
        over_vendor_cap.push_back(real[i].assignment_id);
        break;
    }
  }
  if (!paused.empty())
    tx.exec_params0(
        "UPDATE assignments a SET state = 'paused', last_error = x.reason "
        "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, reason text) WHERE a.id = x.id",
        as_param(paused));
  if (claim_ids.empty()) return {};

  const std::string batch_id = common::random_uuid();
  tx.exec_params0(
      "UPDATE assignments SET state = 'sending', batch_id = $2, claimed_by = $3, attempts = attempts + 1, "
      "  lease_expires_at = now() + $4::double precision * interval '1 millisecond' "
      "WHERE id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))",
      as_param(claim_ids), batch_id, options.owner, static_cast<double>(options.lease.count()));

  // Gold: for each job in the batch that has gold, about gold_rate of its units (at least one)
  // as fresh copies of randomly drawn gold items, shaped exactly like real units. Gold is held
  // after the real work, so a nearly spent budget buys labels before QA.
  std::size_t gold_room = max_units > claim_ids.size() ? max_units - claim_ids.size() : 0;
  std::vector<ledger::HoldRequest> gold;
  std::vector<std::pair<std::string, std::string>> gold_bases;  // job id, gold item id
  for (const auto& job_id : job_order) {
    const auto& share = jobs[job_id];
    const auto held = held_per_job[job_id];
    if (share.gold_count == 0 || held == 0 || gold_room == 0 || options.gold_rate <= 0) continue;
    const auto want = std::min<std::size_t>(
        gold_room, std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(options.gold_rate * held))));
    auto bases = tx.exec_params(
        "SELECT item_id FROM job_items WHERE job_id = $1 AND gold_answer IS NOT NULL AND gold_base IS NULL "
        "ORDER BY random() LIMIT $2",
        job_id, static_cast<long>(want));
    for (const auto& b : bases) {
      ledger::HoldRequest h;
      h.assignment_id = common::random_uuid();
      h.job_id = job_id;
      h.team_id = share.team_id;
      h.vendor_id = vendor_id;
      h.quote_micros = share.quote;
      h.gold = true;
      h.job_budget_micros = share.budget;
      h.team_monthly_budget_micros = share.team_budget;
      gold.push_back(std::move(h));
      gold_bases.emplace_back(job_id, b[0].as<std::string>());
    }
    gold_room -= std::min(gold_room, static_cast<std::size_t>(bases.size()));
  }
  if (!gold.empty()) {
    const auto gold_refusals = ledger::hold(tx, gold, options.vendor_monthly_budget_micros);
    json copies = json::array();
    for (std::size_t i = 0; i < gold.size(); ++i) {
      if (gold_refusals[i] != ledger::HoldRefusal::none) continue;
      copies.push_back({{"id", gold[i].assignment_id},
                        {"job_id", gold[i].job_id},
                        {"base", gold_bases[i].second},
                        {"item_id", "gold/" + gold_bases[i].second + "/" + gold[i].assignment_id.substr(0, 8) +
                                        gold[i].assignment_id.substr(9, 4)},
                        {"quote", gold[i].quote_micros}});
    }
    if (!copies.empty()) {
      tx.exec_params0(
          "INSERT INTO job_items (job_id, item_id, data, gold_answer, gold_base) "
          "SELECT x.job_id, x.item_id, g.data, g.gold_answer, x.base "
          "FROM jsonb_to_recordset($1::jsonb) AS x(job_id uuid, item_id text, base text) "
          "JOIN job_items g ON g.job_id = x.job_id AND g.item_id = x.base",
          as_param(copies));
      tx.exec_params0(
          "INSERT INTO assignments (id, job_id, item_id, vendor_id, quote_micros, state, batch_id, claimed_by, "
          "  attempts, lease_expires_at) "
          "SELECT x.id, x.job_id, x.item_id, $2, x.quote, 'sending', $3, $4, 1, "
          "  now() + $5::double precision * interval '1 millisecond' "
          "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, job_id uuid, item_id text, quote bigint)",
          as_param(copies), vendor_id, batch_id, options.owner, static_cast<double>(options.lease.count()));
    }
  }
  return batch_id;
}

}  // namespace

bool plan_next_chunk(pqxx::connection& c, const PlanOptions& options, const PlanChunkFn& plan) {
  const auto chunk = options.chunk;
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  // Room to plan ahead: counting at most plan_ahead unsent units keeps the test cheap for a job
  // with a long queue.
  auto picked = tx.exec_params(
      std::string("SELECT ") + kJobColumns +
          ", coalesce(j.plan_cursor, '') FROM jobs j WHERE j.status IN ('queued', 'running') AND j.planned_at IS NULL "
          "AND (j.plan_not_before IS NULL OR j.plan_not_before <= now()) "
          "AND (SELECT count(*) FROM (SELECT 1 FROM assignments a WHERE a.job_id = j.id AND a.state = 'queued' "
          "                           AND a.batch_id IS NULL LIMIT $1) q) < $1 "
          "ORDER BY j.created_at LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
      static_cast<long>(std::max<std::size_t>(options.plan_ahead, 1)));
  if (picked.empty()) return false;
  const DispatchJob job = job_from_row(picked[0]);
  const std::string cursor = picked[0][kJobColumnCount].as<std::string>();
  if (cursor.empty()) {
    // The job's budget account exists before its first claim, so claims never race to create it.
    tx.exec_params0(
        "INSERT INTO budget_accounts (key, limit_micros) SELECT $1, budget_micros FROM jobs WHERE id = $2::uuid "
        "ON CONFLICT (key) DO NOTHING",
        ledger::job_account(job.id), job.id);
  }

  auto rows = tx.exec_params(
      "SELECT item_id FROM job_items WHERE job_id = $1 AND gold_answer IS NULL AND item_id > $2 "
      "ORDER BY item_id LIMIT $3",
      job.id, cursor, static_cast<long>(chunk));
  std::vector<std::string> item_ids;
  item_ids.reserve(rows.size());
  for (const auto& r : rows) item_ids.push_back(r[0].as<std::string>());

  if (!item_ids.empty()) {
    SnapshotRequest facts_of;
    facts_of.team_id = job.team_id;
    facts_of.domain = job.domain;
    facts_of.task_type = std::string(vendors::to_string(job.task_type));
    facts_of.window = options.window;
    const auto facts = load_routing_snapshot(tx, facts_of);
    auto planned = plan(job, item_ids, facts);
    if (planned.wait) {
      RoutingWrite logged = std::move(planned.routing);
      logged.job_id = job.id;
      logged.kind = "plan";
      logged.items = 0;
      logged.counters.clear();
      logged.judgments.clear();
      if (!logged.decision.is_null()) logged.decision["waiting_ms"] = planned.wait->count();
      save_routing(tx, logged);
      tx.exec_params0(
          "UPDATE jobs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now(), "
          "  plan_not_before = now() + $2::double precision * interval '1 millisecond' WHERE id = $1",
          job.id, static_cast<double>(planned.wait->count()));
      tx.commit();
      return true;
    }
    json assignments = json::array();
    std::set<ItemKey> unroutable;
    auto& routing = planned.routing;
    routing.job_id = job.id;
    routing.kind = "plan";
    routing.items = static_cast<int>(item_ids.size());
    routing.scope = routing_scope(facts_of.domain, facts_of.task_type);
    routing.domain = job.domain;
    for (const auto& p : planned.items) {
      if (p.vendors.empty()) unroutable.insert({job.id, p.item_id});
      for (const auto& [vendor, quote] : p.vendors) {
        assignments.push_back({{"item_id", p.item_id}, {"vendor_id", vendor}, {"quote", quote}});
        ++routing.judgments[vendor];
      }
    }
    save_routing(tx, routing);
    if (!assignments.empty())
      tx.exec_params0(
          "INSERT INTO assignments (job_id, item_id, vendor_id, quote_micros) "
          "SELECT $1, x.item_id, x.vendor_id, x.quote FROM jsonb_to_recordset($2::jsonb) "
          "  AS x(item_id text, vendor_id text, quote bigint) "
          "ON CONFLICT (job_id, item_id, vendor_id) DO NOTHING",
          job.id, as_param(assignments));
    // No vendor can take these now: they end unlabeled rather than wait forever.
    finalize_items(tx, unroutable, DispatchRules{}, true);
  }
  const bool done = item_ids.size() < chunk;
  tx.exec_params0(
      "UPDATE jobs SET status = 'running', started_at = coalesce(started_at, now()), updated_at = now(), "
      "  plan_cursor = $2, planned_at = CASE WHEN $3 THEN now() ELSE NULL END "
      "WHERE id = $1",
      job.id, item_ids.empty() ? cursor : item_ids.back(), done);
  tx.commit();
  return true;
}

ClaimedBatch claim_batch(pqxx::connection& c, const std::string& vendor_id, std::size_t max_units,
                         const ClaimOptions& options, const DispatchRules& rules) {
  ClaimedBatch batch;
  batch.vendor_id = vendor_id;
  std::vector<std::string> over_vendor_cap;
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  // A batch sent before comes first and whole. The advisory lock makes one claimer own it even
  // though its rows are locked one by one. Its money was held when it was first claimed.
  auto resend = tx.exec_params(
      "SELECT b.batch_id::text FROM (SELECT DISTINCT batch_id FROM assignments "
      "  WHERE vendor_id = $1 AND state = 'queued' AND batch_id IS NOT NULL AND next_attempt_at <= now() "
      "  LIMIT 8) b "
      "WHERE pg_try_advisory_xact_lock(hashtextextended(b.batch_id::text, 0)) LIMIT 1",
      vendor_id);
  if (!resend.empty()) {
    batch.batch_id = resend[0][0].as<std::string>();
    auto claimed = tx.exec_params(
        "UPDATE assignments SET state = 'sending', claimed_by = $2, attempts = attempts + 1, "
        "  lease_expires_at = now() + $3::double precision * interval '1 millisecond' "
        "WHERE batch_id = $1 AND state = 'queued'",
        batch.batch_id, options.owner, static_cast<double>(options.lease.count()));
    if (claimed.affected_rows() == 0) {
      // Another claimer took this batch between our look and our lock (its rows are 'sending'
      // now): sending it too would race that claimer at the vendor.
      tx.commit();
      batch.batch_id.clear();
      return batch;
    }
  } else {
    batch.batch_id = claim_new_batch(tx, vendor_id, max_units, options, over_vendor_cap);
    if (batch.batch_id.empty()) {
      tx.commit();  // what budgets paused
      move_off_capped_vendor(c, over_vendor_cap, rules);
      return batch;
    }
  }
  // Every member of the batch is sent, also those that meanwhile completed or moved: some vendors
  // key idempotency on the batch as a whole. Only rows this claim holds change state afterwards.
  auto rows = tx.exec_params(
      "SELECT a.id::text, a.job_id::text, a.item_id, a.attempts, a.state, (a.attempts > 1 OR a.state <> 'sending'), "
      "  i.data::text, j.task_type, j.domain, j.expertise, j.instructions, j.labels::text "
      "FROM assignments a JOIN job_items i ON i.job_id = a.job_id AND i.item_id = a.item_id "
      "JOIN jobs j ON j.id = a.job_id WHERE a.batch_id = $1 ORDER BY a.id",
      batch.batch_id);
  tx.commit();
  move_off_capped_vendor(c, over_vendor_cap, rules);
  for (const auto& r : rows) {
    ClaimedUnit u;
    u.unit.assignment_id = r[0].as<std::string>();
    u.unit.job_id = r[1].as<std::string>();
    // The vendor never sees the team's item id (it could give gold away); this ref is opaque.
    u.unit.item_ref = common::sha256_hex(u.unit.job_id + "/" + r[2].as<std::string>()).substr(0, 24);
    u.attempts = r[3].as<int>();
    u.unit.data = json::parse(r[6].as<std::string>(), nullptr, false);
    u.unit.task_type = vendors::parse_task_type(r[7].as<std::string>()).value_or(vendors::TaskType::classification);
    u.unit.domain = r[8].as<std::string>();
    u.unit.expertise = vendors::parse_expertise(r[9].as<std::string>()).value_or(vendors::Expertise::general);
    u.unit.instructions = r[10].as<std::string>();
    u.unit.labels = json_strings(r[11].as<std::string>());
    u.unit.may_exist = r[5].as<bool>();
    batch.units.push_back(std::move(u));
  }
  return batch;
}

std::size_t record_send(pqxx::connection& c, const std::string& owner,
                        const std::vector<vendors::SubmittedUnit>& submitted,
                        const std::vector<SendFailure>& failures, const DispatchRules& rules) {
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  if (!submitted.empty()) {
    json rows = json::array();
    for (const auto& s : submitted) {
      if (!common::is_uuid(s.assignment_id)) continue;
      rows.push_back({{"id", s.assignment_id}, {"task", s.vendor_task_id}});
    }
    tx.exec_params0(
        "UPDATE assignments a SET state = CASE WHEN a.state = 'sending' AND a.claimed_by = $2 THEN 'submitted' "
        "                                      ELSE a.state END, "
        "  vendor_task_id = coalesce(a.vendor_task_id, x.task), "
        "  submitted_at = coalesce(a.submitted_at, now()), "
        "  claimed_by = CASE WHEN a.claimed_by = $2 THEN NULL ELSE a.claimed_by END, "
        "  lease_expires_at = CASE WHEN a.claimed_by = $2 THEN NULL ELSE a.lease_expires_at END, "
        "  error_class = NULL, last_error = NULL "
        "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, task text) WHERE a.id = x.id",
        as_param(rows), owner);
  }
  std::set<ItemKey> moved;
  std::map<ItemKey, std::pair<std::string, std::int64_t>> waiting;  // item -> (assignment, retry at)
  if (!failures.empty()) {
    json retry = json::array();
    json give_up = json::array();
    std::map<std::string, std::int64_t> waits;  // assignment id -> retry here if nothing else can
    for (const auto& f : failures) {
      if (!common::is_uuid(f.assignment_id)) continue;
      json row = {{"id", f.assignment_id},
                  {"class", std::string(vendors::to_string(f.error_class))},
                  {"message", f.message.substr(0, 500)}};
      if (f.retry_at) {
        row["at_ms"] = epoch_ms(*f.retry_at);
        retry.push_back(std::move(row));
      } else {
        if (f.wait_at) waits[f.assignment_id] = epoch_ms(*f.wait_at);
        give_up.push_back(std::move(row));
      }
    }
    if (!retry.empty())
      tx.exec_params0(
          "UPDATE assignments a SET state = 'queued', claimed_by = NULL, lease_expires_at = NULL, "
          "  next_attempt_at = to_timestamp(x.at_ms / 1000.0), error_class = x.class, last_error = x.message "
          "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, class text, message text, at_ms bigint) "
          "WHERE a.id = x.id AND a.state = 'sending' AND a.claimed_by = $2",
          as_param(retry), owner);
    if (!give_up.empty()) {
      auto rows = tx.exec_params(
          "UPDATE assignments a SET state = 'failed', claimed_by = NULL, lease_expires_at = NULL, "
          "  error_class = x.class, last_error = x.message "
          "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, class text, message text) "
          "WHERE a.id = x.id AND a.state = 'sending' AND a.claimed_by = $2 "
          "RETURNING a.job_id::text, a.item_id, a.id::text",
          as_param(give_up), owner);
      for (const auto& r : rows) {
        moved.insert({r[0].as<std::string>(), r[1].as<std::string>()});
        if (auto w = waits.find(r[2].as<std::string>()); w != waits.end())
          waiting[ItemKey{r[0].as<std::string>(), r[1].as<std::string>()}] = {w->first, w->second};
      }
    }
  }
  const auto rerouted = reroute_items(tx, moved, rules);
  // A unit the vendor could not take now, and no other vendor can take either, waits for this one
  // (its batch kept, so a resend is the same request) instead of ending its item.
  json requeue = json::array();
  for (const auto& [item, wait] : waiting)
    if (!rerouted.count(item)) requeue.push_back({{"id", wait.first}, {"at_ms", wait.second}});
  if (!requeue.empty())
    tx.exec_params0(
        "UPDATE assignments a SET state = 'queued', next_attempt_at = to_timestamp(x.at_ms / 1000.0) "
        "FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, at_ms bigint) WHERE a.id = x.id AND a.state = 'failed'",
        as_param(requeue));
  finalize_items(tx, moved, rules, false);
  std::vector<std::string> failed_ids;
  json outcomes = json::array();
  for (const auto& s : submitted)
    if (common::is_uuid(s.assignment_id)) outcomes.push_back({{"id", s.assignment_id}, {"ok", true}});
  for (const auto& f : failures) {
    if (!common::is_uuid(f.assignment_id)) continue;
    failed_ids.push_back(f.assignment_id);
    outcomes.push_back({{"id", f.assignment_id}, {"ok", false}});
  }
  ledger::close(tx, failed_ids);  // units given up here release their hold; retried ones keep it
  record_send_events(tx, outcomes);
  tx.commit();
  return rerouted.size();
}

std::size_t release_expired_leases(pqxx::connection& c) {
  pqxx::work tx(c);
  auto r = tx.exec(
      "UPDATE assignments SET state = 'queued', claimed_by = NULL, lease_expires_at = NULL, next_attempt_at = now() "
      "WHERE state = 'sending' AND lease_expires_at < now()");
  tx.commit();
  return r.affected_rows();
}

std::vector<vendors::UnitRef> claim_units_to_poll(pqxx::connection& c, const std::string& vendor_id,
                                                  std::chrono::milliseconds older_than, std::size_t limit) {
  pqxx::work tx(c);
  auto rows = tx.exec_params(
      "WITH c AS (SELECT id FROM assignments WHERE vendor_id = $1 AND state = 'submitted' "
      "             AND submitted_at <= now() - $2::double precision * interval '1 millisecond' "
      "             AND (last_polled_at IS NULL OR last_polled_at <= now() - $2::double precision * interval '1 millisecond') "
      "             ORDER BY submitted_at LIMIT $3 FOR UPDATE SKIP LOCKED) "
      "UPDATE assignments a SET last_polled_at = now() FROM c WHERE a.id = c.id "
      "RETURNING a.id::text, coalesce(a.vendor_task_id, '')",
      vendor_id, static_cast<double>(older_than.count()), static_cast<long>(limit));
  tx.commit();
  std::vector<vendors::UnitRef> refs;
  for (const auto& r : rows) refs.push_back({r[0].as<std::string>(), r[1].as<std::string>()});
  return refs;
}

std::vector<IngestSummary> record_results(pqxx::connection& c, const std::vector<ResultGroup>& groups,
                                          const DispatchRules& rules) {
  std::vector<IngestSummary> summaries(groups.size());
  // Sorted by assignment id (then task id), so concurrent transactions lock rows in one order.
  std::vector<json> completed, failed;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (const auto& r : groups[g].results) {
      const bool by_id = common::is_uuid(r.assignment_id);
      if (!by_id && r.vendor_task_id.empty()) {
        ++summaries[g].ignored;
        continue;
      }
      json row = {{"g", g},
                  {"vendor", groups[g].vendor_id},
                  {"id", by_id ? json(r.assignment_id) : json(nullptr)},
                  {"task", r.vendor_task_id}};
      if (r.status == vendors::UnitStatus::completed && r.answer) {
        row["answer"] = *r.answer;
        row["worker"] = r.worker_id ? json(*r.worker_id) : json(nullptr);
        row["ms"] = r.time_spent ? json(r.time_spent->count()) : json(nullptr);
        row["cost"] = r.cost_micros ? json(*r.cost_micros) : json(nullptr);
        row["at_ms"] = r.completed_at ? json(epoch_ms(*r.completed_at)) : json(nullptr);
        completed.push_back(std::move(row));
      } else if (r.status == vendors::UnitStatus::canceled || r.status == vendors::UnitStatus::failed) {
        failed.push_back(std::move(row));
      } else {
        ++summaries[g].ignored;  // pending or in progress: nothing to record yet
      }
    }
  }
  auto by_key = [](const json& a, const json& b) {
    return std::make_pair(a["id"].is_null() ? std::string() : a["id"].get<std::string>(), a["task"].get<std::string>()) <
           std::make_pair(b["id"].is_null() ? std::string() : b["id"].get<std::string>(), b["task"].get<std::string>());
  };
  std::sort(completed.begin(), completed.end(), by_key);
  std::sort(failed.begin(), failed.end(), by_key);

  pqxx::work tx(c);
  prefer_key_lookups(tx);
  std::set<ItemKey> touched;
  std::set<ItemKey> moved;
  std::vector<std::size_t> changed_in_group(groups.size(), 0);
  std::vector<std::string> completed_ids, failed_ids;
  // Only units still in flight take a result: a repeated callback, or one for a unit we gave up on,
  // changes nothing. A unit asked to cancel that the vendor worked anyway keeps its result. A row
  // is found by the assignment id the vendor echoed, else by the vendor's task id (two statements:
  // each a plain index lookup).
  auto apply = [&](const std::string& statement, const std::string& set_and_columns, const std::string& state_filter,
                   std::vector<json>& rows, std::set<ItemKey>& into, std::vector<std::string>& ids,
                   bool count_recorded) {
    json by_id = json::array(), by_task = json::array();
    for (auto& row : rows) (row["id"].is_null() ? by_task : by_id).push_back(row);
    const std::tuple<const json*, const char*, const char*> variants[] = {
        {&by_id, "a.id = x.id", "_by_id"},
        {&by_task, "a.vendor_id = x.vendor AND a.vendor_task_id = x.task", "_by_task"}};
    for (const auto& [list, match, suffix] : variants) {
      if (list->empty()) continue;
      // Not prepared: its generic plan measured four times slower than planning it each time.
      (void)statement;
      (void)suffix;
      auto changed = tx.exec_params(set_and_columns + " WHERE " + match + " AND a.vendor_id = x.vendor AND " +
                                        state_filter + " RETURNING x.g, a.job_id::text, a.item_id, a.id::text",
                                    as_param(*list));
      for (const auto& r : changed) {
        const auto g = r[0].as<std::size_t>();
        ++changed_in_group[g];
        if (count_recorded) ++summaries[g].recorded;
        into.insert({r[1].as<std::string>(), r[2].as<std::string>()});
        ids.push_back(r[3].as<std::string>());
      }
    }
  };
  apply("lb_record_completed", "UPDATE assignments a SET state = 'completed', answer = x.answer, worker_id = x.worker, "
        "  time_spent_ms = x.ms, cost_micros = coalesce(x.cost, a.quote_micros), "
        "  completed_at = coalesce(to_timestamp(x.at_ms / 1000.0), now()), "
        "  vendor_task_id = coalesce(a.vendor_task_id, nullif(x.task, '')), "
        "  submitted_at = coalesce(a.submitted_at, now()), claimed_by = NULL, lease_expires_at = NULL "
        "FROM jsonb_to_recordset($1::jsonb) AS x(g int, vendor text, id uuid, task text, answer text, worker text, "
        "  ms bigint, cost bigint, at_ms bigint)",
        "a.state IN ('queued', 'sending', 'submitted')", completed, touched, completed_ids, true);
  apply("lb_record_vendor_failed", "UPDATE assignments a SET state = CASE WHEN a.cancel_requested_at IS NOT NULL THEN 'canceled' "
        "                                      ELSE 'failed' END, "
        "  error_class = 'vendor', last_error = 'the vendor canceled or failed the task', "
        "  claimed_by = NULL, lease_expires_at = NULL "
        "FROM jsonb_to_recordset($1::jsonb) AS x(g int, vendor text, id uuid, task text)",
        "a.state = 'submitted'", failed, moved, failed_ids, false);
  std::vector<std::size_t> sent_in_group(groups.size(), 0);
  for (const auto& row : completed) ++sent_in_group[row["g"].get<std::size_t>()];
  for (const auto& row : failed) ++sent_in_group[row["g"].get<std::size_t>()];
  for (std::size_t g = 0; g < groups.size(); ++g) summaries[g].ignored += sent_in_group[g] - changed_in_group[g];
  reroute_items(tx, moved, rules);
  touched.insert(moved.begin(), moved.end());
  finalize_items(tx, touched, rules, false);
  record_result_events(tx, completed_ids, failed_ids);
  std::vector<std::string> closing = completed_ids;
  closing.insert(closing.end(), failed_ids.begin(), failed_ids.end());
  ledger::close(tx, closing);
  tx.commit();
  return summaries;
}

IngestSummary record_results(pqxx::connection& c, const std::string& vendor_id,
                             const std::vector<vendors::UnitResult>& results, const DispatchRules& rules) {
  return record_results(c, {ResultGroup{vendor_id, results}}, rules).front();
}

CancelResult cancel_job(pqxx::connection& c, std::int64_t team_id, const std::string& job_id,
                        const DispatchRules& rules) {
  CancelResult result;
  if (!common::is_uuid(job_id)) return result;
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  auto rows = tx.exec_params("SELECT status FROM jobs WHERE id = $1 AND team_id = $2 FOR UPDATE", job_id, team_id);
  if (rows.empty()) return result;
  result.job_status = rows[0][0].as<std::string>();
  if (result.job_status != "draft" && result.job_status != "queued" && result.job_status != "running" &&
      result.job_status != "budget_exhausted") {
    result.status = CancelStatus::already_finished;
    return result;
  }
  end_job(tx, job_id, rules, Ending::canceled);
  tx.commit();
  result.status = CancelStatus::canceled;
  result.job_status = "canceled";
  return result;
}

std::vector<CancelTarget> claim_units_to_cancel(pqxx::connection& c, const std::string& vendor_id,
                                                std::size_t limit, std::chrono::milliseconds retry_after) {
  pqxx::work tx(c);
  auto rows = tx.exec_params(
      "WITH c AS (SELECT id FROM assignments WHERE vendor_id = $1 AND state = 'submitted' "
      "             AND cancel_requested_at <= now() ORDER BY cancel_requested_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
      "UPDATE assignments a SET cancel_requested_at = now() + $3::double precision * interval '1 millisecond' "
      "FROM c WHERE a.id = c.id "
      "RETURNING a.job_id::text, a.id::text, coalesce(a.vendor_task_id, ''), a.move_reason IS NOT NULL",
      vendor_id, static_cast<long>(limit), static_cast<double>(retry_after.count()));
  tx.commit();
  std::vector<CancelTarget> targets;
  for (const auto& r : rows)
    targets.push_back({r[0].as<std::string>(), {r[1].as<std::string>(), r[2].as<std::string>()}, r[3].as<bool>()});
  return targets;
}

void record_cancel_outcomes(pqxx::connection& c, const std::vector<std::string>& canceled,
                            const std::vector<std::string>& keep, const DispatchRules& rules) {
  auto ids = [](const std::vector<std::string>& v) {
    std::vector<std::string> valid;
    for (const auto& id : v)
      if (common::is_uuid(id)) valid.push_back(id);
    return strings_param(valid);
  };
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  std::set<ItemKey> moved;
  if (!canceled.empty()) {
    auto rows = tx.exec_params(
        "UPDATE assignments SET state = 'canceled' WHERE state = 'submitted' "
        "AND id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb)) "
        "RETURNING job_id::text, item_id, move_reason IS NOT NULL",
        ids(canceled));
    for (const auto& r : rows)
      if (r[2].as<bool>()) moved.insert({r[0].as<std::string>(), r[1].as<std::string>()});
  }
  if (!keep.empty())
    tx.exec_params0(
        "UPDATE assignments SET cancel_requested_at = 'infinity' WHERE state = 'submitted' "
        "AND id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))",
        ids(keep));
  std::vector<std::string> closing;
  for (const auto& id : canceled)
    if (common::is_uuid(id)) closing.push_back(id);
  ledger::close(tx, closing);
  reroute_items(tx, moved, rules);
  finalize_items(tx, moved, rules, false);
  tx.commit();
}

std::optional<MoveResult> rebalance_units(pqxx::connection& c, const std::vector<MoveOrder>& orders,
                                          std::size_t max_units, const DispatchRules& rules) {
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  if (!tx.exec("SELECT pg_try_advisory_xact_lock(hashtext('labelbroker.rebalancer'))")[0][0].as<bool>())
    return std::nullopt;
  struct MovedUnit {
    std::string id;
    ItemKey item;
    std::string domain;
    std::size_t order;
  };
  std::vector<MovedUnit> units;
  std::vector<std::size_t> flagged_per_order(orders.size(), 0);
  std::size_t taken = 0;
  for (std::size_t o = 0; o < orders.size(); ++o) {
    const auto& order = orders[o];
    const auto left = static_cast<long>(std::min(order.max_units, max_units - std::min(max_units, taken)));
    if (left == 0) continue;
    // The units' selection: this vendor's, of running jobs, optionally one job or one domain.
    const std::string scope =
        "a.vendor_id = $1 AND ($2::uuid IS NULL OR a.job_id = $2::uuid) "
        "AND a.job_id IN (SELECT j.id FROM jobs j WHERE j.status = 'running' "
        "                 AND ($3::text IS NULL OR j.domain = $3)) ";
    auto rows = tx.exec_params(
        "WITH m AS (SELECT a.id FROM assignments a WHERE " + scope +
            "AND a.state = 'queued' AND a.batch_id IS NULL AND a.cancel_requested_at IS NULL "
            "LIMIT $4 FOR UPDATE SKIP LOCKED) "
            "UPDATE assignments a SET state = 'failed', error_class = 'moved', last_error = $5, move_reason = $5 "
            "FROM m WHERE a.id = m.id "
            "RETURNING a.id::text, a.job_id::text, a.item_id, (SELECT domain FROM jobs WHERE id = a.job_id)",
        order.vendor_id, order.job_id, order.domain, left, "moved by the rebalancer: " + order.reason);
    for (const auto& r : rows)
      units.push_back({r[0].as<std::string>(), {r[1].as<std::string>(), r[2].as<std::string>()},
                       r[3].as<std::string>(), o});
    const auto still = left - static_cast<long>(rows.size());
    taken += rows.size();
    if (still <= 0) continue;
    auto flagged = tx.exec_params(
        "WITH m AS (SELECT a.id FROM assignments a WHERE " + scope +
            "AND a.state = 'submitted' AND a.cancel_requested_at IS NULL LIMIT $4 FOR UPDATE SKIP LOCKED) "
            "UPDATE assignments a SET cancel_requested_at = now(), move_reason = $5 FROM m WHERE a.id = m.id",
        order.vendor_id, order.job_id, order.domain, still, order.reason);
    flagged_per_order[o] = flagged.affected_rows();
    taken += flagged.affected_rows();
  }

  // Items no other vendor can take now stay where they were: a move must never leave an item
  // without a vendor (the caller only orders moves when another vendor is eligible, but this item
  // may already have used it).
  std::set<ItemKey> moved;
  for (const auto& u : units) moved.insert(u.item);
  const auto rerouted = reroute_items(tx, moved, rules);
  std::vector<std::string> stay;
  std::vector<std::size_t> moved_per_order(orders.size(), 0);
  std::map<std::string, std::map<std::string, std::int64_t>> given_back;  // domain -> vendor -> judgments
  for (const auto& u : units) {
    if (!rerouted.count(u.item)) {
      stay.push_back(u.id);
      continue;
    }
    ++moved_per_order[u.order];
    --given_back[u.domain][orders[u.order].vendor_id];
  }
  if (!stay.empty())
    tx.exec_params0(
        "UPDATE assignments SET state = 'queued', error_class = NULL, last_error = NULL, move_reason = NULL "
        "WHERE id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))",
        strings_param(stay));
  // The window counted these judgments when they were planned; they are not the vendor's now.
  for (auto& [domain, judgments] : given_back) {
    RoutingWrite counted;
    counted.domain = domain;
    counted.judgments = std::move(judgments);
    save_routing(tx, counted);
  }
  MoveResult result;
  for (std::size_t o = 0; o < orders.size(); ++o) {
    result.moved += moved_per_order[o];
    result.cancel_requested += flagged_per_order[o];
    if (!orders[o].job_id || (moved_per_order[o] == 0 && flagged_per_order[o] == 0)) continue;
    RoutingWrite logged;
    logged.job_id = *orders[o].job_id;
    logged.kind = "rebalance";
    logged.items = static_cast<int>(moved_per_order[o] + flagged_per_order[o]);
    logged.decision = {{"vendor", orders[o].vendor_id},
                       {"reason", orders[o].reason},
                       {"moved_now", moved_per_order[o]},
                       {"cancel_requested", flagged_per_order[o]}};
    save_routing(tx, logged);
  }
  tx.commit();
  return result;
}

std::vector<DispatchJob> jobs_with_unstarted_units(pqxx::connection& c, std::size_t limit) {
  pqxx::work tx(c);
  auto rows = tx.exec_params(std::string("SELECT ") + kJobColumns +
                                 " FROM jobs j WHERE j.status = 'running' AND EXISTS (SELECT 1 FROM assignments a "
                                 "  WHERE a.job_id = j.id AND (a.state = 'submitted' OR "
                                 "    (a.state = 'queued' AND a.batch_id IS NULL))) "
                                 "ORDER BY j.created_at LIMIT $1",
                             static_cast<long>(limit));
  tx.commit();
  std::vector<DispatchJob> jobs;
  for (const auto& r : rows) jobs.push_back(job_from_row(r));
  return jobs;
}

std::size_t expire_deadlines(pqxx::connection& c, const DispatchRules& rules) {
  std::size_t ended = 0;
  while (true) {
    pqxx::work tx(c);
    prefer_key_lookups(tx);
    auto rows = tx.exec(
        "SELECT id::text FROM jobs WHERE status IN ('queued', 'running', 'budget_exhausted') AND deadline <= now() "
        "LIMIT 1 FOR UPDATE SKIP LOCKED");
    if (rows.empty()) return ended;
    end_job(tx, rows[0][0].as<std::string>(), rules, Ending::deadline);
    tx.commit();
    ++ended;
  }
}

std::size_t finish_jobs(pqxx::connection& c, const DispatchRules& rules) {
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  auto rows = tx.exec(
      "SELECT j.id::text FROM jobs j WHERE j.status = 'running' AND j.planned_at IS NOT NULL "
      "AND NOT EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = j.id AND i.state = 'open' "
      "                  AND i.gold_answer IS NULL) "
      "LIMIT 10 FOR UPDATE OF j SKIP LOCKED");
  for (const auto& r : rows) end_job(tx, r[0].as<std::string>(), rules, Ending::done);
  tx.commit();
  return rows.size();
}

std::size_t mark_budget_exhausted(pqxx::connection& c) {
  std::size_t marked = 0;
  json seen = json::array();  // each job once per call: a resumed job may pause again at once
  while (true) {
    pqxx::work tx(c);
    auto rows = tx.exec_params(
        "SELECT j.id::text, p.reason FROM (SELECT DISTINCT ON (job_id) job_id, last_error AS reason "
        "                                 FROM assignments WHERE state = 'paused') p "
        "JOIN jobs j ON j.id = p.job_id WHERE j.status IN ('queued', 'running') "
        "  AND NOT (j.id::text IN (SELECT jsonb_array_elements_text($1::jsonb))) "
        "LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
        as_param(seen));
    if (rows.empty()) return marked;
    const auto job_id = rows[0][0].as<std::string>();
    seen.push_back(job_id);
    const auto reason = rows[0][1].is_null() ? std::string("job budget") : rows[0][1].as<std::string>();
    if (reason == "job budget") {
      // The claim judged from the account as it was; settles and releases applied since (or still
      // pending) may have made room. Then the work goes back to the queue instead.
      const auto balance = ledger::job_balance(tx, job_id);
      auto room = tx.exec_params(
          "SELECT j.budget_micros - $2::bigint >= (SELECT min(quote_micros) FROM assignments "
          "                                         WHERE job_id = j.id AND state = 'paused') "
          "FROM jobs j WHERE j.id = $1",
          job_id, balance.held_micros + balance.spent_micros);
      if (!room.empty() && !room[0][0].is_null() && room[0][0].as<bool>()) {
        tx.exec_params0(
            "UPDATE assignments SET state = 'queued', last_error = NULL WHERE job_id = $1 AND state = 'paused'",
            job_id);
        tx.commit();
        continue;
      }
    }
    tx.exec_params0(
        "UPDATE assignments SET state = 'paused', last_error = $2 "
        "WHERE job_id = $1 AND state = 'queued' AND batch_id IS NULL",
        job_id, reason);
    tx.exec_params0(
        "UPDATE jobs SET status = 'budget_exhausted', budget_reason = $2, updated_at = now() WHERE id = $1",
        job_id, reason);
    enqueue_job_event(tx, job_id);
    tx.commit();
    ++marked;
  }
}

BudgetChangeResult set_job_budget(pqxx::connection& c, std::int64_t team_id, const std::string& job_id,
                                  std::int64_t budget_micros) {
  BudgetChangeResult result;
  if (!common::is_uuid(job_id)) return result;
  pqxx::work tx(c);
  auto rows =
      tx.exec_params("SELECT status FROM jobs WHERE id = $1 AND team_id = $2 FOR UPDATE", job_id, team_id);
  if (rows.empty()) return result;
  result.job_status = rows[0][0].as<std::string>();
  if (result.job_status == "completed" || result.job_status == "failed" || result.job_status == "canceled") {
    result.change = BudgetChange::finished;
    return result;
  }
  tx.exec_params0("UPDATE jobs SET budget_micros = $2, updated_at = now() WHERE id = $1", job_id, budget_micros);
  tx.exec_params0("UPDATE budget_accounts SET limit_micros = $2, updated_at = now() WHERE key = $1",
                  ledger::job_account(job_id), budget_micros);
  result.change = BudgetChange::changed;
  if (result.job_status == "budget_exhausted") {
    const auto balance = ledger::job_balance(tx, job_id);
    if (balance.held_micros + balance.spent_micros < budget_micros) {
      // Resumes; if the team's monthly budget is what ran out, the next claim pauses it again.
      tx.exec_params0(
          "UPDATE assignments SET state = 'queued', next_attempt_at = now(), last_error = NULL "
          "WHERE job_id = $1 AND state = 'paused'",
          job_id);
      tx.exec_params0(
          "UPDATE jobs SET status = 'running', budget_reason = NULL, updated_at = now() WHERE id = $1", job_id);
      result.change = BudgetChange::resumed;
      result.job_status = "running";
    }
  }
  tx.commit();
  return result;
}

std::size_t apply_ledger_deltas(pqxx::connection& c, std::size_t max_rows) {
  pqxx::work tx(c);
  const auto applied = ledger::apply_deltas(tx, max_rows);
  tx.commit();
  return applied;
}

}  // namespace labelbroker::db
