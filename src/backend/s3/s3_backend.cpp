// The s3 backend (include/xfer/backend/s3.hpp, docs/s3.md).
//
// Owns: a pool of Lanes (http/exchange.hpp: one kept-alive connection
// each), a share handle for DNS answers and TLS sessions, the Sources and
// Sinks it opens. Every request is signed with SigV4 (sign.hpp).
//
// Threading: the backend is shared by every worker; a Lane and the
// Exchange on it belong to one thread at a time. A Sink's parts are each
// written by one worker (whole_parts), parts concurrently: the part table
// is under the sink's mutex, a part's exchange is its writer's alone.

#include "xfer/backend/s3.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "backend/http/exchange.hpp"
#include "backend/http/index.hpp"
#include "backend/s3/sign.hpp"
#include "backend/s3/xml.hpp"
#include "xfer/checkpoint/records.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"

#ifndef XFER_VERSION
#define XFER_VERSION "dev"
#endif

namespace xfer {
namespace {

using http::Exchange;
using http::Response;

constexpr std::size_t kMaxAnswer = 16u << 20;  // an XML answer (a listing page)
constexpr std::size_t kMaxKey = 1024;          // S3's limit on a key, in bytes
constexpr std::uint64_t kMaxObject = 5ull << 40;
constexpr std::uint64_t kMaxSinglePut = 5ull << 30;
constexpr std::uint64_t kMaxListed = 100'000'000;  // entries in one listing
constexpr std::size_t kMaxIdleStreams = 32;        // per Source
// rclone's metadata key for the modification time: the two tools read
// each other's mtimes (seconds since the epoch, with a fraction).
constexpr const char* kMtimeHeader = "x-amz-meta-mtime";
constexpr int kThrottleTries = 5;  // a call answered 429/503, made again up to 4 times

// Retry-After as delta-seconds (0 to a day) in ms; 0 for anything else (an
// HTTP date is not believed: the clocks need not agree).
std::int64_t retry_after_ms(std::string_view v) {
  if (v.empty() || v.size() > 5 ||
      !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return 0;
  }
  const std::int64_t s = std::strtoll(std::string(v).c_str(), nullptr, 10);
  return s <= 86'400 ? s * 1000 : 0;
}

struct Config {
  std::string scheme;  // "http" or "https"
  std::string host;    // host[:port] of the endpoint
  std::string bucket;
  bool path_style = true;
  s3::Credentials credentials;
  http::ExchangeConfig exchange;
  std::string describe;
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "1700000000.123456789" (rclone writes it so) -> ns; nullopt when it is not a time.
std::optional<std::int64_t> parse_mtime(std::string_view v) {
  if (v.empty() || v.size() > 40) return std::nullopt;
  std::int64_t secs = 0;
  std::size_t i = 0;
  bool neg = false;
  if (v[0] == '-') {
    neg = true;
    ++i;
  }
  std::size_t digits = 0;
  for (; i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])) != 0; ++i, ++digits) {
    if (digits >= 12) return std::nullopt;
    secs = secs * 10 + (v[i] - '0');
  }
  if (digits == 0) return std::nullopt;
  std::int64_t frac = 0;
  if (i < v.size() && v[i] == '.') {
    ++i;
    std::int64_t scale = 100'000'000;
    for (; i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])) != 0; ++i) {
      frac += (v[i] - '0') * scale;
      scale /= 10;
    }
  }
  if (i != v.size()) return std::nullopt;
  const std::int64_t ns = secs * 1'000'000'000 + frac;
  return neg ? -ns : ns;
}

std::string format_mtime(std::int64_t ns) {
  const std::int64_t s = ns >= 0 ? ns / 1'000'000'000 : -((-ns + 999'999'999) / 1'000'000'000);
  return fmt::format("{}.{:09}", s, ns - s * 1'000'000'000);
}

// S3's ISO times in listings: "2024-01-02T03:04:05.000Z".
std::optional<std::int64_t> parse_iso(std::string_view v) {
  std::tm tm{};
  int ms = 0;
  std::string s(v.substr(0, 40));
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6) {
    return std::nullopt;
  }
  if (s.size() > 20 && s[19] == '.') ms = std::atoi(s.c_str() + 20);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  const std::time_t t = ::timegm(&tm);
  return static_cast<std::int64_t>(t) * 1'000'000'000 + static_cast<std::int64_t>(ms) * 1'000'000;
}

std::string content_type_of(std::string_view key) {
  static const std::map<std::string, std::string, std::less<>> kTypes = {
      {"txt", "text/plain"},        {"html", "text/html"},
      {"htm", "text/html"},         {"css", "text/css"},
      {"js", "text/javascript"},    {"json", "application/json"},
      {"xml", "application/xml"},   {"csv", "text/csv"},
      {"png", "image/png"},         {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},       {"gif", "image/gif"},
      {"svg", "image/svg+xml"},     {"pdf", "application/pdf"},
      {"zip", "application/zip"},   {"gz", "application/gzip"},
      {"tar", "application/x-tar"}, {"zst", "application/zstd"},
      {"mp4", "video/mp4"},         {"mp3", "audio/mpeg"},
      {"wasm", "application/wasm"}, {"parquet", "application/vnd.apache.parquet"}};
  const auto slash = key.rfind('/');
  const auto dot = key.rfind('.');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
    return "application/octet-stream";
  }
  std::string ext(key.substr(dot + 1));
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto it = kTypes.find(ext);
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

// An ETag the server sent, fit to go back in a header (If-Match) and into
// CompleteMultipartUpload's XML: 1 to 1024 printable ASCII bytes.
bool usable_etag(std::string_view etag) {
  return !etag.empty() && etag.size() <= 1024 &&
         std::all_of(etag.begin(), etag.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string xml_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '&') {
      out += "&amp;";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

template <typename T>
Status status_of(Result<T> r) {
  if (!r) return std::move(r).error();
  return ok_status();
}

struct S3Error {
  std::string code;
  std::string message;
};

S3Error parse_error(std::string_view body) {
  S3Error e;
  (void)s3::parse_xml(body, "error", [&](const s3::XmlLeaf& l) {
    if (l.end) return ok_status();
    if (l.path == "Code") e.code = printable_name(l.text, 80);
    if (l.path == "Message") e.message = printable_name(l.text, 300);
    return ok_status();
  });
  return e;
}

// An answer other than 2xx, in words a user can act on.
Error status_error(const Response& r, std::string_view body, std::string_view op,
                   std::string_view what, const Config& cfg) {
  const S3Error e = parse_error(body);
  const std::string said = e.code.empty() ? fmt::format("HTTP {}", r.status)
                                          : fmt::format("HTTP {} {}", r.status, e.code);
  const std::string detail = e.message.empty() ? said : said + ": " + e.message;
  if (e.code == "NoSuchBucket") {
    return make_error(
        ErrorCode::kNotFound, op, what,
        fmt::format("no such bucket '{}' at {}", printable_name(cfg.bucket, 80), cfg.describe));
  }
  if (r.status == 404 || e.code == "NoSuchKey" || e.code == "NoSuchUpload") {
    return make_error(ErrorCode::kNotFound, op, what, e.code.empty() ? "" : detail);
  }
  if (e.code == "InvalidAccessKeyId" || e.code == "SignatureDoesNotMatch" ||
      e.code == "AccessDenied" || r.status == 403 || r.status == 401) {
    return make_error(
        ErrorCode::kPermission, op, what,
        fmt::format("{} (check access_key_id and secret_access_key: the remote, "
                    "$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY or ~/.aws/credentials)",
                    detail));
  }
  if (r.status == 412) {
    return make_error(ErrorCode::kChanged, op, what,
                      "the object was replaced on the server while it was copied",
                      RetryClass::kRetryFile);
  }
  if (r.status == 408 || r.status == 429 || r.status >= 500 || e.code == "SlowDown" ||
      e.code == "RequestTimeout") {
    const std::string after =
        r.retry_after.empty()
            ? ""
            : fmt::format(" (Retry-After: {})", printable_name(r.retry_after, 40));
    Error err =
        make_error(ErrorCode::kUnavailable, op, what, detail + after, RetryClass::kRetryCall);
    err.retry_after_ms = retry_after_ms(r.retry_after);
    return err;
  }
  return make_error(ErrorCode::kIo, op, what, detail);
}

class S3Backend;

// One request: what to ask, before signing.
struct Call {
  std::string method = "GET";
  std::string key;  // decoded object key ("" for the bucket)
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> body;
  std::optional<std::uint64_t> upload_size;
  std::optional<std::pair<std::uint64_t, std::uint64_t>> range;
};

struct Answer {
  Response response;
  std::string body;
};

class S3Backend final : public Backend {
 public:
  explicit S3Backend(Config cfg) : cfg_(std::move(cfg)), pool_(cfg_.exchange) {
    caps_.network = true;
    caps_.mtime = true;
    caps_.mtime_granularity_ns = 1;  // x-amz-meta-mtime keeps nanoseconds
    caps_.whole_parts = true;
    caps_.directories = false;
    caps_.parallel_writers = true;
    caps_.resume = true;
    caps_.server_side_copy = false;
    caps_.min_part_size = kS3MinPart;
    caps_.max_parts = kS3MaxParts;
    caps_.preferred_chunk_size = 16ull << 20;
    caps_.max_concurrency = 32;
  }

  const Capabilities& capabilities() const override { return caps_; }
  LinkEstimate link_estimate() const override { return {pool_.rtt_ms(), 0.0}; }
  std::string describe() const override { return cfg_.describe; }
  void cancel() override { pool_.cancel(); }

  Result<FileAttrs> stat(std::string_view path) override;
  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override;
  // No folders in an object store: a folder is the prefix of its objects.
  Status mkdir(std::string_view path, bool) override {
    XFER_TRY(key_of(path, "mkdir"));
    return ok_status();
  }
  Status remove(std::string_view path, bool recursive) override;
  Status rename(std::string_view from, std::string_view to) override {
    (void)to;
    return make_error(ErrorCode::kCrossDevice, "rename", from,
                      "objects cannot be renamed atomically (a copy and a delete instead)");
  }
  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override;
  Status symlink(std::string_view, std::string_view path, const FileAttrs&) override {
    return make_error(ErrorCode::kUnsupported, "symlink", path, "object stores have no symlinks");
  }
  Status set_attrs(std::string_view path, const FileAttrs& attrs) override;
  Result<std::unique_ptr<Source>> open_source(std::string_view path) override;
  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override;

  // The decoded key of an engine path ("/a/b" -> "a/b"), checked.
  Result<std::string> key_of(std::string_view path, std::string_view op) const {
    while (!path.empty() && path.front() == '/') path.remove_prefix(1);
    std::string key(path);
    if (key.size() > kMaxKey) {
      return make_error(ErrorCode::kInvalidArgument, op, path,
                        fmt::format("an object key is at most {} bytes", kMaxKey));
    }
    if (key.find('\0') != std::string::npos) {
      return make_error(ErrorCode::kInvalidArgument, op, path, "a key holds no NUL byte");
    }
    return key;
  }

  // Starts `call` on a pooled connection, signed.
  Result<std::unique_ptr<Exchange>> start(const Call& call) {
    const std::string encoded_key = s3::uri_encode(call.key, true);
    std::string host = cfg_.host;
    std::string path;
    if (cfg_.path_style) {
      path = "/" + s3::uri_encode(cfg_.bucket, false) + "/" + encoded_key;
    } else {
      host = cfg_.bucket + "." + cfg_.host;
      path = "/" + encoded_key;
    }
    s3::Request req;
    req.method = call.method;
    req.host = host;
    req.path = path;
    req.query = call.query;
    req.headers = call.headers;
    if (call.range) {
      req.headers.emplace_back("Range",
                               fmt::format("bytes={}-{}", call.range->first, call.range->second));
    }
    req.payload_hash =
        call.body ? s3::sha256_hex(std::string_view(*call.body)) : std::string("UNSIGNED-PAYLOAD");
    Exchange::Request x;
    x.url = fmt::format("{}://{}{}", cfg_.scheme, host, path);
    const std::string q = s3::canonical_query(call.query);
    if (!q.empty()) x.url += "?" + q;
    x.method = call.method == "GET" ? "" : call.method;
    x.head = call.method == "HEAD";
    if (x.head) x.method.clear();
    for (const auto& [k, v] : req.headers) x.headers.push_back(k + ": " + v);
    for (std::string& h : s3::sign_v4(req, cfg_.credentials, std::time(nullptr))) {
      x.headers.push_back(std::move(h));
    }
    x.body = call.body;
    x.upload_size = call.upload_size;
    auto ex = exchange();
    XFER_TRY(ex->start(x));
    return ex;
  }

  // Runs `call` to its end; the body (at most kMaxAnswer) is kept. A
  // throttle (429, or 503 as SlowDown) says the server did nothing: it is
  // waited out and the call made again, kThrottleTries times in all. The
  // wait is the server's Retry-After (at most 20 s), else 250 ms doubling,
  // jittered. Parts streamed from the workers are not calls here: the
  // engine sends such a part again, after the Retry-After too.
  Result<Answer> run(const Call& call, std::string_view op) {
    for (int attempt = 1;; ++attempt) {
      XFER_ASSIGN_OR_RETURN(auto x, start(call));
      XFER_TRY(x->wait_headers(op));
      Answer a;
      a.response = x->response();
      XFER_ASSIGN_OR_RETURN(a.body, x->read_all(kMaxAnswer, op));
      done_with(std::move(x));
      const int st = a.response.status;
      if ((st != 429 && st != 503) || attempt == kThrottleTries || pool_.cancelled()) return a;
      std::int64_t wait_ms = std::min<std::int64_t>(retry_after_ms(a.response.retry_after), 20'000);
      if (wait_ms == 0) {
        thread_local std::mt19937_64 rng{std::random_device{}()};
        wait_ms = std::uniform_int_distribution<std::int64_t>(125, 250 << (attempt - 1))(rng);
      }
      log().debug("{}: {} {} answered {}; again in {} ms", cfg_.describe, call.method,
                  printable_name(call.key, 200), st, wait_ms);
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
      while (std::chrono::steady_clock::now() < until && !pool_.cancelled()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }
  // run() and an error for any answer but 2xx.
  Result<Answer> run_ok(const Call& call, std::string_view op, std::string_view what) {
    XFER_ASSIGN_OR_RETURN(Answer a, run(call, op));
    if (a.response.status / 100 != 2) return status_error(a.response, a.body, op, what, cfg_);
    return a;
  }

  std::unique_ptr<Exchange> exchange() { return pool_.exchange(); }
  void done_with(std::unique_ptr<Exchange> x) { pool_.done_with(std::move(x)); }
  const Config& config() const { return cfg_; }

  // Attributes of an object from its HEAD answer; kCorrupt without a size,
  // or with one past S3's 5 TiB (nothing is sized from a lie).
  static Result<FileAttrs> object_attrs(const Response& r, std::string_view path) {
    if (!r.content_length || *r.content_length > kMaxObject) {
      return make_error(ErrorCode::kCorrupt, "stat", path,
                        "the server gives the object no size, or one over 5 TiB");
    }
    FileAttrs a;
    a.type = EntryType::kFile;
    a.mode = 0644;
    a.size = *r.content_length;
    a.mtime_ns = parse_mtime(r.header(kMtimeHeader))
                     .value_or(http::parse_http_date(r.last_modified).value_or(now_ns()));
    return a;
  }

  // Lists keys below `prefix` page by page; `each` gets every object
  // (key, size, mtime from LastModified) and, with a delimiter, every
  // common prefix (size = UINT64_MAX).
  Status list_keys(
      const std::string& prefix, bool delimited, std::size_t max_keys,
      const std::function<Status(std::string_view, std::uint64_t, std::int64_t)>& each);

 private:
  // A one-key listing: an error that names the bucket when it is missing.
  Status bucket_exists(std::string_view path) {
    Call c;
    c.query = {{"list-type", "2"}, {"max-keys", "1"}};
    return status_of(run_ok(c, "stat", path));
  }
  Status copy_in_place(const std::string& key, std::int64_t mtime_ns, std::string_view op);

  Config cfg_;
  Capabilities caps_;
  http::LanePool pool_;  // after cfg_: it keeps a reference to cfg_.exchange
};

Status S3Backend::list_keys(
    const std::string& prefix, bool delimited, std::size_t max_keys,
    const std::function<Status(std::string_view, std::uint64_t, std::int64_t)>& each) {
  std::string token;
  std::uint64_t listed = 0;
  for (;;) {
    Call c;
    c.query = {{"list-type", "2"}, {"prefix", prefix}, {"max-keys", std::to_string(max_keys)}};
    if (delimited) c.query.emplace_back("delimiter", "/");
    if (!token.empty()) c.query.emplace_back("continuation-token", token);
    XFER_ASSIGN_OR_RETURN(Answer a, run_ok(c, "list", "/" + prefix));
    std::string key, next;
    std::uint64_t size = 0;
    std::int64_t mtime = 0;
    bool truncated = false;
    std::uint64_t on_page = 0;
    Status parsed = s3::parse_xml(a.body, "list", [&](const s3::XmlLeaf& l) -> Status {
      if (l.end) {
        if (l.path == "Contents" || l.path == "CommonPrefixes") {
          if (++listed > kMaxListed) {
            return make_error(ErrorCode::kCorrupt, "list", "/" + prefix,
                              fmt::format("more than {} entries", kMaxListed));
          }
          ++on_page;
          XFER_TRY(each(key, l.path == "Contents" ? size : UINT64_MAX, mtime));
          key.clear();
          size = 0;
          mtime = 0;
        }
        return ok_status();
      }
      if (l.path == "Contents/Key" || l.path == "CommonPrefixes/Prefix") key = l.text;
      if (l.path == "Contents/Size") size = std::strtoull(std::string(l.text).c_str(), nullptr, 10);
      if (l.path == "Contents/LastModified") mtime = parse_iso(l.text).value_or(0);
      if (l.path == "IsTruncated") truncated = l.text == "true";
      if (l.path == "NextContinuationToken") next = l.text;
      return ok_status();
    });
    XFER_TRY(parsed);
    if (!truncated) return ok_status();
    if (next.empty() || next == token || on_page == 0) {
      return make_error(ErrorCode::kCorrupt, "list", "/" + prefix,
                        "the server says the listing goes on but gives no way to go on");
    }
    token = std::move(next);
  }
}

Result<FileAttrs> S3Backend::stat(std::string_view path) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "stat"));
  FileAttrs dir;
  dir.type = EntryType::kDirectory;
  dir.mode = 0755;
  dir.mtime_ns = now_ns();
  while (!key.empty() && key.back() == '/') key.pop_back();
  if (key.empty()) {
    XFER_TRY(bucket_exists(path));  // the bucket itself
    return dir;
  }
  Call head;
  head.method = "HEAD";
  head.key = key;
  XFER_ASSIGN_OR_RETURN(Answer a, run(head, "stat"));
  if (a.response.status / 100 == 2) return object_attrs(a.response, path);
  if (a.response.status != 404) return status_error(a.response, a.body, "stat", path, cfg_);
  bool any = false;
  Status listed = list_keys(key + "/", true, 1, [&](std::string_view, std::uint64_t, std::int64_t) {
    any = true;
    return make_error(ErrorCode::kCancelled, "list", "");  // one is enough
  });
  if (!any && !listed.ok()) return listed.error();
  if (any) return dir;
  // A bucket that is not there says so (a HEAD answers 404 without a body).
  XFER_TRY(bucket_exists(path));
  return make_error(ErrorCode::kNotFound, "stat", path, "");
}

Status S3Backend::list(std::string_view path, const ListOptions& options, const EntrySink& sink) {
  (void)options;  // sizes and times come with the listing
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "list"));
  while (!key.empty() && key.back() == '/') key.pop_back();
  const std::string prefix = key.empty() ? "" : key + "/";
  bool any = false;
  Status s = list_keys(prefix, true, 1000,
                       [&](std::string_view k, std::uint64_t size, std::int64_t mtime) -> Status {
                         any = true;
                         if (k.size() < prefix.size() || k.substr(0, prefix.size()) != prefix)
                           return ok_status();
                         std::string_view name = k.substr(prefix.size());
                         const bool folder = size == UINT64_MAX;
                         if (folder && !name.empty() && name.back() == '/') name.remove_suffix(1);
                         if (name.empty()) return ok_status();  // the folder's own marker ("dir/")
                         if (!validate_name_component(name, "key").ok()) {
                           log().warn("{}: skipping key '{}': not a name a file system can hold",
                                      cfg_.describe, printable_name(k, 200));
                           return ok_status();
                         }
                         Entry e;
                         e.name = std::string(name);
                         e.type = folder ? EntryType::kDirectory : EntryType::kFile;
                         FileAttrs a;
                         a.type = e.type;
                         a.mode = folder ? 0755 : 0644;
                         a.size = folder ? 0 : size;
                         a.mtime_ns = mtime;
                         if (!folder) e.attrs = a;
                         return sink(std::move(e));
                       });
  XFER_TRY(s);
  if (!any && !key.empty()) {
    // Nothing below: a folder that does not exist, or an object.
    auto st = stat(path);
    if (!st) return st.error();
    if (st->type != EntryType::kDirectory) {
      return make_error(ErrorCode::kNotDirectory, "list", path, "");
    }
  }
  return ok_status();
}

Status S3Backend::remove(std::string_view path, bool recursive) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "remove"));
  while (!key.empty() && key.back() == '/') key.pop_back();
  if (key.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "remove", path,
                      "the bucket itself is not removed");
  }
  Call head;
  head.method = "HEAD";
  head.key = key;
  XFER_ASSIGN_OR_RETURN(Answer a, run(head, "remove"));
  if (a.response.status / 100 == 2) {
    Call del;
    del.method = "DELETE";
    del.key = key;
    return status_of(run_ok(del, "remove", path));
  }
  if (a.response.status != 404) return status_error(a.response, a.body, "remove", path, cfg_);
  // A folder: its objects (all of them with `recursive`).
  std::vector<std::string> keys;
  Status s =
      list_keys(key + "/", false, 1000, [&](std::string_view k, std::uint64_t, std::int64_t) {
        keys.emplace_back(k);
        return ok_status();
      });
  XFER_TRY(s);
  if (keys.empty()) return make_error(ErrorCode::kNotFound, "remove", path, "");
  const bool only_marker = keys.size() == 1 && keys[0] == key + "/";
  if (!recursive && !only_marker) return make_error(ErrorCode::kNotEmpty, "remove", path, "");
  for (const std::string& k : keys) {
    Call del;
    del.method = "DELETE";
    del.key = k;
    XFER_TRY(run_ok(del, "remove", "/" + k));
  }
  return ok_status();
}

Status S3Backend::copy_in_place(const std::string& key, std::int64_t mtime_ns,
                                std::string_view op) {
  Call c;
  c.method = "PUT";
  c.key = key;
  c.body = std::string();
  c.headers = {{"x-amz-copy-source",
                "/" + s3::uri_encode(cfg_.bucket, false) + "/" + s3::uri_encode(key, true)},
               {"x-amz-metadata-directive", "REPLACE"},
               {kMtimeHeader, format_mtime(mtime_ns)},
               {"Content-Type", content_type_of(key)}};
  XFER_ASSIGN_OR_RETURN(Answer a, run_ok(c, op, "/" + key));
  // A copy can fail after its 200 (the error is in the body).
  std::string root;
  if (!a.body.empty() &&
      s3::parse_xml(
          a.body, op, [](const s3::XmlLeaf&) { return ok_status(); }, &root)
          .ok() &&
      root == "Error") {
    a.response.status = 500;
    return status_error(a.response, a.body, op, "/" + key, cfg_);
  }
  return ok_status();
}

Status S3Backend::touch(std::string_view path, std::optional<std::int64_t> mtime_ns) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "touch"));
  const std::int64_t t = mtime_ns.value_or(now_ns());
  auto st = stat(path);
  if (st && st->type == EntryType::kDirectory) return ok_status();
  if (st) return copy_in_place(key, t, "touch");
  if (st.error().code != ErrorCode::kNotFound) return st.error();
  Call c;
  c.method = "PUT";
  c.key = key;
  c.body = std::string();
  c.headers = {{kMtimeHeader, format_mtime(t)}, {"Content-Type", content_type_of(key)}};
  return status_of(run_ok(c, "touch", path));
}

Status S3Backend::set_attrs(std::string_view path, const FileAttrs& attrs) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "set_attrs"));
  XFER_ASSIGN_OR_RETURN(FileAttrs now, stat(path));
  if (now.type == EntryType::kDirectory || now.mtime_ns == attrs.mtime_ns) return ok_status();
  return copy_in_place(key, attrs.mtime_ns, "set_attrs");
}

// ---------------------------------------------------------------------------
// Reading: ranged GETs with If-Match on the ETag seen at open.

class S3Source final : public Source {
 public:
  S3Source(S3Backend& b, std::string key, std::string path, FileAttrs attrs, std::string etag)
      : b_(b),
        key_(std::move(key)),
        path_(std::move(path)),
        attrs_(attrs),
        etag_(std::move(etag)) {}

  const FileAttrs& attrs() const override { return attrs_; }
  void will_read(Offset offset, Length length) override {
    std::lock_guard lock(mu_);
    if (hints_.size() >= 256) hints_.erase(hints_.begin());
    hints_.emplace_back(offset.get(), offset.get() + length.get());
  }
  Result<std::size_t> read_at(Offset offset, std::span<std::byte> buf) override {
    const std::uint64_t at = offset.get();
    if (at >= attrs_.size || buf.empty()) return std::size_t{0};
    const std::uint64_t want = std::min<std::uint64_t>(buf.size(), attrs_.size - at);
    Stream s;
    {
      std::lock_guard lock(mu_);
      for (auto it = idle_.begin(); it != idle_.end(); ++it) {
        if (it->pos == at) {
          s = std::move(*it);
          idle_.erase(it);
          break;
        }
      }
    }
    if (!s.x) {
      std::uint64_t end = at + want;
      {
        std::lock_guard lock(mu_);
        for (const auto& [b, e] : hints_) {
          if (b <= at && at < e) end = std::max(end, std::min(e, attrs_.size));
        }
      }
      Call c;
      c.key = key_;
      c.range = std::pair<std::uint64_t, std::uint64_t>{at, end - 1};
      if (!etag_.empty()) c.headers.emplace_back("If-Match", etag_);
      XFER_ASSIGN_OR_RETURN(s.x, b_.start(c));
      XFER_TRY(s.x->wait_headers("read"));
      const Response& r = s.x->response();
      if (r.status != 206 && !(r.status == 200 && at == 0 && end == attrs_.size)) {
        if (r.status / 100 == 2) {
          return make_error(ErrorCode::kCorrupt, "read", path_,
                            fmt::format("the server answered HTTP {} to a range", r.status));
        }
        auto body = s.x->read_all(64 << 10, "read");
        return status_error(r, body ? *body : "", "read", path_, b_.config());
      }
      // The bytes are the ones asked for, of the object opened: a 206 names
      // its range (Content-Range), a 200 is the whole object.
      const auto cr = http::parse_content_range(r.content_range);
      const bool range_ok = r.status == 200 || (cr && cr->first == at && cr->last == end - 1 &&
                                                cr->total == attrs_.size);
      if (!range_ok || !r.content_length || *r.content_length != end - at) {
        return make_error(ErrorCode::kCorrupt, "read", path_,
                          "the server's range is not the one asked for");
      }
      s.pos = at;
      s.end = end;
    }
    std::size_t got = 0;
    while (got < want) {
      XFER_ASSIGN_OR_RETURN(
          std::size_t n, s.x->read(buf.subspan(got, static_cast<std::size_t>(want - got)), "read"));
      if (n == 0) break;
      got += n;
    }
    if (got < want) {
      return make_error(ErrorCode::kUnavailable, "read", path_, "the server ended the range early",
                        RetryClass::kRetryCall);
    }
    s.pos += got;
    if (s.pos < s.end) {
      std::lock_guard lock(mu_);
      if (idle_.size() < kMaxIdleStreams) idle_.push_back(std::move(s));
    } else {
      std::array<std::byte, 1> rest{};
      auto n = s.x->read(rest, "read");  // the end of the body: the lane goes back
      if (n && *n == 0) b_.done_with(std::move(s.x));
    }
    return got;
  }
  Status check_unchanged() override {
    Call head;
    head.method = "HEAD";
    head.key = key_;
    XFER_ASSIGN_OR_RETURN(Answer a, b_.run(head, "check"));
    if (a.response.status / 100 != 2) {
      return status_error(a.response, a.body, "check", path_, b_.config());
    }
    // The ETag names the bytes; the mtime also changes with a touch.
    auto now = b_.object_attrs(a.response, path_);
    if (!now) return now.error();
    if (a.response.etag != etag_ || now->size != attrs_.size || now->mtime_ns != attrs_.mtime_ns) {
      return make_error(ErrorCode::kChanged, "check", path_,
                        "the object was replaced on the server while it was copied",
                        RetryClass::kRetryFile);
    }
    return ok_status();
  }

 private:
  struct Stream {
    std::unique_ptr<Exchange> x;
    std::uint64_t pos = 0;
    std::uint64_t end = 0;
  };
  S3Backend& b_;
  std::string key_;
  std::string path_;
  FileAttrs attrs_;
  std::string etag_;
  std::mutex mu_;
  std::vector<Stream> idle_;                                    // under mu_
  std::vector<std::pair<std::uint64_t, std::uint64_t>> hints_;  // under mu_
};

Result<std::unique_ptr<Source>> S3Backend::open_source(std::string_view path) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "open"));
  if (key.empty() || key.back() == '/') {
    return make_error(ErrorCode::kIsDirectory, "open", path, "");
  }
  Call head;
  head.method = "HEAD";
  head.key = key;
  XFER_ASSIGN_OR_RETURN(Answer a, run(head, "open"));
  if (a.response.status == 404) {
    auto st = stat(path);
    if (st && st->type == EntryType::kDirectory) {
      return make_error(ErrorCode::kIsDirectory, "open", path, "");
    }
  }
  if (a.response.status / 100 != 2) return status_error(a.response, a.body, "open", path, cfg_);
  XFER_ASSIGN_OR_RETURN(FileAttrs attrs, object_attrs(a.response, path));
  // Every ranged read sends the ETag back (If-Match).
  if (!usable_etag(a.response.etag)) {
    return make_error(ErrorCode::kCorrupt, "open", path,
                      "the server gives the object no ETag, or one that is not 1 to 1024 "
                      "printable characters");
  }
  return std::unique_ptr<Source>(
      std::make_unique<S3Source>(*this, key, std::string(path), attrs, a.response.etag));
}

// ---------------------------------------------------------------------------
// Writing: one streamed PUT for a file written whole; a multipart upload,
// one part per chunk, for a chunked one. Each part's MD5 is computed as it
// streams and checked against the ETag the server returns.

class Md5 {
 public:
  Md5() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_md5(), nullptr); }
  ~Md5() { EVP_MD_CTX_free(ctx_); }
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;
  void reset() { EVP_DigestInit_ex(ctx_, EVP_md5(), nullptr); }
  void update(std::span<const std::byte> d) { EVP_DigestUpdate(ctx_, d.data(), d.size()); }
  std::string hex() {
    std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_, md.data(), &len);
    return s3::hex({md.data(), len});
  }

 private:
  EVP_MD_CTX* ctx_;
};

// An ETag that is an MD5 ("\"hex32\""): what a part or a single PUT of
// unencrypted data gets; compared with the MD5 of what was sent.
bool etag_is_md5(std::string_view etag) {
  if (etag.size() == 34 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, 32);
  return etag.size() == 32 && std::all_of(etag.begin(), etag.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) != 0;
         });
}
std::string unquote(std::string_view etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
    etag = etag.substr(1, etag.size() - 2);
  }
  std::string out(etag);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class S3Sink final : public Sink {
 public:
  S3Sink(S3Backend& b, std::string key, std::string path, const SinkOptions& o)
      : b_(b), key_(std::move(key)), path_(std::move(path)), opt_(o) {
    multipart_ = o.parts > 1 || !o.resume_name.empty();
    part_size_ = o.part_size != 0 ? o.part_size : std::max<std::uint64_t>(o.size, 1);
    parts_ = o.parts != 0 ? o.parts : 1;
    table_.resize(static_cast<std::size_t>(parts_));
  }
  ~S3Sink() override {
    if (finished_) return;
    if (!opt_.resume_name.empty()) {
      (void)suspend();
    } else {
      (void)abort();
    }
  }

  // Begins (or, from the journal's note, takes up again) the upload.
  Status open() {
    if (!multipart_) return ok_status();
    if (opt_.resume_existing && !opt_.resume_note.empty()) {
      upload_id_ = opt_.resume_note;
      XFER_TRY(take_up());
      if (resumed_) return ok_status();
    }
    Call c;
    c.method = "POST";
    c.key = key_;
    c.query = {{"uploads", ""}};
    c.body = std::string();
    c.headers = metadata();
    XFER_ASSIGN_OR_RETURN(Answer a, b_.run_ok(c, "open_sink", path_));
    XFER_TRY(s3::parse_xml(a.body, "CreateMultipartUpload", [&](const s3::XmlLeaf& l) {
      if (!l.end && l.path == "UploadId") upload_id_ = l.text;
      return ok_status();
    }));
    if (upload_id_.empty() || upload_id_.size() > checkpoint::kMaxNote) {
      return make_error(ErrorCode::kCorrupt, "open_sink", path_,
                        "the server started a multipart upload without a usable UploadId");
    }
    return ok_status();
  }

  Status write_at(Offset offset, std::span<const std::byte> data) override {
    if (data.empty()) return ok_status();
    const std::uint64_t at = offset.get();
    const std::uint64_t index = at / part_size_;
    if (index >= parts_) {
      return make_error(ErrorCode::kInvalidArgument, "write_at", path_, "past the layout's end");
    }
    const std::uint64_t begin = index * part_size_;
    const std::uint64_t len = part_len(index);
    if (at + data.size() > begin + len) {
      return make_error(ErrorCode::kInvalidArgument, "write_at", path_,
                        "a write crosses the end of its part");
    }
    Part& p = table_[static_cast<std::size_t>(index)];
    if (at == begin) {
      // A part begins (or begins again after a failed attempt).
      p.x.reset();
      holding_ = false;
      {
        std::lock_guard lock(mu_);  // chunk_note() reads it
        p.etag.clear();
      }
      p.sent = 0;
      p.md5->reset();
      Call c;
      c.method = "PUT";
      c.key = key_;
      c.upload_size = len;
      if (multipart_) {
        c.query = {{"partNumber", std::to_string(index + 1)}, {"uploadId", upload_id_}};
      } else {
        c.headers = metadata();
      }
      XFER_ASSIGN_OR_RETURN(p.x, b_.start(c));
    } else if (!p.x || at != begin + p.sent) {
      return make_error(ErrorCode::kUnsupported, "write_at", path_,
                        "an object's part is written in order from its start");
    }
    // A single PUT keeps its last byte back until commit(): the server
    // publishes the object when the body ends, and an abort before the
    // commit must leave nothing (and the old object, if any).
    std::span<const std::byte> now = data;
    const bool last = p.sent + data.size() == len;
    if (last && !multipart_) {
      held_ = data.back();
      holding_ = true;
      now = data.first(data.size() - 1);
    }
    Status s = now.empty() ? ok_status() : p.x->send(now, "write");
    if (!s.ok()) return finish_part(p, index, s);
    p.md5->update(data);
    p.sent += data.size();
    if (last && multipart_) return finish_part(p, index, ok_status());
    return ok_status();
  }

  Status commit() override {
    if (!multipart_) {
      Part& p = table_[0];
      if (opt_.size == 0 && !p.x && p.etag.empty()) XFER_TRY(write_empty());
      if (holding_ && p.x) {
        holding_ = false;
        XFER_TRY(finish_part(p, 0, p.x->send({&held_, 1}, "write")));
      }
      if (p.etag.empty()) {
        return make_error(ErrorCode::kInternal, "commit", path_,
                          "the object was not written whole");
      }
      finished_ = true;
      return ok_status();
    }
    std::string xml = "<CompleteMultipartUpload>";
    {
      std::lock_guard lock(mu_);
      for (std::uint64_t i = 0; i < parts_; ++i) {
        const std::string& etag = table_[static_cast<std::size_t>(i)].etag;
        if (etag.empty()) {
          return make_error(ErrorCode::kInternal, "commit", path_,
                            fmt::format("part {} of {} was not written", i + 1, parts_));
        }
        xml += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", i + 1,
                           xml_escape(etag));
      }
    }
    xml += "</CompleteMultipartUpload>";
    Call c;
    c.method = "POST";
    c.key = key_;
    c.query = {{"uploadId", upload_id_}};
    c.body = std::move(xml);
    c.headers = {{"Content-Type", "application/xml"}};
    XFER_ASSIGN_OR_RETURN(Answer a, b_.run_ok(c, "commit", path_));
    std::string root;
    XFER_TRY(s3::parse_xml(
        a.body, "CompleteMultipartUpload", [](const s3::XmlLeaf&) { return ok_status(); }, &root));
    if (root == "Error") {
      a.response.status = 500;
      return status_error(a.response, a.body, "commit", path_, b_.config());
    }
    finished_ = true;
    return ok_status();
  }

  Status abort() override {
    if (finished_) return ok_status();
    finished_ = true;
    for (Part& p : table_) p.x.reset();
    if (!multipart_ || upload_id_.empty()) return ok_status();
    Call c;
    c.method = "DELETE";
    c.key = key_;
    c.query = {{"uploadId", upload_id_}};
    auto a = b_.run(c, "abort");
    if (!a) return a.error();
    if (a->response.status / 100 == 2 || a->response.status == 404) return ok_status();
    if (a->response.status == 405 || a->response.status == 501) {
      // Test servers without AbortMultipartUpload (s3rver): nothing more to do.
      return ok_status();
    }
    return status_error(a->response, a->body, "abort", path_, b_.config());
  }

  Status suspend() override {
    if (finished_) return ok_status();
    finished_ = true;
    for (Part& p : table_) p.x.reset();  // a part not whole is dropped by the server
    return ok_status();
  }

  bool resumed() const override { return resumed_; }
  std::string resume_note() const override { return multipart_ ? upload_id_ : std::string(); }
  std::string chunk_note(std::uint64_t chunk) const override {
    std::lock_guard lock(mu_);
    return chunk < table_.size() ? table_[static_cast<std::size_t>(chunk)].etag : std::string();
  }

 private:
  struct Part {
    std::unique_ptr<Exchange> x;
    std::uint64_t sent = 0;
    std::unique_ptr<Md5> md5 = std::make_unique<Md5>();
    std::string etag;  // once the server took the part whole
  };

  std::uint64_t part_len(std::uint64_t index) const {
    if (opt_.parts == 0) return opt_.size;
    const std::uint64_t begin = index * part_size_;
    return std::min(part_size_, opt_.size - begin);
  }

  std::vector<std::pair<std::string, std::string>> metadata() const {
    return {{kMtimeHeader, format_mtime(opt_.attrs.mtime_ns)},
            {"Content-Type", content_type_of(key_)}};
  }

  Status write_empty() {
    Call c;
    c.method = "PUT";
    c.key = key_;
    c.body = std::string();
    c.headers = metadata();
    XFER_ASSIGN_OR_RETURN(Answer a, b_.run_ok(c, "commit", path_));
    std::lock_guard lock(mu_);
    table_[0].etag = usable_etag(a.response.etag) ? a.response.etag : "\"\"";
    return ok_status();
  }

  // The part's request ends: its answer decides.
  Status finish_part(Part& p, std::uint64_t index, Status sent) {
    std::unique_ptr<Exchange> x = std::move(p.x);
    Status waited = x->wait_headers("write");
    if (!waited.ok()) return sent.ok() ? waited : sent;
    auto body = x->read_all(64 << 10, "write");
    const Response r = x->response();
    if (r.status / 100 != 2) {
      return status_error(r, body ? *body : "", "write", path_, b_.config());
    }
    if (!sent.ok()) return sent;
    if (!body) return body.error();
    b_.done_with(std::move(x));
    if (!usable_etag(r.etag)) {
      return make_error(ErrorCode::kCorrupt, "write", path_,
                        "the server answered without an ETag of 1 to 1024 printable characters");
    }
    const std::string md5 = p.md5->hex();
    if (etag_is_md5(r.etag) && unquote(r.etag) != md5) {
      return make_error(ErrorCode::kCorrupt, "write", path_,
                        fmt::format("part {}: the server stored other bytes than were sent "
                                    "(ETag {} is not their MD5 {})",
                                    index + 1, printable_name(r.etag, 80), md5),
                        RetryClass::kRetryCall);
    }
    std::lock_guard lock(mu_);
    p.etag = r.etag;
    return ok_status();
  }

  // Resuming: the journal's ETags are the parts done; ListParts, where the
  // server has it, confirms the upload is still there and each part's ETag.
  Status take_up() {
    for (std::uint64_t i = 0; i < parts_ && i < opt_.chunk_notes.size(); ++i) {
      table_[static_cast<std::size_t>(i)].etag = opt_.chunk_notes[static_cast<std::size_t>(i)];
    }
    Call c;
    c.key = key_;
    c.query = {{"uploadId", upload_id_}, {"max-parts", "1000"}};
    std::map<std::uint64_t, std::string> listed;
    std::string marker;
    for (int page = 0; page < 20; ++page) {
      if (!marker.empty()) c.query = {{"uploadId", upload_id_}, {"part-number-marker", marker}};
      XFER_ASSIGN_OR_RETURN(Answer a, b_.run(c, "resume"));
      if (a.response.status == 404) {
        // The upload is gone (completed, aborted, expired): start anew.
        for (Part& p : table_) p.etag.clear();
        upload_id_.clear();
        return ok_status();
      }
      if (a.response.status == 405 || a.response.status == 501) {
        resumed_ = true;  // no ListParts here: the journal alone
        return ok_status();
      }
      if (a.response.status / 100 != 2) {
        return status_error(a.response, a.body, "resume", path_, b_.config());
      }
      std::uint64_t number = 0;
      std::string etag, next;
      bool truncated = false;
      XFER_TRY(s3::parse_xml(a.body, "ListParts", [&](const s3::XmlLeaf& l) {
        if (l.end) {
          if (l.path == "Part" && number >= 1 && number <= kS3MaxParts) listed[number] = etag;
          return ok_status();
        }
        if (l.path == "Part/PartNumber")
          number = std::strtoull(std::string(l.text).c_str(), nullptr, 10);
        if (l.path == "Part/ETag") etag = std::string(l.text);
        if (l.path == "IsTruncated") truncated = l.text == "true";
        if (l.path == "NextPartNumberMarker") next = std::string(l.text);
        return ok_status();
      }));
      if (!truncated || next.empty() || next == marker) break;
      marker = next;
    }
    // A part the journal has but the server has not (or has other bytes
    // for) is sent again.
    for (std::uint64_t i = 0; i < parts_; ++i) {
      std::string& etag = table_[static_cast<std::size_t>(i)].etag;
      auto it = listed.find(i + 1);
      if (!etag.empty() && (it == listed.end() || unquote(it->second) != unquote(etag))) {
        etag.clear();
      }
    }
    resumed_ = true;
    return ok_status();
  }

  S3Backend& b_;
  std::string key_;
  std::string path_;
  SinkOptions opt_;
  bool multipart_ = false;
  std::uint64_t part_size_ = 0;
  std::uint64_t parts_ = 1;
  std::string upload_id_;
  bool resumed_ = false;
  bool finished_ = false;
  bool holding_ = false;  // a single PUT's last byte, held_, waits for commit()
  std::byte held_{};
  mutable std::mutex mu_;    // the ETags of table_
  std::vector<Part> table_;  // one per part; each Part's exchange is its writer's
};

Result<std::unique_ptr<Sink>> S3Backend::open_sink(std::string_view path, const SinkOptions& o) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "open_sink"));
  if (key.empty() || key.back() == '/')
    return make_error(ErrorCode::kIsDirectory, "open_sink", path, "");
  if (!o.attrs.size_known && o.parts == 0) {
    return make_error(ErrorCode::kUnsupported, "open_sink", path,
                      "an object store needs the size of what it is sent (a stream of unknown "
                      "length cannot go to s3:// yet)");
  }
  if (o.basis) {
    return make_error(ErrorCode::kUnsupported, "open_sink", path,
                      "an object cannot be rebuilt from its old version in place");
  }
  if (o.size > kMaxObject) {
    return make_error(ErrorCode::kInvalidArgument, "open_sink", path, "an object is at most 5 TiB");
  }
  if (o.parts <= 1 && o.resume_name.empty() && o.size > kMaxSinglePut) {
    return make_error(ErrorCode::kInvalidArgument, "open_sink", path,
                      "an object over 5 GiB must be sent in parts (a chunked copy)");
  }
  auto sink = std::make_unique<S3Sink>(*this, key, std::string(path), o);
  XFER_TRY(sink->open());
  return std::unique_ptr<Sink>(std::move(sink));
}

}  // namespace

Result<std::unique_ptr<Backend>> make_s3_backend(const Url& url, const Profile& profile,
                                                 const EndpointOptions& options) {
  Config cfg;
  cfg.bucket = url.host;
  if (cfg.bucket.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                      "an s3 URL names a bucket: s3://BUCKET/key");
  }
  cfg.credentials.access_key_id = profile.get("access_key_id");
  cfg.credentials.secret_access_key = profile.get("secret_access_key");
  cfg.credentials.session_token = profile.get("session_token");
  cfg.credentials.region = profile.get("region", "us-east-1");
  if (cfg.credentials.access_key_id.empty() || cfg.credentials.secret_access_key.empty()) {
    return make_error(ErrorCode::kPermission, "open endpoint", url.to_string(),
                      "no S3 credentials: set access_key_id and secret_access_key in a remote "
                      "(xfer remote add NAME s3 ...), $AWS_ACCESS_KEY_ID and "
                      "$AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials");
  }
  std::string endpoint = profile.get("endpoint");
  const bool aws = endpoint.empty();
  if (aws) endpoint = fmt::format("https://s3.{}.amazonaws.com", cfg.credentials.region);
  if (endpoint.find("://") == std::string::npos) endpoint = "https://" + endpoint;
  XFER_ASSIGN_OR_RETURN(Url e, parse_url(endpoint));
  if ((e.scheme != "http" && e.scheme != "https") || e.host.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", endpoint,
                      "the endpoint is an http:// or https:// URL");
  }
  cfg.scheme = e.scheme;
  const bool v6 = e.host.find(':') != std::string::npos;
  cfg.host = v6 ? "[" + e.host + "]" : e.host;
  if (e.port != 0) cfg.host += fmt::format(":{}", e.port);
  const std::string style = profile.get("path_style");
  // AWS addresses buckets by host name; other stores (MinIO, Ceph, test
  // servers) by path, as rclone does.
  cfg.path_style = style.empty() ? !aws : (style == "true" || style == "1" || style == "yes");
  cfg.describe = fmt::format("s3://{} at {}://{}", cfg.bucket, cfg.scheme, cfg.host);
  http::ExchangeConfig& x = cfg.exchange;
  x.https_only = cfg.scheme == "https";
  x.follow_redirects = false;  // a signed request is signed for its host
  x.ca = options.ca;
  x.insecure = options.insecure;
  x.user_agent = "xfer/" XFER_VERSION;
  x.server_name = "S3 server";
  return std::unique_ptr<Backend>(std::make_unique<S3Backend>(std::move(cfg)));
}

}  // namespace xfer
