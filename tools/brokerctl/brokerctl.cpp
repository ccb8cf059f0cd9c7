#include "tools/brokerctl/brokerctl.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/crypto.hpp"
#include "common/strings.hpp"
#include "vendors/common/adapter_support.hpp"
#include "vendors/common/http_client.hpp"

namespace labelbroker::brokerctl {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Ranged downloads: the HTTP client buffers a whole response, so a dataset comes in pieces of this
// size (memory stays constant whatever the file size, and resuming is the same code path).
constexpr std::size_t kChunkBytes = 8 * 1024 * 1024;
constexpr std::size_t kMaxResponseBytes = 64 * 1024 * 1024;  // results pages, manifests, chunks
constexpr int kDefaultTimeoutSeconds = 600;

// Ends the command with an exit code; the message goes to stderr.
struct Failure : std::runtime_error {
  Failure(int exit_code, const std::string& message) : std::runtime_error(message), code(exit_code) {}
  int code;
};
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr const char* kExitCodes =
    "Exit codes:\n"
    "  0  ok\n"
    "  2  usage error\n"
    "  3  not ready, or timed out waiting (--timeout SECONDS, default 600)\n"
    "  4  checksum mismatch (the download does not hash to the manifest's sha256)\n"
    "  5  server or network error: 5xx, connection failure, or another 4xx such as 404 for an\n"
    "     unknown or another team's job or dataset (the server's detail is printed on stderr)\n"
    "  6  authentication or permission error (401, 403)\n";

constexpr const char* kTopHelp =
    "usage: brokerctl <command> [<subcommand>] [options]\n"
    "\n"
    "Commands:\n"
    "  jobs submit JOB.json [--wait] [--idempotency-key K] [--timeout S]   print the new job's id\n"
    "  jobs status ID                                         the job as JSON\n"
    "  jobs results ID -o OUT.jsonl                           all finished results as JSONL\n"
    "  jobs cancel ID                                         cancel a job\n"
    "  datasets create NAME --jobs ID,ID [--min-confidence X] [--include judgments,provenance]\n"
    "                  [--idempotency-key K] [--wait] [--timeout S]\n"
    "  datasets pull NAME[@VERSION|@latest] -o FILE           download and verify a version\n"
    "  vendors scores [--window 7d] [--json]                  vendor scorecards\n"
    "\n"
    "Environment: LABELBROKER_URL (default http://127.0.0.1:8080), LABELBROKER_API_KEY (Bearer).\n"
    "Every command takes --help. Progress bars go to stderr, and only when it is a terminal.\n"
    "\n";

struct CommandHelp {
  const char* usage;
  const char* text;
};

const std::map<std::string, CommandHelp>& command_help() {
  static const std::map<std::string, CommandHelp> help = {
      {"jobs", {"brokerctl jobs <submit|status|results|cancel> ...", "Submit jobs and read their status and results.\n"}},
      {"jobs submit",
       {"brokerctl jobs submit JOB.json [--wait] [--idempotency-key K] [--timeout SECONDS]",
        "POST /v1/jobs with the file's JSON and print the new job's id on stdout.\n"
        "  --wait               poll the job until completed, failed or canceled (the final\n"
        "                       status is printed on stderr; exit 3 when --timeout passes first)\n"
        "  --idempotency-key K  sent as Idempotency-Key: a retried submit creates one job\n"
        "  --timeout SECONDS    how long --wait waits (default 600)\n"}},
      {"jobs status", {"brokerctl jobs status ID", "GET /v1/jobs/ID and print it as JSON.\n"}},
      {"jobs results",
       {"brokerctl jobs results ID -o OUT.jsonl [--limit N]",
        "Write every finished result of the job to OUT.jsonl (one JSON object a line), following\n"
        "the pages' Link rel=\"next\"; the file appears (by rename) only when complete.\n"
        "  --limit N            results per page (default 10000, the server's maximum)\n"}},
      {"jobs cancel", {"brokerctl jobs cancel ID", "POST /v1/jobs/ID/cancel and print the job's new status.\n"}},
      {"datasets", {"brokerctl datasets <create|pull> ...", "Create dataset versions and download them.\n"}},
      {"datasets create",
       {"brokerctl datasets create NAME --jobs ID,ID [--min-confidence X] [--include judgments,provenance]\n"
        "                          [--idempotency-key K] [--wait] [--timeout SECONDS]",
        "Create the next version of dataset NAME from completed jobs and print NAME@VERSION.\n"
        "  --wait               poll the version's manifest until it is ready (exit 3 on timeout)\n"}},
      {"datasets pull",
       {"brokerctl datasets pull NAME[@VERSION|@latest] -o FILE",
        "Download a ready dataset version (default: latest) to FILE.\n"
        "If FILE already has the manifest's sha256, prints \"up to date\" and downloads nothing.\n"
        "Otherwise the bytes go to FILE.part in ranged requests (an existing FILE.part is resumed),\n"
        "are checked against the manifest's sha256 and renamed to FILE. On a mismatch FILE.part is\n"
        "deleted, FILE is left as it was and the exit code is 4. A version still building: exit 3.\n"}},
      {"vendors", {"brokerctl vendors scores [--window 7d] [--json]", "Vendor scorecards.\n"}},
      {"vendors scores",
       {"brokerctl vendors scores [--window 7d] [--json]",
        "GET /v1/vendors/scores: a table when stdout is a terminal, JSON with --json or when it is not.\n"}},
  };
  return help;
}

std::string help_for(const std::string& command) {
  const auto& h = command_help().at(command);
  return std::string("usage: ") + h.usage + "\n\n" + h.text + "\n" + kExitCodes;
}

// A parsed command line: positionals, options with values, and flags.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;
  std::set<std::string> flags;
  bool help = false;

  std::optional<std::string> value(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
  bool flag(const std::string& name) const { return flags.count(name) != 0; }
};

Args parse_args(const std::vector<std::string>& args, std::size_t from, const std::set<std::string>& with_value,
                const std::set<std::string>& flag_names) {
  Args parsed;
  for (std::size_t i = from; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      parsed.help = true;
      continue;
    }
    if (a.size() > 1 && a[0] == '-') {
      std::string name = a, value;
      bool inline_value = false;
      if (auto eq = a.find('='); a.rfind("--", 0) == 0 && eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        inline_value = true;
      }
      if (with_value.count(name)) {
        if (!inline_value) {
          if (i + 1 >= args.size()) throw UsageError(name + " needs a value");
          value = args[++i];
        }
        parsed.values[name] = value;
      } else if (flag_names.count(name) && !inline_value) {
        parsed.flags.insert(name);
      } else {
        throw UsageError("unknown option " + a);
      }
      continue;
    }
    parsed.positional.push_back(a);
  }
  return parsed;
}

int parse_timeout(const Args& args) {
  auto v = args.value("--timeout");
  if (!v) return kDefaultTimeoutSeconds;
  const auto seconds = common::parse_uint(*v);
  if (!seconds || *seconds == 0 || *seconds > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
    throw UsageError("--timeout takes a positive number of seconds, not \"" + *v + "\"");
  return static_cast<int>(*seconds);
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, ','))
    if (!part.empty()) out.push_back(part);
  return out;
}

// Ids and names as URL path segments: unreserved characters stay, everything else is escaped.
std::string encode_segment(std::string_view s) { return vendors::url_encode(s); }

std::optional<std::string> sha256_of_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  common::Sha256 sha;
  std::vector<char> buffer(1024 * 1024);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    sha.update(std::string_view(buffer.data(), static_cast<std::size_t>(in.gcount())));
  }
  if (in.bad()) return std::nullopt;
  return sha.hex();
}

// A one-line progress bar on stderr, drawn only when stderr is a terminal.
class Progress {
 public:
  Progress(const Context& context, std::string label) : err_(*context.err), enabled_(context.err_is_tty), label_(std::move(label)) {}
  ~Progress() { finish(); }
  void update(double done, double total, const std::string& detail) {
    if (!enabled_) return;
    constexpr int kWidth = 30;
    const double fraction = total > 0 ? std::clamp(done / total, 0.0, 1.0) : 0.0;
    const int filled = static_cast<int>(fraction * kWidth);
    err_ << "\r" << label_ << " [" << std::string(filled, '#') << std::string(kWidth - filled, ' ') << "] "
         << std::setw(3) << static_cast<int>(fraction * 100) << "% " << detail << "\x1b[K" << std::flush;
    drawn_ = true;
  }
  void finish() {
    if (drawn_) err_ << "\n" << std::flush;
    drawn_ = false;
  }

 private:
  std::ostream& err_;
  bool enabled_;
  std::string label_;
  bool drawn_ = false;
};

std::string megabytes(std::uint64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (1024.0 * 1024.0) << " MiB";
  return out.str();
}

// The API over the broker's own HTTP client (vendors/common/http_client.hpp).
class Api {
 public:
  explicit Api(const Context& context) : context_(context), client_(runtime_, options()) {
    base_ = context.base_url;
    while (!base_.empty() && base_.back() == '/') base_.pop_back();
  }

  vendors::InboundResponse call(const std::string& method, const std::string& path, std::string body = {},
                                vendors::HeaderList headers = {}, bool retry_safe = true) {
    vendors::OutboundRequest request;
    request.method = method;
    request.url = base_ + path;
    request.headers = std::move(headers);
    if (!context_.api_key.empty()) request.headers.emplace_back("Authorization", "Bearer " + context_.api_key);
    if (!body.empty()) request.headers.emplace_back("Content-Type", "application/json");
    const bool has_accept = std::any_of(request.headers.begin(), request.headers.end(),
                                        [](const auto& h) { return h.first == "Accept"; });
    if (!has_accept) request.headers.emplace_back("Accept", "application/json");
    request.body = std::move(body);
    request.retry_safe = retry_safe;
    auto outcome = client_.send_sync(std::move(request));
    if (!outcome.response)
      throw Failure(kServer, "cannot reach " + base_ + " (" + std::string(vendors::to_string(outcome.failure)) +
                                 "): " + outcome.error);
    return std::move(*outcome.response);
  }

  // Throws the documented failure for an error status.
  static void check(const vendors::InboundResponse& response, const std::string& what) {
    if (response.status < 400) return;
    std::string detail = problem_text(response);
    const int code = (response.status == 401 || response.status == 403) ? kAuth : kServer;
    throw Failure(code, what + ": " + std::to_string(response.status) + (detail.empty() ? "" : " " + detail));
  }

  json get_json(const std::string& path, const std::string& what) {
    auto response = call("GET", path);
    check(response, what);
    return parse(response, what);
  }

  static json parse(const vendors::InboundResponse& response, const std::string& what) {
    try {
      return json::parse(response.body);
    } catch (const json::exception&) {
      throw Failure(kServer, what + ": the server's answer is not JSON");
    }
  }

 private:
  static vendors::HttpClientOptions options() {
    vendors::HttpClientOptions o;
    o.max_in_flight = 4;
    o.request_timeout = std::chrono::seconds(120);
    o.max_response_bytes = kMaxResponseBytes;
    o.retry.max_attempts = 4;
    o.user_agent = "brokerctl";
    return o;
  }

  // "title: detail" and any per-field errors of an RFC 7807 problem, else the start of the body.
  static std::string problem_text(const vendors::InboundResponse& response) {
    const auto body = json::parse(response.body, nullptr, false);
    if (!body.is_object()) return response.body.substr(0, 200);
    std::string text;
    if (body.contains("detail") && body["detail"].is_string())
      text = body["detail"].get<std::string>();
    else if (body.contains("title") && body["title"].is_string())
      text = body["title"].get<std::string>();
    if (body.contains("errors") && body["errors"].is_array())
      for (const auto& e : body["errors"])
        text += "\n  " + e.value("pointer", std::string()) + ": " + e.value("message", std::string());
    return text;
  }

  const Context& context_;
  std::string base_;
  vendors::HttpRuntime runtime_;
  vendors::HttpClient client_;
};

void sleep_for_poll(int attempt) {
  std::this_thread::sleep_for(std::chrono::milliseconds(std::min(2000, 200 * (attempt + 1))));
}

// ---- jobs -----------------------------------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool terminal_job_status(const std::string& status) {
  return status == "completed" || status == "failed" || status == "canceled";
}

int wait_for_job(Api& api, const Context& context, const std::string& id, int timeout_seconds) {
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_seconds);
  Progress progress(context, "job " + id);
  for (int attempt = 0;; ++attempt) {
    const auto job = api.get_json("/v1/jobs/" + encode_segment(id), "job " + id);
    const std::string status = job.value("status", "");
    const auto counts = job.value("counts", json::object());
    const double items = counts.value("items", 0.0);
    const double done = counts.value("labeled", 0.0) + counts.value("unlabeled", 0.0);
    progress.update(done, items, status);
    if (terminal_job_status(status)) {
      progress.finish();
      *context.err << "job " << id << ": " << status << "\n";
      return kOk;
    }
    if (Clock::now() >= deadline) {
      progress.finish();
      throw Failure(kNotReady, "job " + id + " is still " + status + " after " + std::to_string(timeout_seconds) + " s");
    }
    sleep_for_poll(attempt);
  }
}

int jobs_submit(const Args& args, const Context& context) {
  if (args.positional.size() != 1) throw UsageError("jobs submit takes one job file");
  const int timeout = parse_timeout(args);
  std::string body = read_file(args.positional[0]);
  Api api(context);
  vendors::HeaderList headers;
  const auto key = args.value("--idempotency-key");
  if (key) headers.emplace_back("Idempotency-Key", *key);
  auto response = api.call("POST", "/v1/jobs", std::move(body), std::move(headers), key.has_value());
  Api::check(response, "submit");
  const auto job = Api::parse(response, "submit");
  const std::string id = job.value("id", "");
  *context.out << id << "\n" << std::flush;
  if (args.flag("--wait")) return wait_for_job(api, context, id, timeout);
  return kOk;
}

int jobs_status(const Args& args, const Context& context) {
  if (args.positional.size() != 1) throw UsageError("jobs status takes one job id");
  Api api(context);
  const auto& id = args.positional[0];
  *context.out << api.get_json("/v1/jobs/" + encode_segment(id), "job " + id).dump(2) << "\n";
  return kOk;
}

std::string next_link_target(const vendors::InboundResponse& response) {
  auto link = response.header("Link");
  return link ? next_link(std::string(*link)) : std::string();
}

int jobs_results(const Args& args, const Context& context) {
  if (args.positional.size() != 1) throw UsageError("jobs results takes one job id");
  const auto out_path = args.value("-o");
  if (!out_path || out_path->empty()) throw UsageError("jobs results needs -o OUT.jsonl");
  const auto& id = args.positional[0];
  Api api(context);
  const std::string part = *out_path + ".part";
  std::ofstream file(part, std::ios::binary | std::ios::trunc);
  if (!file) throw Failure(kServer, "cannot write " + part + ": " + std::strerror(errno));
  std::string limit = args.value("--limit").value_or("10000");
  if (limit.empty() || limit.find_first_not_of("0123456789") != std::string::npos)
    throw UsageError("--limit takes a number of results per page");
  std::string path = "/v1/jobs/" + encode_segment(id) + "/results?format=jsonl&limit=" + limit;
  std::uint64_t lines = 0;
  try {
    while (!path.empty()) {
      auto response = api.call("GET", path, {}, {{"Accept", "application/x-ndjson"}});
      Api::check(response, "results of job " + id);
      file.write(response.body.data(), static_cast<std::streamsize>(response.body.size()));
      lines += static_cast<std::uint64_t>(std::count(response.body.begin(), response.body.end(), '\n'));
      path = next_link_target(response);
    }
    file.close();
    if (!file) throw Failure(kServer, "cannot write " + part);
  } catch (...) {
    std::error_code ignored;
    fs::remove(part, ignored);
    throw;
  }
  std::error_code ec;
  fs::rename(part, *out_path, ec);
  if (ec) throw Failure(kServer, "cannot rename " + part + ": " + ec.message());
  *context.err << "wrote " << lines << " results to " << *out_path << "\n";
  return kOk;
}

int jobs_cancel(const Args& args, const Context& context) {
  if (args.positional.size() != 1) throw UsageError("jobs cancel takes one job id");
  const auto& id = args.positional[0];
  Api api(context);
  auto response = api.call("POST", "/v1/jobs/" + encode_segment(id) + "/cancel", "{}", {}, true);
  Api::check(response, "cancel job " + id);
  *context.out << Api::parse(response, "cancel").value("status", "") << "\n";
  return kOk;
}

// ---- datasets -------------------------------------------------------------------------------

std::string version_path(const std::string& name, const std::string& version) {
  return "/v1/datasets/" + encode_segment(name) + "/versions/" + encode_segment(version);
}

int datasets_create(const Args& args, const Context& context) {
  if (args.positional.size() != 1) throw UsageError("datasets create takes one dataset name");
  const auto jobs = args.value("--jobs");
  if (!jobs || split_list(*jobs).empty()) throw UsageError("datasets create needs --jobs ID[,ID...]");
  const int timeout = parse_timeout(args);
  const std::string& name = args.positional[0];
  json body = {{"name", name}, {"jobs", split_list(*jobs)}};
  if (auto x = args.value("--min-confidence")) {
    try {
      std::size_t used = 0;
      body["min_confidence"] = std::stod(*x, &used);
      if (used != x->size()) throw std::invalid_argument("");
    } catch (const std::logic_error&) {
      throw UsageError("--min-confidence takes a number, not \"" + *x + "\"");
    }
  }
  if (auto include = args.value("--include")) body["include"] = split_list(*include);
  Api api(context);
  vendors::HeaderList headers;
  const auto key = args.value("--idempotency-key");
  if (key) headers.emplace_back("Idempotency-Key", *key);
  auto response = api.call("POST", "/v1/datasets", body.dump(), std::move(headers), key.has_value());
  Api::check(response, "create dataset " + name);
  const auto created = Api::parse(response, "create dataset");
  const std::string version = std::to_string(created.value("version", 0));
  const std::string label = name + "@" + version;
  if (args.flag("--wait")) {
    const auto deadline = Clock::now() + std::chrono::seconds(timeout);
    Progress progress(context, "building " + label);
    for (int attempt = 0;; ++attempt) {
      const auto manifest = api.get_json(version_path(name, version), "dataset " + label);
      const std::string status = manifest.value("status", "");
      if (status == "ready") {
        progress.update(1, 1, "ready");
        break;
      }
      progress.update(0, 1, status);
      if (Clock::now() >= deadline)
        throw Failure(kNotReady, "dataset " + label + " is still " + status + " after " + std::to_string(timeout) + " s");
      sleep_for_poll(attempt);
    }
  }
  *context.out << label << "\n";
  return kOk;
}

// Appends everything to fd, or throws.
void write_all(int fd, const std::string& data, const std::string& path) {
  std::size_t written = 0;
  while (written < data.size()) {
    const auto n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Failure(kServer, "cannot write " + path + ": " + std::strerror(errno));
    }
    written += static_cast<std::size_t>(n);
  }
}

// "bytes a-b/total" → {a, b, total}.
std::optional<std::array<std::uint64_t, 3>> parse_content_range(std::string_view value) {
  unsigned long long a = 0, b = 0, total = 0;
  const std::string text(value);
  if (std::sscanf(text.c_str(), "bytes %llu-%llu/%llu", &a, &b, &total) != 3) return std::nullopt;
  return std::array<std::uint64_t, 3>{a, b, total};
}

int datasets_pull(const Args& args, const Context& context) {
  if (args.positional.size() != 1) throw UsageError("datasets pull takes one NAME[@VERSION|@latest]");
  const auto destination = args.value("-o");
  if (!destination || destination->empty()) throw UsageError("datasets pull needs -o FILE");
  std::string name = args.positional[0], version = "latest";
  if (auto at = name.find('@'); at != std::string::npos) {
    version = name.substr(at + 1);
    name = name.substr(0, at);
  }
  if (name.empty() || version.empty()) throw UsageError("expected NAME[@VERSION|@latest], got " + args.positional[0]);

  Api api(context);
  const auto manifest = api.get_json(version_path(name, version), "dataset " + name + "@" + version);
  const std::string status = manifest.value("status", "");
  if (status != "ready") throw Failure(kNotReady, "dataset " + name + "@" + version + " is " + status + ", not ready yet");
  // Download by number: "latest" could move on while the pieces come in.
  const std::string number = std::to_string(manifest.value("version", 0));
  const std::string label = name + "@" + number;
  if (!manifest.contains("files") || manifest["files"].empty()) throw Failure(kServer, label + ": the manifest lists no file");
  const auto& file = manifest["files"][0];
  const std::string expected = file.value("sha256", "");
  const std::uint64_t total = file.value("bytes", std::uint64_t{0});

  if (fs::is_regular_file(*destination) && sha256_of_file(*destination) == expected) {
    *context.out << *destination << " is up to date (" << label << ", sha256 " << expected << ")\n";
    return kOk;
  }

  const std::string part = *destination + ".part";
  std::error_code ec;
  std::uint64_t offset = fs::is_regular_file(part, ec) ? fs::file_size(part, ec) : 0;
  if (ec) offset = 0;
  // A .part longer than the file cannot be a prefix of it: start again.
  const bool restart = offset > total;
  if (restart) offset = 0;
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | (restart ? O_TRUNC : 0) | O_APPEND, 0644);
  if (fd < 0) throw Failure(kServer, "cannot open " + part + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (offset > 0) *context.err << "resuming " << label << " at byte " << offset << " of " << total << "\n";

  const std::string items = version_path(name, number) + "/items.jsonl";
  Progress progress(context, label);
  while (offset < total) {
    const std::uint64_t last = std::min<std::uint64_t>(offset + kChunkBytes, total) - 1;
    auto response = api.call("GET", items, {},
                             {{"Range", "bytes=" + std::to_string(offset) + "-" + std::to_string(last)},
                              {"If-Range", "\"" + expected + "\""},
                              {"Accept", "application/x-ndjson"}});
    Api::check(response, "download " + label);
    if (response.status != 206)
      throw Failure(kServer, "download " + label + ": expected 206 for a range, got " + std::to_string(response.status));
    auto range = response.header("Content-Range");
    auto parsed = range ? parse_content_range(*range) : std::nullopt;
    if (!parsed || (*parsed)[0] != offset || (*parsed)[1] != last || (*parsed)[2] != total ||
        response.body.size() != last - offset + 1)
      throw Failure(kServer, "download " + label + ": the server sent another range than asked for");
    write_all(fd, response.body, part);
    offset = last + 1;
    progress.update(static_cast<double>(offset), static_cast<double>(total), megabytes(offset) + " / " + megabytes(total));
  }
  if (::fsync(fd) != 0) throw Failure(kServer, "cannot sync " + part + ": " + std::strerror(errno));
  progress.finish();

  const auto actual = sha256_of_file(part);
  if (actual != expected) {
    fs::remove(part, ec);
    throw Failure(kChecksum, "checksum mismatch for " + label + ": the manifest says sha256 " + expected +
                                 ", the download hashes to " + actual.value_or("(unreadable)") + "; removed " + part +
                                 ", " + *destination + " left as it was");
  }
  fs::rename(part, *destination, ec);
  if (ec) throw Failure(kServer, "cannot rename " + part + " to " + *destination + ": " + ec.message());
  *context.out << *destination << ": " << label << ", " << total << " bytes, " << file.value("rows", 0)
               << " rows, sha256 " << expected << "\n";
  return kOk;
}

// ---- vendors --------------------------------------------------------------------------------

std::string cell(const json& value, int precision = 3) {
  if (value.is_null()) return "-";
  if (value.is_number_float()) {
    std::ostringstream out;
    out << std::fixed << std::setprecision(precision) << value.get<double>();
    return out.str();
  }
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

void print_scores_table(const json& scores, std::ostream& out) {
  const std::vector<std::string> header = {"vendor", "gold acc", "90% interval", "ds acc", "judgments",
                                           "share", "p50 ms", "p95 ms", "on time", "errors", "$/correct", "spend $"};
  std::vector<std::vector<std::string>> rows = {header};
  for (const auto& v : scores.value("vendors", json::array())) {
    const auto gold = v.value("gold_accuracy", json::object());
    const auto latency = v.value("latency_ms", json::object());
    rows.push_back({v.value("vendor", ""), cell(gold.value("mean", json())),
                    cell(gold.value("lower", json())) + "-" + cell(gold.value("upper", json())),
                    cell(v.value("ds_accuracy", json())), cell(v.value("judgments", json())),
                    cell(v.value("share", json())), cell(latency.value("p50", json()), 0),
                    cell(latency.value("p95", json()), 0), cell(v.value("on_time_rate", json())),
                    cell(v.value("error_rate", json())), cell(v.value("cost_per_correct_label_usd", json())),
                    cell(v.value("spend_usd", json()))});
  }
  std::vector<std::size_t> widths(header.size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  for (const auto& row : rows) {
    for (std::size_t c = 0; c < row.size(); ++c)
      out << (c ? "  " : "") << (c ? std::right : std::left) << std::setw(static_cast<int>(widths[c])) << row[c];
    out << "\n";
  }
  if (scores.contains("filters")) out << "window: " << cell(scores["filters"].value("window", json())) << "\n";
}

int vendors_scores(const Args& args, const Context& context) {
  if (!args.positional.empty()) throw UsageError("vendors scores takes no arguments");
  std::string path = "/v1/vendors/scores";
  if (auto window = args.value("--window")) path += "?window=" + encode_segment(*window);
  Api api(context);
  const auto scores = api.get_json(path, "vendor scores");
  if (args.flag("--json") || !context.out_is_tty)
    *context.out << scores.dump(2) << "\n";
  else
    print_scores_table(scores, *context.out);
  return kOk;
}

// ---- dispatch -------------------------------------------------------------------------------

struct Command {
  std::set<std::string> with_value;
  std::set<std::string> flags;
  int (*run)(const Args&, const Context&);
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> table = {
      {"jobs submit", {{"--idempotency-key", "--timeout"}, {"--wait"}, jobs_submit}},
      {"jobs status", {{}, {}, jobs_status}},
      {"jobs results", {{"-o", "--limit"}, {}, jobs_results}},
      {"jobs cancel", {{}, {}, jobs_cancel}},
      {"datasets create",
       {{"--jobs", "--min-confidence", "--include", "--idempotency-key", "--timeout"}, {"--wait"}, datasets_create}},
      {"datasets pull", {{"-o"}, {}, datasets_pull}},
      {"vendors scores", {{"--window"}, {"--json"}, vendors_scores}},
  };
  return table;
}

int dispatch(const std::vector<std::string>& args, const Context& context) {
  if (args.empty()) {
    *context.err << kTopHelp << kExitCodes;
    return kUsage;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    *context.out << kTopHelp << kExitCodes;
    return kOk;
  }
  const std::string& group = args[0];
  if (!command_help().count(group)) throw UsageError("unknown command " + group);
  const bool has_sub = args.size() > 1 && args[1].rfind("-", 0) != 0;
  const std::string name = has_sub ? group + " " + args[1] : group;
  const auto it = commands().find(name);
  if (it == commands().end()) {
    const bool wants_help = std::find(args.begin(), args.end(), "--help") != args.end() ||
                            std::find(args.begin(), args.end(), "-h") != args.end();
    if (!has_sub && wants_help) {
      *context.out << help_for(group);
      return kOk;
    }
    if (!has_sub) {
      *context.err << help_for(group);
      return kUsage;
    }
    throw UsageError("unknown command " + name);
  }
  Args parsed;
  try {
    parsed = parse_args(args, 2, it->second.with_value, it->second.flags);
  } catch (const UsageError&) {
    // --help wins over a malformed rest of the line.
    if (std::find(args.begin(), args.end(), "--help") != args.end()) {
      *context.out << help_for(name);
      return kOk;
    }
    throw;
  }
  if (parsed.help) {
    *context.out << help_for(name);
    return kOk;
  }
  try {
    return it->second.run(parsed, context);
  } catch (const UsageError& e) {
    *context.err << "brokerctl: " << e.what() << "\nusage: " << command_help().at(name).usage
                 << "\n(brokerctl " << name << " --help for more)\n";
    return kUsage;
  }
}

}  // namespace

std::string next_link(const std::string& link_header) {
  // Link: <url>; rel="next", <url2>; rel="prev"
  std::size_t pos = 0;
  while (pos < link_header.size()) {
    const auto open = link_header.find('<', pos);
    if (open == std::string::npos) break;
    const auto close = link_header.find('>', open);
    if (close == std::string::npos) break;
    auto end = link_header.find('<', close);
    const std::string params = link_header.substr(close + 1, end == std::string::npos ? std::string::npos : end - close - 1);
    if (params.find("rel=\"next\"") != std::string::npos || params.find("rel=next") != std::string::npos)
      return link_header.substr(open + 1, close - open - 1);
    pos = close + 1;
  }
  return {};
}

int run(const std::vector<std::string>& args, const Context& context) {
  try {
    return dispatch(args, context);
  } catch (const UsageError& e) {
    *context.err << "brokerctl: " << e.what() << "\n(brokerctl --help for usage)\n";
    return kUsage;
  } catch (const Failure& e) {
    *context.err << "brokerctl: " << e.what() << "\n";
    return e.code;
  } catch (const std::exception& e) {
    *context.err << "brokerctl: " << e.what() << "\n";
    return kServer;
  }
}

}  // namespace labelbroker::brokerctl
