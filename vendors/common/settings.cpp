#include "vendors/common/settings.hpp"

#include "common/money.hpp"

namespace labelbroker::vendors {

CommonSettings read_common_settings(config::JsonReader& reader, const config::VendorConfig& vendor) {
  CommonSettings s;
  s.id = vendor.id;
  s.kind = vendor.kind;
  reader.string("id", s.id);
  reader.string("kind", s.kind);
  reader.boolean("enabled", s.enabled);
  reader.number("weight", s.weight, 0, 1000);
  reader.integer("max_outstanding_units", s.max_outstanding_units, 0, 1000000000);
  std::string cap;
  reader.string("monthly_spend_cap_usd", cap);
  if (!cap.empty()) {
    s.monthly_spend_cap_micros = common::parse_usd_micros(cap);
    if (!s.monthly_spend_cap_micros)
      reader.fail(reader.child_path("monthly_spend_cap_usd"), "must be a decimal amount of US dollars, e.g. \"5000.00\"");
  }

  reader.require("base_url");
  reader.string("base_url", s.base_url);
  if (s.base_url.rfind("http://", 0) != 0 && s.base_url.rfind("https://", 0) != 0)
    reader.fail(reader.child_path("base_url"), "must start with http:// or https://");
  while (s.base_url.back() == '/') s.base_url.pop_back();

  reader.require("api_key");
  reader.secret("api_key", s.api_key);
  if (s.api_key.empty()) reader.fail(reader.child_path("api_key"), "must not be empty");
  reader.require("callback_secret");
  reader.secret("callback_secret", s.callback_secret);
  if (s.callback_secret.reveal().size() < 16)
    reader.fail(reader.child_path("callback_secret"), "must be at least 16 characters");

  auto caps = reader.object("capabilities");
  std::vector<std::string> task_types{"classification"}, expertise{"general"};
  caps.string_list("task_types", task_types);
  caps.string_list("domains", s.capabilities.domains);
  caps.string_list("expertise", expertise);
  caps.integer("max_batch_size", s.capabilities.max_batch_size, 1, 10000);
  for (size_t i = 0; i < task_types.size(); ++i) {
    auto t = parse_task_type(task_types[i]);
    if (!t)
      caps.fail(caps.child_path("task_types") + "[" + std::to_string(i) + "]",
                "unknown task type '" + task_types[i] + "' (classification, preference, rating)");
    s.capabilities.task_types.push_back(*t);
  }
  for (size_t i = 0; i < expertise.size(); ++i) {
    auto e = parse_expertise(expertise[i]);
    if (!e)
      caps.fail(caps.child_path("expertise") + "[" + std::to_string(i) + "]",
                "unknown expertise '" + expertise[i] + "' (general, skilled, expert)");
    s.capabilities.expertise.push_back(*e);
  }
  caps.finish();

  auto http = reader.object("http");
  http.integer("max_in_flight", s.http.max_in_flight, 1, 10000);
  http.millis("timeout_ms", s.http.request_timeout, 1, 600000);
  http.millis("connect_timeout_ms", s.http.connect_timeout, 1, 60000);
  http.integer("max_response_bytes", s.http.max_response_bytes, 1024, 1LL << 31);
  http.string("ca_file", s.http.ca_file);
  auto retry = http.object("retry");
  retry.integer("max_attempts", s.http.retry.max_attempts, 1, 20);
  retry.millis("initial_backoff_ms", s.http.retry.initial_backoff, 0, 60000);
  retry.millis("max_backoff_ms", s.http.retry.max_backoff, 0, 600000);
  retry.millis("max_retry_after_ms", s.http.retry.max_retry_after, 0, 3600000);
  retry.finish();
  http.finish();
  s.capabilities.max_in_flight = s.http.max_in_flight;
  s.http.user_agent = "labelbroker (vendor " + s.id + ")";
  return s;
}

std::vector<std::pair<TaskType, std::int64_t>> read_price_table(config::JsonReader& reader, const std::string& key,
                                                                const std::vector<TaskType>& required) {
  auto prices = reader.object(key);
  std::vector<std::pair<TaskType, std::int64_t>> out;
  for (TaskType t : required) {
    std::string text;
    const std::string name(to_string(t));
    prices.string(name, text);
    if (text.empty()) prices.fail(prices.child_path(name), "price is required for every task type the vendor takes");
    auto micros = common::parse_usd_micros(text);
    if (!micros) prices.fail(prices.child_path(name), "expected a decimal USD amount such as \"0.08\"");
    out.emplace_back(t, *micros);
  }
  for (TaskType t : {TaskType::classification, TaskType::preference, TaskType::rating}) {
    if (std::find(required.begin(), required.end(), t) == required.end()) prices.find(std::string(to_string(t)));
  }
  prices.finish();
  return out;
}

}  // namespace labelbroker::vendors
