#pragma once
// Small cryptographic helpers over OpenSSL.
#include <cstddef>
#include <string>
#include <string_view>

namespace labelbroker::common {

// Lower-case hex SHA-256 of the bytes.
std::string sha256_hex(std::string_view data);

// SHA-256 of bytes that arrive in pieces (a file streamed a chunk at a time).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data);
  // Lower-case hex digest of everything updated so far; the hasher is spent afterwards.
  std::string hex();

 private:
  void* context_;  // EVP_MD_CTX, kept out of this header
};

// Lower-case hex HMAC-SHA256(key, data).
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

// Standard base64 (with padding), e.g. for HTTP Basic credentials.
std::string base64_encode(std::string_view data);

// bytes from a CSPRNG, hex encoded (2 * bytes characters). Throws std::runtime_error if the
// system RNG fails.
std::string random_hex(std::size_t bytes);

// A random (version 4) UUID in its canonical lower-case text form, from the CSPRNG.
std::string random_uuid();

// Compares in time that depends only on the lengths, not on where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace labelbroker::common
