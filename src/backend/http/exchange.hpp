#pragma once
// One HTTP request at a time on one kept-alive connection, pulled by the
// thread that owns it: the http(s) backend's reads and the object stores'
// (s3, azure) reads and writes all run on this.
//
// Owns: Lane (a libcurl easy handle and the multi handle that drives it:
// one connection), Exchange (one request on a Lane, its response headers
// and its body, pulled or pushed in the caller's buffers).
//
// Threading: a Lane, and the Exchange running on it, belong to one thread
// at a time (the one that took it from its pool). No thread runs behind
// the caller: reads drive the transfer (curl_multi_perform/poll) until the
// caller's buffer is full, and libcurl is paused while it is; uploads drive
// it until the caller's bytes are taken, and libcurl is paused while none
// are offered. At most one callback's bytes wait in memory per exchange.

#include <curl/curl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xfer/core/result.hpp"

namespace xfer::http {

// curl_global_init, once per process.
void global_init();

// No byte for this long from a server that owes some (or taken by a server
// that was sent some): the call fails (retryable), the connection is dropped.
inline constexpr std::chrono::seconds kStallTimeout{60};
// ...and at least this much either way in each such window while a caller waits.
inline constexpr std::uint64_t kMinWindowBytes = 64u << 10;
inline constexpr std::size_t kMaxHeaderBytes = 256u << 10;

// One connection: an easy handle and the multi handle that drives it
// (pull-style reads need a multi handle; one each keeps every lane's
// connection its own, so ranges of one file run on parallel connections).
struct Lane {
  CURL* easy = curl_easy_init();
  CURLM* multi = curl_multi_init();
  Lane() = default;
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;
  ~Lane() {
    curl_easy_cleanup(easy);
    curl_multi_cleanup(multi);
  }
};

struct Response {
  long status = 0;
  std::string content_type;
  std::string etag;
  std::string last_modified;
  std::string content_range;
  std::string accept_ranges;
  std::string retry_after;
  std::optional<std::uint64_t> content_length;
  std::string effective_url;
  // Every header of the final response, names lowercased, values trimmed
  // (within kMaxHeaderBytes).
  std::vector<std::pair<std::string, std::string>> headers;
  // The first header named `lower_name`, or "".
  std::string header(std::string_view lower_name) const;
};

// What every request of one endpoint shares.
struct ExchangeConfig {
  bool https_only = false;  // refuse http, also in redirects
  std::string ca;           // CA bundle instead of the system's
  bool insecure = false;    // do not verify the server's certificate
  // Credentials libcurl adds itself, only to URLs under `origin` + "/".
  std::string origin;
  std::string user;
  std::string password;
  std::string bearer;
  bool follow_redirects = true;
  std::string user_agent = "xfer";
  std::string server_name = "web server";  // in "is the web server running there?"
};

// libcurl's failure of `url` as an Error with its retry class, in words a
// user can act on.
Error curl_error(CURLcode code, const char* detail, std::string_view op, const std::string& url,
                 std::string_view server_name = "web server");

// One request on a Lane, run by the thread that owns it.
class Exchange {
 public:
  Exchange(const ExchangeConfig& cfg, CURLSH* share, std::unique_ptr<Lane> lane,
           const std::atomic<bool>* cancel, std::atomic<std::uint64_t>* min_rtt_us);
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;
  ~Exchange();

  struct Request {
    std::string url;
    bool head = false;
    std::optional<std::pair<std::uint64_t, std::uint64_t>> range;  // first, last
    std::string if_range;
    std::string method;                // "" : GET (or HEAD when `head`)
    std::vector<std::string> headers;  // "Name: value"
    // A request body: `body` as it is, or, with `upload_size`, that many
    // bytes pushed by send().
    std::optional<std::string> body;
    std::optional<std::uint64_t> upload_size;
  };

  Status start(const Request& req);

  // Request bodies pushed by the caller (Request::upload_size): returns once
  // libcurl took all of `data`. An error when the transfer failed, or
  // kUnavailable when the server answered before taking the whole body
  // (the caller judges that answer: response() after wait_headers()).
  Status send(std::span<const std::byte> data, std::string_view op);

  // Runs the transfer until the final response's headers are in (its first
  // body bytes arrived, or it ended). Transfer errors are returned; the
  // HTTP status is the caller's to judge.
  Status wait_headers(std::string_view op);
  const Response& response() const { return response_; }

  // Up to buf.size() body bytes; 0 once the body ended whole. An error
  // when the transfer failed (a short body, a cut connection).
  Result<std::size_t> read(std::span<std::byte> buf, std::string_view op);
  // The whole body, at most `max` bytes (kCorrupt beyond).
  Result<std::string> read_all(std::size_t max, std::string_view op);

  // The body ended whole (read returned 0): the connection may serve the
  // next request. Null otherwise (the lane is dropped with its connection).
  std::unique_ptr<Lane> take_lane();
  bool ended() const { return done_ && result_ == CURLE_OK && spill_pos_ >= spill_.size(); }
  const std::string& url() const { return url_; }

 private:
  static std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user);
  static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user);
  static std::size_t on_upload(char* data, std::size_t size, std::size_t n, void* user);
  std::size_t take_spill(std::span<std::byte> buf);
  Status pump(std::string_view op);
  void fill_response();
  Error failure(std::string_view op) const {
    return curl_error(result_, errbuf_.data(), op, url_, cfg_.server_name);
  }

  const ExchangeConfig& cfg_;
  CURLSH* share_;
  std::unique_ptr<Lane> lane_;
  const std::atomic<bool>* cancel_;
  std::atomic<std::uint64_t>* min_rtt_us_;
  std::string url_;
  std::string range_text_;
  std::string body_;
  curl_slist* headers_ = nullptr;
  std::array<char, CURL_ERROR_SIZE + 1> errbuf_{};
  bool attached_ = false;
  bool done_ = false;
  CURLcode result_ = CURLE_OK;
  bool got_body_ = false;
  bool paused_ = false;
  bool upload_paused_ = false;
  std::span<const std::byte> upload_;  // bytes send() offers, not yet taken
  std::size_t header_bytes_ = 0;
  Response response_;
  std::span<std::byte> target_;
  std::size_t filled_ = 0;
  std::string spill_;
  std::size_t spill_pos_ = 0;
  std::chrono::steady_clock::time_point last_progress_;
  std::chrono::steady_clock::time_point window_start_ = std::chrono::steady_clock::now();
  std::uint64_t window_bytes_ = 0;
};

// The connections of one endpoint: idle Lanes for reuse (at most
// kMaxIdleLanes), a share handle for DNS answers and TLS sessions, the
// cancel flag and the smallest TCP handshake seen (the path's round trip).
// Thread-safe.
class LanePool {
 public:
  static constexpr std::size_t kMaxIdleLanes = 64;
  explicit LanePool(const ExchangeConfig& cfg);
  ~LanePool();
  LanePool(const LanePool&) = delete;
  LanePool& operator=(const LanePool&) = delete;

  // A request on a pooled connection (or a new one).
  std::unique_ptr<Exchange> exchange();
  // An exchange whose body was read whole gives its connection back.
  void done_with(std::unique_ptr<Exchange> x);
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  // The smallest TCP handshake seen, in ms; 0 before the first.
  double rtt_ms() const;

 private:
  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* user);
  static void unlock(CURL*, curl_lock_data data, void* user);
  static constexpr std::size_t kLocks = 8;
  const ExchangeConfig& cfg_;
  CURLSH* share_ = nullptr;
  std::array<std::mutex, kLocks> share_mu_;
  std::mutex lanes_mu_;
  std::vector<std::unique_ptr<Lane>> idle_;  // under lanes_mu_
  std::atomic<bool> cancelled_{false};
  std::atomic<std::uint64_t> min_rtt_us_{UINT64_MAX};
};

}  // namespace xfer::http
