// Load generator for bench/ingest.sh and bench/pipeline.sh: POSTs jobs of N items to the broker
// from C concurrent clients (one keep-alive connection each) until TOTAL items are stored, and
// reports items/s. --redundancy, --expertise and --budget set those job fields (pipeline.sh asks
// for redundancy 2; the defaults are ingest.sh's jobs).
// With --copy-file it instead writes the same rows, in COPY text format with the columns of
// job_items (job_id, item_id, data), for the raw-COPY reference.
//
// Plain blocking sockets: the client must cost little next to the broker, and needs nothing but
// HTTP/1.1 with Content-Length.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string key;
  int clients = 8;
  long items_per_job = 1000;
  long total = 1000000;
  std::string copy_file;  // write COPY rows instead of calling the broker
  // Job fields (bench/pipeline.sh sets them; the defaults are bench/ingest.sh's jobs).
  int redundancy = 1;
  std::string expertise;  // empty: not sent (the broker's default)
  std::string budget_usd = "1000.00";
};

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "ingest_client: %s\n", message.c_str());
  std::exit(1);
}

// The data of item n: ~100 bytes of text, like a short note. Deterministic, so the API run and
// the COPY reference store the same bytes.
std::string item_data(long n) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "{\"text\":\"note %ld: patient reports mild symptoms since yesterday, no fever, asks for "
                "advice\"}",
                n);
  return buf;
}

std::string job_body(const Options& o, long first_item, long items) {
  std::string body;
  body.reserve(static_cast<std::size_t>(items) * 140 + 400);
  body +=
      "{\"name\":\"ingest-bench\",\"task_type\":\"classification\",\"domain\":\"general\","
      "\"labels\":[\"urgent\",\"routine\"],\"redundancy\":";
  body += std::to_string(o.redundancy);
  body += ",\"budget_usd\":\"";
  body += o.budget_usd;
  body += "\",";
  if (!o.expertise.empty()) {
    body += "\"expertise\":\"";
    body += o.expertise;
    body += "\",";
  }
  body += "\"deadline\":\"2099-01-01T00:00:00Z\",\"items\":[";
  for (long i = 0; i < items; ++i) {
    if (i) body += ',';
    body += "{\"id\":\"i-";
    body += std::to_string(first_item + i);
    body += "\",\"data\":";
    body += item_data(first_item + i);
    body += '}';
  }
  body += "]}";
  return body;
}

class Connection {
 public:
  Connection(const std::string& host, int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) die("socket failed");
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) die("bad host " + host);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      die("cannot connect to " + host + ":" + std::to_string(port));
  }
  ~Connection() { ::close(fd_); }

  // Returns the status code and the body.
  std::pair<int, std::string> post(const std::string& target, const std::string& key, const std::string& body) {
    std::string head = "POST " + target + " HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer " + key +
                       "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\n\r\n";
    send_all(head);
    send_all(body);
    return read_response();
  }

 private:
  void send_all(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) die("send failed: " + std::string(std::strerror(errno)));
      sent += static_cast<std::size_t>(n);
    }
  }

  void fill() {
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) die("connection closed by the broker");
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }

  std::pair<int, std::string> read_response() {
    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) fill();
    const std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);
    int status = 0;
    if (std::sscanf(head.c_str(), "HTTP/1.1 %d", &status) != 1) die("bad status line");
    std::size_t length = 0;
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (auto at = lower.find("\r\ncontent-length:"); at != std::string::npos)
      length = std::strtoull(lower.c_str() + at + 17, nullptr, 10);
    while (buffer_.size() < length) fill();
    std::string body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return {status, body};
  }

  int fd_ = -1;
  std::string buffer_;
};

std::string random_uuid(std::mt19937_64& rng) {
  static const char* hex = "0123456789abcdef";
  std::string s = "xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx";
  for (auto& c : s)
    if (c == 'x') c = hex[rng() & 0xF];
  return s;
}

int write_copy_file(const Options& o) {
  std::ofstream out(o.copy_file, std::ios::binary);
  if (!out) die("cannot write " + o.copy_file);
  std::mt19937_64 rng(42);
  std::string job_id;
  std::string line;
  for (long n = 0; n < o.total; ++n) {
    if (n % o.items_per_job == 0) job_id = random_uuid(rng);
    line = job_id;
    line += '\t';
    line += "i-" + std::to_string(n);
    line += '\t';
    line += item_data(n);  // no tabs, newlines or backslashes: valid COPY text as is
    line += '\n';
    out << line;
  }
  return out.good() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value for " + a);
      return argv[++i];
    };
    if (a == "--host")
      o.host = next();
    else if (a == "--port")
      o.port = std::stoi(next());
    else if (a == "--key")
      o.key = next();
    else if (a == "--clients")
      o.clients = std::stoi(next());
    else if (a == "--items-per-job")
      o.items_per_job = std::stol(next());
    else if (a == "--total")
      o.total = std::stol(next());
    else if (a == "--copy-file")
      o.copy_file = next();
    else if (a == "--redundancy")
      o.redundancy = std::stoi(next());
    else if (a == "--expertise")
      o.expertise = next();
    else if (a == "--budget")
      o.budget_usd = next();
    else
      die("unknown argument " + a +
          " (usage: --port P --key K [--clients 8] [--items-per-job 1000] [--total 1000000] [--copy-file F]"
          " [--redundancy 1] [--expertise general|skilled|expert] [--budget 1000.00])");
  }
  if (o.items_per_job <= 0 || o.total <= 0 || o.clients <= 0 || o.redundancy <= 0) die("counts must be positive");
  for (char c : o.expertise + o.budget_usd)
    if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) die("--expertise and --budget must be plain text");
  if (!o.copy_file.empty()) return write_copy_file(o);
  if (o.key.empty()) die("--key is required");

  const long jobs = (o.total + o.items_per_job - 1) / o.items_per_job;
  std::atomic<long> next_job{0};
  std::atomic<long> stored{0};
  std::atomic<long> failures{0};
  std::mutex latencies_mutex;
  std::vector<double> latencies_ms;
  std::string first_error;

  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&] {
      Connection conn(o.host, o.port);
      std::vector<double> mine;
      for (long j; (j = next_job.fetch_add(1)) < jobs;) {
        const long first = j * o.items_per_job;
        const long n = std::min(o.items_per_job, o.total - first);
        const std::string body = job_body(o, first, n);
        const auto t0 = std::chrono::steady_clock::now();
        auto [status, response] = conn.post("/v1/jobs", o.key, body);
        mine.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        if (status == 201) {
          stored += n;
        } else {
          ++failures;
          std::lock_guard lock(latencies_mutex);
          if (first_error.empty()) first_error = std::to_string(status) + " " + response.substr(0, 300);
        }
      }
      std::lock_guard lock(latencies_mutex);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty() ? 0.0 : latencies_ms[std::min(latencies_ms.size() - 1,
                                                              static_cast<std::size_t>(p * latencies_ms.size()))];
  };
  std::printf(
      "{\"jobs\":%ld,\"items\":%ld,\"failures\":%ld,\"seconds\":%.3f,\"items_per_s\":%.0f,\"p50_ms\":%.1f,"
      "\"p99_ms\":%.1f,\"max_ms\":%.1f}\n",
      jobs, stored.load(), failures.load(), seconds, stored.load() / seconds, pct(0.5), pct(0.99),
      latencies_ms.empty() ? 0.0 : latencies_ms.back());
  if (!first_error.empty()) std::fprintf(stderr, "ingest_client: first failure: %s\n", first_error.c_str());
  return failures.load() == 0 ? 0 : 1;
}
