// The s3 backend (include/xfer/backend/s3.hpp, docs/s3.md): S3's dialect of
// the object store (backend/object/object_store.hpp). Every request is
// signed with SigV4 (sign.hpp); answers are XML read by xml.hpp; a chunked
// file goes up as a multipart upload, one part per chunk, its upload id
// and part ETags the journal's notes.
//
// Owns: its configuration; the ObjectStore owns the connections.
// Threading: as ObjectStore; the dialect's hooks are const or touch only
// the request they make.

#include "xfer/backend/s3.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <vector>

#include "backend/http/index.hpp"
#include "backend/object/object_store.hpp"
#include "backend/s3/sign.hpp"
#include "backend/s3/xml.hpp"
#include "xfer/core/names.hpp"
#include "xfer/core/units.hpp"

#ifndef XFER_VERSION
#define XFER_VERSION "dev"
#endif

namespace xfer {
namespace {

using http::Exchange;
using http::Response;
using object::Answer;
using object::Call;
using object::Headers;
using object::Listed;
using object::Page;

constexpr std::uint64_t kMaxObject = 5ull << 40;
constexpr std::uint64_t kCopyLanes = 8;  // UploadPartCopy requests in flight for one object
// rclone's metadata key for the modification time: the two tools read
// each other's mtimes (seconds since the epoch, with a fraction).
constexpr const char* kMtimeHeader = "x-amz-meta-mtime";

struct Config {
  std::string scheme;  // "http" or "https"
  std::string host;    // host[:port] of the endpoint
  std::string bucket;
  bool path_style = true;
  s3::Credentials credentials;
  http::ExchangeConfig exchange;
  std::string describe;
  std::uint64_t copy_cutoff = 5ull << 30;  // the profile's copy_cutoff
};

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
  // Nanoseconds in an int64 reach the years 1678 to 2262.
  if (digits == 0 || secs > 9'000'000'000) return std::nullopt;
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

// Content-MD5 of a request body: base64 of its MD5.
std::string md5_base64(std::string_view body) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_Digest(body.data(), body.size(), md.data(), &len, EVP_md5(), nullptr);
  std::array<unsigned char, 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1> b64{};
  const int n = EVP_EncodeBlock(b64.data(), md.data(), static_cast<int>(len));
  return std::string(reinterpret_cast<const char*>(b64.data()), static_cast<std::size_t>(n));
}

object::StoreError parse_error(std::string_view body) {
  object::StoreError e;
  (void)s3::parse_xml(body, "error", [&](const s3::XmlLeaf& l) {
    if (l.end) return ok_status();
    if (l.path == "Code") e.code = printable_name(l.text, 80);
    if (l.path == "Message") e.message = printable_name(l.text, 300);
    return ok_status();
  });
  return e;
}

// The root element of an answer that parses ("" otherwise): a copy or a
// completion can fail after its 200, with an <Error> in the body.
std::string root_of(std::string_view body, std::string_view op) {
  std::string root;
  if (body.empty() || !s3::parse_xml(
                           body, op, [](const s3::XmlLeaf&) { return ok_status(); }, &root)
                           .ok()) {
    return "";
  }
  return root;
}

class S3Backend final : public object::ObjectStore {
 public:
  explicit S3Backend(Config cfg) : ObjectStore(cfg.exchange, cfg.describe), cfg_(std::move(cfg)) {
    caps_.min_part_size = kS3MinPart;
    caps_.max_parts = kS3MaxParts;
    caps_.listed_mtimes = false;  // LastModified; the mtime is x-amz-meta-mtime
    max_object_ = kMaxObject;
    max_single_put_ = 5ull << 30;
    copy_cutoff_ = cfg_.copy_cutoff;
    max_key_ = 1024;
    scheme_ = "s3";
  }

  void set_scheme(const char* scheme) { scheme_ = scheme; }

  Result<Exchange::Request> address(const Call& call) const override {
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
    return x;
  }

  // An answer other than 2xx, in words a user can act on.
  Error status_error(const Response& r, std::string_view body, std::string_view op,
                     std::string_view what) const override {
    using Kind = object::StoreError::Kind;
    object::StoreError e = parse_error(body);
    if (e.code == "NoSuchBucket") e.kind = Kind::kNoContainer;
    if (e.code == "NoSuchKey" || e.code == "NoSuchUpload") e.kind = Kind::kNotFound;
    if (e.code == "InvalidAccessKeyId" || e.code == "SignatureDoesNotMatch" ||
        e.code == "AccessDenied") {
      e.kind = Kind::kDenied;
    }
    if (e.code == "SlowDown" || e.code == "RequestTimeout") e.kind = Kind::kThrottled;
    return object::answer_error(
        r, e, op, what,
        fmt::format("no such bucket '{}' at {}", printable_name(cfg_.bucket, 80), describe()),
        "access_key_id and secret_access_key: the remote, "
        "$AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY or ~/.aws/credentials");
  }

  Result<FileAttrs> object_attrs(const Response& r, std::string_view path) const override {
    if (!r.content_length || *r.content_length > kMaxObject) {
      return make_error(ErrorCode::kCorrupt, "stat", path,
                        "the server gives the object no size, or one over 5 TiB");
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
    return {{kMtimeHeader, format_mtime(mtime_ns)}, {"Content-Type", object::content_type_of(key)}};
  }

  // ListObjectsV2. An entry's mtime is its LastModified: the listing
  // carries no metadata.
  Call list_call(const std::string& prefix, bool delimited, std::size_t max,
                 const std::string& token) const override {
    Call c;
    c.query = {{"list-type", "2"}, {"prefix", prefix}, {"max-keys", std::to_string(max)}};
    if (delimited) c.query.emplace_back("delimiter", "/");
    if (!token.empty()) c.query.emplace_back("continuation-token", token);
    return c;
  }
  Result<Page> read_page(std::string_view body, std::string_view prefix,
                         const std::function<Status(Listed&&)>& each) const override {
    Page page;
    Listed l;
    const Status parsed = s3::parse_xml(body, "list", [&](const s3::XmlLeaf& x) -> Status {
      if (x.end) {
        if (x.path == "Contents" || x.path == "CommonPrefixes") {
          l.prefix = x.path == "CommonPrefixes";
          XFER_TRY(each(std::move(l)));
          l = Listed{};
        }
        return ok_status();
      }
      if (x.path == "Contents/Key" || x.path == "CommonPrefixes/Prefix") l.key = x.text;
      if (x.path == "Contents/Size")
        l.size = std::strtoull(std::string(x.text).c_str(), nullptr, 10);
      if (x.path == "Contents/LastModified") l.mtime_ns = parse_iso(x.text).value_or(0);
      if (x.path == "IsTruncated") page.truncated = x.text == "true";
      if (x.path == "NextContinuationToken") page.next = x.text;
      return ok_status();
    });
    XFER_TRY(parsed);
    (void)prefix;
    return page;
  }

  // A copy onto itself with the metadata replaced.
  Status set_mtime(const std::string& key, std::int64_t mtime_ns, std::string_view op) override {
    Call c;
    c.method = "PUT";
    c.key = key;
    c.body = std::string();
    c.headers = {{"x-amz-copy-source",
                  "/" + s3::uri_encode(cfg_.bucket, false) + "/" + s3::uri_encode(key, true)},
                 {"x-amz-metadata-directive", "REPLACE"},
                 {kMtimeHeader, format_mtime(mtime_ns)},
                 {"Content-Type", object::content_type_of(key)}};
    XFER_ASSIGN_OR_RETURN(Answer a, run_ok(c, op, "/" + key));
    if (root_of(a.body, op) == "Error") {
      a.response.status = 500;
      return status_error(a.response, a.body, op, "/" + key);
    }
    return ok_status();
  }

  // DeleteObjects: the batch in one POST, quiet (only the keys that were
  // not deleted come back, each with its error).
  Status delete_keys(const std::vector<std::string>& keys) override {
    if (keys.empty()) return ok_status();
    std::string xml = "<Delete><Quiet>true</Quiet>";
    for (const std::string& k : keys) {
      xml += "<Object><Key>" + object::xml_escape(k) + "</Key></Object>";
    }
    xml += "</Delete>";
    Call c;
    c.method = "POST";
    c.query = {{"delete", ""}};
    c.headers = {{"Content-MD5", md5_base64(xml)}, {"Content-Type", "application/xml"}};
    c.body = std::move(xml);
    XFER_ASSIGN_OR_RETURN(Answer a, run_ok(c, "remove", "/" + keys.front()));
    if (root_of(a.body, "remove") == "Error") {
      a.response.status = 500;
      return status_error(a.response, a.body, "remove", "/" + keys.front());
    }
    std::size_t failures = 0;
    std::string key;
    std::string code;
    std::string message;
    object::StoreError first;
    std::string first_key;
    XFER_TRY(s3::parse_xml(a.body, "remove", [&](const s3::XmlLeaf& x) -> Status {
      if (x.end) {
        if (x.path == "Error" && failures++ == 0) {
          first_key = std::move(key);
          first.code = std::move(code);
          first.message = std::move(message);
        }
        return ok_status();
      }
      if (x.path == "Error/Key") key = x.text;
      if (x.path == "Error/Code") code = x.text;
      if (x.path == "Error/Message") message = x.text;
      return ok_status();
    }));
    if (failures == 0) return ok_status();
    return make_error(first.code == "AccessDenied" ? ErrorCode::kPermission : ErrorCode::kIo,
                      "remove", "/" + printable_name(first_key, 200),
                      fmt::format("{} of the {} objects were not deleted; this one: {}: {}",
                                  failures, keys.size(), printable_name(first.code, 80),
                                  printable_name(first.message, 200)));
  }

  Result<std::string> begin_upload(const std::string& key, std::int64_t mtime_ns,
                                   std::string_view path) override {
    Call c;
    c.method = "POST";
    c.key = key;
    c.query = {{"uploads", ""}};
    c.body = std::string();
    c.headers = put_headers(key, mtime_ns);
    XFER_ASSIGN_OR_RETURN(Answer a, run_ok(c, "open_sink", path));
    std::string id;
    XFER_TRY(s3::parse_xml(a.body, "CreateMultipartUpload", [&](const s3::XmlLeaf& l) {
      if (!l.end && l.path == "UploadId") id = l.text;
      return ok_status();
    }));
    return id;
  }

  Call part_call(const std::string& key, const std::string& upload,
                 std::uint64_t index) const override {
    Call c;
    c.method = "PUT";
    c.key = key;
    c.query = {{"partNumber", std::to_string(index + 1)}, {"uploadId", upload}};
    return c;
  }

  // The part's note is its ETag, checked against the MD5 of what was sent
  // where the ETag is one.
  Result<std::string> part_taken(const Response& r, std::uint64_t index, const std::string& md5,
                                 std::string_view path) const override {
    if (!object::usable_etag(r.etag)) {
      return make_error(ErrorCode::kCorrupt, "write", path,
                        "the server answered without an ETag of 1 to 1024 printable characters");
    }
    if (etag_is_md5(r.etag) && unquote(r.etag) != md5) {
      return make_error(ErrorCode::kCorrupt, "write", path,
                        fmt::format("part {}: the server stored other bytes than were sent "
                                    "(ETag {} is not their MD5 {})",
                                    index + 1, printable_name(r.etag, 80), md5),
                        RetryClass::kRetryCall);
    }
    return r.etag;
  }

  Status complete_upload(const std::string& key, const std::string& upload,
                         const std::vector<std::string>& notes, std::int64_t,
                         std::string_view path) override {
    std::string xml = "<CompleteMultipartUpload>";
    for (std::size_t i = 0; i < notes.size(); ++i) {
      xml += fmt::format("<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>", i + 1,
                         object::xml_escape(notes[i]));
    }
    xml += "</CompleteMultipartUpload>";
    Call c;
    c.method = "POST";
    c.key = key;
    c.query = {{"uploadId", upload}};
    c.body = std::move(xml);
    c.headers = {{"Content-Type", "application/xml"}};
    XFER_ASSIGN_OR_RETURN(Answer a, run_ok(c, "commit", path));
    if (root_of(a.body, "CompleteMultipartUpload") == "Error") {
      a.response.status = 500;
      return status_error(a.response, a.body, "commit", path);
    }
    return ok_status();
  }

  Status abort_upload(const std::string& key, const std::string& upload,
                      std::string_view path) override {
    Call c;
    c.method = "DELETE";
    c.key = key;
    c.query = {{"uploadId", upload}};
    XFER_ASSIGN_OR_RETURN(Answer a, run(c, "abort"));
    const int st = a.response.status;
    if (st / 100 == 2 || st == 404) return ok_status();
    // Test servers without AbortMultipartUpload (s3rver): nothing more to do.
    if (st == 405 || st == 501) return ok_status();
    return status_error(a.response, a.body, "abort", path);
  }

  // CopyObject, with the metadata replaced (the mtime the copy keeps), on
  // one endpoint with one key (the destination's key must read the
  // source). An object over 5 GiB would need UploadPartCopy: not built, it
  // is streamed.
  Status server_copy(ObjectStore& source, const std::string& from_key, const std::string& key,
                     std::uint64_t size, std::int64_t mtime_ns, std::string_view path) override {
    auto& src = static_cast<S3Backend&>(source);
    if (src.cfg_.scheme != cfg_.scheme || src.cfg_.host != cfg_.host ||
        src.cfg_.credentials.access_key_id != cfg_.credentials.access_key_id) {
      return make_error(ErrorCode::kUnsupported, "copy_from", path,
                        "another endpoint, or other keys");
    }
    if (size > copy_cutoff_) return copy_in_parts(src, from_key, key, size, mtime_ns, path);
    Call c;
    c.method = "PUT";
    c.key = key;
    c.body = std::string();
    c.headers = {{"x-amz-copy-source", copy_source(src, from_key)},
                 {"x-amz-metadata-directive", "REPLACE"},
                 {kMtimeHeader, format_mtime(mtime_ns)},
                 {"Content-Type", object::content_type_of(key)}};
    XFER_ASSIGN_OR_RETURN(Answer a, run_ok(c, "copy", path));
    if (root_of(a.body, "copy") == "Error") {
      a.response.status = 500;
      return status_error(a.response, a.body, "copy", path);
    }
    return ok_status();
  }

  // The x-amz-copy-source of `from_key` in `src`'s bucket.
  static std::string copy_source(const S3Backend& src, const std::string& from_key) {
    return "/" + s3::uri_encode(src.cfg_.bucket, false) + "/" + s3::uri_encode(from_key, true);
  }

  // UploadPartCopy: the object in parts of copy_cutoff_ (larger where
  // 10,000 would not hold it), kCopyLanes parts at a time, each checked
  // against the source's ETag (x-amz-copy-source-if-match: a source
  // replaced meanwhile is kChanged), then CompleteMultipartUpload; on any
  // failure the upload is aborted. A store without UploadPartCopy (501)
  // is kUnsupported: the engine streams the object through xfer.
  Status copy_in_parts(S3Backend& src, const std::string& from_key, const std::string& key,
                       std::uint64_t size, std::int64_t mtime_ns, std::string_view path) {
    Call head;
    head.method = "HEAD";
    head.key = from_key;
    XFER_ASSIGN_OR_RETURN(Answer h, src.run_ok(head, "copy", "/" + from_key));
    XFER_ASSIGN_OR_RETURN(FileAttrs now, src.object_attrs(h.response, "/" + from_key));
    const std::string etag = h.response.etag;
    if (now.size != size || !object::usable_etag(etag)) {
      return make_error(ErrorCode::kChanged, "copy", path,
                        "the source was replaced, or has no usable ETag, since it was opened",
                        RetryClass::kRetryFile);
    }
    const std::uint64_t part =
        std::min(max_single_put_, std::max(copy_cutoff_, (size + kS3MaxParts - 1) / kS3MaxParts));
    const std::uint64_t parts = (size + part - 1) / part;
    XFER_ASSIGN_OR_RETURN(std::string upload, begin_upload(key, mtime_ns, path));
    std::vector<std::string> etags(parts);  // each index written by one lane
    Status copied = object::in_lanes(parts, kCopyLanes, [&](std::size_t i) -> Status {
      const std::uint64_t first = i * part;
      const std::uint64_t last = std::min(size, first + part) - 1;
      Call c;
      c.method = "PUT";
      c.key = key;
      c.query = {{"partNumber", std::to_string(i + 1)}, {"uploadId", upload}};
      c.body = std::string();
      c.headers = {{"x-amz-copy-source", copy_source(src, from_key)},
                   {"x-amz-copy-source-range", fmt::format("bytes={}-{}", first, last)},
                   {"x-amz-copy-source-if-match", etag}};
      XFER_ASSIGN_OR_RETURN(etags[i], copied_part(c, i, path));
      return ok_status();
    });
    if (copied.ok()) copied = complete_upload(key, upload, etags, mtime_ns, path);
    if (copied.ok()) return copied;
    (void)abort_upload(key, upload, path);  // its own failure adds nothing to the first
    return copied;
  }

  // One UploadPartCopy's answer: the part's ETag from its CopyPartResult.
  Result<std::string> copied_part(const Call& c, std::uint64_t index, std::string_view path) {
    XFER_ASSIGN_OR_RETURN(Answer a, run(c, "copy"));
    if (a.response.status == 501) {
      return make_error(ErrorCode::kUnsupported, "copy_from", path,
                        "the store does not copy parts (UploadPartCopy): streamed instead");
    }
    if (a.response.status / 100 != 2) return status_error(a.response, a.body, "copy", path);
    std::string etag;
    std::string root;
    XFER_TRY(s3::parse_xml(
        a.body, "UploadPartCopy",
        [&](const s3::XmlLeaf& l) {
          if (!l.end && l.path == "ETag") etag = std::string(l.text);
          return ok_status();
        },
        &root));
    if (root == "Error") {
      a.response.status = 500;  // an error in a 200: S3 can fail a copy after its answer began
      return status_error(a.response, a.body, "copy", path);
    }
    if (root != "CopyPartResult" || !object::usable_etag(etag)) {
      return make_error(ErrorCode::kCorrupt, "copy", path,
                        fmt::format("part {}: the answer is not a CopyPartResult with an ETag of "
                                    "1 to 1024 printable characters",
                                    index + 1));
    }
    return etag;
  }

  // ListParts: each journal ETag is checked against the server's.
  Result<std::optional<std::vector<bool>>> held_parts(
      const std::string& key, const std::string& upload, const std::vector<std::string>& notes,
      const std::function<std::uint64_t(std::uint64_t)>&) override {
    Call c;
    c.key = key;
    c.query = {{"uploadId", upload}, {"max-parts", "1000"}};
    std::map<std::uint64_t, std::string> listed;
    std::string marker;
    for (int page = 0; page < 20; ++page) {
      if (!marker.empty()) c.query = {{"uploadId", upload}, {"part-number-marker", marker}};
      XFER_ASSIGN_OR_RETURN(Answer a, run(c, "resume"));
      if (a.response.status == 404) {
        return make_error(ErrorCode::kNotFound, "resume", "/" + key, "the upload is gone");
      }
      if (a.response.status == 405 || a.response.status == 501) {
        return std::optional<std::vector<bool>>();  // no ListParts here: the journal alone
      }
      if (a.response.status / 100 != 2) {
        return status_error(a.response, a.body, "resume", "/" + key);
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
    std::vector<bool> held(notes.size());
    for (std::size_t i = 0; i < notes.size(); ++i) {
      auto it = listed.find(i + 1);
      held[i] = !notes[i].empty() && it != listed.end() && unquote(it->second) == unquote(notes[i]);
    }
    return std::optional<std::vector<bool>>(std::move(held));
  }

 private:
  Config cfg_;
  // Objects larger are copied in parts of this size (UploadPartCopy);
  // CopyObject takes one of at most 5 GiB.
  std::uint64_t copy_cutoff_ = 5ull << 30;
};

}  // namespace

namespace {

// What differs between S3 and GCS's XML API: defaults, and the words.
struct Flavour {
  const char* scheme;
  const char* default_region;
  const char* default_endpoint;  // "" : AWS's, by region
  const char* no_keys;
  const char* server_name;
};

constexpr Flavour kS3{"s3", "us-east-1", "",
                      "no S3 credentials: set access_key_id and secret_access_key in a remote "
                      "(xfer remote add NAME s3 ...), $AWS_ACCESS_KEY_ID and "
                      "$AWS_SECRET_ACCESS_KEY, or ~/.aws/credentials",
                      "S3 server"};
constexpr Flavour kGcs{"gs", "auto", "https://storage.googleapis.com",
                       "no GCS HMAC keys: set access_key_id and secret_access_key in a remote "
                       "(xfer remote add NAME gs ...), or gs_access_key_id and "
                       "gs_secret_access_key in ~/.boto",
                       "GCS server"};

Result<std::unique_ptr<Backend>> make_store(const Url& url, const Profile& profile,
                                            const EndpointOptions& options, const Flavour& f) {
  Config cfg;
  cfg.bucket = url.host;
  if (cfg.bucket.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "open endpoint", url.to_string(),
                      fmt::format("a {0} URL names a bucket: {0}://BUCKET/key", f.scheme));
  }
  cfg.credentials.access_key_id = profile.get("access_key_id");
  cfg.credentials.secret_access_key = profile.get("secret_access_key");
  cfg.credentials.session_token = profile.get("session_token");
  cfg.credentials.region = profile.get("region", f.default_region);
  if (cfg.credentials.access_key_id.empty() || cfg.credentials.secret_access_key.empty()) {
    return make_error(ErrorCode::kPermission, "open endpoint", url.to_string(), f.no_keys);
  }
  std::string endpoint = profile.get("endpoint");
  const bool aws = endpoint.empty() && *f.default_endpoint == '\0';
  if (aws) endpoint = fmt::format("https://s3.{}.amazonaws.com", cfg.credentials.region);
  if (endpoint.empty()) endpoint = f.default_endpoint;
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
  cfg.describe = fmt::format("{}://{} at {}://{}", f.scheme, cfg.bucket, cfg.scheme, cfg.host);
  http::ExchangeConfig& x = cfg.exchange;
  x.https_only = cfg.scheme == "https";
  x.follow_redirects = false;  // a signed request is signed for its host
  x.ca = options.ca;
  x.insecure = options.insecure;
  x.user_agent = "xfer/" XFER_VERSION;
  x.server_name = f.server_name;
  if (const std::string cutoff = profile.get("copy_cutoff"); !cutoff.empty()) {
    auto n = parse_size(cutoff);
    if (!n || *n < kS3MinPart || *n > (5ull << 30)) {
      return make_error(
          ErrorCode::kInvalidArgument, "open endpoint", "copy_cutoff",
          fmt::format("'{}' is not a size from 5M to 5G", printable_name(cutoff, 40)));
    }
    cfg.copy_cutoff = *n;
  }
  XFER_ASSIGN_OR_RETURN(const bool markers, object::profile_flag("directory_markers",
                                                                 profile.get("directory_markers")));
  auto b = std::make_unique<S3Backend>(std::move(cfg));
  b->set_scheme(f.scheme);
  b->set_folder_markers(markers);
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace

Result<std::unique_ptr<Backend>> make_s3_backend(const Url& url, const Profile& profile,
                                                 const EndpointOptions& options) {
  return make_store(url, profile, options, kS3);
}

Result<std::unique_ptr<Backend>> make_gcs_backend(const Url& url, const Profile& profile,
                                                  const EndpointOptions& options) {
  return make_store(url, profile, options, kGcs);
}

}  // namespace xfer
