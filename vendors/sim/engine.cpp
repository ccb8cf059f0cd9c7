#include "vendors/sim/engine.hpp"

#include <algorithm>
#include <cstdio>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "http/problem.hpp"

namespace labelbroker::vendors::sim {

using nlohmann::json;

std::string_view unit_state_name(UnitState state) {
  switch (state) {
    case UnitState::queued:
      return "queued";
    case UnitState::in_progress:
      return "in_progress";
    case UnitState::done:
      return "done";
    case UnitState::canceled:
      return "canceled";
  }
  return "queued";
}

std::string Vendor::new_id(std::size_t hex_digits) {
  Rng rng = Rng::stream(spec.seed, next_id++, kStreamIds);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  while (out.size() < hex_digits) {
    std::uint64_t v = rng.next();
    for (int i = 0; i < 16 && out.size() < hex_digits; ++i, v >>= 4) out += kHex[v & 15];
  }
  return out;
}

json parse_json_body(const http::Request& request) {
  try {
    return json::parse(request.body);
  } catch (const json::parse_error&) {
    throw ApiError{400, "invalid_json", "request body is not valid JSON", -1};
  }
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  return common::format_rfc3339(t, true);
}

std::string usd_string(std::int64_t micros) {
  char buf[48];
  const char* sign = micros < 0 ? "-" : "";
  const std::uint64_t m =
      micros < 0 ? static_cast<std::uint64_t>(-(micros + 1)) + 1 : static_cast<std::uint64_t>(micros);
  std::snprintf(buf, sizeof buf, "%s%llu.%06llu", sign, static_cast<unsigned long long>(m / 1000000),
                static_cast<unsigned long long>(m % 1000000));
  return buf;
}

http::Response json_response(int status, const json& body) {
  return http::Response::json(status, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

namespace {

bool auth_matches(const http::Request& request, std::string_view scheme, const std::string& token) {
  auto header = request.header("Authorization");
  if (!header) return false;
  std::string_view value = *header;
  if (value.size() <= scheme.size() || value[scheme.size()] != ' ' ||
      !http::iequals(value.substr(0, scheme.size()), scheme))
    return false;
  value.remove_prefix(scheme.size() + 1);
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  return common::constant_time_equal(value, token);
}

}  // namespace

bool valid_callback_url(const std::string& url) {
  if (url.empty()) return true;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (url.compare(0, scheme.size(), scheme) == 0) {
      const std::string rest = url.substr(scheme.size());
      return !rest.empty() && rest.front() != '/' && rest.find_first_of(" \t\r\n") == std::string::npos;
    }
  }
  return false;
}

bool basic_auth_matches(const http::Request& request, const std::string& key) {
  return auth_matches(request, "Basic", common::base64_encode(key + ":"));
}

bool bearer_auth_matches(const http::Request& request, const std::string& key) {
  return auth_matches(request, "Bearer", key);
}

Engine::Engine(Scenario scenario, const common::Clock& clock, const std::atomic<bool>* shutting_down)
    : scenario_(std::move(scenario)),
      clock_(clock),
      started_at_(clock.now()),
      shutting_down_(shutting_down),
      callbacks_(scenario_.callbacks) {
  for (const auto& spec : scenario_.vendors) {
    auto vendor = std::make_unique<Vendor>(spec);
    vendor->index = vendors_.size();
    switch (spec.kind) {
      case Kind::scale:
        vendor->api = make_scale_api(*this, *vendor);
        break;
      case Kind::surge:
        vendor->api = make_surge_api(*this, *vendor);
        break;
      case Kind::mercor:
        vendor->api = make_mercor_api(*this, *vendor);
        break;
    }
    vendors_.push_back(std::move(vendor));
  }
  scheduler_ = std::thread([this] { run_scheduler(); });
}

Engine::~Engine() {
  stop();
}

void Engine::stop() {
  stopped_ = true;
  {
    std::lock_guard lock(scheduler_mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  scheduler_wake_.notify_all();
  scheduler_.join();
  callbacks_.stop();
}

Vendor* Engine::vendor(const std::string& id) {
  for (auto& v : vendors_) {
    if (v->spec.id == id) return v.get();
  }
  return nullptr;
}

bool Engine::in_outage(const Vendor& vendor) const {
  if (vendor.behaviour.outage) return true;
  const auto now = clock_.now();
  for (const auto& w : vendor.behaviour.outages) {
    if (w.start_relative && now >= started_at_ + *w.start_relative && now < started_at_ + *w.end_relative) return true;
    if (w.start_absolute && now >= *w.start_absolute && now < *w.end_absolute) return true;
  }
  return false;
}

http::Response Engine::serve(Vendor& vendor, http::Request& request,
                             const std::function<http::Response(http::Request&)>& handler) {
  std::optional<ApiError> refuse;
  std::optional<int> fail_after;
  int hang_ms = 0;
  {
    std::lock_guard lock(vendor.mutex);
    auto& b = vendor.behaviour;
    auto& f = b.faults;
    ++vendor.stats.requests;
    const bool is_post = request.method == "POST";
    if (in_outage(vendor)) {
      ++vendor.stats.outage_rejections;
      refuse =
          ApiError{503, "service_unavailable", "Service temporarily unavailable (simulated outage)", f.retry_after_s};
    } else if (!vendor.api->authorized(request)) {
      ++vendor.stats.auth_failures;
      refuse = ApiError{401, "unauthorized", "Invalid or missing API key", -1};
    } else if (b.fail_next.count > 0 && (!b.fail_next.after_commit || is_post)) {
      --b.fail_next.count;
      if (b.fail_next.after_commit) {
        ++vendor.stats.faults_5xx;
        fail_after = b.fail_next.status;
      } else {
        ++(b.fail_next.status == 429 ? vendor.stats.faults_429 : vendor.stats.faults_5xx);
        refuse = ApiError{b.fail_next.status, "simulated_failure", "Simulated failure", -1};
        if (b.fail_next.status == 429 || b.fail_next.status == 503) refuse->retry_after_s = f.retry_after_s;
      }
    } else if (vendor.fault_rng.chance(f.error_rate_5xx)) {
      ++vendor.stats.faults_5xx;
      refuse = ApiError{500, "internal_error", "Internal server error (simulated)", -1};
    } else if (vendor.fault_rng.chance(f.rate_429)) {
      ++vendor.stats.faults_429;
      refuse = ApiError{429, "rate_limited", "Too many requests (simulated)", f.retry_after_s};
    }
    if (!refuse && !fail_after && is_post && vendor.fault_rng.chance(f.lost_response_rate)) {
      ++vendor.stats.faults_5xx;
      fail_after = 500;
    }
    if (!refuse && vendor.fault_rng.chance(f.hang_rate)) {
      ++vendor.stats.hangs;
      hang_ms = f.hang_ms;
    }
  }
  if (refuse) return vendor.api->error(*refuse);

  http::Response response;
  try {
    response = handler(request);
  } catch (const ApiError& e) {
    response = vendor.api->error(e);
  } catch (const std::exception& e) {
    common::log::error("vendor-sim handler failed", {{"vendor", vendor.spec.id}, {"error", e.what()}});
    response = vendor.api->error(ApiError{500, "internal_error", "Internal server error", -1});
  }
  if (fail_after) response = vendor.api->error(ApiError{*fail_after, "simulated_failure", "Simulated failure", -1});
  if (hang_ms > 0) hang(std::chrono::milliseconds(hang_ms));
  return response;
}

void Engine::hang(std::chrono::milliseconds duration) const {
  // Holding a worker thread is the point: the client sees a vendor that does not answer. Short
  // naps so that SIGTERM does not have to wait for the whole hang.
  const auto until = std::chrono::steady_clock::now() + duration;
  while (!stopped_ && !(shutting_down_ && shutting_down_->load())) {
    const auto left = until - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(20)));
  }
}

void Engine::check_capacity(Vendor& vendor, std::size_t count) {
  if (vendor.in_flight + static_cast<std::int64_t>(count) > vendor.behaviour.max_in_flight) {
    ++vendor.stats.rejected_capacity;
    throw ApiError{429, "capacity_exceeded",
                   "Too many tasks in flight (" + std::to_string(vendor.in_flight) + " of " +
                       std::to_string(vendor.behaviour.max_in_flight) + ")",
                   std::max(1, vendor.behaviour.faults.retry_after_s)};
  }
}

WorkUnit& Engine::add_unit(Vendor& vendor, WorkUnit unit, bool hold) {
  unit.seq = vendor.next_seq++;
  unit.state = UnitState::queued;
  unit.created_at = unit.updated_at = clock_.now();
  const std::string id = unit.id;
  vendor.order.push_back(id);
  auto& stored = vendor.units[id] = std::move(unit);
  ++vendor.stats.tasks_created;
  ++vendor.in_flight;
  if (!hold) release(vendor, stored);
  return stored;
}

void Engine::release(Vendor& vendor, const WorkUnit& unit) {
  if (vendor.behaviour.paused || unit.state != UnitState::queued) return;
  Rng rng = Rng::stream(vendor.spec.seed, unit.seq, kStreamQueue);
  schedule(vendor, unit, false, sample_ms(vendor.behaviour.queue_delay, rng));
}

bool Engine::cancel_unit(Vendor& vendor, WorkUnit& unit) {
  if (unit.state != UnitState::queued) {
    ++vendor.stats.cancels_refused;
    return false;
  }
  unit.state = UnitState::canceled;
  unit.updated_at = clock_.now();
  --vendor.in_flight;
  ++vendor.stats.cancels;
  return true;
}

void Engine::schedule(Vendor& vendor, const WorkUnit& unit, bool complete, double delay_ms) {
  const auto due = std::chrono::steady_clock::now() +
                   std::chrono::microseconds(static_cast<std::int64_t>(std::max(0.0, delay_ms) * 1000));
  {
    std::lock_guard lock(scheduler_mutex_);
    events_.push({due, event_order_++, vendor.index, unit.id, complete, epoch_.load()});
  }
  scheduler_wake_.notify_one();
}

void Engine::run_scheduler() {
  std::unique_lock lock(scheduler_mutex_);
  while (!stopping_) {
    if (events_.empty()) {
      scheduler_wake_.wait(lock);
      continue;
    }
    if (events_.top().due > std::chrono::steady_clock::now()) {
      // A copy: wait_until holds its deadline by reference while the lock is released, and a new
      // event pushed meanwhile may reallocate the queue under it.
      const auto due = events_.top().due;
      scheduler_wake_.wait_until(lock, due);
      continue;
    }
    Event event = events_.top();
    events_.pop();
    lock.unlock();
    Vendor& vendor = *vendors_[event.vendor];
    try {
      std::lock_guard vendor_lock(vendor.mutex);
      WorkUnit* unit = vendor.find(event.unit);
      // Events from before a reset, and units canceled meanwhile, are simply dropped.
      if (unit && event.epoch == epoch_.load()) {
        if (!event.complete && unit->state == UnitState::queued && !vendor.behaviour.paused &&
            vendor.api->may_start(*unit))
          start_unit(vendor, *unit);
        if (event.complete && unit->state == UnitState::in_progress) complete_unit(vendor, *unit);
      }
    } catch (const std::exception& e) {
      common::log::error("vendor-sim scheduler step failed", {{"vendor", vendor.spec.id}, {"error", e.what()}});
    }
    lock.lock();
  }
}

void Engine::start_unit(Vendor& vendor, WorkUnit& unit) {
  unit.state = UnitState::in_progress;
  unit.started_at = unit.updated_at = clock_.now();
  Rng rng = Rng::stream(vendor.spec.seed, unit.seq, kStreamLatency);
  schedule(vendor, unit, true, sample_ms(vendor.behaviour.latency, rng));
}

double Engine::accuracy_for(const Vendor& vendor, const WorkUnit& unit) const {
  const auto& b = vendor.behaviour;
  double accuracy = b.accuracy.lookup(unit.domain, unit.task_type, unit.expertise);
  const auto now = clock_.now();
  for (const auto& d : b.drift) {
    if (!d.applies_to(unit.domain, unit.task_type)) continue;
    const bool triggered = (d.after_tasks && unit.seq >= *d.after_tasks) ||
                           (d.after && now >= started_at_ + *d.after) || (d.at && now >= *d.at);
    if (triggered) accuracy += d.accuracy_delta;
  }
  return std::clamp(accuracy, 0.0, 1.0);
}

void Engine::complete_unit(Vendor& vendor, WorkUnit& unit) {
  const double accuracy = accuracy_for(vendor, unit);
  unit.answers.clear();
  unit.worker_ids.clear();
  for (int i = 0; i < unit.responses_wanted; ++i) {
    Rng rng = Rng::stream(vendor.spec.seed, unit.seq, static_cast<std::uint64_t>(i));
    unit.answers.push_back(worker_answer(unit.truth, unit.labels, accuracy, rng));
    Rng worker = Rng::stream(vendor.spec.seed, unit.seq, kStreamWorker + static_cast<std::uint64_t>(i) * 16);
    unit.worker_ids.push_back(vendor.spec.id + "-worker-" + std::to_string(worker.below(50) + 1));
    ++vendor.stats.answers;
    if (unit.answers.back() == unit.truth) ++vendor.stats.correct_answers;
  }
  Rng minutes = Rng::stream(vendor.spec.seed, unit.seq, kStreamMinutes);
  unit.minutes_spent = std::max(1.0, std::round(sample_ms(vendor.spec.minutes_per_item, minutes)));
  unit.state = UnitState::done;
  unit.completed_at = unit.updated_at = clock_.now();
  --vendor.in_flight;
  ++vendor.stats.completed;
  const std::string url = vendor.api->on_complete(unit);
  vendor.stats.charged_micros += unit.charged_micros;
  if (url.empty()) return;
  Rng drop = Rng::stream(vendor.spec.seed, unit.seq, kStreamDrop);
  if (drop.chance(vendor.behaviour.faults.dropped_callback_rate)) {
    ++vendor.stats.callbacks_dropped;
    return;
  }
  send_callback(vendor, vendor.api->make_callback(unit, url));
}

void Engine::send_callback(Vendor& vendor, Callback callback) {
  const std::uint64_t epoch = epoch_.load();
  auto user_done = std::move(callback.done);
  callback.done = [this, &vendor, epoch, user_done](bool delivered, int attempts) {
    std::lock_guard lock(vendor.mutex);
    if (epoch != epoch_.load()) return;
    vendor.stats.callback_attempts += static_cast<std::uint64_t>(attempts);
    ++(delivered ? vendor.stats.callbacks_sent : vendor.stats.callbacks_failed);
    if (user_done) user_done(delivered, attempts);
  };
  callbacks_.send(std::move(callback));
}

json Engine::vendor_json(Vendor& vendor) const {
  const auto& s = vendor.stats;
  return {{"kind", kind_name(vendor.spec.kind)},
          {"tasks_created", s.tasks_created},
          {"duplicate_creates_refused", s.duplicate_creates_refused},
          {"idempotent_replays", s.idempotent_replays},
          {"idempotency_conflicts", s.idempotency_conflicts},
          {"cancels", s.cancels},
          {"cancels_refused", s.cancels_refused},
          {"completed", s.completed},
          {"answers", s.answers},
          {"correct_answers", s.correct_answers},
          {"callbacks_sent", s.callbacks_sent},
          {"callbacks_failed", s.callbacks_failed},
          {"callbacks_dropped", s.callbacks_dropped},
          {"callback_attempts", s.callback_attempts},
          {"charged_micros", s.charged_micros},
          {"charged_usd", usd_string(s.charged_micros)},
          {"in_flight", vendor.in_flight},
          {"rejected_capacity", s.rejected_capacity},
          {"faults_429", s.faults_429},
          {"faults_5xx", s.faults_5xx},
          {"outage_rejections", s.outage_rejections},
          {"auth_failures", s.auth_failures},
          {"hangs", s.hangs},
          {"requests", s.requests},
          {"in_outage", in_outage(vendor)}};
}

json Engine::stats_json() const {
  json vendors = json::object();
  for (const auto& v : vendors_) {
    std::lock_guard lock(v->mutex);
    vendors[v->spec.id] = vendor_json(*v);
  }
  return {{"started_at", rfc3339(started_at_)}, {"seed", scenario_.seed}, {"vendors", vendors}};
}

void Engine::reset() {
  ++epoch_;
  for (auto& v : vendors_) {
    std::lock_guard lock(v->mutex);
    v->units.clear();
    v->order.clear();
    v->next_seq = 0;
    v->next_id = 0;
    v->in_flight = 0;
    v->stats = VendorStats{};
    v->behaviour = v->spec.behaviour;
    v->fault_rng = Rng(v->spec.seed);
    v->api->reset();
  }
}

void Engine::register_routes(http::Router& router) {
  router.add(
      "GET", "/healthz",
      [](http::Request&) {
        return json_response(200, {{"status", "ok"}});
      },
      http::Execution::io_thread);
  router.add("GET", "/_sim/stats", [this](http::Request&) { return json_response(200, stats_json()); });
  router.add("POST", "/_sim/reset", [this](http::Request&) {
    reset();
    return json_response(200, {{"reset", true}});
  });
  auto find_or_404 = [this](http::Request& request) -> Vendor* {
    return vendor(std::string(request.path_param("id")));
  };
  router.add("GET", "/_sim/vendors/{id}", [this, find_or_404](http::Request& request) {
    Vendor* v = find_or_404(request);
    if (!v)
      return http::problem(404, "not-found", "Not found",
                           "no simulated vendor \"" + std::string(request.path_param("id")) + "\"");
    std::lock_guard lock(v->mutex);
    return json_response(
        200, {{"id", v->spec.id}, {"behaviour", behaviour_to_json(v->behaviour)}, {"stats", vendor_json(*v)}});
  });
  router.add("POST", "/_sim/vendors/{id}", [this, find_or_404](http::Request& request) {
    Vendor* v = find_or_404(request);
    if (!v)
      return http::problem(404, "not-found", "Not found",
                           "no simulated vendor \"" + std::string(request.path_param("id")) + "\"");
    json patch;
    try {
      patch = json::parse(request.body);
    } catch (const json::parse_error&) {
      return http::problem(400, "invalid-json", "Invalid JSON", "the request body is not valid JSON");
    }
    std::lock_guard lock(v->mutex);
    const bool was_paused = v->behaviour.paused;
    try {
      apply_behaviour_patch(v->behaviour, patch);
    } catch (const ScenarioError& e) {
      std::string what = e.what();
      // "$.faults.rate_429: ..." -> JSON Pointer "/faults/rate_429".
      std::string pointer = what.substr(1, what.find(':') - 1);
      std::replace(pointer.begin(), pointer.end(), '.', '/');
      return http::problem(422, "invalid-patch", "Invalid behaviour patch", what, {{pointer, what}});
    }
    common::log::info("vendor behaviour changed", {{"vendor", v->spec.id}, {"patch", patch}});
    // Units held back while paused start now.
    if (was_paused && !v->behaviour.paused) {
      for (const auto& id : v->order) {
        const WorkUnit& unit = v->units.at(id);
        if (unit.state == UnitState::queued && v->api->may_start(unit)) schedule(*v, unit, false, 0);
      }
    }
    return json_response(200, {{"id", v->spec.id}, {"behaviour", behaviour_to_json(v->behaviour)}});
  });
  for (auto& v : vendors_) v->api->register_routes(router);
}

}  // namespace labelbroker::vendors::sim
