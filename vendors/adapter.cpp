#include "vendors/adapter.hpp"

#include <algorithm>

#include "common/strings.hpp"

namespace labelbroker::vendors {

std::string_view to_string(TaskType t) {
  switch (t) {
    case TaskType::classification:
      return "classification";
    case TaskType::preference:
      return "preference";
    case TaskType::rating:
      return "rating";
  }
  return "classification";
}

std::string_view to_string(Expertise e) {
  switch (e) {
    case Expertise::general:
      return "general";
    case Expertise::skilled:
      return "skilled";
    case Expertise::expert:
      return "expert";
  }
  return "general";
}

std::optional<TaskType> parse_task_type(std::string_view s) {
  for (auto t : {TaskType::classification, TaskType::preference, TaskType::rating})
    if (to_string(t) == s) return t;
  return std::nullopt;
}

std::optional<Expertise> parse_expertise(std::string_view s) {
  for (auto e : {Expertise::general, Expertise::skilled, Expertise::expert})
    if (to_string(e) == s) return e;
  return std::nullopt;
}

bool Capabilities::supports(TaskType t, std::string_view domain, Expertise e) const {
  const bool type_ok = std::find(task_types.begin(), task_types.end(), t) != task_types.end();
  const bool domain_ok = domains.empty() || std::find(domains.begin(), domains.end(), domain) != domains.end();
  const bool tier_ok = std::find(expertise.begin(), expertise.end(), e) != expertise.end();
  return type_ok && domain_ok && tier_ok;
}

std::string_view to_string(ErrorClass c) {
  switch (c) {
    case ErrorClass::retryable:
      return "retryable";
    case ErrorClass::permanent:
      return "permanent";
    case ErrorClass::duplicate:
      return "duplicate";
    case ErrorClass::capacity:
      return "capacity";
    case ErrorClass::auth:
      return "auth";
  }
  return "permanent";
}

std::string_view to_string(UnitStatus s) {
  switch (s) {
    case UnitStatus::pending:
      return "pending";
    case UnitStatus::in_progress:
      return "in_progress";
    case UnitStatus::completed:
      return "completed";
    case UnitStatus::canceled:
      return "canceled";
    case UnitStatus::failed:
      return "failed";
  }
  return "pending";
}

std::string_view to_string(CancelOutcome c) {
  switch (c) {
    case CancelOutcome::canceled:
      return "canceled";
    case CancelOutcome::already_started:
      return "already_started";
    case CancelOutcome::already_finished:
      return "already_finished";
    case CancelOutcome::not_found:
      return "not_found";
    case CancelOutcome::unsupported:
      return "unsupported";
  }
  return "not_found";
}

std::optional<std::string_view> InboundCallback::header(std::string_view name) const {
  return common::find_field(headers, name);
}

std::optional<std::string_view> InboundCallback::query_param(std::string_view name) const {
  for (const auto& [k, v] : query)
    if (k == name) return std::string_view(v);
  return std::nullopt;
}

}  // namespace labelbroker::vendors
