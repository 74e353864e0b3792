// The shared HTTP request engine (exchange.hpp): one request on one
// connection, pulled or pushed by the thread that owns it. No state beyond
// the Exchange and its Lane; any thread, one at a time per Exchange.

#include "backend/http/exchange.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

#include "xfer/core/names.hpp"

namespace xfer::http {
namespace {

using Clock = std::chrono::steady_clock;

constexpr long kMaxRedirects = 10;
constexpr long kConnectTimeoutMs = 30'000;
constexpr long kReceiveBuffer = 256L << 10;
constexpr long kUploadBuffer = 1L << 20;  // fewer, larger sends for uploads

std::string trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() &&
         (v.back() == ' ' || v.back() == '\t' || v.back() == '\r' || v.back() == '\n')) {
    v.remove_suffix(1);
  }
  return std::string(v);
}

std::string lower(std::string_view v) {
  std::string out(v);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The host and the port (the scheme's default when none is written) of
// an absolute URL, for messages.
std::pair<std::string, std::string> host_port_of(const std::string& url) {
  std::pair<std::string, std::string> out;
  CURLU* u = curl_url();
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char* host = nullptr;
    char* port = nullptr;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) out.first = host;
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) out.second = port;
    curl_free(host);
    curl_free(port);
  }
  curl_url_cleanup(u);
  return out;
}

}  // namespace

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Response::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return {};
}

Error curl_error(CURLcode code, const char* detail, std::string_view op, const std::string& url,
                 std::string_view server_name) {
  const std::string why = detail != nullptr && *detail != '\0' ? detail : curl_easy_strerror(code);
  switch (code) {
    case CURLE_COULDNT_CONNECT: {
      const auto [host, port] = host_port_of(url);
      return make_error(ErrorCode::kUnavailable, op, url,
                        fmt::format("nothing listens on {}:{} (is the {} running there, "
                                    "on that port?)",
                                    host, port, server_name),
                        RetryClass::kRetryCall);
    }
    case CURLE_COULDNT_RESOLVE_HOST:
      return make_error(ErrorCode::kUnavailable, op, url,
                        fmt::format("cannot resolve the host name '{}' (is it spelt right?)",
                                    printable_name(host_port_of(url).first, 100)),
                        RetryClass::kRetryCall);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return make_error(ErrorCode::kPermission, op, url,
                        fmt::format("the server's certificate is not trusted: {} (give its CA "
                                    "with --ca FILE, or accept any certificate with --insecure)",
                                    why));
    case CURLE_SSL_CONNECT_ERROR:
      return make_error(ErrorCode::kUnavailable, op, url,
                        fmt::format("TLS handshake failed: {}", why), RetryClass::kRetryCall);
    case CURLE_TOO_MANY_REDIRECTS:
      return make_error(ErrorCode::kInvalidArgument, op, url,
                        fmt::format("more than {} redirects", kMaxRedirects));
    case CURLE_UNSUPPORTED_PROTOCOL:
      return make_error(ErrorCode::kPermission, op, url,
                        fmt::format("redirected to a scheme that is refused: {} (https is never "
                                    "followed to http, nor any URL to another scheme)",
                                    why));
    case CURLE_PARTIAL_FILE:
      // The connection ended early (a server restarting, a network cut):
      // unreachable, so a resumable partial is kept.
      return make_error(ErrorCode::kUnavailable, op, url,
                        fmt::format("the server ended the body before its Content-Length: {}", why),
                        RetryClass::kRetryCall);
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return make_error(ErrorCode::kUnavailable, op, url, why, RetryClass::kRetryCall);
    default:
      return make_error(ErrorCode::kIo, op, url, why, RetryClass::kRetryCall);
  }
}

Exchange::Exchange(const ExchangeConfig& cfg, CURLSH* share, std::unique_ptr<Lane> lane,
                   const std::atomic<bool>* cancel, std::atomic<std::uint64_t>* min_rtt_us)
    : cfg_(cfg), share_(share), lane_(std::move(lane)), cancel_(cancel), min_rtt_us_(min_rtt_us) {}

Exchange::~Exchange() {
  if (attached_) curl_multi_remove_handle(lane_->multi, lane_->easy);
  if (headers_ != nullptr) curl_slist_free_all(headers_);
}

Status Exchange::start(const Request& req) {
  url_ = req.url;
  CURL* e = lane_->easy;
  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, req.url.c_str());
  if (share_ != nullptr) curl_easy_setopt(e, CURLOPT_SHARE, share_);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, cfg_.https_only ? "https" : "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, cfg_.https_only ? "https" : "http,https");
  if (cfg_.follow_redirects) {
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, kMaxRedirects);
  }
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, kConnectTimeoutMs);
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, kReceiveBuffer);
  curl_easy_setopt(e, CURLOPT_USERAGENT, cfg_.user_agent.c_str());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf_.data());
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Exchange::on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Exchange::on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, this);
  if (!cfg_.ca.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, cfg_.ca.c_str());
  if (cfg_.insecure) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  // Credentials go to the endpoint's own origin only: a Source reading
  // a redirect's target (a mirror, a CDN) names it directly, and libcurl
  // sends none across hosts while following.
  if (!cfg_.origin.empty() && req.url.rfind(cfg_.origin + "/", 0) == 0) {
    if (!cfg_.bearer.empty()) {
      curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
      curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, cfg_.bearer.c_str());
    } else if (!cfg_.user.empty() || !cfg_.password.empty()) {
      curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
      curl_easy_setopt(e, CURLOPT_USERNAME, cfg_.user.c_str());
      curl_easy_setopt(e, CURLOPT_PASSWORD, cfg_.password.c_str());
    }
  }
  if (req.head) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  if (req.range) {
    range_text_ = fmt::format("{}-{}", req.range->first, req.range->second);
    curl_easy_setopt(e, CURLOPT_RANGE, range_text_.c_str());
  }
  if (!req.if_range.empty())
    headers_ = curl_slist_append(headers_, ("If-Range: " + req.if_range).c_str());
  for (const std::string& h : req.headers) headers_ = curl_slist_append(headers_, h.c_str());
  upload_ = {};
  upload_paused_ = false;
  if (req.body || req.upload_size) {
    // A body goes through the read callback, for PUT and POST alike; no
    // "Expect: 100-continue" (a round trip per request; a refusal shows
    // in the answer anyway).
    std::uint64_t size = 0;
    if (req.body) {
      body_ = *req.body;
      upload_ = std::as_bytes(std::span<const char>(body_.data(), body_.size()));
      size = body_.size();
    } else {
      size = *req.upload_size;
    }
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
    curl_easy_setopt(e, CURLOPT_READFUNCTION, &Exchange::on_upload);
    curl_easy_setopt(e, CURLOPT_READDATA, this);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, kUploadBuffer);
    headers_ = curl_slist_append(headers_, "Expect:");
  }
  if (!req.method.empty()) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  if (headers_ != nullptr) curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_);
  if (curl_multi_add_handle(lane_->multi, e) != CURLM_OK) {
    return make_error(ErrorCode::kInternal, "request", url_, "curl_multi_add_handle failed");
  }
  attached_ = true;
  last_progress_ = Clock::now();
  window_start_ = last_progress_;
  window_bytes_ = 0;
  return ok_status();
}

Status Exchange::send(std::span<const std::byte> data, std::string_view op) {
  window_start_ = Clock::now();
  window_bytes_ = 0;
  upload_ = data;
  while (!upload_.empty() && !done_ && !got_body_) {
    if (upload_paused_) {
      upload_paused_ = false;
      curl_easy_pause(lane_->easy, CURLPAUSE_CONT);
      continue;
    }
    Status s = pump(op);
    if (!s.ok()) {
      upload_ = {};
      return s;
    }
  }
  const bool taken = upload_.empty();
  upload_ = {};
  if (done_ && result_ != CURLE_OK) return failure(op);
  if (!taken) {
    return make_error(ErrorCode::kUnavailable, op, url_,
                      "the server answered before taking the whole body", RetryClass::kRetryCall);
  }
  return ok_status();
}

Status Exchange::wait_headers(std::string_view op) {
  while (!got_body_ && !done_) {
    if (upload_paused_) {
      // libcurl still wants body bytes: the caller sent fewer than it said.
      return make_error(ErrorCode::kInternal, op, url_, "the request body is incomplete");
    }
    XFER_TRY(pump(op));
  }
  if (done_ && result_ != CURLE_OK && !got_body_) return failure(op);
  fill_response();
  return ok_status();
}

Result<std::size_t> Exchange::read(std::span<std::byte> buf, std::string_view op) {
  window_start_ = Clock::now();
  window_bytes_ = 0;
  std::size_t n = take_spill(buf);
  target_ = buf.subspan(n);
  filled_ = 0;
  while (n + filled_ < buf.size() && !done_) {
    if (paused_) {
      paused_ = false;
      curl_easy_pause(lane_->easy, CURLPAUSE_CONT);  // may deliver at once
      continue;
    }
    Status s = pump(op);
    if (!s.ok()) {
      target_ = {};
      return s.error();
    }
  }
  n += filled_;
  target_ = {};
  if (done_ && result_ != CURLE_OK) return failure(op);
  return n;
}

Result<std::string> Exchange::read_all(std::size_t max, std::string_view op) {
  std::string out;
  std::array<std::byte, 64 << 10> buf{};
  for (;;) {
    XFER_ASSIGN_OR_RETURN(std::size_t n, read(buf, op));
    if (n == 0) return out;
    if (out.size() + n > max) {
      return make_error(ErrorCode::kCorrupt, op, url_,
                        fmt::format("answer longer than {} KiB", max >> 10));
    }
    out.append(reinterpret_cast<const char*>(buf.data()), n);
  }
}

std::unique_ptr<Lane> Exchange::take_lane() {
  if (!done_ || result_ != CURLE_OK || spill_pos_ < spill_.size()) return nullptr;
  if (attached_) curl_multi_remove_handle(lane_->multi, lane_->easy);
  attached_ = false;
  return std::move(lane_);
}

std::size_t Exchange::on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  const std::size_t len = size * n;
  x->header_bytes_ += len;
  x->window_bytes_ += len;
  if (x->header_bytes_ > kMaxHeaderBytes) return 0;  // fails the transfer
  x->last_progress_ = Clock::now();
  const std::string_view line(data, len);
  if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after a redirect, or a 100): its headers only.
    x->response_ = Response{};
    return len;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return len;
  std::string name = lower(trim(line.substr(0, colon)));
  std::string value = trim(line.substr(colon + 1));
  Response& r = x->response_;
  if (name == "content-type") r.content_type = value;
  if (name == "etag") r.etag = value;
  if (name == "last-modified") r.last_modified = value;
  if (name == "content-range") r.content_range = value;
  if (name == "accept-ranges") r.accept_ranges = value;
  if (name == "retry-after") r.retry_after = value;
  r.headers.emplace_back(std::move(name), std::move(value));
  return len;
}

// Takes a callback's bytes into the reader's buffer, the overflow (one
// callback's worth at most) into the spill; while the spill holds
// bytes, libcurl is paused (it keeps what it offered and offers it
// again on CURLPAUSE_CONT).
std::size_t Exchange::on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  const std::size_t len = size * n;
  x->got_body_ = true;
  x->last_progress_ = Clock::now();
  if (x->spill_pos_ < x->spill_.size()) {
    x->paused_ = true;
    return CURL_WRITEFUNC_PAUSE;
  }
  x->window_bytes_ += len;
  const std::size_t take = std::min(x->target_.size() - x->filled_, len);
  if (take > 0) std::memcpy(x->target_.data() + x->filled_, data, take);
  x->filled_ += take;
  if (take < len) {
    x->spill_.assign(data + take, len - take);
    x->spill_pos_ = 0;
  }
  return len;
}

// Gives libcurl what send() offers; pauses it while nothing is offered
// (the caller's next send() resumes it). libcurl asks no more once it has
// INFILESIZE bytes.
std::size_t Exchange::on_upload(char* data, std::size_t size, std::size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  const std::size_t room = size * n;
  if (x->upload_.empty()) {
    x->upload_paused_ = true;
    return CURL_READFUNC_PAUSE;
  }
  const std::size_t take = std::min(room, x->upload_.size());
  std::memcpy(data, x->upload_.data(), take);
  x->upload_ = x->upload_.subspan(take);
  x->window_bytes_ += take;
  x->last_progress_ = Clock::now();
  return take;
}

std::size_t Exchange::take_spill(std::span<std::byte> buf) {
  const std::size_t n = std::min(buf.size(), spill_.size() - spill_pos_);
  if (n > 0) std::memcpy(buf.data(), spill_.data() + spill_pos_, n);
  spill_pos_ += n;
  if (spill_pos_ >= spill_.size()) {
    spill_.clear();
    spill_pos_ = 0;
  }
  return n;
}

Status Exchange::pump(std::string_view op) {
  if (cancel_ != nullptr && cancel_->load(std::memory_order_relaxed)) {
    return make_error(ErrorCode::kCancelled, op, url_, "");
  }
  int running = 0;
  const auto before = last_progress_;
  curl_multi_perform(lane_->multi, &running);
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(lane_->multi, &left)) {
    if (m->msg == CURLMSG_DONE) {
      done_ = true;
      result_ = m->data.result;
    }
  }
  const auto now = Clock::now();
  if (now - window_start_ >= kStallTimeout) {
    // While a caller waits: at least kMinWindowBytes a window, so a
    // server trickling a byte a minute cannot hold a worker for ever.
    if (window_bytes_ < kMinWindowBytes) {
      return make_error(
          ErrorCode::kUnavailable, op, url_,
          fmt::format("the server moved {} bytes in {} s", window_bytes_,
                      std::chrono::duration_cast<std::chrono::seconds>(kStallTimeout).count()),
          RetryClass::kRetryCall);
    }
    window_start_ = now;
    window_bytes_ = 0;
  }
  if (done_ || paused_ || upload_paused_ || last_progress_ != before) return ok_status();
  if (now - last_progress_ > kStallTimeout) {
    return make_error(
        ErrorCode::kUnavailable, op, url_,
        fmt::format("the server sent nothing for {} s",
                    std::chrono::duration_cast<std::chrono::seconds>(kStallTimeout).count()),
        RetryClass::kRetryCall);
  }
  curl_multi_poll(lane_->multi, nullptr, 0, 100, nullptr);
  return ok_status();
}

void Exchange::fill_response() {
  long status = 0;
  curl_easy_getinfo(lane_->easy, CURLINFO_RESPONSE_CODE, &status);
  response_.status = status;
  curl_off_t length = -1;
  if (curl_easy_getinfo(lane_->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK &&
      length >= 0) {
    response_.content_length = static_cast<std::uint64_t>(length);
  }
  char* effective = nullptr;
  curl_easy_getinfo(lane_->easy, CURLINFO_EFFECTIVE_URL, &effective);
  response_.effective_url = effective != nullptr ? effective : url_;
  // A new connection's TCP handshake is one round trip: the smallest
  // seen is the path's (Backend::link_estimate; the planner sizes
  // chunks and their parallelism from it).
  long connects = 0;
  curl_off_t connected = 0;
  curl_off_t resolved = 0;
  if (min_rtt_us_ != nullptr &&
      curl_easy_getinfo(lane_->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK &&
      connects > 0 &&
      curl_easy_getinfo(lane_->easy, CURLINFO_CONNECT_TIME_T, &connected) == CURLE_OK &&
      curl_easy_getinfo(lane_->easy, CURLINFO_NAMELOOKUP_TIME_T, &resolved) == CURLE_OK &&
      connected > resolved) {
    const auto rtt = static_cast<std::uint64_t>(connected - resolved);
    std::uint64_t seen = min_rtt_us_->load();
    while (rtt < seen && !min_rtt_us_->compare_exchange_weak(seen, rtt)) {
    }
  }
}

LanePool::LanePool(const ExchangeConfig& cfg) : cfg_(cfg) {
  global_init();
  share_ = curl_share_init();
  curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &LanePool::lock);
  curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &LanePool::unlock);
  curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

LanePool::~LanePool() {
  idle_.clear();
  curl_share_cleanup(share_);
}

void LanePool::lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
  static_cast<LanePool*>(user)->share_mu_[static_cast<std::size_t>(data) % kLocks].lock();
}

void LanePool::unlock(CURL*, curl_lock_data data, void* user) {
  static_cast<LanePool*>(user)->share_mu_[static_cast<std::size_t>(data) % kLocks].unlock();
}

std::unique_ptr<Exchange> LanePool::exchange() {
  std::unique_ptr<Lane> lane;
  {
    std::lock_guard lock(lanes_mu_);
    if (!idle_.empty()) {
      lane = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!lane) lane = std::make_unique<Lane>();
  return std::make_unique<Exchange>(cfg_, share_, std::move(lane), &cancelled_, &min_rtt_us_);
}

void LanePool::done_with(std::unique_ptr<Exchange> x) {
  if (!x) return;
  std::unique_ptr<Lane> lane = x->take_lane();
  x.reset();
  if (!lane) return;
  std::lock_guard lock(lanes_mu_);
  if (idle_.size() < kMaxIdleLanes) idle_.push_back(std::move(lane));
}

double LanePool::rtt_ms() const {
  const std::uint64_t us = min_rtt_us_.load();
  return us == UINT64_MAX ? 0.0 : static_cast<double>(us) / 1000.0;
}

}  // namespace xfer::http
