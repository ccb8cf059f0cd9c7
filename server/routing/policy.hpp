#pragma once
// Which vendors get an item's judgments. Planning and re-routing go through RoutingPolicy, so the
// real quality- and cost-aware policy (#6) replaces the interim one without touching dispatch.
//
// Pure: no I/O, no clock; the caller passes what it knows about the vendors. Implementations are
// safe to call from several threads.
#include <cstddef>
#include <memory>
#include <mutex>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vendors/adapter.hpp"

namespace labelbroker::routing {

// What a policy may know about one vendor at decision time.
struct VendorState {
  std::string id;
  vendors::Capabilities capabilities;
  bool enabled = true;
  bool healthy = true;  // false while its recent requests keep failing
  double weight = 1.0;  // relative share of work; 0 takes no new work
};

// The part of a job that routing looks at.
struct RoutingContext {
  std::string job_id;
  std::int64_t team_id = 0;
  vendors::TaskType task_type = vendors::TaskType::classification;
  std::string domain;
  vendors::Expertise expertise = vendors::Expertise::general;
  std::vector<std::string> eligible;  // fixed at intake: capabilities and the job's allow/deny
  int redundancy = 1;
};

class RoutingPolicy {
 public:
  virtual ~RoutingPolicy() = default;

  // For each of `item_count` items, the vendors that judge it: at most `redundancy`, all distinct,
  // drawn from the job's eligible vendors that are enabled and healthy now. An item gets fewer
  // (possibly zero) vendors only when fewer are usable.
  virtual std::vector<std::vector<std::string>> plan(const RoutingContext& job, std::size_t item_count,
                                                     const std::vector<VendorState>& vendors) = 0;

  // One more vendor for an item whose unit failed or was moved, excluding every vendor the item
  // already used. nullopt when none is left.
  virtual std::optional<std::string> reroute(const RoutingContext& job, const std::vector<std::string>& used,
                                             const std::vector<VendorState>& vendors) = 0;
};

// The interim policy: usable eligible vendors, weighted round-robin by deficit counters, redundant
// judgments of an item on distinct vendors. With weights w and redundancy r each vendor's share of
// judgments is proportional to w, capped at one judgment per item. Counters are kept per (domain,
// task type) in this process, so interleaved jobs still share out evenly; the routing issue
// persists them so that processes and restarts agree.
class WeightedRoundRobin final : public RoutingPolicy {
 public:
  std::vector<std::vector<std::string>> plan(const RoutingContext& job, std::size_t item_count,
                                             const std::vector<VendorState>& vendors) override;
  std::optional<std::string> reroute(const RoutingContext& job, const std::vector<std::string>& used,
                                     const std::vector<VendorState>& vendors) override;

 private:
  // Picks up to `count` distinct vendors from `usable`, not in `exclude`, advancing the counters.
  std::vector<std::string> pick(std::map<std::string, double>& credit, const std::vector<const VendorState*>& usable,
                                std::size_t count, const std::vector<std::string>& exclude);
  std::mutex mutex_;
  std::map<std::string, std::map<std::string, double>> totals_;  // (domain/task type) -> vendor -> credit
};

// The vendors of `job.eligible` that can take work now, in eligibility order.
std::vector<const VendorState*> usable_vendors(const RoutingContext& job, const std::vector<VendorState>& vendors);

}  // namespace labelbroker::routing
