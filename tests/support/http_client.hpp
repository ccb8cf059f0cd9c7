#pragma once
// Blocking HTTP helpers for tests: a well-formed client (Beast) and raw sockets for sending
// deliberately broken or slow requests.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace labelbroker::testing {

struct HttpResult {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::optional<std::string> header(const std::string& name) const;
};

// One request on a fresh connection. Throws on connection failure.
HttpResult http_request(std::uint16_t port, const std::string& method, const std::string& target,
                        const std::string& body = "",
                        const std::vector<std::pair<std::string, std::string>>& headers = {});

// A raw TCP connection to 127.0.0.1:port with a receive timeout that guards against hangs.
class RawConnection {
 public:
  explicit RawConnection(std::uint16_t port, std::chrono::milliseconds receive_timeout = std::chrono::seconds(30));
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  // Returns false if the peer closed or reset the connection.
  bool send(const std::string& bytes);
  // Reads until the peer closes (or the receive timeout fires: then timed_out() is true).
  std::string read_until_close();
  // Reads one HTTP response: headers plus Content-Length bytes of body.
  std::string read_response();
  bool timed_out() const { return timed_out_; }
  void shutdown_write();

 private:
  int fd_ = -1;
  bool timed_out_ = false;
  std::string pending_;
};

// Parses the status code of a raw response ("HTTP/1.1 413 ..."); 0 if unparseable.
int status_of(const std::string& raw_response);

}  // namespace labelbroker::testing
