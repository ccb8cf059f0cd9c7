#include "db/job_store.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <tuple>
#include <unordered_map>

#include <pqxx/pqxx>
#include <pqxx/stream_to>

namespace labelbroker::db {
namespace {

using nlohmann::json;

constexpr std::array<std::string_view, 7> kStatuses = {"draft",    "queued",   "running",         "completed",
                                                       "failed",   "canceled", "budget_exhausted"};

std::int64_t to_micros(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

TimePoint from_micros(std::int64_t micros) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::microseconds(micros)));
}

// Arrays go to and from PostgreSQL as JSON text: parameterised, and no hand-written array
// literal quoting.
std::string json_text(const std::vector<std::string>& list) {
  return json(list).dump();
}

std::vector<std::string> string_list(const pqxx::field& f) {
  if (f.is_null()) return {};
  return json::parse(f.c_str()).get<std::vector<std::string>>();
}

std::optional<TimePoint> optional_time(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return from_micros(f.as<std::int64_t>());
}

// Timestamps leave PostgreSQL as integer microseconds since the epoch (extract() is exact numeric
// since PostgreSQL 14), so cursors built from them compare exactly.
#define LB_MICROS(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

// The columns read_record() expects, in order.
const char* const kJobColumns =
    "id::text, name, status, task_type, domain, expertise, labels::text, redundancy, min_vendor_accuracy, "
    "budget_micros, " LB_MICROS("deadline") ", " LB_MICROS("created_at") ", " LB_MICROS("started_at") ", " LB_MICROS(
        "finished_at") ", callback_url, array_to_json(allow_vendors)::text, array_to_json(deny_vendors)::text, "
                       "array_to_json(eligible_vendors)::text, optimize, end_reason, item_count, gold_count, "
                       "gold_set_id::text, budget_reason";

JobRecord read_record(const pqxx::row& r) {
  JobRecord j;
  j.id = r[0].as<std::string>();
  j.name = r[1].as<std::string>();
  j.status = r[2].as<std::string>();
  j.task_type = r[3].as<std::string>();
  j.domain = r[4].as<std::string>();
  j.expertise = r[5].as<std::string>();
  j.labels = string_list(r[6]);
  j.redundancy = r[7].as<int>();
  if (!r[8].is_null()) j.min_vendor_accuracy = r[8].as<double>();
  j.budget_micros = r[9].as<std::int64_t>();
  j.deadline = from_micros(r[10].as<std::int64_t>());
  j.created_at = from_micros(r[11].as<std::int64_t>());
  j.started_at = optional_time(r[12]);
  j.finished_at = optional_time(r[13]);
  j.callback_url = r[14].is_null() ? "" : r[14].as<std::string>();
  j.allow_vendors = string_list(r[15]);
  j.deny_vendors = string_list(r[16]);
  j.eligible_vendors = string_list(r[17]);
  j.optimize = r[18].as<std::string>();
  j.end_reason = r[19].is_null() ? "" : r[19].as<std::string>();
  j.item_count = r[20].as<std::int64_t>();
  j.gold_count = r[21].as<std::int64_t>();
  if (!r[22].is_null()) j.gold_set_id = r[22].as<std::string>();
  if (!r[23].is_null()) j.budget_reason = r[23].as<std::string>();
  return j;
}

// Bulk-loads items with COPY (stream_to): one round trip per buffer, not per row. Ordinary items
// and gold items go in two streams so neither carries a column it does not use.
void copy_items(pqxx::transaction_base& tx, const std::string& job_id, const std::vector<ItemRef>& items) {
  const bool any_plain = std::any_of(items.begin(), items.end(), [](const ItemRef& i) { return !i.gold_answer; });
  const bool any_gold = std::any_of(items.begin(), items.end(), [](const ItemRef& i) { return i.gold_answer; });
  std::string data;
  if (any_plain) {
    pqxx::stream_to stream(tx, "job_items", std::vector<std::string>{"job_id", "item_id", "data"});
    for (const auto& item : items) {
      if (item.gold_answer) continue;
      data = item.data->dump();
      stream << std::tie(job_id, *item.id, data);
    }
    stream.complete();
  }
  if (any_gold) {
    pqxx::stream_to stream(tx, "job_items", std::vector<std::string>{"job_id", "item_id", "data", "gold_answer"});
    for (const auto& item : items) {
      if (!item.gold_answer) continue;
      data = item.data->dump();
      stream << std::tie(job_id, *item.id, data, *item.gold_answer);
    }
    stream.complete();
  }
}

// Copies the job's gold set into its items as gold, in the database (the items never travel
// through the broker), and counts them into gold_count. The join on the team keeps a set of
// another team out even if validation was bypassed; a set has at least one item, so copying
// none means there was no such set for this team.
void copy_gold_set(pqxx::transaction_base& tx, const std::string& job_id, const NewJob& job) {
  auto copied = tx.exec_params(
      "INSERT INTO job_items (job_id, item_id, data, gold_answer) "
      "SELECT $1::uuid, $2 || s.item_id, s.data, s.answer "
      "FROM gold_set_items s JOIN gold_sets g ON g.id = s.gold_set_id "
      "WHERE g.id = $3::uuid AND g.team_id = $4",
      job_id, job.gold_set_item_prefix, job.gold_set_id, job.team_id);
  const auto n = static_cast<std::int64_t>(copied.affected_rows());
  if (n == 0)
    throw std::runtime_error("job intake: team " + std::to_string(job.team_id) + " has no gold set " +
                             *job.gold_set_id);
  tx.exec_params0("UPDATE jobs SET gold_count = gold_count + $2 WHERE id = $1::uuid", job_id, n);
}

// The pool's statement_timeout guards against runaway queries; a COPY of a million items is
// bounded by the body limit instead and may legitimately take longer, so upload transactions
// lift it (SET LOCAL: only until this transaction ends).
void lift_statement_timeout(pqxx::transaction_base& tx) {
  tx.exec0("SET LOCAL statement_timeout = 0");
}

std::pair<std::int64_t, std::int64_t> count_items(const std::vector<ItemRef>& items) {
  const auto gold = std::count_if(items.begin(), items.end(), [](const ItemRef& i) { return i.gold_answer; });
  return {static_cast<std::int64_t>(items.size()) - gold, gold};
}

}  // namespace

bool is_job_status(std::string_view status) {
  return std::find(kStatuses.begin(), kStatuses.end(), status) != kStatuses.end();
}

std::optional<KeyedJob> find_job_by_idempotency_key(pqxx::connection& c, std::int64_t team_id,
                                                    const std::string& key) {
  pqxx::nontransaction tx(c);
  auto rows = tx.exec_params(
      "SELECT id::text, coalesce(request_sha256, '') FROM jobs WHERE team_id = $1 AND idempotency_key = $2", team_id,
      key);
  if (rows.empty()) return std::nullopt;
  return KeyedJob{rows[0][0].as<std::string>(), rows[0][1].as<std::string>()};
}

CreateResult create_job(pqxx::connection& c, const NewJob& job, const std::vector<ItemRef>& items) {
  const auto [item_count, gold_count] = count_items(items);
  pqxx::work tx(c);
  lift_statement_timeout(tx);
  // ON CONFLICT on UNIQUE (team_id, idempotency_key): a concurrent request with the same key
  // blocks here until the first commits, then inserts nothing, and we answer with that job. (A
  // NULL key never conflicts.)
  auto inserted = tx.exec_params(
      "INSERT INTO jobs (team_id, name, status, task_type, domain, expertise, instructions, labels, redundancy, "
      "  min_vendor_accuracy, budget_micros, deadline, allow_vendors, deny_vendors, eligible_vendors, optimize, "
      "  callback_url, item_count, gold_count, idempotency_key, request_sha256, gold_set_id) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, "
      "  timestamptz 'epoch' + $12::bigint * interval '1 microsecond', "
      "  ARRAY(SELECT jsonb_array_elements_text($13::jsonb)), ARRAY(SELECT jsonb_array_elements_text($14::jsonb)), "
      "  ARRAY(SELECT jsonb_array_elements_text($15::jsonb)), $16, nullif($17, ''), $18, $19, $20, $21, $22::uuid) "
      "ON CONFLICT (team_id, idempotency_key) DO NOTHING "
      "RETURNING id::text",
      job.team_id, job.name, job.draft ? "draft" : "queued", job.task_type, job.domain, job.expertise,
      job.instructions, json_text(job.labels), job.redundancy, job.min_vendor_accuracy, job.budget_micros,
      to_micros(job.deadline), json_text(job.allow_vendors), json_text(job.deny_vendors),
      json_text(job.eligible_vendors), job.optimize, job.callback_url, item_count, gold_count, job.idempotency_key,
      job.request_sha256, job.gold_set_id);
  if (inserted.empty()) {
    // Only a key conflict inserts nothing; the other request has committed by now, and this
    // statement (READ COMMITTED) sees it.
    auto row = tx.exec_params1(
        "SELECT id::text, coalesce(request_sha256, '') FROM jobs WHERE team_id = $1 AND idempotency_key = $2",
        job.team_id, job.idempotency_key);
    tx.commit();
    const bool same = row[1].as<std::string>() == job.request_sha256;
    return {same ? CreateOutcome::replayed : CreateOutcome::key_reused, row[0].as<std::string>()};
  }
  std::string job_id = inserted[0][0].as<std::string>();
  copy_items(tx, job_id, items);
  if (job.gold_set_id) copy_gold_set(tx, job_id, job);
  tx.commit();
  return {CreateOutcome::created, std::move(job_id)};
}

std::optional<JobHeader> load_job_header(pqxx::connection& c, std::int64_t team_id, const std::string& job_id) {
  pqxx::nontransaction tx(c);
  auto rows =
      tx.exec_params("SELECT status, labels::text FROM jobs WHERE id = $1::uuid AND team_id = $2", job_id, team_id);
  if (rows.empty()) return std::nullopt;
  return JobHeader{rows[0][0].as<std::string>(), string_list(rows[0][1])};
}

AppendResult append_items(pqxx::connection& c, std::int64_t team_id, const std::string& job_id,
                          const std::vector<ItemRef>& items, std::size_t max_items_per_job) {
  AppendResult result;
  pqxx::work tx(c);
  lift_statement_timeout(tx);
  // The row lock serialises appends and start on this job, so the duplicate check below cannot
  // race another append.
  auto rows = tx.exec_params(
      "SELECT status, item_count, gold_count FROM jobs WHERE id = $1::uuid AND team_id = $2 FOR UPDATE", job_id,
      team_id);
  if (rows.empty()) {
    result.outcome = AppendOutcome::not_found;
    return result;
  }
  result.item_count = rows[0][1].as<std::size_t>();
  result.gold_count = rows[0][2].as<std::size_t>();
  if (rows[0][0].as<std::string>() != "draft") {
    result.outcome = AppendOutcome::not_draft;
    return result;
  }
  const auto [new_items, new_gold] = count_items(items);
  if (result.item_count + result.gold_count + items.size() > max_items_per_job) {
    result.outcome = AppendOutcome::too_many;
    return result;
  }
  // Name the ids the job already has, rather than let COPY fail on the primary key without
  // saying which.
  json ids = json::array();
  for (const auto& item : items) ids.push_back(*item.id);
  auto dups = tx.exec_params(
      "SELECT i.item_id FROM job_items i "
      "WHERE i.job_id = $1::uuid AND i.item_id IN (SELECT jsonb_array_elements_text($2::jsonb)) "
      "ORDER BY i.item_id LIMIT 100",
      job_id, ids.dump());
  if (!dups.empty()) {
    result.outcome = AppendOutcome::duplicate_ids;
    for (const auto& r : dups) result.duplicate_ids.push_back(r[0].as<std::string>());
    return result;
  }
  copy_items(tx, job_id, items);
  tx.exec_params0(
      "UPDATE jobs SET item_count = item_count + $2, gold_count = gold_count + $3, updated_at = now() "
      "WHERE id = $1::uuid",
      job_id, new_items, new_gold);
  tx.commit();
  result.item_count += static_cast<std::size_t>(new_items);
  result.gold_count += static_cast<std::size_t>(new_gold);
  return result;
}

StartOutcome start_job(pqxx::connection& c, std::int64_t team_id, const std::string& job_id) {
  pqxx::work tx(c);
  auto rows = tx.exec_params("SELECT status, item_count FROM jobs WHERE id = $1::uuid AND team_id = $2 FOR UPDATE",
                             job_id, team_id);
  if (rows.empty()) return StartOutcome::not_found;
  if (rows[0][0].as<std::string>() != "draft") return StartOutcome::not_draft;
  if (rows[0][1].as<std::int64_t>() == 0) return StartOutcome::no_items;
  tx.exec_params0("UPDATE jobs SET status = 'queued', updated_at = now() WHERE id = $1::uuid", job_id);
  tx.commit();
  return StartOutcome::started;
}

std::optional<JobDetail> load_job(pqxx::connection& c, std::int64_t team_id, const std::string& job_id) {
  // One snapshot for the job and its counts, so they agree with each other.
  pqxx::read_transaction tx(c);
  auto rows = tx.exec_params(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = $1::uuid AND team_id = $2",
                             job_id, team_id);
  if (rows.empty()) return std::nullopt;
  JobDetail detail;
  detail.job = read_record(rows[0]);
  for (const auto& r : tx.exec_params(
           "SELECT state, count(*) FROM job_items WHERE job_id = $1::uuid AND gold_answer IS NULL GROUP BY state",
           job_id)) {
    const auto state = r[0].as<std::string>();
    const auto n = r[1].as<std::int64_t>();
    if (state == "open")
      detail.open = n;
    else if (state == "labeled")
      detail.labeled = n;
    else if (state == "unlabeled")
      detail.unlabeled = n;
  }
  for (const auto& r : tx.exec_params(
           "SELECT vendor_id, state, count(*), coalesce(sum(cost_micros) FILTER (WHERE state = 'completed'), 0), "
           "  coalesce(sum(quote_micros) FILTER (WHERE state NOT IN ('failed', 'canceled')), 0) "
           "FROM assignments WHERE job_id = $1::uuid GROUP BY vendor_id, state ORDER BY vendor_id, state",
           job_id)) {
    const auto vendor = r[0].as<std::string>();
    const auto state = r[1].as<std::string>();
    const auto n = r[2].as<std::int64_t>();
    if (detail.per_vendor.empty() || detail.per_vendor.back().vendor_id != vendor)
      detail.per_vendor.push_back(VendorProgress{vendor, {}, 0, 0});
    auto& progress = detail.per_vendor.back();
    progress.assignments[state] += n;
    progress.spend_micros += r[3].as<std::int64_t>();
    progress.quoted_micros += r[4].as<std::int64_t>();
    detail.assignments[state] += n;
  }
  // Money as the ledger has it: the job's budget account, and what gold cost (QA overhead).
  // (The account plus deltas not applied yet: exact at any moment.)
  for (const auto& r : tx.exec_params(
           "SELECT coalesce((SELECT held_micros FROM budget_accounts WHERE key = $1), 0) + "
           "         coalesce((SELECT sum(held_delta) FROM account_deltas WHERE key = $1), 0), "
           "       coalesce((SELECT spent_micros FROM budget_accounts WHERE key = $1), 0) + "
           "         coalesce((SELECT sum(spent_delta) FROM account_deltas WHERE key = $1), 0)",
           "job:" + job_id)) {
    detail.held_micros = r[0].as<std::int64_t>();
    detail.spent_micros = r[1].as<std::int64_t>();
  }
  detail.qa_overhead_micros =
      tx.exec_params1("SELECT coalesce(sum(amount_micros), 0) FROM ledger_entries "
                      "WHERE job_id = $1::uuid AND kind = 'settle' AND gold",
                      job_id)[0]
          .as<std::int64_t>();
  tx.commit();
  return detail;
}

std::vector<ListedJob> list_jobs(pqxx::connection& c, std::int64_t team_id, const std::optional<std::string>& status,
                                 const std::optional<ListPosition>& after, std::size_t limit) {
  pqxx::nontransaction tx(c);
  // Keyset pagination on (created_at, id), which jobs_team_listing_idx serves in order. (A flag
  // and placeholder values rather than optional<int64_t> parameters: GCC's -O3 flags those as
  // maybe-uninitialized inside pqxx.)
  const bool has_after = after.has_value();
  const std::int64_t after_micros = has_after ? after->created_at_micros : 0;
  const std::string after_id = has_after ? after->id : "00000000-0000-0000-0000-000000000000";
  auto rows = tx.exec_params(
      std::string("SELECT ") + kJobColumns + ", " LB_MICROS("created_at") +
          " FROM jobs WHERE team_id = $1 AND ($2::text IS NULL OR status = $2) "
          "AND (NOT $3 OR (created_at, id) < (timestamptz 'epoch' + $4::bigint * interval '1 microsecond', "
          "$5::uuid)) "
          "ORDER BY created_at DESC, id DESC LIMIT $6",
      team_id, status, has_after, after_micros, after_id, limit);
  std::vector<ListedJob> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    ListedJob listed{read_record(r), {}};
    listed.position = ListPosition{r[24].as<std::int64_t>(), listed.job.id};
    out.push_back(std::move(listed));
  }
  return out;
}

std::optional<std::vector<ItemResult>> load_results(pqxx::connection& c, std::int64_t team_id,
                                                    const std::string& job_id, const std::string& after,
                                                    std::size_t limit) {
  pqxx::read_transaction tx(c);
  if (tx.exec_params("SELECT 1 FROM jobs WHERE id = $1::uuid AND team_id = $2", job_id, team_id).empty())
    return std::nullopt;
  std::vector<ItemResult> out;
  for (const auto& r :
       tx.exec_params("SELECT item_id, state, label, confidence, coalesce(method, '') FROM job_items "
                      "WHERE job_id = $1::uuid AND gold_answer IS NULL AND state <> 'open' AND item_id > $2 "
                      "ORDER BY item_id LIMIT $3",
                      job_id, after, limit)) {
    ItemResult item;
    item.item_id = r[0].as<std::string>();
    item.state = r[1].as<std::string>();
    if (!r[2].is_null()) item.label = r[2].as<std::string>();
    if (!r[3].is_null()) item.confidence = r[3].as<double>();
    item.method = r[4].as<std::string>();
    out.push_back(std::move(item));
  }
  if (!out.empty()) {
    // The page's judgments in one query over its item range; items of the range that are not on
    // the page (open, gold) are skipped in the merge.
    auto judgments = tx.exec_params(
        "SELECT item_id, vendor_id, coalesce(answer, ''), coalesce(worker_id, '') FROM assignments "
        "WHERE job_id = $1::uuid AND state = 'completed' AND item_id >= $2 AND item_id <= $3 "
        "ORDER BY item_id, vendor_id",
        job_id, out.front().item_id, out.back().item_id);
    // Matched by id, not by walking both lists: the database's collation orders ids, and it need
    // not agree with byte order.
    std::unordered_map<std::string_view, ItemResult*> by_id;
    for (auto& item : out) by_id.emplace(item.item_id, &item);
    for (const auto& r : judgments) {
      auto it = by_id.find(r[0].c_str());
      if (it == by_id.end()) continue;
      it->second->judgments.push_back(
          Judgment{r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<std::string>()});
    }
  }
  tx.commit();
  return out;
}

}  // namespace labelbroker::db
