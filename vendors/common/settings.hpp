#pragma once
// The settings every vendor has, whatever its kind, read from its `vendors[]` entry:
//   id, kind, base_url, api_key, callback_secret, enabled, weight, monthly_spend_cap_usd,
//   max_outstanding_units,
//   capabilities {task_types, domains, expertise, max_batch_size},
//   http {max_in_flight, timeout_ms, connect_timeout_ms, max_response_bytes, ca_file,
//         retry {max_attempts, initial_backoff_ms, max_backoff_ms, max_retry_after_ms}}
// Each adapter factory calls read_common_settings() on its reader, then reads its own keys and
// calls reader.finish(), so a typo anywhere in the entry stops start-up with its JSON path.
#include <optional>
#include <string>

#include "config/config.hpp"
#include "config/json_reader.hpp"
#include "vendors/adapter.hpp"
#include "vendors/common/http_client.hpp"

namespace labelbroker::vendors {

struct CommonSettings {
  std::string id;
  std::string kind;
  std::string base_url;  // without a trailing slash
  config::Secret api_key;
  config::Secret callback_secret;
  bool enabled = true;
  double weight = 1.0;  // relative preference in routing; 0: no new work (drain)
  // Units routed to the vendor and not finished (queued, sending, submitted) beyond which routing
  // gives it no more ("at_capacity"); 0: no limit.
  std::int64_t max_outstanding_units = 0;
  // "monthly_spend_cap_usd": the most the broker holds and spends at this vendor per UTC month.
  std::optional<std::int64_t> monthly_spend_cap_micros;
  Capabilities capabilities;
  HttpClientOptions http;
};

CommonSettings read_common_settings(config::JsonReader& reader, const config::VendorConfig& vendor);

// Reads {"classification": "0.08", ...} (decimal USD strings) into micro-dollars per task type.
// Every task type in `required` must be priced.
std::vector<std::pair<TaskType, std::int64_t>> read_price_table(config::JsonReader& reader, const std::string& key,
                                                                const std::vector<TaskType>& required);

}  // namespace labelbroker::vendors
