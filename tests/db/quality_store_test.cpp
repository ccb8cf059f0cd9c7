// The quality rollups against a real PostgreSQL: events spread over six weeks are rolled up in
// many small batches, late ones after later hours, and every window and filter the scores and
// concentration views can ask for must read exactly what a brute-force sum over the events gives.
#include "db/quality_store.hpp"

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <pqxx/pqxx>

#include "db/migrations.hpp"
#include "support/scratch_db.hpp"

using namespace labelbroker;
using namespace labelbroker::testing;

namespace {

const std::vector<std::string> kVendors = {"mercor", "scale", "surge"};
const std::vector<std::string> kDomains = {"general", "legal", "medical"};
const std::vector<std::string> kTaskTypes = {"classification", "rating"};
const std::vector<std::string> kExpertise = {"expert", "general"};
const std::map<std::string, std::vector<std::string>> kLabels = {{"classification", {"a", "b", "c"}},
                                                                 {"rating", {"1", "2"}}};
// The first hour of each window (it ends with the current hour) and the hour before it: events
// there tell "from the window's first hour" from "after it".
const std::vector<int> kWindowEdges = {23, 24, 167, 168, 719, 720};

struct QualityEvent {
  int hours_ago = 0;
  std::int64_t team_id = 0;
  std::string vendor, domain, task_type, expertise;
  std::int64_t judgments = 0, gold_n = 0, gold_correct = 0, cost = 0, on_time = 0, sends = 0, errors = 0, ds_n = 0;
  double ds_correct = 0;
  std::optional<std::int64_t> latency_ms;
};

struct AgreementEvent {
  int hours_ago = 0;
  std::string vendor_a, vendor_b, domain, task_type, expertise, label_a, label_b;
};

// Generates and inserts events with `at` a given number of hours before the hour the test started.
class Events {
 public:
  Events(pqxx::connection& c, std::uint32_t seed) : c_(c), random_(seed), base_epoch_(current_hour()) {}

  // Hours the database's clock has moved on since the events' base hour: an event `hours_ago`
  // is now hours_ago + this many hours old.
  int hours_passed() { return static_cast<int>((current_hour() - base_epoch_) / 3600); }

  void add_quality(const std::vector<int>& hours) {
    pqxx::work tx(c_);
    for (int h : hours) {
      QualityEvent e;
      e.hours_ago = h;
      e.team_id = 1 + pick(3);
      e.vendor = kVendors[pick(kVendors.size())];
      e.domain = kDomains[pick(kDomains.size())];
      e.task_type = kTaskTypes[pick(kTaskTypes.size())];
      e.expertise = kExpertise[pick(kExpertise.size())];
      // The kinds dispatch appends (an answer, gold or not; a send; a refusal; Dawid-Skene's
      // score), mixed at random so every counter varies independently.
      e.judgments = pick(3);
      e.gold_n = pick(3);
      e.gold_correct = pick(e.gold_n + 1);
      e.cost = pick(200000);
      e.on_time = pick(2);
      e.sends = pick(4) == 0 ? pick(100) : 0;
      e.errors = pick(5) == 0 ? pick(3) : 0;
      if (pick(4) == 0) {
        e.ds_n = 1 + pick(250);
        e.ds_correct = std::uniform_real_distribution<double>(0, static_cast<double>(e.ds_n))(random_);
      }
      // Spread over every latency bucket, up to beyond the last finite bound.
      if (pick(3) != 0) e.latency_ms = static_cast<std::int64_t>(std::pow(10.0, uniform(0.0, 6.9)));
      tx.exec_params0(
          "INSERT INTO quality_events (at, team_id, vendor_id, domain, task_type, expertise, judgments, gold_n, "
          "  gold_correct, cost_micros, on_time, latency_ms, sends, errors, ds_n, ds_correct) "
          "VALUES (to_timestamp($1), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
          at(h), e.team_id, e.vendor, e.domain, e.task_type, e.expertise, e.judgments, e.gold_n, e.gold_correct, e.cost,
          e.on_time, e.latency_ms, e.sends, e.errors, e.ds_n, e.ds_correct);
      quality.push_back(e);
    }
    tx.commit();
  }

  void add_agreements(const std::vector<int>& hours) {
    pqxx::work tx(c_);
    for (int h : hours) {
      AgreementEvent e;
      e.hours_ago = h;
      auto a = pick(kVendors.size()), b = pick(kVendors.size() - 1);
      if (b >= a) ++b;
      e.vendor_a = kVendors[std::min(a, b)];
      e.vendor_b = kVendors[std::max(a, b)];
      e.domain = kDomains[pick(kDomains.size())];
      e.task_type = kTaskTypes[pick(kTaskTypes.size())];
      e.expertise = kExpertise[pick(kExpertise.size())];
      const auto& labels = kLabels.at(e.task_type);
      e.label_a = labels[pick(labels.size())];
      e.label_b = pick(2) ? e.label_a : labels[pick(labels.size())];
      tx.exec_params0(
          "INSERT INTO agreement_events (at, vendor_a, vendor_b, domain, task_type, expertise, label_a, label_b) "
          "VALUES (to_timestamp($1), $2, $3, $4, $5, $6, $7, $8)",
          at(h), e.vendor_a, e.vendor_b, e.domain, e.task_type, e.expertise, e.label_a, e.label_b);
      agreements.push_back(e);
    }
    tx.commit();
  }

  // `n` hours drawn from [lo, hi], none in `skip`, and every window edge in [lo, hi] twice.
  std::vector<int> hours(int n, int lo, int hi, const std::set<int>& skip = {}) {
    std::vector<int> out;
    for (int h : kWindowEdges)
      if (h >= lo && h <= hi) out.insert(out.end(), 2, h);
    while (static_cast<int>(out.size()) < n) {
      const int h = lo + static_cast<int>(pick(static_cast<std::size_t>(hi - lo + 1)));
      if (!skip.count(h)) out.push_back(h);
    }
    return out;
  }

  std::vector<QualityEvent> quality;
  std::vector<AgreementEvent> agreements;

 private:
  std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(random_); }
  double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(random_); }
  // Somewhere inside the hour `hours_ago` hours before the test's start hour, in epoch seconds.
  double at(int hours_ago) { return static_cast<double>(base_epoch_ - hours_ago * 3600 + 60 * pick(60) + pick(60)); }
  std::int64_t current_hour() {
    pqxx::nontransaction tx(c_);
    return tx.exec("SELECT extract(epoch FROM date_trunc('hour', now()))::bigint")[0][0].as<std::int64_t>();
  }

  pqxx::connection& c_;
  std::mt19937 random_;
  std::int64_t base_epoch_;
};

// ---- the brute force ------------------------------------------------------------------------------

// `passed`: hours the clock has moved on since the events were made.
template <typename E>
bool matches(const E& e, const db::RollupFilter& f, int passed, bool domain_filter = true) {
  return (!f.window_hours || e.hours_ago + passed < *f.window_hours) &&
         (!domain_filter || !f.domain || e.domain == *f.domain) && (!f.task_type || e.task_type == *f.task_type) &&
         (!f.expertise || e.expertise == *f.expertise);
}

// Every field, printed exactly (ds_correct to the last bit), so a mismatch shows what differs.
std::string describe(const quality::VendorTotals& v) {
  char ds[64];
  std::snprintf(ds, sizeof ds, "%.17g", v.ds_correct);
  std::string out = "judgments " + std::to_string(v.judgments) + ", gold " + std::to_string(v.gold_correct) + "/" +
                    std::to_string(v.gold_n) + ", cost " + std::to_string(v.cost_micros) + " over " +
                    std::to_string(v.answers) + ", on time " + std::to_string(v.on_time) + ", sends " +
                    std::to_string(v.sends) + ", errors " + std::to_string(v.errors) + ", ds " + ds + "/" +
                    std::to_string(v.ds_n) + ", team " + std::to_string(v.team_items) + " items " +
                    std::to_string(v.team_spend_micros) + " micros, latency";
  for (auto n : v.latency.counts()) out += " " + std::to_string(n);
  return out;
}

std::map<std::string, std::string> expected_vendors(const Events& events, const db::RollupFilter& f, int passed) {
  std::map<std::string, quality::VendorTotals> totals;
  std::map<std::string, std::int64_t> ds_micros;
  for (const auto& e : events.quality) {
    if (!matches(e, f, passed)) continue;
    auto& v = totals[e.vendor];
    v.vendor_id = e.vendor;
    v.judgments += e.judgments;
    v.gold_n += e.gold_n;
    v.gold_correct += e.gold_correct;
    v.cost_micros += e.cost;
    v.answers += e.judgments + e.gold_n;
    v.on_time += e.on_time;
    v.sends += e.sends;
    v.errors += e.errors;
    v.ds_n += e.ds_n;
    ds_micros[e.vendor] += std::llround(e.ds_correct * 1e6);
    if (e.latency_ms) v.latency.add(static_cast<double>(*e.latency_ms));
    if (e.team_id == f.team_id) {
      v.team_items += e.judgments;
      v.team_spend_micros += e.cost;
    }
  }
  std::map<std::string, std::string> out;
  for (auto& [id, v] : totals) {
    v.ds_correct = static_cast<double>(ds_micros[id]) / 1e6;
    out[id] = describe(v);
  }
  return out;
}

std::map<std::string, std::string> read_vendors(const db::RollupTotals& totals) {
  std::map<std::string, std::string> out;
  for (const auto& v : totals.vendors) CHECK(out.emplace(v.vendor_id, describe(v)).second);
  return out;
}

using PairKey = std::tuple<std::string, std::string, std::string>;        // vendor a, vendor b, label
using PairCounts = std::tuple<std::int64_t, std::int64_t, std::int64_t>;  // a, b, agree

std::map<PairKey, PairCounts> expected_pairs(const Events& events, const db::RollupFilter& f, int passed) {
  std::map<PairKey, PairCounts> out;
  for (const auto& e : events.agreements) {
    if (!matches(e, f, passed)) continue;
    auto& a = out[{e.vendor_a, e.vendor_b, e.label_a}];
    std::get<0>(a) += 1;
    if (e.label_a == e.label_b) std::get<2>(a) += 1;
    std::get<1>(out[{e.vendor_a, e.vendor_b, e.label_b}]) += 1;
  }
  return out;
}

std::map<PairKey, PairCounts> read_pairs(const db::RollupTotals& totals) {
  std::map<PairKey, PairCounts> out;
  for (const auto& p : totals.pairs)
    CHECK(out.emplace(PairKey{p.vendor_a, p.vendor_b, p.label}, PairCounts{p.a_count, p.b_count, p.agree}).second);
  return out;
}

// The team's (domain, vendor) groups with any event in the window, in domain then vendor order.
std::vector<std::tuple<std::string, std::string, std::int64_t>> expected_volumes(const Events& events,
                                                                                 const db::RollupFilter& f,
                                                                                 int passed) {
  std::map<std::pair<std::string, std::string>, std::int64_t> items;
  for (const auto& e : events.quality)
    if (e.team_id == f.team_id && matches(e, f, passed, false)) items[{e.domain, e.vendor}] += e.judgments;
  std::vector<std::tuple<std::string, std::string, std::int64_t>> out;
  for (const auto& [key, n] : items) out.emplace_back(key.first, key.second, n);
  return out;
}

std::vector<std::tuple<std::string, std::string, std::int64_t>> read_volumes(pqxx::connection& c,
                                                                             const db::RollupFilter& f) {
  std::vector<std::tuple<std::string, std::string, std::int64_t>> out;
  for (const auto& v : db::load_domain_volumes(c, f)) out.emplace_back(v.domain, v.vendor_id, v.items);
  return out;
}

std::string describe(const db::RollupFilter& f) {
  return "team " + std::to_string(f.team_id) + ", window " +
         (f.window_hours ? std::to_string(*f.window_hours) + "h" : "all") + ", domain " + f.domain.value_or("*") +
         ", task type " + f.task_type.value_or("*") + ", expertise " + f.expertise.value_or("*");
}

// Every window and level of filtering the views use, for two teams, against the brute force.
void check_every_view(pqxx::connection& c, Events& events) {
  struct Filters {
    std::optional<std::string> domain, task_type, expertise;
  };
  const std::vector<Filters> filters = {{},
                                        {"legal", {}, {}},
                                        {{}, "rating", {}},
                                        {{}, {}, "expert"},
                                        {"medical", "classification", {}},
                                        {"general", {}, "general"},
                                        {{}, "classification", "expert"},
                                        {"legal", "rating", "general"},
                                        {"astrology", {}, {}}};
  struct Read {
    db::RollupFilter filter;
    db::RollupTotals totals;
    std::vector<std::tuple<std::string, std::string, std::int64_t>> volumes;
  };
  // Everything is read within one hour of the database's clock (read again if an hour passed
  // meanwhile), then compared.
  std::vector<Read> reads;
  int passed = 0;
  for (int attempt = 0; attempt < 2 && (reads.empty() || events.hours_passed() != passed); ++attempt) {
    reads.clear();
    passed = events.hours_passed();
    for (std::int64_t team : {1, 3})
      for (std::optional<int> window :
           {std::optional<int>(24), std::optional<int>(7 * 24), std::optional<int>(30 * 24), std::optional<int>()})
        for (const auto& filter : filters) {
          db::RollupFilter f;
          f.team_id = team;
          f.window_hours = window;
          f.domain = filter.domain;
          f.task_type = filter.task_type;
          f.expertise = filter.expertise;
          reads.push_back({f, db::load_rollups(c, f), read_volumes(c, f)});
        }
  }
  REQUIRE(events.hours_passed() == passed);
  for (const auto& r : reads) {
    INFO(describe(r.filter) << "; " << passed << " hours passed since the events were made");
    CHECK(read_vendors(r.totals) == expected_vendors(events, r.filter, passed));
    CHECK(read_pairs(r.totals) == expected_pairs(events, r.filter, passed));
    CHECK(r.volumes == expected_volumes(events, r.filter, passed));
  }
}

std::size_t roll_up_all(pqxx::connection& c, std::size_t batch) {
  std::size_t total = 0, n = 0;
  while ((n = db::roll_up_quality(c, batch)) > 0) total += n;
  return total;
}

}  // namespace

TEST_CASE("quality store: every window and filter reads what the events add up to, late events included",
          "[.db][quality-store]") {
  ScratchDatabase scratch;
  pqxx::connection c(scratch.url());
  db::apply_migrations(c, db::builtin_migrations());
  Events events(c, 20261128);

  // History: six weeks back to two days ago, except 300 hours ago (kept for a late event at an
  // hour without rows) and beyond 900 (older than any row). Rolled up in small batches, so an
  // hour's events often span two batches.
  events.add_quality(events.hours(700, 48, 900, {300}));
  events.add_agreements(events.hours(500, 48, 900, {300}));
  CHECK(roll_up_all(c, 37) == 1200);
  // The last two days, in one batch per queue.
  events.add_quality(events.hours(300, 0, 47));
  events.add_agreements(events.hours(200, 0, 47));
  CHECK(roll_up_all(c, 1000) == 500);
  {
    // The windows have something to show (a comparison of nothing with nothing proves little).
    db::RollupFilter f;
    f.team_id = 1;
    f.window_hours = 24;
    REQUIRE(expected_vendors(events, f, 0).size() == kVendors.size());
    REQUIRE(expected_pairs(events, f, 0).size() > 10);
    REQUIRE(expected_volumes(events, f, 0).size() > 5);
  }
  SECTION("after rolling up in order") {
    check_every_view(c, events);
  }

  SECTION("after late events, rolled up when later hours already were") {
    // Late: at an hour with no rows for any key (300), at hours before every row (950, 1000), at
    // hours that have rows (100, 30, 5), and now.
    for (int h : {300, 950, 1000, 100, 30, 5, 0}) {
      events.add_quality(std::vector<int>(12, h));
      events.add_agreements(std::vector<int>(8, h));
    }
    CHECK(roll_up_all(c, 9) == 7 * 20);
    check_every_view(c, events);

    // The hourly history still holds every event.
    pqxx::nontransaction tx(c);
    std::int64_t judgments = 0, a_count = 0;
    for (const auto& e : events.quality) judgments += e.judgments;
    a_count = static_cast<std::int64_t>(events.agreements.size());
    CHECK(tx.exec("SELECT sum(judgments) FROM vendor_hourly")[0][0].as<std::int64_t>() == judgments);
    CHECK(tx.exec("SELECT sum(a_count) FROM vendor_pair_hourly")[0][0].as<std::int64_t>() == a_count);
  }

  SECTION("the same data reads the same, and the domains with data are known") {
    db::RollupFilter f;
    f.team_id = 2;
    const auto first = db::load_rollups(c, f), second = db::load_rollups(c, f);
    CHECK(read_vendors(first) == read_vendors(second));
    CHECK(read_pairs(first) == read_pairs(second));
    CHECK(db::rollups_have_domain(c, "legal"));
    CHECK_FALSE(db::rollups_have_domain(c, "astrology"));
    CHECK(db::rollup_domains(c) == kDomains);
  }
}
