#pragma once
// What every object store shares (S3 and its kin, Azure Blob): a Backend
// over HTTP requests on a LanePool, where a file is an object, a folder is
// the prefix of the names below it, a read is a ranged GET with If-Match on
// the ETag seen at open, and a write is one streamed request for a file
// written whole or one request per part for a chunked one (whole_parts),
// committed at the end, resumable across runs from the journal's notes.
// A store says how (its Dialect hooks below): how a call is addressed and
// signed, what its answers and errors mean, how a listing page reads, how
// parts are begun, sent, listed, committed and abandoned, where the mtime
// is kept.
//
// Owns: the pool of Lanes (http/exchange.hpp) and the Sources and Sinks it
// opens. Threading: an ObjectStore is shared by every worker; a Lane and
// the Exchange on it belong to one thread at a time; a Sink's parts are
// each written by one worker, parts concurrently (its part table is under
// its mutex).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend/http/exchange.hpp"
#include "xfer/backend/backend.hpp"

namespace xfer::object {

using Headers = std::vector<std::pair<std::string, std::string>>;

// One request: what to ask, before the store addresses and signs it.
struct Call {
  std::string method = "GET";
  std::string key;  // decoded object key ("" for the bucket or container)
  std::vector<std::pair<std::string, std::string>> query;  // decoded names and values
  Headers headers;
  std::optional<std::string> body;                               // a body held here (XML, empty)
  std::optional<std::uint64_t> upload_size;                      // a body pushed by Exchange::send
  std::optional<std::pair<std::uint64_t, std::uint64_t>> range;  // [first, last]
};

struct Answer {
  http::Response response;
  std::string body;
};

// One entry of a listing page: an object, or (with a delimiter) a prefix.
struct Listed {
  std::string key;
  bool prefix = false;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
};

// A listing page read: where the next one starts ("" at the end).
struct Page {
  bool truncated = false;
  std::string next;
};

constexpr std::size_t kMaxAnswer = 16u << 20;      // an XML answer (a listing page)
constexpr std::uint64_t kMaxListed = 100'000'000;  // entries in one listing
constexpr std::size_t kListPage = 1000;            // keys asked per listing page (S3's most)
constexpr std::size_t kOpenBytes = 256u << 10;     // fetched by open_source_to_read
constexpr std::size_t kDeleteBatch = 1000;         // keys per delete_keys() (S3's most)
constexpr std::size_t kDeleteLanes = 16;           // DELETEs in flight, one key each

std::int64_t now_ns();
// Retry-After as delta-seconds (0 to a day) in ms; 0 for anything else (an
// HTTP date is not believed: the clocks need not agree).
std::int64_t retry_after_ms(std::string_view v);
// The content type a key's extension names ("application/octet-stream"
// for the rest).
std::string content_type_of(std::string_view key);
// An ETag fit to go back in a header (If-Match) and into XML: 1 to 1024
// printable ASCII bytes.
bool usable_etag(std::string_view etag);
std::string xml_escape(std::string_view text);
// A profile's yes/no key: true/yes/on/1, false/no/off/0 or "" (false).
Result<bool> profile_flag(std::string_view key, std::string_view value);
// An error answer as a store's dialect reads it: its code and message
// (printable, cut), and what the code means among the kinds every store
// has (a missing bucket or container, a missing object, refused
// credentials, a throttle); the status decides the rest.
struct StoreError {
  enum class Kind { kOther, kNoContainer, kNotFound, kDenied, kThrottled };
  std::string code;
  std::string message;
  Kind kind = Kind::kOther;
};
// The Error an answer that is not 2xx means, in words a user can act on,
// the same for every store: `no_container` and `check_keys` are the
// store's own words for a missing container and refused credentials.
// Throttles and server failures are kUnavailable, kRetryCall, with the
// server's Retry-After.
Error answer_error(const http::Response& r, const StoreError& e, std::string_view op,
                   std::string_view what, std::string_view no_container,
                   std::string_view check_keys);

// each(0) .. each(count - 1), `lanes` at a time (this thread one of
// them); after the first failure no new index is started, and that
// failure is the answer.
Status in_lanes(std::size_t count, std::size_t lanes,
                const std::function<Status(std::size_t)>& each);

template <typename T>
Status status_of(Result<T> r) {
  if (!r) return std::move(r).error();
  return ok_status();
}

class ObjectStore : public Backend {
 public:
  ObjectStore(const http::ExchangeConfig& exchange, std::string describe);
  ~ObjectStore() override;

  const Capabilities& capabilities() const override { return caps_; }
  LinkEstimate link_estimate() const override { return {pool_.rtt_ms(), 0.0}; }
  std::string describe() const override { return describe_; }
  void cancel() override { pool_.cancel(); }

  Result<FileAttrs> stat(std::string_view path) override;
  // One HEAD: no look for a folder or the bucket behind a 404.
  Result<FileAttrs> stat_file(std::string_view path) override;
  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override;
  // The prefix listed without a delimiter: a page per kListPage keys.
  Status list_tree(std::string_view path, const EntrySink& sink) override;
  // No folders in an object store: a folder is the prefix of its objects.
  // With folder markers (set_folder_markers), a zero-byte "folder/" is
  // written, which keeps the folder while it is empty.
  Status mkdir(std::string_view path, bool) override;
  void set_folder_markers(bool on) { caps_.folder_markers = on; }
  Status remove(std::string_view path, bool recursive) override;
  Status rename(std::string_view from, std::string_view to) override;
  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override;
  Status symlink(std::string_view, std::string_view path, const FileAttrs&) override;
  Status set_attrs(std::string_view path, const FileAttrs& attrs) override;
  Status copy_from(Backend& source, std::string_view from, std::string_view to,
                   const FileAttrs& attrs) override;
  Result<std::unique_ptr<Source>> open_source(std::string_view path) override;
  // One ranged GET of the first kOpenBytes in place of the HEAD: an object
  // no larger is read whole by it (and then no HEAD checks it at the end:
  // its bytes and metadata came in one answer).
  Result<std::unique_ptr<Source>> open_source_to_read(std::string_view path) override;
  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override;

  // ---- requests (the Source and Sink use them too) ----
  // Starts `call` on a pooled connection, addressed and signed.
  Result<std::unique_ptr<http::Exchange>> start(const Call& call);
  // Runs `call` to its end; the body (at most kMaxAnswer) is kept. A
  // throttle (429, 503) says the server did nothing: it is waited out and
  // the call made again, kThrottleTries times in all; the wait is the
  // server's Retry-After (at most 20 s), else 250 ms doubling, jittered.
  // Parts streamed from the workers are not calls here: the engine sends
  // such a part again, after the Retry-After too.
  Result<Answer> run(const Call& call, std::string_view op);
  // run() and an error for any answer but 2xx.
  Result<Answer> run_ok(const Call& call, std::string_view op, std::string_view what);
  void done_with(std::unique_ptr<http::Exchange> x) { pool_.done_with(std::move(x)); }
  // The decoded key of an engine path ("/a/b" -> "a/b"), checked.
  Result<std::string> key_of(std::string_view path, std::string_view op) const;

  // ---- the store's dialect ----
  // The URL and headers of `call`, signed.
  virtual Result<http::Exchange::Request> address(const Call& call) const = 0;
  // The Error an answer that is not 2xx (or an <Error> in a 200) means.
  virtual Error status_error(const http::Response& r, std::string_view body, std::string_view op,
                             std::string_view what) const = 0;
  // Size and mtime of an object from its HEAD answer; kCorrupt without a
  // size or with one past the store's largest object.
  virtual Result<FileAttrs> object_attrs(const http::Response& r, std::string_view path) const = 0;
  // The headers a whole object is written with (its mtime, content type,
  // and what the store needs on a single write).
  virtual Headers put_headers(const std::string& key, std::int64_t mtime_ns) const = 0;
  // A listing page's request (max entries, after `token`), and its answer
  // read entry by entry.
  virtual Call list_call(const std::string& prefix, bool delimited, std::size_t max,
                         const std::string& token) const = 0;
  virtual Result<Page> read_page(std::string_view body, std::string_view prefix,
                                 const std::function<Status(Listed&&)>& each) const = 0;
  // Replaces the mtime of an existing object, keeping its bytes.
  virtual Status set_mtime(const std::string& key, std::int64_t mtime_ns, std::string_view op) = 0;
  // Deletes `keys` (at most kDeleteBatch); a key already gone counts as
  // deleted. The default: one DELETE per key, kDeleteLanes at a time.
  virtual Status delete_keys(const std::vector<std::string>& keys);
  // Parts. begin_upload returns the upload's note (an S3 upload id, the
  // token of Azure's block ids); part_call is the request a part is sent
  // by; part_taken reads its answer into the part's note (its ETag, its
  // MD5), given the MD5 of what was sent; complete_upload publishes the
  // object from every part's note; abort_upload leaves nothing of it.
  virtual Result<std::string> begin_upload(const std::string& key, std::int64_t mtime_ns,
                                           std::string_view path) = 0;
  virtual Call part_call(const std::string& key, const std::string& upload,
                         std::uint64_t index) const = 0;
  virtual Result<std::string> part_taken(const http::Response& r, std::uint64_t index,
                                         const std::string& md5_hex,
                                         std::string_view path) const = 0;
  virtual Status complete_upload(const std::string& key, const std::string& upload,
                                 const std::vector<std::string>& notes, std::int64_t mtime_ns,
                                 std::string_view path) = 0;
  virtual Status abort_upload(const std::string& key, const std::string& upload,
                              std::string_view path) = 0;
  // A copy of `from_key` of `source` (a store of this dialect, maybe
  // another bucket or endpoint) to `key` here, with `mtime_ns`, inside the
  // service; kUnsupported when it cannot be done there.
  virtual Status server_copy(ObjectStore& source, const std::string& from_key,
                             const std::string& key, std::uint64_t size, std::int64_t mtime_ns,
                             std::string_view path) = 0;
  // Resuming: which of the parts the journal has notes for the server still
  // holds as they were (`len(i)`: part i's size). nullopt when the server
  // cannot say (the journal alone decides); kNotFound when the upload is
  // gone (it starts over).
  virtual Result<std::optional<std::vector<bool>>> held_parts(
      const std::string& key, const std::string& upload, const std::vector<std::string>& notes,
      const std::function<std::uint64_t(std::uint64_t)>& len) = 0;

  // ---- the store's limits ----
  std::uint64_t max_object() const { return max_object_; }
  std::uint64_t max_single_put() const { return max_single_put_; }
  std::size_t max_key() const { return max_key_; }

 protected:
  // A one-entry listing of the container: the store's error when it is missing.
  Status container_exists(std::string_view path);
  // list() (`flat`: false, a folder's names) and list_tree() (true).
  Status list_below(std::string_view path, bool flat, const EntrySink& sink);
  // Lists keys below `prefix` page by page.
  Status list_keys(const std::string& prefix, bool delimited, std::size_t max,
                   const std::function<Status(Listed&&)>& each);

  Capabilities caps_;
  std::uint64_t max_object_ = 5ull << 40;
  std::uint64_t max_single_put_ = 5ull << 30;
  std::size_t max_key_ = 1024;
  std::string scheme_;  // "s3", "az": for the messages

 private:
  http::ExchangeConfig exchange_;
  std::string describe_;
  http::LanePool pool_;  // after exchange_: it keeps a reference to it
};

}  // namespace xfer::object
