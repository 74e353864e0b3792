// ObjectStore (object_store.hpp): the Backend half every object store
// shares, its Source (ranged GETs) and its Sink (one streamed request, or
// one per part).
//
// Threading: as object_store.hpp says. A Source's idle streams and read
// hints are under its mutex; a Sink's part notes are under its mutex, a
// part's exchange is its writer's alone.

#include "backend/object/object_store.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <typeinfo>

#include "backend/http/index.hpp"
#include "backend/s3/sign.hpp"
#include "xfer/checkpoint/records.hpp"
#include "xfer/core/log.hpp"
#include "xfer/core/names.hpp"

namespace xfer::object {

using http::Exchange;
using http::Response;

namespace {

constexpr std::size_t kMaxIdleStreams = 32;  // per Source
constexpr int kThrottleTries = 5;            // a call answered 429/503, made again up to 4 times

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

}  // namespace

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t retry_after_ms(std::string_view v) {
  if (v.empty() || v.size() > 5 ||
      !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return 0;
  }
  const std::int64_t s = std::strtoll(std::string(v).c_str(), nullptr, 10);
  return s <= 86'400 ? s * 1000 : 0;
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

Error answer_error(const Response& r, const StoreError& e, std::string_view op,
                   std::string_view what, std::string_view no_container,
                   std::string_view check_keys) {
  using Kind = StoreError::Kind;
  const std::string said = e.code.empty() ? fmt::format("HTTP {}", r.status)
                                          : fmt::format("HTTP {} {}", r.status, e.code);
  const std::string detail = e.message.empty() ? said : said + ": " + e.message;
  if (e.kind == Kind::kNoContainer) {
    return make_error(ErrorCode::kNotFound, op, what, no_container);
  }
  if (r.status == 404 || e.kind == Kind::kNotFound) {
    return make_error(ErrorCode::kNotFound, op, what, e.code.empty() ? "" : detail);
  }
  if (r.status == 403 || r.status == 401 || e.kind == Kind::kDenied) {
    return make_error(ErrorCode::kPermission, op, what,
                      fmt::format("{} (check {})", detail, check_keys));
  }
  if (r.status == 412) {
    return make_error(ErrorCode::kChanged, op, what,
                      "the object was replaced on the server while it was copied",
                      RetryClass::kRetryFile);
  }
  if (r.status == 408 || r.status == 429 || r.status >= 500 || e.kind == Kind::kThrottled) {
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

Result<bool> profile_flag(std::string_view key, std::string_view value) {
  if (value.empty() || value == "false" || value == "no" || value == "off" || value == "0") {
    return false;
  }
  if (value == "true" || value == "yes" || value == "on" || value == "1") return true;
  return make_error(ErrorCode::kInvalidArgument, "open endpoint", key,
                    fmt::format("'{}' is not true or false", printable_name(value, 40)));
}

ObjectStore::ObjectStore(const http::ExchangeConfig& exchange, std::string describe)
    : exchange_(exchange), describe_(std::move(describe)), pool_(exchange_) {
  caps_.network = true;
  caps_.mtime = true;
  caps_.mtime_granularity_ns = 1;
  caps_.whole_parts = true;
  caps_.directories = false;
  caps_.flat_listing = true;
  caps_.parallel_writers = true;
  caps_.resume = true;
  caps_.server_side_copy = true;
  caps_.preferred_chunk_size = 16ull << 20;
  caps_.max_concurrency = 32;
}

ObjectStore::~ObjectStore() = default;

Result<std::string> ObjectStore::key_of(std::string_view path, std::string_view op) const {
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  std::string key(path);
  if (key.size() > max_key_) {
    return make_error(ErrorCode::kInvalidArgument, op, path,
                      fmt::format("an object key is at most {} bytes", max_key_));
  }
  if (key.find('\0') != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument, op, path, "a key holds no NUL byte");
  }
  return key;
}

Result<std::unique_ptr<Exchange>> ObjectStore::start(const Call& call) {
  XFER_ASSIGN_OR_RETURN(Exchange::Request x, address(call));
  auto ex = pool_.exchange();
  XFER_TRY(ex->start(x));
  return ex;
}

Result<Answer> ObjectStore::run(const Call& call, std::string_view op) {
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
    log().debug("{}: {} {} answered {}; again in {} ms", describe_, call.method,
                printable_name(call.key, 200), st, wait_ms);
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (std::chrono::steady_clock::now() < until && !pool_.cancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

Result<Answer> ObjectStore::run_ok(const Call& call, std::string_view op, std::string_view what) {
  XFER_ASSIGN_OR_RETURN(Answer a, run(call, op));
  if (a.response.status / 100 != 2) return status_error(a.response, a.body, op, what);
  return a;
}

Status ObjectStore::container_exists(std::string_view path) {
  return status_of(run_ok(list_call("", false, 1, ""), "stat", path));
}

Status ObjectStore::list_keys(const std::string& prefix, bool delimited, std::size_t max,
                              const std::function<Status(Listed&&)>& each) {
  std::string token;
  std::uint64_t listed = 0;
  for (;;) {
    XFER_ASSIGN_OR_RETURN(Answer a,
                          run_ok(list_call(prefix, delimited, max, token), "list", "/" + prefix));
    std::uint64_t on_page = 0;
    XFER_ASSIGN_OR_RETURN(Page page, read_page(a.body, prefix, [&](Listed&& l) -> Status {
                            if (++listed > kMaxListed) {
                              return make_error(ErrorCode::kCorrupt, "list", "/" + prefix,
                                                fmt::format("more than {} entries", kMaxListed));
                            }
                            ++on_page;
                            return each(std::move(l));
                          }));
    if (!page.truncated) return ok_status();
    if (page.next.empty() || page.next == token || on_page == 0) {
      return make_error(ErrorCode::kCorrupt, "list", "/" + prefix,
                        "the server says the listing goes on but gives no way to go on");
    }
    token = std::move(page.next);
  }
}

Result<FileAttrs> ObjectStore::stat(std::string_view path) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "stat"));
  FileAttrs dir;
  dir.type = EntryType::kDirectory;
  dir.mode = 0755;
  dir.mtime_ns = now_ns();
  while (!key.empty() && key.back() == '/') key.pop_back();
  if (key.empty()) {
    XFER_TRY(container_exists(path));  // the bucket or container itself
    return dir;
  }
  Call head;
  head.method = "HEAD";
  head.key = key;
  XFER_ASSIGN_OR_RETURN(Answer a, run(head, "stat"));
  if (a.response.status / 100 == 2) return object_attrs(a.response, path);
  if (a.response.status != 404) return status_error(a.response, a.body, "stat", path);
  bool any = false;
  Status listed = list_keys(key + "/", true, 1, [&](Listed&&) {
    any = true;
    return make_error(ErrorCode::kCancelled, "list", "");  // one is enough
  });
  if (!any && !listed.ok()) return listed.error();
  if (any) return dir;
  // A container that is not there says so (a HEAD answers 404 without a body).
  XFER_TRY(container_exists(path));
  return make_error(ErrorCode::kNotFound, "stat", path, "");
}

Result<FileAttrs> ObjectStore::stat_file(std::string_view path) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "stat"));
  if (key.empty() || key.back() == '/') return stat(path);
  Call head;
  head.method = "HEAD";
  head.key = key;
  XFER_ASSIGN_OR_RETURN(Answer a, run(head, "stat"));
  if (a.response.status / 100 == 2) return object_attrs(a.response, path);
  if (a.response.status == 404) return make_error(ErrorCode::kNotFound, "stat", path, "");
  return status_error(a.response, a.body, "stat", path);
}

Status ObjectStore::list(std::string_view path, const ListOptions& options, const EntrySink& sink) {
  (void)options;  // sizes and times come with the listing
  return list_below(path, false, sink);
}

Status ObjectStore::list_tree(std::string_view path, const EntrySink& sink) {
  return list_below(path, true, sink);
}

Status ObjectStore::list_below(std::string_view path, bool flat, const EntrySink& sink) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "list"));
  while (!key.empty() && key.back() == '/') key.pop_back();
  const std::string prefix = key.empty() ? "" : key + "/";
  bool any = false;
  XFER_TRY(list_keys(prefix, !flat, kListPage, [&](Listed&& l) -> Status {
    any = true;
    if (l.key.size() < prefix.size() || l.key.compare(0, prefix.size(), prefix) != 0) {
      return ok_status();
    }
    std::string_view name = std::string_view(l.key).substr(prefix.size());
    // A folder: a common prefix ("sub/"), or flat, a marker ("a/b/").
    const bool folder = flat ? !name.empty() && name.back() == '/' : l.prefix;
    if (folder && !name.empty() && name.back() == '/') name.remove_suffix(1);
    if (name.empty()) return ok_status();  // the folder's own marker ("dir/")
    if (!(flat ? validate_relative_path(name, "key") : validate_name_component(name, "key")).ok()) {
      log().warn("{}: skipping key '{}': not a {} a file system can hold", describe_,
                 printable_name(l.key, 200), flat ? "path" : "name");
      return ok_status();
    }
    Entry e;
    e.name = std::string(name);
    e.type = folder ? EntryType::kDirectory : EntryType::kFile;
    if (!folder) {
      FileAttrs a;
      a.type = EntryType::kFile;
      a.mode = 0644;
      a.size = l.size;
      a.mtime_ns = l.mtime_ns;
      e.attrs = a;
    }
    return sink(std::move(e));
  }));
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

Status ObjectStore::mkdir(std::string_view path, bool) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "mkdir"));
  while (!key.empty() && key.back() == '/') key.pop_back();
  if (!caps_.folder_markers || key.empty()) return ok_status();
  // The marker: "folder/", zero bytes, written whole (a PUT of a marker
  // already there writes the same again).
  Call put;
  put.method = "PUT";
  XFER_ASSIGN_OR_RETURN(put.key, key_of(key + "/", "mkdir"));
  put.headers = put_headers(put.key, now_ns());
  put.body = std::string();
  return status_of(run_ok(put, "mkdir", path));
}

Status ObjectStore::rename(std::string_view from, std::string_view to) {
  (void)to;
  return make_error(ErrorCode::kCrossDevice, "rename", from,
                    "objects cannot be renamed atomically (a copy and a delete instead)");
}

Status ObjectStore::symlink(std::string_view, std::string_view path, const FileAttrs&) {
  return make_error(ErrorCode::kUnsupported, "symlink", path, "object stores have no symlinks");
}

Status ObjectStore::remove(std::string_view path, bool recursive) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "remove"));
  while (!key.empty() && key.back() == '/') key.pop_back();
  if (key.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "remove", path,
                      "the bucket or container itself is not removed");
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
  if (a.response.status != 404) return status_error(a.response, a.body, "remove", path);
  // A folder: its objects (all of them with `recursive`), kDeleteBatch at
  // a time, each batch listed from the folder's start again once the one
  // before is deleted (no listing token outlives keys deleted under it).
  std::vector<std::string> keys;
  std::set<std::string> deleted;  // the batch before: never listed again
  for (bool first = true;; first = false) {
    keys.clear();
    Status listed = list_keys(key + "/", false, kDeleteBatch, [&](Listed&& l) -> Status {
      keys.push_back(std::move(l.key));
      if (keys.size() < kDeleteBatch) return ok_status();
      return make_error(ErrorCode::kCancelled, "list", "");  // a batch is enough
    });
    if (!listed.ok() && keys.size() < kDeleteBatch) return listed.error();
    if (keys.empty()) {
      return first ? make_error(ErrorCode::kNotFound, "remove", path, "") : ok_status();
    }
    if (first && !recursive && !(keys.size() == 1 && keys[0] == key + "/")) {
      return make_error(ErrorCode::kNotEmpty, "remove", path, "");
    }
    for (const std::string& k : keys) {
      if (deleted.count(k) != 0) {
        return make_error(ErrorCode::kUnavailable, "remove", "/" + k,
                          "the server still lists an object it said was deleted",
                          RetryClass::kRetryCall);
      }
    }
    XFER_TRY(delete_keys(keys));
    deleted = std::set<std::string>(keys.begin(), keys.end());
  }
}

Status in_lanes(std::size_t count, std::size_t lanes,
                const std::function<Status(std::size_t)>& each) {
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::optional<Error> failed;  // under mu
  auto lane = [&] {
    for (std::size_t i = next++; i < count; i = next++) {
      {
        std::lock_guard lock(mu);
        if (failed) return;
      }
      Status s = each(i);
      if (s.ok()) continue;
      std::lock_guard lock(mu);
      if (!failed) failed = s.error();
      return;
    }
  };
  std::vector<std::thread> threads;
  for (std::size_t n = 1; n < std::min(lanes, count); ++n) threads.emplace_back(lane);
  lane();
  for (auto& t : threads) t.join();
  if (failed) return *failed;
  return ok_status();
}

Status ObjectStore::delete_keys(const std::vector<std::string>& keys) {
  return in_lanes(keys.size(), kDeleteLanes, [&](std::size_t i) -> Status {
    Call del;
    del.method = "DELETE";
    del.key = keys[i];
    XFER_ASSIGN_OR_RETURN(Answer a, run(del, "remove"));
    if (a.response.status / 100 == 2 || a.response.status == 404) return ok_status();
    return status_error(a.response, a.body, "remove", "/" + keys[i]);
  });
}

Status ObjectStore::touch(std::string_view path, std::optional<std::int64_t> mtime_ns) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "touch"));
  const std::int64_t t = mtime_ns.value_or(now_ns());
  auto st = stat(path);
  if (st && st->type == EntryType::kDirectory) return ok_status();
  if (st) return set_mtime(key, t, "touch");
  if (st.error().code != ErrorCode::kNotFound) return st.error();
  Call c;
  c.method = "PUT";
  c.key = key;
  c.body = std::string();
  c.headers = put_headers(key, t);
  return status_of(run_ok(c, "touch", path));
}

Status ObjectStore::set_attrs(std::string_view path, const FileAttrs& attrs) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "set_attrs"));
  XFER_ASSIGN_OR_RETURN(FileAttrs now, stat(path));
  if (now.type == EntryType::kDirectory || now.mtime_ns == attrs.mtime_ns) return ok_status();
  return set_mtime(key, attrs.mtime_ns, "set_attrs");
}

Status ObjectStore::copy_from(Backend& source, std::string_view from, std::string_view to,
                              const FileAttrs& attrs) {
  auto* other = dynamic_cast<ObjectStore*>(&source);
  if (other == nullptr || typeid(*other) != typeid(*this)) {
    return make_error(ErrorCode::kUnsupported, "copy_from", to, "another kind of endpoint");
  }
  XFER_ASSIGN_OR_RETURN(std::string from_key, other->key_of(from, "copy_from"));
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(to, "copy_from"));
  if (from_key.empty() || key.empty() || key.back() == '/') {
    return make_error(ErrorCode::kIsDirectory, "copy_from", to, "");
  }
  return server_copy(*other, from_key, key, attrs.size, attrs.mtime_ns, to);
}

// ---------------------------------------------------------------------------
// Reading: ranged GETs with If-Match on the ETag seen at open.

namespace {

class ObjectSource final : public Source {
 public:
  // `head`: the object's first bytes, fetched with the open; `whole` when
  // they are all of it.
  ObjectSource(ObjectStore& b, std::string key, std::string path, FileAttrs attrs, std::string etag,
               std::string head = {}, bool whole = false)
      : b_(b),
        key_(std::move(key)),
        path_(std::move(path)),
        attrs_(attrs),
        etag_(std::move(etag)),
        head_(std::move(head)),
        whole_(whole) {}

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
    std::size_t got = 0;
    if (at < head_.size()) {  // fetched with the open
      got = static_cast<std::size_t>(std::min<std::uint64_t>(want, head_.size() - at));
      std::memcpy(buf.data(), head_.data() + at, got);
      if (got == want) return got;
    }
    XFER_ASSIGN_OR_RETURN(std::size_t more, read_ranges(at + got, buf.subspan(got, want - got)));
    return got + more;
  }
  Status check_unchanged() override {
    if (whole_) return ok_status();  // one answer held the bytes and the metadata
    Call head;
    head.method = "HEAD";
    head.key = key_;
    XFER_ASSIGN_OR_RETURN(Answer a, b_.run(head, "check"));
    if (a.response.status / 100 != 2) {
      return b_.status_error(a.response, a.body, "check", path_);
    }
    // The ETag names the bytes; the mtime also changes with a touch.
    XFER_ASSIGN_OR_RETURN(FileAttrs now, b_.object_attrs(a.response, path_));
    if (a.response.etag != etag_ || now.size != attrs_.size || now.mtime_ns != attrs_.mtime_ns) {
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

  // `buf` (within the object) from [at, ...) by ranged GETs, a stream left
  // where an earlier read ended taken up again.
  Result<std::size_t> read_ranges(std::uint64_t at, std::span<std::byte> buf) {
    const std::uint64_t want = buf.size();
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
    if (!s.x) XFER_TRY(open_stream(s, at, want));
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

  // A GET of [at, end) where end reaches over the hints that hold `at`.
  Status open_stream(Stream& s, std::uint64_t at, std::uint64_t want) {
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
      return b_.status_error(r, body ? *body : "", "read", path_);
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
    return ok_status();
  }

  ObjectStore& b_;
  std::string key_;
  std::string path_;
  FileAttrs attrs_;
  std::string etag_;
  const std::string head_;
  const bool whole_;
  std::mutex mu_;
  std::vector<Stream> idle_;                                    // under mu_
  std::vector<std::pair<std::uint64_t, std::uint64_t>> hints_;  // under mu_
};

}  // namespace

Result<std::unique_ptr<Source>> ObjectStore::open_source(std::string_view path) {
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
  if (a.response.status / 100 != 2) return status_error(a.response, a.body, "open", path);
  XFER_ASSIGN_OR_RETURN(FileAttrs attrs, object_attrs(a.response, path));
  // Every ranged read sends the ETag back (If-Match).
  if (!usable_etag(a.response.etag)) {
    return make_error(ErrorCode::kCorrupt, "open", path,
                      "the server gives the object no ETag, or one that is not 1 to 1024 "
                      "printable characters");
  }
  return std::unique_ptr<Source>(
      std::make_unique<ObjectSource>(*this, key, std::string(path), attrs, a.response.etag));
}

Result<std::unique_ptr<Source>> ObjectStore::open_source_to_read(std::string_view path) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "open"));
  if (key.empty() || key.back() == '/') return open_source(path);
  Call get;
  get.key = key;
  get.range = std::pair<std::uint64_t, std::uint64_t>{0, kOpenBytes - 1};
  XFER_ASSIGN_OR_RETURN(auto x, start(get));
  XFER_TRY(x->wait_headers("open"));
  Response r = x->response();
  // Anything but the range or the whole object (an empty object's 416, a
  // throttle, a 404 that may be a folder) is the plain open's to answer.
  // (s3rver answers an empty object's range with "bytes 0-0/0" and no body.)
  const auto cr = http::parse_content_range(r.content_range);
  if ((r.status != 206 && r.status != 200) || (r.status == 206 && cr && cr->total == 0u)) {
    return open_source(path);
  }
  if (r.status == 206) {
    // The range asked for, of an object of `total` bytes.
    if (!cr || cr->first != 0 || !cr->total ||
        cr->last + 1 != std::min<std::uint64_t>(*cr->total, kOpenBytes) || !r.content_length ||
        *r.content_length != cr->last + 1) {
      return make_error(ErrorCode::kCorrupt, "open", path,
                        "the server's range is not the one asked for");
    }
    r.content_length = *cr->total;  // the object's size, as a HEAD says it
  }
  XFER_ASSIGN_OR_RETURN(FileAttrs attrs, object_attrs(r, path));
  if (!usable_etag(r.etag)) {
    return make_error(ErrorCode::kCorrupt, "open", path,
                      "the server gives the object no ETag, or one that is not 1 to 1024 "
                      "printable characters");
  }
  // A 200 to a range is the whole object: read when it is small, else
  // left (its connection closes) for ranged reads.
  std::string head;
  if (r.status == 206 || attrs.size <= kOpenBytes) {
    XFER_ASSIGN_OR_RETURN(head, x->read_all(kOpenBytes, "open"));
    done_with(std::move(x));
    if (head.size() != std::min<std::uint64_t>(attrs.size, kOpenBytes)) {
      return make_error(ErrorCode::kCorrupt, "open", path,
                        "the server sent other than the bytes it announced",
                        RetryClass::kRetryCall);
    }
  }
  const bool whole = head.size() == attrs.size;
  return std::unique_ptr<Source>(std::make_unique<ObjectSource>(
      *this, key, std::string(path), attrs, r.etag, std::move(head), whole));
}

// ---------------------------------------------------------------------------
// Writing: one streamed request for a file written whole; an upload of
// parts, one per chunk, for a chunked one. Each part's MD5 is computed as
// it streams, for the store to check against its answer.

namespace {

class ObjectSink final : public Sink {
 public:
  ObjectSink(ObjectStore& b, std::string key, std::string path, const SinkOptions& o)
      : b_(b), key_(std::move(key)), path_(std::move(path)), opt_(o) {
    multipart_ = o.parts > 1 || !o.resume_name.empty();
    part_size_ = o.part_size != 0 ? o.part_size : std::max<std::uint64_t>(o.size, 1);
    parts_ = o.parts != 0 ? o.parts : 1;
    table_.resize(static_cast<std::size_t>(parts_));
  }
  ~ObjectSink() override {
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
      upload_ = opt_.resume_note;
      XFER_TRY(take_up());
      if (resumed_) return ok_status();
    }
    XFER_ASSIGN_OR_RETURN(upload_, b_.begin_upload(key_, opt_.attrs.mtime_ns, path_));
    if (upload_.empty() || upload_.size() > checkpoint::kMaxNote) {
      return make_error(ErrorCode::kCorrupt, "open_sink", path_,
                        "the server started an upload without a usable id");
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
        p.note.clear();
      }
      p.sent = 0;
      p.md5->reset();
      Call c;
      if (multipart_) {
        c = b_.part_call(key_, upload_, index);
      } else {
        c.method = "PUT";
        c.key = key_;
        c.headers = b_.put_headers(key_, opt_.attrs.mtime_ns);
      }
      c.upload_size = len;
      XFER_ASSIGN_OR_RETURN(p.x, b_.start(c));
    } else if (!p.x || at != begin + p.sent) {
      return make_error(ErrorCode::kUnsupported, "write_at", path_,
                        "an object's part is written in order from its start");
    }
    // A single write keeps its last byte back until commit(): the server
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
      if (opt_.size == 0 && !p.x && p.note.empty()) XFER_TRY(write_empty());
      if (holding_ && p.x) {
        holding_ = false;
        XFER_TRY(finish_part(p, 0, p.x->send({&held_, 1}, "write")));
      }
      if (p.note.empty()) {
        return make_error(ErrorCode::kInternal, "commit", path_,
                          "the object was not written whole");
      }
      finished_ = true;
      return ok_status();
    }
    std::vector<std::string> notes;
    {
      std::lock_guard lock(mu_);
      for (std::uint64_t i = 0; i < parts_; ++i) {
        const std::string& note = table_[static_cast<std::size_t>(i)].note;
        if (note.empty()) {
          return make_error(ErrorCode::kInternal, "commit", path_,
                            fmt::format("part {} of {} was not written", i + 1, parts_));
        }
        notes.push_back(note);
      }
    }
    XFER_TRY(b_.complete_upload(key_, upload_, notes, opt_.attrs.mtime_ns, path_));
    finished_ = true;
    return ok_status();
  }

  Status abort() override {
    if (finished_) return ok_status();
    finished_ = true;
    for (Part& p : table_) p.x.reset();
    if (!multipart_ || upload_.empty()) return ok_status();
    return b_.abort_upload(key_, upload_, path_);
  }

  Status suspend() override {
    if (finished_) return ok_status();
    finished_ = true;
    for (Part& p : table_) p.x.reset();  // a part not whole is dropped by the server
    return ok_status();
  }

  bool resumed() const override { return resumed_; }
  std::string resume_note() const override { return multipart_ ? upload_ : std::string(); }
  std::string chunk_note(std::uint64_t chunk) const override {
    std::lock_guard lock(mu_);
    return chunk < table_.size() ? table_[static_cast<std::size_t>(chunk)].note : std::string();
  }

 private:
  struct Part {
    std::unique_ptr<Exchange> x;
    std::uint64_t sent = 0;
    std::unique_ptr<Md5> md5 = std::make_unique<Md5>();
    std::string note;  // once the server took the part whole
  };

  std::uint64_t part_len(std::uint64_t index) const {
    if (opt_.parts == 0) return opt_.size;
    const std::uint64_t begin = index * part_size_;
    return std::min(part_size_, opt_.size - begin);
  }

  Status write_empty() {
    Call c;
    c.method = "PUT";
    c.key = key_;
    c.body = std::string();
    c.headers = b_.put_headers(key_, opt_.attrs.mtime_ns);
    XFER_ASSIGN_OR_RETURN(Answer a, b_.run_ok(c, "commit", path_));
    std::lock_guard lock(mu_);
    table_[0].note = usable_etag(a.response.etag) ? a.response.etag : "\"\"";
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
      return b_.status_error(r, body ? *body : "", "write", path_);
    }
    if (!sent.ok()) return sent;
    if (!body) return body.error();
    b_.done_with(std::move(x));
    XFER_ASSIGN_OR_RETURN(std::string note, b_.part_taken(r, index, p.md5->hex(), path_));
    std::lock_guard lock(mu_);
    p.note = std::move(note);
    return ok_status();
  }

  // Resuming: the journal's notes are the parts done; the store, where it
  // can say, confirms the upload is still there and each part in it.
  Status take_up() {
    std::vector<std::string> notes(static_cast<std::size_t>(parts_));
    for (std::uint64_t i = 0; i < parts_ && i < opt_.chunk_notes.size(); ++i) {
      notes[static_cast<std::size_t>(i)] = opt_.chunk_notes[static_cast<std::size_t>(i)];
    }
    auto held =
        b_.held_parts(key_, upload_, notes, [this](std::uint64_t i) { return part_len(i); });
    if (!held && held.error().code == ErrorCode::kNotFound) {
      upload_.clear();  // the upload is gone (completed, aborted, expired): start anew
      return ok_status();
    }
    if (!held) return held.error();
    for (std::uint64_t i = 0; i < parts_; ++i) {
      const bool kept = !held->has_value() || (**held)[static_cast<std::size_t>(i)];
      if (kept) table_[static_cast<std::size_t>(i)].note = notes[static_cast<std::size_t>(i)];
    }
    resumed_ = true;
    return ok_status();
  }

  ObjectStore& b_;
  std::string key_;
  std::string path_;
  SinkOptions opt_;
  bool multipart_ = false;
  std::uint64_t part_size_ = 0;
  std::uint64_t parts_ = 1;
  std::string upload_;
  bool resumed_ = false;
  bool finished_ = false;
  bool holding_ = false;  // a single write's last byte, held_, waits for commit()
  std::byte held_{};
  mutable std::mutex mu_;    // the notes of table_
  std::vector<Part> table_;  // one per part; each Part's exchange is its writer's
};

}  // namespace

Result<std::unique_ptr<Sink>> ObjectStore::open_sink(std::string_view path, const SinkOptions& o) {
  XFER_ASSIGN_OR_RETURN(std::string key, key_of(path, "open_sink"));
  if (key.empty() || key.back() == '/') {
    return make_error(ErrorCode::kIsDirectory, "open_sink", path, "");
  }
  if (!o.attrs.size_known && o.parts == 0) {
    return make_error(ErrorCode::kUnsupported, "open_sink", path,
                      fmt::format("an object store needs the size of what it is sent (a stream "
                                  "of unknown length cannot go to {}:// yet)",
                                  scheme_));
  }
  if (o.basis) {
    return make_error(ErrorCode::kUnsupported, "open_sink", path,
                      "an object cannot be rebuilt from its old version in place");
  }
  if (o.size > max_object_) {
    return make_error(ErrorCode::kInvalidArgument, "open_sink", path,
                      fmt::format("an object is at most {} bytes here", max_object_));
  }
  if (o.parts <= 1 && o.resume_name.empty() && o.size > max_single_put_) {
    return make_error(ErrorCode::kInvalidArgument, "open_sink", path,
                      fmt::format("an object over {} bytes must be sent in parts (a chunked copy)",
                                  max_single_put_));
  }
  auto sink = std::make_unique<ObjectSink>(*this, key, std::string(path), o);
  XFER_TRY(sink->open());
  return std::unique_ptr<Sink>(std::move(sink));
}

}  // namespace xfer::object
