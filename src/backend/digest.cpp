// Whole-file digests and block signatures (backend.hpp): the defaults of
// Backend::checksum, Backend::signature and Backend::watch (none), and the
// readers xferd's Checksum and Signature RPCs use. Run on the caller's
// thread; the Source is the caller's.

#include <vector>

#include <fmt/format.h>

#include "xfer/backend/backend.hpp"

namespace xfer {

Result<FileDigest> digest_source(Source& source, const std::function<bool()>& stop) {
  constexpr std::size_t kPiece = 1u << 20;
  std::vector<std::byte> buf(kPiece);
  Xxh3Stream128 hash;
  std::uint64_t pos = 0;
  for (;;) {
    if (stop && stop()) return make_error(ErrorCode::kCancelled, "checksum", "");
    XFER_ASSIGN_OR_RETURN(std::size_t n, source.read_at(Offset{pos}, buf));
    if (n == 0) break;
    hash.update(std::span<const std::byte>(buf.data(), n));
    pos += n;
  }
  const FileAttrs& attrs = source.attrs();
  if (pos != attrs.size) {
    return make_error(ErrorCode::kChanged, "checksum", "", "file changed while being read",
                      RetryClass::kRetryFile);
  }
  XFER_TRY(source.check_unchanged());
  FileDigest d;
  d.size = pos;
  d.mtime_ns = attrs.mtime_ns;
  std::tie(d.high, d.low) = hash.digest();
  return d;
}

Result<Signature> signature_source(Source& source, const CdcParams& params,
                                   const std::function<bool()>& stop,
                                   const std::function<Status(const BlockSig&)>& on_block) {
  XFER_TRY(validate_cdc_params(params));
  constexpr std::size_t kPiece = 1u << 20;
  std::vector<std::byte> buf(kPiece);
  Signature sig;
  sig.params = params;
  Status sent = ok_status();
  CdcChunker chunker(params, [&](const BlockSig& b) {
    if (!on_block) {
      sig.blocks.push_back(b);
    } else if (sent.ok()) {
      sent = on_block(b);
    }
  });
  Xxh3Stream128 hash;
  std::uint64_t pos = 0;
  for (;;) {
    if (stop && stop()) return make_error(ErrorCode::kCancelled, "signature", "");
    XFER_ASSIGN_OR_RETURN(std::size_t n, source.read_at(Offset{pos}, buf));
    if (n == 0) break;
    const std::span<const std::byte> piece(buf.data(), n);
    hash.update(piece);
    chunker.update(piece);
    XFER_TRY(sent);
    pos += n;
  }
  chunker.finish();
  XFER_TRY(sent);
  const FileAttrs& attrs = source.attrs();
  if (pos != attrs.size) {
    return make_error(ErrorCode::kChanged, "signature", "", "file changed while being read",
                      RetryClass::kRetryFile);
  }
  XFER_TRY(source.check_unchanged());
  sig.size = pos;
  sig.mtime_ns = attrs.mtime_ns;
  sig.digest.size = pos;
  sig.digest.mtime_ns = attrs.mtime_ns;
  std::tie(sig.digest.high, sig.digest.low) = hash.digest();
  return sig;
}

Result<Signature> Backend::signature(std::string_view path, const CdcParams& params,
                                     std::uint64_t size_hint, const std::atomic<bool>* cancel) {
  (void)size_hint;
  XFER_ASSIGN_OR_RETURN(std::unique_ptr<Source> source, open_source(path));
  if (source->attrs().type != EntryType::kFile) {
    return make_error(ErrorCode::kInvalidArgument, "signature", path, "not a regular file");
  }
  auto sig = signature_source(*source, params, [cancel] {
    return cancel != nullptr && cancel->load(std::memory_order_relaxed);
  });
  if (!sig && sig.error().path.empty()) {
    Error e = std::move(sig).error();
    e.path = std::string(path);
    return e;
  }
  return sig;
}

Result<FileDigest> Backend::checksum(std::string_view path, std::uint64_t size_hint,
                                     const std::atomic<bool>* cancel) {
  (void)size_hint;
  XFER_ASSIGN_OR_RETURN(std::unique_ptr<Source> source, open_source(path));
  if (source->attrs().type != EntryType::kFile) {
    return make_error(ErrorCode::kInvalidArgument, "checksum", path, "not a regular file");
  }
  auto digest = digest_source(
      *source, [cancel] { return cancel != nullptr && cancel->load(std::memory_order_relaxed); });
  if (!digest && digest.error().path.empty()) {
    Error e = std::move(digest).error();
    e.path = std::string(path);
    return e;
  }
  return digest;
}

Result<std::unique_ptr<ChangeWatch>> Backend::watch(std::string_view path, std::size_t root,
                                                    std::shared_ptr<ChangeFeed> feed,
                                                    const WatchOptions& options) {
  (void)root;
  (void)feed;
  (void)options;
  return make_error(ErrorCode::kUnsupported, "watch", path,
                    fmt::format("{} cannot follow changes (sync --watch)", describe()));
}

}  // namespace xfer
