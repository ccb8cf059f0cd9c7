#pragma once
// Internal to vendor-sim: the state of each simulated vendor and the engine that works its tasks.
// Kind-specific wire formats (scale_api.cpp, surge_api.cpp, mercor_api.cpp) sit on top of this.
//
// Locking: each Vendor has one mutex guarding everything in it (units, kind state, behaviour,
// stats). Handlers take it for the in-memory work only; faults that sleep (hangs) and callback
// delivery happen outside it. The engine's scheduler thread takes a vendor's mutex to start and
// complete units; callback completion takes it to record the outcome.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/time.hpp"
#include "http/request.hpp"
#include "http/router.hpp"
#include "vendors/sim/callback_sender.hpp"
#include "vendors/sim/scenario.hpp"
#include "vendors/sim/worker_model.hpp"

namespace labelbroker::vendors::sim {

// A client error in the vendor's own format; thrown by kind handlers, rendered by KindApi::error.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string code, std::string message, int retry_after_s = -1)
      : std::runtime_error(message),
        status(status),
        code(std::move(code)),
        message(std::move(message)),
        retry_after_s(retry_after_s) {}
  int status;
  std::string code;  // machine-readable (used by the Mercor format)
  std::string message;
  int retry_after_s;  // >= 0: send Retry-After
};

enum class UnitState { queued, in_progress, done, canceled };
std::string_view unit_state_name(UnitState state);

// One simulated task (Scale task, Surge task, Mercor work item).
struct WorkUnit {
  std::string id;
  std::uint64_t seq = 0;  // creation order within the vendor; selects the unit's random streams
  UnitState state = UnitState::queued;
  std::string domain = "general";
  std::string task_type = "classification";
  std::string expertise = "general";
  std::vector<std::string> labels;
  std::string truth;
  int responses_wanted = 1;
  std::vector<std::string> answers;     // filled at completion, one per response
  std::vector<std::string> worker_ids;  // parallel to answers
  std::chrono::system_clock::time_point created_at, updated_at, started_at, completed_at;
  std::int64_t charged_micros = 0;
  double minutes_spent = 0;
  std::string parent;  // Surge project id, Mercor engagement id
  nlohmann::json doc;  // kind-specific request fields kept for rendering
  std::optional<bool> callback_succeeded;
};

struct VendorStats {
  std::uint64_t tasks_created = 0;
  std::uint64_t duplicate_creates_refused = 0;
  std::uint64_t idempotent_replays = 0;
  std::uint64_t idempotency_conflicts = 0;
  std::uint64_t cancels = 0;
  std::uint64_t cancels_refused = 0;
  std::uint64_t completed = 0;
  std::uint64_t answers = 0;
  std::uint64_t correct_answers = 0;
  std::uint64_t callbacks_sent = 0;     // delivered with a 2xx
  std::uint64_t callbacks_failed = 0;   // abandoned after the last attempt
  std::uint64_t callbacks_dropped = 0;  // never sent (dropped_callback_rate)
  std::uint64_t callback_attempts = 0;
  std::int64_t charged_micros = 0;
  std::uint64_t rejected_capacity = 0;
  std::uint64_t faults_429 = 0;
  std::uint64_t faults_5xx = 0;
  std::uint64_t outage_rejections = 0;
  std::uint64_t auth_failures = 0;
  std::uint64_t hangs = 0;
  std::uint64_t requests = 0;
};

class Engine;
class Vendor;

// The wire format of one vendor kind.
class KindApi {
 public:
  virtual ~KindApi() = default;
  // Adds this vendor's routes under /<vendor id>/...; every handler must go through Engine::serve.
  virtual void register_routes(http::Router& router) = 0;
  virtual bool authorized(const http::Request& request) const = 0;
  virtual http::Response error(const ApiError& error) const = 0;
  // Called with the vendor's mutex held when a unit has its answers: records the charge on the
  // unit and updates kind state. Returns where to call back ("" for nowhere).
  virtual std::string on_complete(WorkUnit& unit) = 0;
  // The callback for a completed unit (mutex held). Only built when it will be sent.
  virtual Callback make_callback(const WorkUnit& unit, const std::string& url) = 0;
  // Called with the vendor's mutex held before a queued unit starts (Surge: only in a running
  // project). A unit refused here stays queued until Engine::release() is called for it.
  virtual bool may_start(const WorkUnit&) const { return true; }
  // Forgets kind-specific state (projects, requisitions, idempotency records). Mutex held.
  virtual void reset() = 0;
};

std::unique_ptr<KindApi> make_scale_api(Engine& engine, Vendor& vendor);
std::unique_ptr<KindApi> make_surge_api(Engine& engine, Vendor& vendor);
std::unique_ptr<KindApi> make_mercor_api(Engine& engine, Vendor& vendor);

class Vendor {
 public:
  explicit Vendor(const VendorSpec& spec) : spec(spec), behaviour(spec.behaviour), fault_rng(spec.seed) {}

  const VendorSpec spec;
  std::size_t index = 0;
  mutable std::mutex mutex;
  Behaviour behaviour;
  VendorStats stats;
  std::unordered_map<std::string, WorkUnit> units;
  std::vector<std::string> order;  // unit ids in creation order (listing, pagination)
  std::uint64_t next_seq = 0;
  std::uint64_t next_id = 0;
  std::int64_t in_flight = 0;
  Rng fault_rng;
  std::unique_ptr<KindApi> api;

  WorkUnit* find(const std::string& id) {
    auto it = units.find(id);
    return it == units.end() ? nullptr : &it->second;
  }
  // A fresh id: deterministic per vendor (seed + counter) so runs are reproducible.
  std::string new_id(std::size_t hex_digits = 24);
};

class Engine {
 public:
  // shutting_down, when given, is watched by hanging requests so that a shutdown does not wait
  // for them (the HTTP server's Lifecycle::draining).
  Engine(Scenario scenario, const common::Clock& clock, const std::atomic<bool>* shutting_down = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void register_routes(http::Router& router);
  void stop();

  std::chrono::system_clock::time_point now() const { return clock_.now(); }
  const Scenario& scenario() const { return scenario_; }

  // Runs a vendor API request: outage, auth, injected faults, then the handler (ApiError and
  // other exceptions become the kind's error format), then post-commit faults and hangs.
  http::Response serve(Vendor& vendor, http::Request& request,
                       const std::function<http::Response(http::Request&)>& handler);

  // With the vendor's mutex held: refuses (ApiError 429) when the vendor is at capacity for `count`
  // more units.
  void check_capacity(Vendor& vendor, std::size_t count);
  // With the vendor's mutex held: stores the unit (id, labels, truth, data already set), counts it
  // and schedules its start (unless `hold`). Returns the stored unit.
  WorkUnit& add_unit(Vendor& vendor, WorkUnit unit, bool hold = false);
  // With the vendor's mutex held: schedules the start of a queued unit that was held back.
  void release(Vendor& vendor, const WorkUnit& unit);
  // With the vendor's mutex held: cancels a unit still queued. False if it has started or ended.
  bool cancel_unit(Vendor& vendor, WorkUnit& unit);

  nlohmann::json stats_json() const;
  nlohmann::json vendor_json(Vendor& vendor) const;
  Vendor* vendor(const std::string& id);
  // Clears every vendor's state and stats and restores the scenario's behaviour.
  void reset();

 private:
  struct Event {
    std::chrono::steady_clock::time_point due;
    std::uint64_t order;
    std::size_t vendor;
    std::string unit;
    bool complete;  // false: start
    std::uint64_t epoch;
    bool operator>(const Event& other) const { return due != other.due ? due > other.due : order > other.order; }
  };

  void schedule(Vendor& vendor, const WorkUnit& unit, bool complete, double delay_ms);
  void run_scheduler();
  void start_unit(Vendor& vendor, WorkUnit& unit);
  void complete_unit(Vendor& vendor, WorkUnit& unit);
  double accuracy_for(const Vendor& vendor, const WorkUnit& unit) const;
  bool in_outage(const Vendor& vendor) const;
  void send_callback(Vendor& vendor, Callback callback);
  // Holds the calling thread for up to `duration`, less if the simulator stops meanwhile.
  void hang(std::chrono::milliseconds duration) const;

  Scenario scenario_;
  const common::Clock& clock_;
  const std::chrono::system_clock::time_point started_at_;
  const std::atomic<bool>* shutting_down_;
  std::atomic<bool> stopped_{false};
  std::vector<std::unique_ptr<Vendor>> vendors_;
  CallbackSender callbacks_;

  std::mutex scheduler_mutex_;
  std::condition_variable scheduler_wake_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::uint64_t event_order_ = 0;
  std::atomic<std::uint64_t> epoch_{0};
  bool stopping_ = false;
  std::thread scheduler_;
};

// Helpers shared by the kind APIs.
nlohmann::json parse_json_body(const http::Request& request);  // throws ApiError 400
std::string rfc3339(std::chrono::system_clock::time_point t);
// "12.345678" from micro-dollars.
std::string usd_string(std::int64_t micros);
http::Response json_response(int status, const nlohmann::json& body);
// Empty (no callback) or an absolute http:// or https:// URL with a host. Only http:// is
// delivered by the simulator (it runs beside the broker); https:// callbacks fail and are counted.
bool valid_callback_url(const std::string& url);
bool basic_auth_matches(const http::Request& request, const std::string& key);
bool bearer_auth_matches(const http::Request& request, const std::string& key);

// Random stream selectors for Rng::stream(seed, unit seq, selector).
constexpr std::uint64_t kStreamQueue = 1ULL << 40;
constexpr std::uint64_t kStreamLatency = (1ULL << 40) + 1;
constexpr std::uint64_t kStreamMinutes = (1ULL << 40) + 2;
constexpr std::uint64_t kStreamDrop = (1ULL << 40) + 3;
constexpr std::uint64_t kStreamWorker = (1ULL << 40) + 4;
constexpr std::uint64_t kStreamIds = (1ULL << 40) + 5;
// Answers use selector = response index (0, 1, ...).

}  // namespace labelbroker::vendors::sim
