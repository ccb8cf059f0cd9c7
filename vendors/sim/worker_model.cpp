#include "vendors/sim/worker_model.hpp"

#include <algorithm>
#include <cmath>

#include "common/crypto.hpp"

namespace labelbroker::vendors::sim {

Rng Rng::stream(std::uint64_t seed, std::uint64_t a, std::uint64_t b) {
  Rng mix(seed ^ (a * 0x9E3779B97F4A7C15ULL));
  const std::uint64_t s1 = mix.next();
  Rng mix2(s1 ^ (b * 0xC2B2AE3D27D4EB4FULL));
  return Rng(mix2.next());
}

std::uint64_t Rng::next() {
  std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double Rng::uniform() {
  return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0);
}

std::size_t Rng::below(std::size_t n) {
  return static_cast<std::size_t>(uniform() * static_cast<double>(n)) % n;
}

double Rng::normal() {
  // Box-Muller; 1 - uniform() is in (0, 1], so the log is finite.
  const double u1 = 1.0 - uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

nlohmann::json visible_data(const nlohmann::json& data) {
  if (!data.is_object()) return data;
  nlohmann::json out = nlohmann::json::object();
  for (auto it = data.begin(); it != data.end(); ++it) {
    if (!it.key().empty() && it.key()[0] == '_') continue;
    out[it.key()] = it.value();
  }
  return out;
}

std::string true_label(const nlohmann::json& data, const std::vector<std::string>& labels) {
  if (data.is_object()) {
    auto it = data.find("_truth");
    if (it != data.end() && it->is_string()) return it->get<std::string>();
  }
  // nlohmann objects are sorted maps, so dump() is canonical for a given value.
  const std::string digest =
      common::sha256_hex(visible_data(data).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  if (labels.empty()) return "text-" + digest.substr(0, 12);
  const std::uint64_t h = std::stoull(digest.substr(0, 16), nullptr, 16);
  return labels[h % labels.size()];
}

std::string worker_answer(const std::string& truth, const std::vector<std::string>& labels, double accuracy, Rng& rng) {
  // Always draw twice so that a change of accuracy does not shift later draws of the same stream.
  const double roll = rng.uniform();
  const std::uint64_t pick = rng.next();
  if (roll < accuracy) return truth;
  std::vector<const std::string*> others;
  for (const auto& l : labels) {
    if (l != truth) others.push_back(&l);
  }
  if (others.empty()) return "not-" + truth;
  return *others[pick % others.size()];
}

double sample_ms(const Distribution& d, Rng& rng) {
  if (!d.lognormal) return d.fixed_ms;
  // ln X ~ N(mu, sigma): median e^mu = p50, and p95 = p50 * e^(1.6449 sigma).
  const double mu = std::log(d.p50_ms);
  const double sigma = d.p95_ms > d.p50_ms ? std::log(d.p95_ms / d.p50_ms) / 1.6448536269514722 : 0.0;
  const double ms = std::exp(mu + sigma * rng.normal());
  return std::min(ms, 24.0 * 3600 * 1000);
}

}  // namespace labelbroker::vendors::sim
