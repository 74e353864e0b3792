// The az backend (include/xfer/backend/azure.hpp, docs/azure.md): Azure
// Blob's dialect of the object store (backend/object/object_store.hpp).
// Requests are signed with Shared Key (HMAC-SHA256 of the canonical
// request, OpenSSL) or carry a SAS token; a chunked file goes up as block
// blob blocks (Put Block, one per chunk, in parallel) committed by Put
// Block List. A block's id is derived from the upload's random token and
// the chunk's index, so the journal keeps only the token and each block's
// MD5, and a resumed run finds its blocks in the uncommitted block list.
//
// Owns: its configuration; the ObjectStore owns the connections.
// Threading: as ObjectStore; the dialect's hooks are const or touch only
// the request they make.

#include "xfer/backend/azure.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <random>
#include <thread>

#include "backend/azure/text.hpp"
#include "backend/http/index.hpp"
#include "backend/object/object_store.hpp"
#include "backend/s3/sign.hpp"
#include "backend/s3/xml.hpp"
#include "xfer/core/names.hpp"

#ifndef XFER_VERSION
#define XFER_VERSION "dev"
#endif

namespace xfer {
namespace {

using azure::base64;
using azure::block_id;
using azure::format_mtime;
using azure::parse_connection_string;
using azure::parse_mtime;
using azure::rfc1123;
using azure::unbase64;

using http::Exchange;
using http::Response;
using object::Answer;
using object::Call;
using object::Headers;
using object::Listed;
using object::Page;

constexpr const char* kVersion = "2021-08-06";
// rclone's metadata key and form for the modification time (RFC 3339 in
// UTC with nine digits of fraction): the two tools read each other's.
constexpr const char* kMtimeHeader = "x-ms-meta-mtime";
// A block blob: at most 50,000 blocks of at most 4000 MiB.
constexpr std::uint64_t kMaxBlock = 4000ull << 20;
constexpr std::uint64_t kMaxObject = kMaxAzureBlocks * kMaxBlock;

struct Config {
  std::string scheme;     // "http" or "https"
  std::string host;       // host[:port]
  std::string base_path;  // "/account" when the endpoint names it in its path (Azurite)
  std::string account;
  std::string container;
  std::vector<unsigned char> key;  // the account key, decoded; empty with a SAS
  std::string sas;                 // a SAS token's query string, without '?'
  http::ExchangeConfig exchange;
  std::string describe;
};

object::StoreError parse_error(const Response& r, std::string_view body) {
  object::StoreError e;
  (void)s3::parse_xml(body, "error", [&](const s3::XmlLeaf& l) {
    if (l.end) return ok_status();
    if (l.path == "Code") e.code = printable_name(l.text, 80);
    if (l.path == "Message") {
      // Azure appends "\nRequestId:...\nTime:..." to the message.
      std::string_view m = l.text;
      m = m.substr(0, m.find('\n'));
      e.message = printable_name(m, 300);
    }
    return ok_status();
  });
  if (e.code.empty()) e.code = printable_name(r.header("x-ms-error-code"), 80);  // HEAD
  return e;
}

class AzureBackend final : public object::ObjectStore {
 public:
  explicit AzureBackend(Config cfg)
      : ObjectStore(cfg.exchange, cfg.describe), cfg_(std::move(cfg)) {
    caps_.min_part_size = 0;
    caps_.max_parts = kMaxAzureBlocks;
    max_object_ = kMaxObject;
    max_single_put_ = 5000ull << 20;  // Put Blob's limit
    max_key_ = 1024;
    scheme_ = "az";
  }

  Result<Exchange::Request> address(const Call& call) const override {
    std::string path = cfg_.base_path + "/" + s3::uri_encode(cfg_.container, false);
    if (!call.key.empty()) path += "/" + s3::uri_encode(call.key, true);
    Headers headers = call.headers;
    headers.emplace_back("x-ms-date", rfc1123(std::time(nullptr)));
    headers.emplace_back("x-ms-version", kVersion);
    if (call.range) {
      headers.emplace_back("x-ms-range",
                           fmt::format("bytes={}-{}", call.range->first, call.range->second));
    }
    Exchange::Request x;
    const std::string q = s3::canonical_query(call.query);
    x.url = fmt::format("{}://{}{}", cfg_.scheme, cfg_.host, path);
    std::string query = q;
    if (!cfg_.sas.empty()) query += (query.empty() ? "" : "&") + cfg_.sas;
    if (!query.empty()) x.url += "?" + query;
    x.method = call.method == "GET" ? "" : call.method;
    x.head = call.method == "HEAD";
    if (x.head) x.method.clear();
    for (const auto& [k, v] : headers) x.headers.push_back(k + ": " + v);
    if (cfg_.sas.empty()) x.headers.push_back("Authorization: " + sign(call, path, headers));
    x.body = call.body;
    x.upload_size = call.upload_size;
    return x;
  }

  Error status_error(const Response& r, std::string_view body, std::string_view op,
                     std::string_view what) const override {
    using Kind = object::StoreError::Kind;
    object::StoreError e = parse_error(r, body);
    if (e.code == "ContainerNotFound") e.kind = Kind::kNoContainer;
    if (e.code == "BlobNotFound") e.kind = Kind::kNotFound;
    if (e.code == "ServerBusy" || e.code == "OperationTimedOut") e.kind = Kind::kThrottled;
    return object::answer_error(
        r, e, op, what,
        fmt::format("no such container '{}' at {}", printable_name(cfg_.container, 80), describe()),
        "the account key or SAS token: the remote, $AZURE_STORAGE_KEY, "
        "$AZURE_STORAGE_SAS_TOKEN or $AZURE_STORAGE_CONNECTION_STRING");
  }

  Result<FileAttrs> object_attrs(const Response& r, std::string_view path) const override {
    if (!r.content_length || *r.content_length > kMaxObject) {
      return make_error(ErrorCode::kCorrupt, "stat", path,
                        "the server gives the blob no size, or one past a block blob's largest");
    }
    FileAttrs a;
    a.type = EntryType::kFile;
    a.mode = 0644;
    a.size = *r.content_length;
    a.mtime_ns = parse_mtime(r.header(kMtimeHeader))
                     .value_or(http::parse_http_date(r.last_modified).value_or(object::now_ns()));
    return a;
  }

  Headers put_headers(const std::string& key, std::int64_t mtime_ns) const override {
    return {{"x-ms-blob-type", "BlockBlob"},
            {kMtimeHeader, format_mtime(mtime_ns)},
            {"x-ms-blob-content-type", object::content_type_of(key)}};
  }

  // List Blobs, with the metadata: an entry's mtime is its x-ms-meta-mtime.
  Call list_call(const std::string& prefix, bool delimited, std::size_t max,
                 const std::string& token) const override {
    Call c;
    c.query = {{"restype", "container"},
               {"comp", "list"},
               {"include", "metadata"},
               {"prefix", prefix},
               {"maxresults", std::to_string(max)}};
    if (delimited) c.query.emplace_back("delimiter", "/");
    if (!token.empty()) c.query.emplace_back("marker", token);
    return c;
  }
  Result<Page> read_page(std::string_view body, std::string_view,
                         const std::function<Status(Listed&&)>& each) const override {
    Page page;
    Listed l;
    std::optional<std::int64_t> meta_mtime;
    const Status parsed = s3::parse_xml(body, "list", [&](const s3::XmlLeaf& x) -> Status {
      if (x.end) {
        if (x.path == "Blobs/Blob" || x.path == "Blobs/BlobPrefix") {
          l.prefix = x.path == "Blobs/BlobPrefix";
          if (meta_mtime) l.mtime_ns = *meta_mtime;
          XFER_TRY(each(std::move(l)));
          l = Listed{};
          meta_mtime.reset();
        }
        return ok_status();
      }
      if (x.path == "Blobs/Blob/Name" || x.path == "Blobs/BlobPrefix/Name") l.key = x.text;
      if (x.path == "Blobs/Blob/Properties/Content-Length") {
        l.size = std::strtoull(std::string(x.text).c_str(), nullptr, 10);
      }
      if (x.path == "Blobs/Blob/Properties/Last-Modified") {
        l.mtime_ns = http::parse_http_date(x.text).value_or(0);
      }
      if (x.path.size() == 25 && lower(x.path) == "blobs/blob/metadata/mtime") {
        meta_mtime = parse_mtime(x.text);
      }
      if (x.path == "NextMarker") page.next = x.text;
      return ok_status();
    });
    XFER_TRY(parsed);
    page.truncated = !page.next.empty();
    return page;
  }

  // Set Blob Metadata replaces all of it: the other keys are sent again.
  Status set_mtime(const std::string& key, std::int64_t mtime_ns, std::string_view op) override {
    Call head;
    head.method = "HEAD";
    head.key = key;
    XFER_ASSIGN_OR_RETURN(Answer h, run_ok(head, op, "/" + key));
    Call c;
    c.method = "PUT";
    c.key = key;
    c.query = {{"comp", "metadata"}};
    c.body = std::string();
    for (const auto& [name, value] : h.response.headers) {
      if (name.rfind("x-ms-meta-", 0) == 0 && name != kMtimeHeader)
        c.headers.emplace_back(name, value);
    }
    c.headers.emplace_back(kMtimeHeader, format_mtime(mtime_ns));
    return object::status_of(run_ok(c, op, "/" + key));
  }

  // No call: the upload is a random token its block ids are made from.
  Result<std::string> begin_upload(const std::string&, std::int64_t, std::string_view) override {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
  }

  Call part_call(const std::string& key, const std::string& upload,
                 std::uint64_t index) const override {
    Call c;
    c.method = "PUT";
    c.key = key;
    c.query = {{"comp", "block"}, {"blockid", block_id(upload, index)}};
    return c;
  }

  // The note is the MD5 of what was sent; where the server returns one
  // (Content-MD5, base64) the two must agree.
  Result<std::string> part_taken(const Response& r, std::uint64_t index, const std::string& md5,
                                 std::string_view path) const override {
    const std::string given = r.header("content-md5");
    if (!given.empty()) {
      auto raw = unbase64(given);
      if (!raw || s3::hex(*raw) != md5) {
        return make_error(ErrorCode::kCorrupt, "write", path,
                          fmt::format("block {}: the server stored other bytes than were sent "
                                      "(its Content-MD5 {} is not their MD5 {})",
                                      index + 1, printable_name(given, 80), md5),
                          RetryClass::kRetryCall);
      }
    }
    return md5;
  }

  Status complete_upload(const std::string& key, const std::string& upload,
                         const std::vector<std::string>& notes, std::int64_t mtime_ns,
                         std::string_view path) override {
    std::string xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>";
    for (std::size_t i = 0; i < notes.size(); ++i) {
      xml += "<Latest>" + block_id(upload, i) + "</Latest>";
    }
    xml += "</BlockList>";
    Call c;
    c.method = "PUT";
    c.key = key;
    c.query = {{"comp", "blocklist"}};
    c.body = std::move(xml);
    c.headers = {{kMtimeHeader, format_mtime(mtime_ns)},
                 {"x-ms-blob-content-type", object::content_type_of(key)}};
    return object::status_of(run_ok(c, "commit", path));
  }

  // Uncommitted blocks cannot be deleted one by one. Where no blob of the
  // name exists, an empty one is committed (If-None-Match: *, so nothing
  // written meanwhile is replaced), which discards them, and deleted; an
  // existing blob's are left to the service (discarded at its next commit,
  // or after a week).
  Status abort_upload(const std::string& key, const std::string&, std::string_view path) override {
    Call c;
    c.method = "PUT";
    c.key = key;
    c.query = {{"comp", "blocklist"}};
    c.body = std::string("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList></BlockList>");
    c.headers = {{"If-None-Match", "*"}};
    XFER_ASSIGN_OR_RETURN(Answer a, run(c, "abort"));
    if (a.response.status == 409 || a.response.status == 412) return ok_status();  // one exists
    if (a.response.status / 100 != 2) return status_error(a.response, a.body, "abort", path);
    Call del;
    del.method = "DELETE";
    del.key = key;
    if (object::usable_etag(a.response.etag)) del.headers = {{"If-Match", a.response.etag}};
    XFER_ASSIGN_OR_RETURN(Answer d, run(del, "abort"));
    if (d.response.status / 100 == 2 || d.response.status == 404 || d.response.status == 412) {
      return ok_status();
    }
    return status_error(d.response, d.body, "abort", path);
  }

  // Copy Blob on one account (Shared Key authorises the source too; with a
  // SAS the source's URL carries it), the metadata replaced by the mtime.
  // A copy the service runs on after its answer (pending) is followed by
  // HEADs until it ends.
  Status server_copy(ObjectStore& source, const std::string& from_key, const std::string& key,
                     std::uint64_t, std::int64_t mtime_ns, std::string_view path) override {
    const auto& src = static_cast<const AzureBackend&>(source);
    if (src.cfg_.scheme != cfg_.scheme || src.cfg_.host != cfg_.host ||
        src.cfg_.base_path != cfg_.base_path || src.cfg_.account != cfg_.account) {
      return make_error(ErrorCode::kUnsupported, "copy_from", path, "another account");
    }
    std::string from =
        fmt::format("{}://{}{}/{}/{}", src.cfg_.scheme, src.cfg_.host, src.cfg_.base_path,
                    s3::uri_encode(src.cfg_.container, false), s3::uri_encode(from_key, true));
    if (!src.cfg_.sas.empty()) from += "?" + src.cfg_.sas;
    Call c;
    c.method = "PUT";
    c.key = key;
    c.body = std::string();
    c.headers = {{"x-ms-copy-source", from}, {kMtimeHeader, format_mtime(mtime_ns)}};
    XFER_ASSIGN_OR_RETURN(Answer a, run_ok(c, "copy", path));
    std::string status = a.response.header("x-ms-copy-status");
    for (int polls = 0; status == "pending" && polls < 7200; ++polls) {
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      Call head;
      head.method = "HEAD";
      head.key = key;
      XFER_ASSIGN_OR_RETURN(Answer h, run_ok(head, "copy", path));
      status = h.response.header("x-ms-copy-status");
    }
    if (!status.empty() && status != "success") {
      return make_error(ErrorCode::kIo, "copy", path,
                        fmt::format("the service's copy ended {}", printable_name(status, 40)),
                        RetryClass::kRetryCall);
    }
    return ok_status();
  }

  // The uncommitted block list: a journal block counts when the server
  // holds its id with its size.
  Result<std::optional<std::vector<bool>>> held_parts(
      const std::string& key, const std::string& upload, const std::vector<std::string>& notes,
      const std::function<std::uint64_t(std::uint64_t)>& len) override {
    Call c;
    c.key = key;
    c.query = {{"comp", "blocklist"}, {"blocklisttype", "uncommitted"}};
    XFER_ASSIGN_OR_RETURN(Answer a, run(c, "resume"));
    if (a.response.status == 404) {
      return make_error(ErrorCode::kNotFound, "resume", "/" + key, "the blocks are gone");
    }
    if (a.response.status / 100 != 2) return status_error(a.response, a.body, "resume", "/" + key);
    std::map<std::string, std::uint64_t> held_blocks;
    std::string name;
    std::uint64_t size = 0;
    XFER_TRY(s3::parse_xml(a.body, "BlockList", [&](const s3::XmlLeaf& l) {
      if (l.end) {
        if (l.path == "UncommittedBlocks/Block" && held_blocks.size() < 2 * kMaxAzureBlocks) {
          held_blocks[name] = size;
        }
        return ok_status();
      }
      if (l.path == "UncommittedBlocks/Block/Name") name = std::string(l.text);
      if (l.path == "UncommittedBlocks/Block/Size") {
        size = std::strtoull(std::string(l.text).c_str(), nullptr, 10);
      }
      return ok_status();
    }));
    std::vector<bool> held(notes.size());
    for (std::size_t i = 0; i < notes.size(); ++i) {
      auto it = held_blocks.find(block_id(upload, i));
      held[i] = !notes[i].empty() && it != held_blocks.end() && it->second == len(i);
    }
    return std::optional<std::vector<bool>>(std::move(held));
  }

 private:
  static std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }

  // Shared Key: "SharedKey account:base64(HMAC-SHA256(key, string-to-sign))".
  std::string sign(const Call& call, const std::string& path, const Headers& headers) const {
    std::map<std::string, std::string> std_headers;
    std::map<std::string, std::string> ms_headers;
    for (const auto& [k, v] : headers) {
      const std::string name = lower(k);
      if (name.rfind("x-ms-", 0) == 0) {
        ms_headers[name] = v;
      } else {
        std_headers[name] = v;
      }
    }
    std::uint64_t length = 0;
    if (call.body) length = call.body->size();
    if (call.upload_size) length = *call.upload_size;
    auto h = [&](const char* name) {
      auto it = std_headers.find(name);
      return it == std_headers.end() ? std::string() : it->second;
    };
    std::string sts = call.method + "\n";
    sts += h("content-encoding") + "\n" + h("content-language") + "\n";
    sts += (length == 0 ? std::string() : std::to_string(length)) + "\n";
    sts += h("content-md5") + "\n" + h("content-type") + "\n";
    sts += "\n";  // Date: x-ms-date is sent instead
    sts += h("if-modified-since") + "\n" + h("if-match") + "\n" + h("if-none-match") + "\n";
    sts += h("if-unmodified-since") + "\n" + h("range") + "\n";
    for (const auto& [k, v] : ms_headers) sts += k + ":" + v + "\n";
    sts += "/" + cfg_.account + path;
    std::map<std::string, std::vector<std::string>> query;
    for (const auto& [k, v] : call.query) query[lower(k)].push_back(v);
    for (auto& [k, values] : query) {
      std::sort(values.begin(), values.end());
      std::string joined;
      for (const std::string& v : values) joined += (joined.empty() ? "" : ",") + v;
      sts += "\n" + k + ":" + joined;
    }
    const auto mac = s3::hmac_sha256(cfg_.key, sts);
    return fmt::format("SharedKey {}:{}", cfg_.account, base64(mac));
  }

  Config cfg_;
};

}  // namespace

Result<std::unique_ptr<Backend>> make_azure_backend(const Url& url, const Profile& profile,
                                                    const EndpointOptions& options) {
  Config cfg;
  cfg.container = url.host;
  if (cfg.container.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                      "an az URL names a container: az://CONTAINER/blob");
  }
  const auto conn = parse_connection_string(profile.get("connection_string"));
  auto field = [&](const char* key, const char* conn_key) {
    std::string v = profile.get(key);
    if (v.empty()) {
      auto it = conn.find(conn_key);
      if (it != conn.end()) v = it->second;
    }
    return v;
  };
  cfg.account = field("account", "AccountName");
  const std::string key = field("key", "AccountKey");
  cfg.sas = field("sas_token", "SharedAccessSignature");
  while (!cfg.sas.empty() && cfg.sas.front() == '?') cfg.sas.erase(cfg.sas.begin());
  if (cfg.account.empty()) {
    return make_error(ErrorCode::kPermission, "open endpoint", url.to_string(),
                      "no Azure account: set account (and key or sas_token) in a remote "
                      "(xfer remote add NAME azure ...), $AZURE_STORAGE_ACCOUNT, or "
                      "$AZURE_STORAGE_CONNECTION_STRING");
  }
  if (key.empty() && cfg.sas.empty()) {
    return make_error(ErrorCode::kPermission, "open endpoint", url.to_string(),
                      "no Azure credentials: set key or sas_token in a remote, "
                      "$AZURE_STORAGE_KEY or $AZURE_STORAGE_SAS_TOKEN, or "
                      "$AZURE_STORAGE_CONNECTION_STRING");
  }
  if (cfg.sas.empty()) {
    auto decoded = unbase64(key);
    if (!decoded) {
      return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                        "the Azure account key is not base64");
    }
    cfg.key = std::move(*decoded);
  } else if (cfg.sas.find('\n') != std::string::npos || cfg.sas.find(' ') != std::string::npos ||
             cfg.sas.find('#') != std::string::npos) {
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                      "the SAS token is a URL query (sv=...&sig=...)");
  }
  std::string endpoint = field("endpoint", "BlobEndpoint");
  if (endpoint.empty()) endpoint = fmt::format("https://{}.blob.core.windows.net", cfg.account);
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
  cfg.base_path = e.path;  // "/devstoreaccount1" on Azurite; "" or "/" on Azure
  while (!cfg.base_path.empty() && cfg.base_path.back() == '/') cfg.base_path.pop_back();
  cfg.describe =
      fmt::format("az://{} at {}://{}{}", cfg.container, cfg.scheme, cfg.host, cfg.base_path);
  http::ExchangeConfig& x = cfg.exchange;
  x.https_only = cfg.scheme == "https";
  x.follow_redirects = false;  // a signed request is signed for its host
  x.ca = options.ca;
  x.insecure = options.insecure;
  x.user_agent = "xfer/" XFER_VERSION;
  x.server_name = "Azure Blob server";
  XFER_ASSIGN_OR_RETURN(const bool markers, object::profile_flag("directory_markers",
                                                                 profile.get("directory_markers")));
  auto b = std::make_unique<AzureBackend>(std::move(cfg));
  b->set_folder_markers(markers);
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace xfer
