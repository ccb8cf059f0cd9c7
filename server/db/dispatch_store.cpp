#include "db/dispatch_store.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include <pqxx/pqxx>

#include "common/crypto.hpp"
#include "common/strings.hpp"

namespace labelbroker::db {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::system_clock;

// Lists travel to PostgreSQL as one JSON parameter, unpacked with jsonb_to_recordset: one
// statement per batch instead of one per row, and still fully parameterised.
std::string as_param(const json& rows) { return rows.dump(); }

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
    "j.redundancy, array_to_json(j.eligible_vendors)::text, (extract(epoch from j.deadline) * 1000)::bigint";

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
  return job;
}

// Jobs by id, read inside the caller's transaction.
std::map<std::string, DispatchJob> load_jobs(pqxx::work& tx, const std::set<std::string>& ids) {
  std::map<std::string, DispatchJob> jobs;
  if (ids.empty()) return jobs;
  json list = json::array();
  for (const auto& id : ids) list.push_back(id);
  auto rows = run_prepared(
      tx, "lb_load_jobs",
      std::string("SELECT ") + kJobColumns +
          " FROM jsonb_array_elements_text($1::jsonb) AS x(id) CROSS JOIN LATERAL "
          "(SELECT * FROM jobs WHERE id = x.id::uuid) j",
      as_param(list));
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
void lock_items(pqxx::work& tx, const std::set<ItemKey>& items) {
  if (items.empty()) return;
  // One index lookup per key, in the list's (sorted) order.
  run_prepared(tx, "lb_lock_items",
      "SELECT 1 FROM ROWS FROM (jsonb_to_recordset($1::jsonb) AS (job_id uuid, item_id text)) WITH ORDINALITY "
      "  AS x(job_id, item_id, n) "
      "CROSS JOIN LATERAL (SELECT 1 FROM job_items i WHERE i.job_id = x.job_id AND i.item_id = x.item_id "
      "                    FOR UPDATE) l "
      "ORDER BY x.n",
      as_param(item_keys_param(items)));
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
  for (const auto& r : rows) {
    const auto job = jobs.find(r[0].as<std::string>());
    if (job == jobs.end()) continue;
    // Judgments still coming or already in: only the missing ones move elsewhere.
    if (r[3].as<int>() >= job->second.redundancy) continue;
    auto choice = rules.reroute(job->second, json_strings(r[2].as<std::string>()));
    if (!choice) continue;
    inserts.push_back(
        {{"job_id", job->first}, {"item_id", r[1].as<std::string>()}, {"vendor_id", choice->first}, {"quote", choice->second}});
  }
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
  lock_items(tx, items);
  auto rows = run_prepared(tx, "lb_items_to_finalize",
      "SELECT x.job_id::text, x.item_id, u.open, u.answers "
      "FROM jsonb_to_recordset($1::jsonb) AS x(job_id uuid, item_id text) "
      "CROSS JOIN LATERAL (SELECT i.state FROM job_items i WHERE i.job_id = x.job_id AND i.item_id = x.item_id) i "
      "CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE a.state IN ('queued', 'sending', 'submitted')) AS open, "
      "                           coalesce(json_agg(a.answer ORDER BY a.vendor_id) "
      "                                      FILTER (WHERE a.state = 'completed' AND a.answer IS NOT NULL), "
      "                                    '[]')::text AS answers "
      "                    FROM assignments a WHERE a.job_id = x.job_id AND a.item_id = x.item_id) u "
      "WHERE i.state = 'open'",
      as_param(item_keys_param(items)));
  std::set<std::string> job_ids;
  for (const auto& r : rows) job_ids.insert(r[0].as<std::string>());
  const auto jobs = load_jobs(tx, job_ids);
  json updates = json::array();
  for (const auto& r : rows) {
    if (!force && r[2].as<long>() > 0) continue;
    const auto job = jobs.find(r[0].as<std::string>());
    if (job == jobs.end()) continue;
    auto label = rules.aggregate ? rules.aggregate(job->second, json_strings(r[3].as<std::string>())) : std::nullopt;
    json u = {{"job_id", job->first}, {"item_id", r[1].as<std::string>()}};
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
  }
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
      "WHERE job_id = $1 AND state = 'queued' AND batch_id IS NULL",
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
void end_job(pqxx::work& tx, const std::string& job_id, const DispatchRules& rules, Ending ending) {
  if (ending != Ending::done) {
    stop_units(tx, job_id);
    finalize_items(tx, open_items(tx, job_id), rules, true);
  }
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

}  // namespace

bool plan_next_chunk(pqxx::connection& c, std::size_t chunk, const PlanChunkFn& plan) {
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  auto picked = tx.exec(
      std::string("SELECT ") + kJobColumns +
      ", coalesce(j.plan_cursor, '') FROM jobs j WHERE j.status IN ('queued', 'running') AND j.planned_at IS NULL "
      "ORDER BY j.created_at LIMIT 1 FOR UPDATE OF j SKIP LOCKED");
  if (picked.empty()) return false;
  const DispatchJob job = job_from_row(picked[0]);
  const std::string cursor = picked[0][12].as<std::string>();

  auto rows = tx.exec_params(
      "SELECT item_id FROM job_items WHERE job_id = $1 AND gold_answer IS NULL AND item_id > $2 "
      "ORDER BY item_id LIMIT $3",
      job.id, cursor, static_cast<long>(chunk));
  std::vector<std::string> item_ids;
  item_ids.reserve(rows.size());
  for (const auto& r : rows) item_ids.push_back(r[0].as<std::string>());

  if (!item_ids.empty()) {
    auto planned = plan(job, item_ids);
    json assignments = json::array();
    std::set<ItemKey> unroutable;
    for (const auto& p : planned) {
      if (p.vendors.empty()) unroutable.insert({job.id, p.item_id});
      for (const auto& [vendor, quote] : p.vendors)
        assignments.push_back({{"item_id", p.item_id}, {"vendor_id", vendor}, {"quote", quote}});
    }
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
                         const std::string& owner, std::chrono::milliseconds lease) {
  ClaimedBatch batch;
  batch.vendor_id = vendor_id;
  pqxx::work tx(c);
  prefer_key_lookups(tx);
  // A batch sent before comes first and whole. The advisory lock makes one claimer own it even
  // though its rows are locked one by one.
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
        batch.batch_id, owner, static_cast<double>(lease.count()));
    if (claimed.affected_rows() == 0) {
      // Another claimer took this batch between our look and our lock (its rows are 'sending'
      // now): sending it too would race that claimer at the vendor.
      tx.commit();
      batch.batch_id.clear();
      return batch;
    }
  } else {
    auto claimed = tx.exec_params(
        "WITH c AS (SELECT id FROM assignments WHERE vendor_id = $1 AND state = 'queued' AND batch_id IS NULL "
        "             AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED), "
        "     b AS (SELECT gen_random_uuid() AS id) "
        "UPDATE assignments a SET state = 'sending', batch_id = b.id, claimed_by = $3, attempts = a.attempts + 1, "
        "  lease_expires_at = now() + $4::double precision * interval '1 millisecond' "
        "FROM c, b WHERE a.id = c.id RETURNING b.id::text",
        vendor_id, static_cast<long>(max_units), owner, static_cast<double>(lease.count()));
    if (claimed.empty()) return batch;
    batch.batch_id = claimed[0][0].as<std::string>();
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
  // Only units still in flight take a result: a repeated callback, or one for a unit we gave up on,
  // changes nothing. A unit asked to cancel that the vendor worked anyway keeps its result. A row
  // is found by the assignment id the vendor echoed, else by the vendor's task id (two statements:
  // each a plain index lookup).
  auto apply = [&](const std::string& statement, const std::string& set_and_columns, const std::string& state_filter,
                   std::vector<json>& rows, std::set<ItemKey>& into, bool count_recorded) {
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
                                        state_filter + " RETURNING x.g, a.job_id::text, a.item_id",
                                    as_param(*list));
      for (const auto& r : changed) {
        const auto g = r[0].as<std::size_t>();
        ++changed_in_group[g];
        if (count_recorded) ++summaries[g].recorded;
        into.insert({r[1].as<std::string>(), r[2].as<std::string>()});
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
        "a.state IN ('queued', 'sending', 'submitted')", completed, touched, true);
  apply("lb_record_vendor_failed", "UPDATE assignments a SET state = CASE WHEN a.cancel_requested_at IS NOT NULL THEN 'canceled' "
        "                                      ELSE 'failed' END, "
        "  error_class = 'vendor', last_error = 'the vendor canceled or failed the task', "
        "  claimed_by = NULL, lease_expires_at = NULL "
        "FROM jsonb_to_recordset($1::jsonb) AS x(g int, vendor text, id uuid, task text)",
        "a.state = 'submitted'", failed, moved, false);
  std::vector<std::size_t> sent_in_group(groups.size(), 0);
  for (const auto& row : completed) ++sent_in_group[row["g"].get<std::size_t>()];
  for (const auto& row : failed) ++sent_in_group[row["g"].get<std::size_t>()];
  for (std::size_t g = 0; g < groups.size(); ++g) summaries[g].ignored += sent_in_group[g] - changed_in_group[g];
  reroute_items(tx, moved, rules);
  touched.insert(moved.begin(), moved.end());
  finalize_items(tx, touched, rules, false);
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
      "FROM c WHERE a.id = c.id RETURNING a.job_id::text, a.id::text, coalesce(a.vendor_task_id, '')",
      vendor_id, static_cast<long>(limit), static_cast<double>(retry_after.count()));
  tx.commit();
  std::vector<CancelTarget> targets;
  for (const auto& r : rows) targets.push_back({r[0].as<std::string>(), {r[1].as<std::string>(), r[2].as<std::string>()}});
  return targets;
}

void record_cancel_outcomes(pqxx::connection& c, const std::vector<std::string>& canceled,
                            const std::vector<std::string>& keep) {
  auto ids = [](const std::vector<std::string>& v) {
    json a = json::array();
    for (const auto& id : v)
      if (common::is_uuid(id)) a.push_back(id);
    return as_param(a);
  };
  pqxx::work tx(c);
  if (!canceled.empty())
    tx.exec_params0(
        "UPDATE assignments SET state = 'canceled' WHERE state = 'submitted' "
        "AND id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))",
        ids(canceled));
  if (!keep.empty())
    tx.exec_params0(
        "UPDATE assignments SET cancel_requested_at = 'infinity' WHERE state = 'submitted' "
        "AND id IN (SELECT value::uuid FROM jsonb_array_elements_text($1::jsonb))",
        ids(keep));
  tx.commit();
}

std::size_t expire_deadlines(pqxx::connection& c, const DispatchRules& rules) {
  std::size_t ended = 0;
  while (true) {
    pqxx::work tx(c);
    prefer_key_lookups(tx);
    auto rows = tx.exec(
        "SELECT id::text FROM jobs WHERE status IN ('queued', 'running') AND deadline <= now() "
        "LIMIT 1 FOR UPDATE SKIP LOCKED");
    if (rows.empty()) return ended;
    end_job(tx, rows[0][0].as<std::string>(), rules, Ending::deadline);
    tx.commit();
    ++ended;
  }
}

std::size_t finish_jobs(pqxx::connection& c) {
  pqxx::work tx(c);
  auto rows = tx.exec(
      "SELECT j.id::text FROM jobs j WHERE j.status = 'running' AND j.planned_at IS NOT NULL "
      "AND NOT EXISTS (SELECT 1 FROM job_items i WHERE i.job_id = j.id AND i.state = 'open' "
      "                  AND i.gold_answer IS NULL) "
      "LIMIT 100 FOR UPDATE OF j SKIP LOCKED");
  for (const auto& r : rows) end_job(tx, r[0].as<std::string>(), DispatchRules{}, Ending::done);
  tx.commit();
  return rows.size();
}

}  // namespace labelbroker::db
