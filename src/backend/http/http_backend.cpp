// The http(s) backend (include/xfer/backend/http.hpp, docs/http.md).
//
// Owns: a pool of Lanes (one libcurl easy handle driven by a multi handle
// of its own: one connection, kept alive between requests), a share handle
// for DNS answers and TLS sessions, and the Sources it opens.
//
// Threading: the backend is shared by every worker. A Lane, and the
// Exchange (one request) running on it, belong to one thread at a time:
// the thread that took it from the pool, or from a Source's idle streams,
// under that pool's mutex. Reads are pulled: the worker that reads drives
// its own transfer (curl_multi_perform / curl_multi_poll), and libcurl is
// paused while the caller's buffer is full, so no thread runs behind the
// reader and at most one callback's bytes wait in memory per stream.

#include "xfer/backend/http.hpp"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "backend/http/exchange.hpp"
#include "backend/http/index.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"

#ifndef XFER_VERSION
#define XFER_VERSION "dev"
#endif

namespace xfer {
namespace {

using http::Exchange;
using http::Response;

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// What open_source asks for first: a file this small arrives whole in the
// first answer and is kept in memory (one request per small file).
constexpr std::uint64_t kOpenWindow = 1u << 20;
constexpr std::size_t kMaxIdleStreams = 32;  // per Source
constexpr std::size_t kMaxHints = 256;       // per Source
constexpr unsigned kHeadThreads = 8;
// Listing bounds (a server's tree may loop): folders below the server's
// root, and folders one backend lists in all.
constexpr std::size_t kMaxFolderDepth = 64;
constexpr std::uint64_t kMaxFolders = 1'000'000;  // list(want_attrs) of an HTML page: HEADs at once

struct Config {
  std::string origin;  // "https://host:port", no '/' at the end
  std::string prefix;  // decoded path prefix of a remote's url ("" or "/pub")
  std::string describe;
  http::ExchangeConfig exchange;  // origin, credentials, TLS choices
};

Error status_error(const Response& r, std::string_view op, std::string_view url) {
  const long s = r.status;
  if (s == 404 || s == 410) return make_error(ErrorCode::kNotFound, op, url, "");
  if (s == 401) {
    return make_error(ErrorCode::kPermission, op, url,
                      "HTTP 401: the server wants credentials (user and password, or "
                      "bearer_token, in a remote of type http: docs/http.md)");
  }
  if (s == 403) return make_error(ErrorCode::kPermission, op, url, "HTTP 403 Forbidden");
  if (s == 408 || s == 429 || s >= 500) {
    const std::string after =
        r.retry_after.empty() ? "" : fmt::format(" (Retry-After: {})", r.retry_after.substr(0, 40));
    return make_error(ErrorCode::kUnavailable, op, url, fmt::format("HTTP {}{}", s, after),
                      RetryClass::kRetryCall);
  }
  return make_error(ErrorCode::kIo, op, url, fmt::format("unexpected HTTP status {}", s));
}

// The decoded path of an absolute URL ("https://h/a%20b/" -> "/a b/"), or
// "" when it does not parse.
std::string path_of_url(const std::string& url) {
  CURLU* u = curl_url();
  std::string out;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
    char* path = nullptr;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && path != nullptr) {
      out = http::percent_decode(path).value_or("");
      curl_free(path);
    }
  }
  curl_url_cleanup(u);
  return out;
}

class HttpBackend;

class HttpSource final : public Source {
 public:
  HttpSource(HttpBackend& backend, std::string path, std::string url, FileAttrs attrs,
             std::string validator, bool strong)
      : backend_(backend),
        path_(std::move(path)),
        url_(std::move(url)),
        attrs_(std::move(attrs)),
        validator_(std::move(validator)),
        strong_(strong) {}

  const FileAttrs& attrs() const override { return attrs_; }
  Result<std::size_t> read_at(Offset offset, std::span<std::byte> buf) override;
  Status check_unchanged() override;
  void will_read(Offset offset, Length length) override {
    std::lock_guard lock(mu_);
    if (hints_.size() >= kMaxHints) hints_.erase(hints_.begin());
    hints_.push_back({offset.get(), offset.get() + length.get()});
  }

  // Set up by open_source from its first answer.
  std::vector<std::byte> whole_;  // the file, when it arrived whole
  bool snapshot_ = false;
  // The file is the `size` bytes of the body of `x` (at most 1 MiB, as
  // the open asked): read them all now, one version, and give the
  // connection back.
  Status take_whole(std::unique_ptr<Exchange> x, std::uint64_t size);
  struct Stream {
    std::unique_ptr<Exchange> exchange;
    std::uint64_t pos = 0;
    std::uint64_t end = 0;  // UINT64_MAX: to the end of the body (no ranges)
  };
  void keep(Stream s) {
    std::lock_guard lock(mu_);
    if (idle_.size() < kMaxIdleStreams) idle_.push_back(std::move(s));
  }

 private:
  Result<Stream> open_stream(std::uint64_t offset, std::uint64_t want);
  // Reads from the stream positioned at `at` (opened when there is none)
  // up to the end of its range.
  Result<std::size_t> read_stream(std::uint64_t at, std::span<std::byte> buf);
  std::uint64_t hinted_end(std::uint64_t offset, std::uint64_t fallback) {
    std::lock_guard lock(mu_);
    for (const auto& [b, e] : hints_) {
      if (b <= offset && offset < e) return e;
    }
    return fallback;
  }

  HttpBackend& backend_;
  std::string path_;
  std::string url_;  // after redirects: the file's own URL
  FileAttrs attrs_;
  std::string validator_;  // If-Range: the strong ETag, else Last-Modified
  bool strong_ = false;
  std::mutex mu_;
  std::vector<Stream> idle_;                                    // under mu_
  std::vector<std::pair<std::uint64_t, std::uint64_t>> hints_;  // under mu_
};

Error read_only(std::string_view op, std::string_view path) {
  return make_error(ErrorCode::kUnsupported, op, path,
                    "HTTP endpoints are read-only (uploads over HTTP are not supported)");
}

class HttpBackend final : public Backend {
 public:
  explicit HttpBackend(Config cfg) : cfg_(std::move(cfg)), pool_(cfg_.exchange) {
    caps_.network = true;
    caps_.mtime = true;
    caps_.mtime_granularity_ns = 1'000'000'000;  // Last-Modified: seconds
    // Ranges of one file at once: one connection each. 16 at most, as
    // aria2c's -x16: enough for a long lossy path, polite to one server.
    caps_.max_concurrency = 16;
  }

  const Capabilities& capabilities() const override { return caps_; }
  LinkEstimate link_estimate() const override { return {pool_.rtt_ms(), 0.0}; }
  std::string describe() const override { return cfg_.describe; }
  void cancel() override { pool_.cancel(); }

  Result<FileAttrs> stat(std::string_view path) override;
  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override;
  Status mkdir(std::string_view path, bool) override { return read_only("mkdir", path); }
  Status remove(std::string_view path, bool) override { return read_only("remove", path); }
  Status rename(std::string_view from, std::string_view) override {
    return read_only("rename", from);
  }
  Status touch(std::string_view path, std::optional<std::int64_t>) override {
    return read_only("touch", path);
  }
  Status symlink(std::string_view, std::string_view path, const FileAttrs&) override {
    return read_only("symlink", path);
  }
  Status set_attrs(std::string_view path, const FileAttrs&) override {
    return read_only("set_attrs", path);
  }
  Result<std::unique_ptr<Source>> open_source(std::string_view path) override;
  Result<std::unique_ptr<Sink>> open_sink(std::string_view path, const SinkOptions&) override {
    return read_only("open_sink", path);
  }

  // A request on a pooled connection (or a new one).
  std::unique_ptr<Exchange> exchange() { return pool_.exchange(); }
  // An exchange whose body was read whole gives its connection back.
  void done_with(std::unique_ptr<Exchange> x) { pool_.done_with(std::move(x)); }
  std::string url_of(std::string_view path, bool folder) const {
    std::string p = cfg_.prefix + std::string(path);
    if (p.empty() || p.front() != '/') p.insert(p.begin(), '/');
    if (folder && p.back() != '/') p += '/';
    return cfg_.origin + http::percent_encode_path(p);
  }
  // The server path (prefix included) of `path`, decoded.
  std::string server_path(std::string_view path) const {
    std::string p = cfg_.prefix + std::string(path);
    if (p.empty() || p.front() != '/') p.insert(p.begin(), '/');
    return p;
  }
  // One request whose body is not wanted (HEAD), run to its end.
  Result<Response> head(const std::string& url, std::string_view op) {
    auto x = exchange();
    XFER_TRY(x->start({url, true, std::nullopt, {}}));
    XFER_TRY(x->wait_headers(op));
    std::array<std::byte, 4096> sink{};
    while (!x->ended()) {
      XFER_ASSIGN_OR_RETURN(std::size_t n, x->read(sink, op));
      if (n == 0) break;
    }
    Response r = x->response();
    done_with(std::move(x));
    return r;
  }

 private:
  Result<FileAttrs> attrs_of(std::string_view path, std::string_view op);

  Config cfg_;
  Capabilities caps_;
  http::LanePool pool_;  // after cfg_: it keeps a reference to cfg_.exchange
  std::atomic<std::uint64_t> folders_listed_{0};
  std::atomic<bool> looped_{false};  // a listing bound was passed

  friend class HttpSource;
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A folder: the answer came from a URL ending in '/' when the path asked
// for did not (nginx and Apache redirect "dir" to "dir/").
bool answered_as_folder(const Response& r, std::string_view asked_path) {
  const std::string final_path = path_of_url(r.effective_url);
  return !final_path.empty() && final_path.back() == '/' &&
         (asked_path.empty() || asked_path.back() != '/');
}

FileAttrs file_attrs_from(const Response& r, std::uint64_t size, bool size_known) {
  FileAttrs a;
  a.type = EntryType::kFile;
  a.mode = 0644;
  a.size = size_known ? size : 0;
  a.size_known = size_known;
  a.mtime_ns = http::parse_http_date(r.last_modified).value_or(now_ns());
  return a;
}

FileAttrs folder_attrs(std::optional<std::int64_t> mtime) {
  FileAttrs a;
  a.type = EntryType::kDirectory;
  a.mode = 0755;
  a.mtime_ns = mtime.value_or(now_ns());
  return a;
}

Result<FileAttrs> HttpBackend::attrs_of(std::string_view path, std::string_view op) {
  const std::string sp = server_path(path);
  if (sp.back() == '/') return folder_attrs(std::nullopt);
  const std::string url = url_of(path, false);
  XFER_ASSIGN_OR_RETURN(Response r, head(url, op));
  if (r.status == 405 || r.status == 501) {
    // No HEAD here: the first byte of a GET says the same.
    auto x = exchange();
    XFER_TRY(x->start({url, false, std::pair<std::uint64_t, std::uint64_t>{0, 0}, {}}));
    XFER_TRY(x->wait_headers(op));
    r = x->response();
  }
  if (r.status < 200 || r.status > 299) {
    if (r.status == 416) {
      // "bytes=0-0" of an empty file.
      return file_attrs_from(r, 0, true);
    }
    return status_error(r, op, url);
  }
  if (answered_as_folder(r, sp)) return folder_attrs(std::nullopt);
  if (r.status == 206) {
    auto cr = http::parse_content_range(r.content_range);
    if (!cr || !cr->total) {
      return make_error(
          ErrorCode::kCorrupt, op, url,
          fmt::format("malformed Content-Range \"{}\"", printable_name(r.content_range, 80)));
    }
    return file_attrs_from(r, *cr->total, true);
  }
  return file_attrs_from(r, r.content_length.value_or(0), r.content_length.has_value());
}

Result<FileAttrs> HttpBackend::stat(std::string_view path) {
  return attrs_of(path, "stat");
}

Status HttpBackend::list(std::string_view path, const ListOptions& options, const EntrySink& sink) {
  const std::string url = url_of(path, true);
  // A server's tree may loop (a symlink to a parent that nginx follows, a
  // page that lists itself under another name): the walk stops at a depth
  // and a count of folders no real tree reaches, with an error.
  // The first time is the error; after it every listing is refused as
  // cancelled, which ends the walk (one error, not one per folder left).
  if (looped_.load()) return make_error(ErrorCode::kCancelled, "list", url, "");
  const std::string sp = server_path(path);
  if (std::count(sp.begin(), sp.end(), '/') > static_cast<std::ptrdiff_t>(kMaxFolderDepth)) {
    looped_.store(true);
    return make_error(ErrorCode::kInvalidArgument, "list", url,
                      fmt::format("more than {} folders deep: a loop on the server? (docs/http.md)",
                                  kMaxFolderDepth));
  }
  auto x = exchange();
  XFER_TRY(x->start({url, false, std::nullopt, {}}));
  XFER_TRY(x->wait_headers("list"));
  const Response r = x->response();
  if (r.status < 200 || r.status > 299) return status_error(r, "list", url);
  http::IndexFormat format = http::IndexFormat::kHtml;
  std::string type = r.content_type;
  std::transform(type.begin(), type.end(), type.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (type.find("json") != std::string::npos) {
    format = http::IndexFormat::kJson;
  } else if (type.find("html") == std::string::npos) {
    return make_error(
        ErrorCode::kNotDirectory, "list", url,
        fmt::format("not an index page (Content-Type: {})", printable_name(r.content_type, 80)));
  }
  XFER_ASSIGN_OR_RETURN(std::string body, x->read_all(http::kMaxIndexBytes, "list"));
  done_with(std::move(x));
  std::string dir_path = path_of_url(r.effective_url);
  if (dir_path.empty()) dir_path = server_path(path) + "/";
  if (dir_path.back() != '/') dir_path += '/';
  XFER_ASSIGN_OR_RETURN(http::IndexPage page, http::parse_index(body, format, dir_path));
  body.clear();
  body.shrink_to_fit();
  if (page.skipped > 0) {
    log().debug("{}: {} links of the index page name no entry", url, page.skipped);
  }
  std::uint64_t folders = 0;
  for (const auto& e : page.entries) folders += e.type == EntryType::kDirectory ? 1 : 0;
  if (folders_listed_.fetch_add(folders) + folders > kMaxFolders) {
    looped_.store(true);
    return make_error(ErrorCode::kInvalidArgument, "list", url,
                      fmt::format("more than {} folders from one server: a loop on the server? "
                                  "(docs/http.md)",
                                  kMaxFolders));
  }
  std::vector<Entry> entries;
  entries.reserve(page.entries.size());
  for (auto& e : page.entries) {
    Entry out{std::move(e.name), e.type, std::nullopt};
    if (e.type == EntryType::kDirectory) {
      out.attrs = folder_attrs(e.mtime_ns ? e.mtime_ns : e.listed_mtime_ns);
    } else if (e.type == EntryType::kFile && e.size && e.mtime_ns) {
      FileAttrs a;
      a.type = EntryType::kFile;
      a.mode = 0644;
      a.size = *e.size;
      a.mtime_ns = *e.mtime_ns;
      out.attrs = a;
    }
    entries.push_back(std::move(out));
  }
  if (options.want_attrs) {
    // An HTML page says nothing exact of its files: a HEAD each, several
    // at once (a thread each, kHeadThreads at most).
    std::vector<std::size_t> need;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (!entries[i].attrs) need.push_back(i);
    }
    std::atomic<std::size_t> next{0};
    std::mutex err_mu;
    std::optional<Error> first_error;
    auto work = [&] {
      for (std::size_t k; (k = next.fetch_add(1)) < need.size();) {
        Entry& e = entries[need[k]];
        auto a = attrs_of(join_path(path, e.name), "list");
        if (a) {
          e.type = a->type;
          e.attrs = *a;
          continue;
        }
        if (a.error().code == ErrorCode::kNotFound) continue;  // gone since the page was made
        std::lock_guard lock(err_mu);
        if (!first_error) first_error = a.error();
        next.store(need.size());
      }
    };
    const unsigned threads =
        static_cast<unsigned>(std::min<std::size_t>(kHeadThreads, (need.size() + 7) / 8));
    std::vector<std::thread> pool;
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (first_error) return *first_error;
  }
  for (auto& e : entries) {
    if (options.want_attrs && !e.attrs) continue;  // vanished meanwhile
    XFER_TRY(sink(std::move(e)));
  }
  return ok_status();
}

Result<std::unique_ptr<Source>> HttpBackend::open_source(std::string_view path) {
  const std::string sp = server_path(path);
  const std::string url = url_of(path, false);
  auto x = exchange();
  XFER_TRY(x->start({url, false, std::pair<std::uint64_t, std::uint64_t>{0, kOpenWindow - 1}, {}}));
  XFER_TRY(x->wait_headers("open"));
  const Response r = x->response();
  if (r.status == 416) {
    // An empty file has no byte 0.
    auto cr = http::parse_content_range(r.content_range);
    if (cr && cr->total && *cr->total == 0) {
      auto src = std::make_unique<HttpSource>(*this, std::string(path), url,
                                              file_attrs_from(r, 0, true), "", false);
      src->snapshot_ = true;
      return std::unique_ptr<Source>(std::move(src));
    }
    return status_error(r, "open", url);
  }
  if (r.status != 200 && r.status != 206) return status_error(r, "open", url);
  if (answered_as_folder(r, sp)) return make_error(ErrorCode::kIsDirectory, "open", url, "");
  const std::string target = r.effective_url.empty() ? url : r.effective_url;
  const bool strong = http::is_strong_etag(r.etag);
  const std::string validator = strong ? r.etag : r.last_modified;
  if (r.status == 206) {
    auto cr = http::parse_content_range(r.content_range);
    // Exactly what was asked for, or less (the file is shorter, or the
    // server cuts ranges): never more, which would be read into memory.
    if (!cr || !cr->first || *cr->first != 0 || !cr->total || cr->last >= kOpenWindow ||
        (cr->last + 1 < kOpenWindow && cr->last + 1 != *cr->total && *cr->total <= kOpenWindow)) {
      return make_error(ErrorCode::kCorrupt, "open", url,
                        fmt::format("answered \"{}\" to bytes 0-{}",
                                    printable_name(r.content_range, 80), kOpenWindow - 1));
    }
    auto src = std::make_unique<HttpSource>(
        *this, std::string(path), target, file_attrs_from(r, *cr->total, true), validator, strong);
    HttpSource::Stream first{std::move(x), 0, cr->last + 1};
    if (*cr->total <= kOpenWindow && first.end == *cr->total) {
      // The whole file is in this answer: read it now, one version.
      XFER_TRY(src->take_whole(std::move(first.exchange), *cr->total));
    } else {
      if (validator.empty()) {
        log().warn(
            "{}: the server gives no ETag or Last-Modified: a change while it is copied "
            "cannot be detected",
            url);
      }
      src->keep(std::move(first));
    }
    return std::unique_ptr<Source>(std::move(src));
  }
  // 200: the server sends the whole file, ranges or not.
  if (r.content_length && *r.content_length <= kOpenWindow) {
    auto src = std::make_unique<HttpSource>(*this, std::string(path), target,
                                            file_attrs_from(r, *r.content_length, true), validator,
                                            strong);
    XFER_TRY(src->take_whole(std::move(x), *r.content_length));
    return std::unique_ptr<Source>(std::move(src));
  }
  // A server without ranges: the file is one stream, read in order by one
  // worker (its size counts as unknown, so nothing is planned in chunks;
  // libcurl still fails a body shorter than its Content-Length).
  auto src = std::make_unique<HttpSource>(*this, std::string(path), target,
                                          file_attrs_from(r, 0, false), validator, strong);
  src->keep({std::move(x), 0, UINT64_MAX});
  return std::unique_ptr<Source>(std::move(src));
}

Status HttpSource::take_whole(std::unique_ptr<Exchange> x, std::uint64_t size) {
  whole_.resize(static_cast<std::size_t>(size));
  std::size_t got = 0;
  while (got < whole_.size()) {
    XFER_ASSIGN_OR_RETURN(std::size_t n, x->read(std::span(whole_).subspan(got), "read"));
    if (n == 0) break;
    got += n;
  }
  if (got != whole_.size()) {
    return make_error(ErrorCode::kIo, "read", url_,
                      fmt::format("the answer ended after {} of {} bytes", got, whole_.size()),
                      RetryClass::kRetryCall);
  }
  std::array<std::byte, 1> more{};
  XFER_ASSIGN_OR_RETURN(std::size_t extra, x->read(more, "read"));
  if (extra != 0) {
    return make_error(ErrorCode::kCorrupt, "read", url_,
                      "more bytes than the answer's length said");
  }
  backend_.done_with(std::move(x));
  snapshot_ = true;
  return ok_status();
}

Result<HttpSource::Stream> HttpSource::open_stream(std::uint64_t offset, std::uint64_t want) {
  if (!attrs_.size_known && offset == 0) {
    // A server without ranges: a retry reads the whole file again, if it
    // is still the version opened.
    auto x = backend_.exchange();
    XFER_TRY(x->start({url_, false, std::nullopt, {}}));
    XFER_TRY(x->wait_headers("read"));
    const Response& r = x->response();
    if (r.status != 200) return status_error(r, "read", url_);
    if ((strong_ ? r.etag : r.last_modified) != validator_) {
      return make_error(ErrorCode::kChanged, "read", url_,
                        "changed on the server since it was opened", RetryClass::kRetryFile);
    }
    return Stream{std::move(x), 0, UINT64_MAX};
  }
  if (!attrs_.size_known) {
    return make_error(ErrorCode::kUnsupported, "read", url_,
                      fmt::format("the server sends this file only whole, in order (no "
                                  "ranges); asked for offset {}",
                                  offset));
  }
  const std::uint64_t end = std::min(attrs_.size, hinted_end(offset, offset + want));
  auto x = backend_.exchange();
  XFER_TRY(x->start(
      {url_, false, std::pair<std::uint64_t, std::uint64_t>{offset, end - 1}, validator_}));
  XFER_TRY(x->wait_headers("read"));
  const Response& r = x->response();
  auto changed = [&](std::string_view why) {
    return make_error(ErrorCode::kChanged, "read", url_,
                      fmt::format("changed on the server since it was opened ({})", why),
                      RetryClass::kRetryFile);
  };
  if (r.status == 200) return changed("a full answer to If-Range: another version");
  if (r.status == 416) return changed("the range is past its end now");
  if (r.status != 206) return status_error(r, "read", url_);
  auto cr = http::parse_content_range(r.content_range);
  // From the offset asked, as far as asked or less (a server may cut a
  // range short; the next read asks for the rest).
  if (!cr || !cr->first || *cr->first != offset || cr->last > end - 1) {
    return make_error(ErrorCode::kCorrupt, "read", url_,
                      fmt::format("answered \"{}\" to bytes {}-{}",
                                  printable_name(r.content_range, 80), offset, end - 1));
  }
  if (cr->total && *cr->total != attrs_.size) {
    return changed(fmt::format("{} bytes now, {} when opened", *cr->total, attrs_.size));
  }
  if (!validator_.empty() && strong_ && r.etag != validator_ && !r.etag.empty()) {
    return changed("another ETag");
  }
  return Stream{std::move(x), offset, cr->last + 1};
}

Result<std::size_t> HttpSource::read_at(Offset offset, std::span<std::byte> buf) {
  const std::uint64_t at = offset.get();
  if (snapshot_) {
    if (at >= whole_.size()) return std::size_t{0};
    const std::size_t n = std::min(buf.size(), whole_.size() - static_cast<std::size_t>(at));
    std::memcpy(buf.data(), whole_.data() + at, n);
    return n;
  }
  // Short only at the end of the file: a range that ends first (the one
  // the open asked for, a hint shorter than the read) is followed by the
  // next one.
  std::size_t n = 0;
  while (n < buf.size()) {
    const std::uint64_t pos = at + n;
    if (attrs_.size_known && pos >= attrs_.size) break;
    XFER_ASSIGN_OR_RETURN(std::size_t got, read_stream(pos, buf.subspan(n)));
    if (got == 0) break;  // the end of a stream of unknown size
    n += got;
  }
  return n;
}

Result<std::size_t> HttpSource::read_stream(std::uint64_t at, std::span<std::byte> buf) {
  std::optional<Stream> stream;
  {
    std::lock_guard lock(mu_);
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if (it->pos == at) {
        stream = std::move(*it);
        idle_.erase(it);
        break;
      }
    }
  }
  if (!stream) {
    XFER_ASSIGN_OR_RETURN(Stream opened, open_stream(at, buf.size()));
    stream = std::move(opened);
  }
  std::size_t n = 0;
  while (n < buf.size() && stream->pos < stream->end) {
    const std::uint64_t left = stream->end - stream->pos;
    auto part =
        buf.subspan(n, static_cast<std::size_t>(std::min<std::uint64_t>(buf.size() - n, left)));
    XFER_ASSIGN_OR_RETURN(std::size_t got, stream->exchange->read(part, "read"));
    if (got == 0) {
      if (stream->end == UINT64_MAX) {
        stream->end = stream->pos;  // a stream's end
        break;
      }
      return make_error(ErrorCode::kIo, "read", url_,
                        fmt::format("the answer ended at byte {} of the range {}-{}", stream->pos,
                                    at, stream->end - 1),
                        RetryClass::kRetryCall);
    }
    n += got;
    stream->pos += got;
  }
  if (stream->pos >= stream->end) {
    // The range is read: its answer must end here too (a body longer than
    // its Content-Range is an error, never extra bytes).
    if (stream->end != UINT64_MAX && !stream->exchange->ended()) {
      std::array<std::byte, 1> more{};
      XFER_ASSIGN_OR_RETURN(std::size_t extra, stream->exchange->read(more, "read"));
      if (extra != 0) {
        return make_error(ErrorCode::kCorrupt, "read", url_, "more bytes than the range asked");
      }
    }
    {
      std::lock_guard lock(mu_);
      std::erase_if(hints_, [&](const auto& h) { return h.second <= stream->end; });
    }
    backend_.done_with(std::move(stream->exchange));
  } else {
    keep(std::move(*stream));
  }
  return n;
}

Status HttpSource::check_unchanged() {
  // One answer holds one version; ranges were each checked against the
  // opened one by their strong ETag. Otherwise: ask again.
  if (snapshot_ || strong_ || !attrs_.size_known) return ok_status();
  XFER_ASSIGN_OR_RETURN(Response r, backend_.head(url_, "check"));
  if (r.status < 200 || r.status > 299) return status_error(r, "check", url_);
  if ((r.content_length && *r.content_length != attrs_.size) ||
      (!r.last_modified.empty() && r.last_modified != validator_)) {
    return make_error(ErrorCode::kChanged, "check", url_,
                      "changed on the server while it was copied", RetryClass::kRetryFile);
  }
  return ok_status();
}

}  // namespace

Result<std::unique_ptr<Backend>> make_http_backend(const Url& url, const Profile& profile,
                                                   const EndpointOptions& options) {
  Config cfg;
  Url base = url;
  if (const std::string from = profile.get("url"); !from.empty()) {
    XFER_ASSIGN_OR_RETURN(base, parse_url(from));
    if (base.scheme != "http" && base.scheme != "https") {
      return make_error(ErrorCode::kInvalidArgument, "open endpoint", from,
                        "the url of an http remote starts with http:// or https://");
    }
    cfg.prefix = base.path == "/" ? "" : base.path;
    while (!cfg.prefix.empty() && cfg.prefix.back() == '/') cfg.prefix.pop_back();
  }
  if (base.host.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                      "an http(s) URL names a host");
  }
  const bool https = base.scheme == "https";
  const bool v6 = base.host.find(':') != std::string::npos;
  const std::string host = v6 ? "[" + base.host + "]" : base.host;
  cfg.origin = fmt::format("{}://{}", base.scheme, host);
  if (base.port != 0) cfg.origin += fmt::format(":{}", base.port);
  cfg.describe = cfg.origin + cfg.prefix;
  http::ExchangeConfig& x = cfg.exchange;
  x.https_only = https;
  x.origin = cfg.origin;
  x.user = profile.get("user");
  x.password = profile.get("password");
  x.bearer = profile.get("bearer_token");
  x.ca = !options.ca.empty() ? options.ca : profile.get("ca");
  x.insecure = options.insecure;
  x.user_agent = "xfer/" XFER_VERSION;
  if (x.insecure && https) {
    log().warn("{}: the server's certificate is not verified (--insecure)", cfg.describe);
  }
  return std::unique_ptr<Backend>(std::make_unique<HttpBackend>(std::move(cfg)));
}

}  // namespace xfer
