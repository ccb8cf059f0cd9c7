#include "db/dataset_store.hpp"

#include <limits>

#include <pqxx/pqxx>

#include "db/sql_time.hpp"

#include "common/crypto.hpp"
#include "common/strings.hpp"

namespace labelbroker::db {
namespace {

using json = nlohmann::json;

// One version of the team's dataset: a number, or "latest" (the newest ready one). Columns: name,
// version, status, created_at, source_jobs, item_count, excluded_count, label_counts, vendor_mix,
// aggregation, bytes, sha256, min_confidence, include, ready_at, id. nullopt: none (another
// team's look the same).
std::optional<pqxx::row> find_version(pqxx::transaction_base& tx, std::int64_t team_id, const std::string& name,
                                      const std::string& version) {
  std::optional<int> number;
  if (version != "latest") {
    const auto n = common::parse_uint(version);
    if (!n || *n < 1 || *n > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return std::nullopt;
    number = static_cast<int>(*n);
  }
  auto rows = tx.exec_params(
      "SELECT d.name, v.version, v.status, " + rfc3339_sql("v.created_at") + ", array_to_json(v.source_jobs)::text, "
      "  v.item_count, v.excluded_count, coalesce(v.label_counts, '{}')::text, coalesce(v.vendor_mix, '{}')::text, "
      "  coalesce(v.aggregation, '{}')::text, v.bytes, v.sha256, v.min_confidence, array_to_json(v.include)::text, "
      "  " + rfc3339_sql("v.ready_at") + ", v.id::text "
      "FROM datasets d JOIN dataset_versions v ON v.dataset_id = d.id "
      "WHERE d.team_id = $1 AND d.name = $2 AND ($3::int IS NULL OR v.version = $3) "
      "  AND ($3::int IS NOT NULL OR v.status = 'ready') "
      "ORDER BY v.version DESC LIMIT 1",
      team_id, name, number);
  if (rows.empty()) return std::nullopt;
  return rows[0];
}

}  // namespace

DatasetCreateResult create_dataset_version(pqxx::connection& c, std::int64_t team_id, const DatasetRequest& request) {
  DatasetCreateResult result;
  pqxx::work tx(c);
  // The dataset row is the lock that numbers versions one after another.
  tx.exec_params0("INSERT INTO datasets (team_id, name) VALUES ($1, $2) ON CONFLICT (team_id, name) DO NOTHING",
                  team_id, request.name);
  const auto dataset =
      tx.exec_params1("SELECT id FROM datasets WHERE team_id = $1 AND name = $2 FOR UPDATE", team_id, request.name)[0]
          .as<std::int64_t>();
  if (request.idempotency_key) {
    auto earlier = tx.exec_params(
        "SELECT version, status, coalesce(request_sha256, '') FROM dataset_versions "
        "WHERE dataset_id = $1 AND idempotency_key = $2",
        dataset, *request.idempotency_key);
    if (!earlier.empty()) {
      result.outcome = earlier[0][2].as<std::string>() == request.request_sha256 ? DatasetCreate::replayed
                                                                                   : DatasetCreate::key_reused;
      result.version = earlier[0][0].as<int>();
      result.status = earlier[0][1].as<std::string>();
      tx.commit();
      return result;
    }
  }
  // Every job must be the team's own and completed (its labels final); others look like none.
  auto jobs = tx.exec_params(
      "SELECT x.n - 1, j.status FROM jsonb_array_elements_text($2::jsonb) WITH ORDINALITY AS x(id, n) "
      "LEFT JOIN jobs j ON j.id = x.id::uuid AND j.team_id = $1 ORDER BY x.n",
      team_id, json(request.jobs).dump());
  for (const auto& r : jobs) {
    const auto index = r[0].as<std::size_t>();
    if (r[1].is_null())
      result.job_errors.emplace_back(index, "no job with this id");
    else if (r[1].as<std::string>() != "completed")
      result.job_errors.emplace_back(index, "the job is " + r[1].as<std::string>() +
                                                "; only completed jobs can be exported");
  }
  if (!result.job_errors.empty()) {
    result.outcome = DatasetCreate::invalid_jobs;
    return result;  // rolled back: not even the dataset row stays
  }
  result.version = tx.exec_params1("SELECT coalesce(max(version), 0) + 1 FROM dataset_versions WHERE dataset_id = $1",
                                   dataset)[0]
                       .as<int>();
  tx.exec_params0(
      "INSERT INTO dataset_versions (dataset_id, version, status, source_jobs, min_confidence, include, "
      "  idempotency_key, request_sha256, aggregation) "
      "VALUES ($1, $2, 'building', ARRAY(SELECT jsonb_array_elements_text($3::jsonb)::uuid), $4, "
      "  ARRAY(SELECT jsonb_array_elements_text($5::jsonb)), $6, $7, $8::jsonb)",
      dataset, result.version, json(request.jobs).dump(), request.min_confidence, json(request.include).dump(),
      request.idempotency_key, request.request_sha256,
      json({{"method", "dawid_skene for items with two or more judgments when the job ended, else majority"},
            {"params", {{"min_confidence", request.min_confidence}}}})
          .dump());
  tx.commit();
  result.status = "building";
  return result;
}

bool build_next_dataset_version(pqxx::connection& c, const OpenBuildSink& open_sink) {
  pqxx::work tx(c);
  auto picked = tx.exec(
      "SELECT id::text, min_confidence, 'judgments' = ANY(include), 'provenance' = ANY(include) "
      "FROM dataset_versions WHERE status = 'building' ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED");
  if (picked.empty()) return false;
  const auto id = picked[0][0].as<std::string>();
  // A million-item version takes longer than database.statement_timeout allows an API request;
  // it is one claimed transaction of the builder's own, so it may.
  tx.exec0("SET LOCAL statement_timeout = 0");
  const auto min_confidence = picked[0][1].as<double>();
  const bool judgments = picked[0][2].as<bool>(), provenance = picked[0][3].as<bool>();

  // The lines, in source-job order then item id, built from jsonb so that equal values print
  // alike. Judgments by vendor; provenance: each judging vendor's gold accuracy estimate now
  // (discounted evidence with a uniform prior) for the job's domain and task type.
  tx.exec_params0(
      "INSERT INTO dataset_items (version_id, seq, job_id, item_id, line, byte_offset) "
      "SELECT $1::uuid, seq, job_id, item_id, line, "
      "  sum(octet_length(line) + 1) OVER (ORDER BY seq) - (octet_length(line) + 1) FROM ( "
      "SELECT row_number() OVER (ORDER BY s.n, i.item_id) AS seq, i.job_id, i.item_id, "
      "  (jsonb_build_object('item_id', i.item_id, 'data', i.data, 'label', i.label, "
      "     'confidence', i.confidence, 'method', i.method) "
      "   || CASE WHEN $3 THEN jsonb_build_object('judgments', coalesce(( "
      "        SELECT jsonb_agg(jsonb_build_object('vendor', a.vendor_id, 'label', a.answer, 'worker', a.worker_id) "
      "                         ORDER BY a.vendor_id) "
      "        FROM assignments a WHERE a.job_id = i.job_id AND a.item_id = i.item_id AND a.state = 'completed'), "
      "        '[]'::jsonb)) ELSE '{}'::jsonb END "
      "   || CASE WHEN $4 THEN jsonb_build_object('provenance', jsonb_build_object('job_id', i.job_id, "
      "        'vendors', coalesce(( "
      "        SELECT jsonb_agg(jsonb_build_object('vendor', a.vendor_id, 'estimated_accuracy', "
      "                   round(((1 + coalesce(e.correct, 0)) / (2 + coalesce(e.n, 0)))::numeric, 4)) "
      "                 ORDER BY a.vendor_id) "
      "        FROM assignments a LEFT JOIN vendor_evidence e ON e.vendor_id = a.vendor_id AND e.domain = j.domain "
      "          AND e.task_type = j.task_type "
      "        WHERE a.job_id = i.job_id AND a.item_id = i.item_id AND a.state = 'completed'), '[]'::jsonb))) "
      "        ELSE '{}'::jsonb END)::text AS line "
      "FROM dataset_versions v CROSS JOIN LATERAL unnest(v.source_jobs) WITH ORDINALITY AS s(job_id, n) "
      "JOIN jobs j ON j.id = s.job_id "
      "JOIN job_items i ON i.job_id = s.job_id "
      "WHERE v.id = $1::uuid AND i.gold_answer IS NULL AND i.state = 'labeled' AND i.confidence >= $2) x",
      id, min_confidence, judgments, provenance);

  // A fresh million rows: without statistics the planner would scan them for every ranged read.
  tx.exec0("ANALYZE dataset_items");

  // Bytes and hash, a page of lines at a time: memory stays small whatever the size.
  common::Sha256 hash;
  const BuildSink sink = open_sink ? open_sink(id) : BuildSink{};
  std::int64_t bytes = 0, rows = 0, after = 0;
  while (true) {
    auto page = tx.exec_params(
        "SELECT seq, line FROM dataset_items WHERE version_id = $1::uuid AND seq > $2 ORDER BY seq LIMIT 10000", id,
        after);
    if (page.empty()) break;
    for (const auto& r : page) {
      const std::string_view line(r[1].c_str(), r[1].size());
      hash.update(line);
      hash.update("\n");
      if (sink.line) sink.line(line);
      bytes += static_cast<std::int64_t>(line.size()) + 1;
      ++rows;
      after = r[0].as<std::int64_t>();
    }
  }

  if (sink.finish) sink.finish();
  tx.exec_params0(
      "UPDATE dataset_versions v SET status = 'ready', ready_at = now(), item_count = $2, bytes = $3, sha256 = $4, "
      "  excluded_count = (SELECT count(*) FROM job_items i WHERE i.job_id = ANY(v.source_jobs) "
      "                    AND i.gold_answer IS NULL AND i.state = 'labeled' AND i.confidence < v.min_confidence), "
      "  label_counts = coalesce((SELECT jsonb_object_agg(label, n) FROM ( "
      "      SELECT i.label, count(*) AS n FROM dataset_items d "
      "      JOIN job_items i ON i.job_id = d.job_id AND i.item_id = d.item_id "
      "      WHERE d.version_id = v.id GROUP BY i.label) l), '{}'::jsonb), "
      "  vendor_mix = coalesce((SELECT jsonb_object_agg(vendor_id, round(n::numeric / total, 4)) FROM ( "
      "      SELECT vendor_id, n, sum(n) OVER () AS total FROM ( "
      "        SELECT a.vendor_id, count(*) AS n FROM dataset_items d "
      "        JOIN assignments a ON a.job_id = d.job_id AND a.item_id = d.item_id AND a.state = 'completed' "
      "        WHERE d.version_id = v.id GROUP BY a.vendor_id) m) t), '{}'::jsonb) "
      "WHERE v.id = $1::uuid",
      id, rows, bytes, hash.hex());
  tx.commit();
  return true;
}

std::optional<ReadyFile> find_dataset_file(pqxx::connection& c, std::int64_t team_id, const std::string& name,
                                           const std::string& version) {
  pqxx::read_transaction tx(c);
  const auto row = find_version(tx, team_id, name, version);
  if (!row) return std::nullopt;
  ReadyFile file;
  file.status = (*row)[2].as<std::string>();
  if (file.status != "ready") return file;
  file.version = (*row)[1].as<int>();
  file.bytes = (*row)[10].as<std::uint64_t>();
  file.sha256 = (*row)[11].as<std::string>();
  file.version_id = (*row)[15].as<std::string>();
  return file;
}

std::string read_dataset_bytes(pqxx::connection& c, const std::string& version_id, std::uint64_t from,
                               std::uint64_t to, std::size_t max_bytes) {
  std::string out;
  if (from >= to) return out;
  pqxx::read_transaction tx(c);
  // The line holding `from` (the last one starting at or before it), then lines in order until
  // enough bytes or `to`.
  auto rows = tx.exec_params(
      "SELECT byte_offset, line FROM dataset_items WHERE version_id = $1::uuid AND byte_offset >= coalesce(( "
      "  SELECT byte_offset FROM dataset_items WHERE version_id = $1::uuid AND byte_offset <= $2 "
      "  ORDER BY byte_offset DESC LIMIT 1), 0) AND byte_offset < $3 "
      "ORDER BY byte_offset LIMIT $4",
      version_id, static_cast<std::int64_t>(from), static_cast<std::int64_t>(to),
      static_cast<long>(std::max<std::size_t>(1, max_bytes / 64)));
  for (const auto& r : rows) {
    const auto offset = r[0].as<std::uint64_t>();
    std::string_view line(r[1].c_str(), r[1].size());
    // The line with its newline, clipped to [from, to).
    const std::uint64_t line_end = offset + line.size() + 1;
    const std::uint64_t start = std::max(from, offset), end = std::min(to, line_end);
    if (start >= end) continue;
    const auto a = static_cast<std::size_t>(start - offset), b = static_cast<std::size_t>(end - offset);
    if (b <= line.size()) {
      out.append(line.substr(a, b - a));
    } else {
      out.append(line.substr(a));
      out += '\n';
    }
    if (out.size() >= max_bytes) break;
  }
  return out;
}

std::optional<json> load_dataset_manifest(pqxx::connection& c, std::int64_t team_id, const std::string& name,
                                          const std::string& version) {
  pqxx::read_transaction tx(c);
  const auto row = find_version(tx, team_id, name, version);
  if (!row) return std::nullopt;
  const auto& r = *row;
  json m = {{"name", r[0].as<std::string>()},
            {"version", r[1].as<int>()},
            {"status", r[2].as<std::string>()},
            {"created_at", r[3].as<std::string>()},
            {"source_jobs", json::parse(r[4].as<std::string>())},
            {"min_confidence", r[12].as<double>()},
            {"include", json::parse(r[13].as<std::string>())},
            {"aggregation", json::parse(r[9].as<std::string>())}};
  if (m["status"] == "ready") {
    m["ready_at"] = r[14].as<std::string>();
    m["item_count"] = r[5].as<std::int64_t>();
    m["excluded_count"] = r[6].as<std::int64_t>();
    m["label_counts"] = json::parse(r[7].as<std::string>());
    m["vendor_mix"] = json::parse(r[8].as<std::string>());
    m["files"] = json::array({{{"path", "items.jsonl"},
                               {"bytes", r[10].as<std::int64_t>()},
                               {"sha256", r[11].as<std::string>()},
                               {"rows", r[5].as<std::int64_t>()}}});
  }
  return m;
}

json list_datasets(pqxx::connection& c, std::int64_t team_id) {
  pqxx::read_transaction tx(c);
  auto rows = tx.exec_params(
      "SELECT d.name, " + rfc3339_sql("d.created_at") + ", v.version, v.status, v.item_count, " +
          rfc3339_sql("v.created_at") +
          " FROM datasets d JOIN dataset_versions v ON v.dataset_id = d.id WHERE d.team_id = $1 "
          "ORDER BY d.name, v.version",
      team_id);
  json out = json::array();
  for (const auto& r : rows) {
    const auto name = r[0].as<std::string>();
    if (out.empty() || out.back()["name"] != name)
      out.push_back({{"name", name}, {"created_at", r[1].as<std::string>()}, {"latest_ready", nullptr},
                     {"versions", json::array()}});
    json v = {{"version", r[2].as<int>()}, {"status", r[3].as<std::string>()}, {"created_at", r[5].as<std::string>()}};
    v["item_count"] = r[4].is_null() ? json(nullptr) : json(r[4].as<std::int64_t>());
    if (v["status"] == "ready") out.back()["latest_ready"] = v["version"];
    out.back()["versions"].push_back(std::move(v));
  }
  return out;
}

}  // namespace labelbroker::db
