// SFTP v3 requests and replies (protocol.hpp). Pure functions and the
// Framer; any thread.

#include "backend/sftp/protocol.hpp"

#include <fmt/format.h>

#include <cstring>

#include "xfer/core/names.hpp"

namespace xfer::sftp {
namespace {

constexpr std::uint32_t kAttrSize = 0x1;
constexpr std::uint32_t kAttrUidGid = 0x2;
constexpr std::uint32_t kAttrPermissions = 0x4;
constexpr std::uint32_t kAttrTimes = 0x8;
constexpr std::uint32_t kAttrExtended = 0x80000000;

// Builds one packet: the length prefix is filled in by finish().
class Writer {
 public:
  explicit Writer(Type type) {
    out_.resize(4);
    u8(static_cast<std::uint8_t>(type));
  }
  Writer& u8(std::uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  Writer& u32(std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out_.push_back(static_cast<char>((v >> s) & 0xff));
    return *this;
  }
  Writer& u64(std::uint64_t v) {
    u32(static_cast<std::uint32_t>(v >> 32));
    return u32(static_cast<std::uint32_t>(v));
  }
  Writer& str(std::string_view s) {
    u32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
    return *this;
  }
  Writer& bytes(std::span<const std::byte> b) {
    u32(static_cast<std::uint32_t>(b.size()));
    out_.append(reinterpret_cast<const char*>(b.data()), b.size());
    return *this;
  }
  Writer& attrs(const Attrs& a) {
    std::uint32_t flags = 0;
    if (a.size) flags |= kAttrSize;
    if (a.uid && a.gid) flags |= kAttrUidGid;
    if (a.permissions) flags |= kAttrPermissions;
    if (a.atime && a.mtime) flags |= kAttrTimes;
    u32(flags);
    if (a.size) u64(*a.size);
    if (a.uid && a.gid) u32(*a.uid).u32(*a.gid);
    if (a.permissions) u32(*a.permissions);
    if (a.atime && a.mtime) u32(*a.atime).u32(*a.mtime);
    return *this;
  }
  std::string finish() {
    const auto n = static_cast<std::uint32_t>(out_.size() - 4);
    for (int i = 0; i < 4; ++i)
      out_[static_cast<std::size_t>(i)] = static_cast<char>(n >> (24 - 8 * i));
    return std::move(out_);
  }

 private:
  std::string out_;
};

// Reads one packet's fields; every read checks what is left.
class Reader {
 public:
  explicit Reader(std::span<const std::byte> p) : p_(p) {}
  bool u8(std::uint8_t& v) {
    if (left() < 1) return false;
    v = static_cast<std::uint8_t>(p_[at_++]);
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (left() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<std::uint8_t>(p_[at_++]);
    return true;
  }
  bool u64(std::uint64_t& v) {
    std::uint32_t hi = 0;
    std::uint32_t lo = 0;
    if (!u32(hi) || !u32(lo)) return false;
    v = (static_cast<std::uint64_t>(hi) << 32) | lo;
    return true;
  }
  bool str(std::string& s, std::size_t max) {
    std::uint32_t n = 0;
    if (!u32(n) || n > left() || n > max) return false;
    s.assign(reinterpret_cast<const char*>(p_.data() + at_), n);
    at_ += n;
    return true;
  }
  bool attrs(Attrs& a) {
    std::uint32_t flags = 0;
    if (!u32(flags)) return false;
    if ((flags & kAttrSize) != 0) {
      std::uint64_t v = 0;
      if (!u64(v)) return false;
      a.size = v;
    }
    if ((flags & kAttrUidGid) != 0) {
      std::uint32_t u = 0;
      std::uint32_t g = 0;
      if (!u32(u) || !u32(g)) return false;
      a.uid = u;
      a.gid = g;
    }
    if ((flags & kAttrPermissions) != 0) {
      std::uint32_t v = 0;
      if (!u32(v)) return false;
      a.permissions = v;
    }
    if ((flags & kAttrTimes) != 0) {
      std::uint32_t at = 0;
      std::uint32_t mt = 0;
      if (!u32(at) || !u32(mt)) return false;
      a.atime = at;
      a.mtime = mt;
    }
    if ((flags & kAttrExtended) != 0) {
      std::uint32_t count = 0;
      if (!u32(count) || count > left() / 8) return false;  // two strings of >= 4 bytes each
      for (std::uint32_t i = 0; i < count; ++i) {
        std::string k;
        std::string v;
        if (!str(k, left()) || !str(v, left())) return false;
      }
    }
    return true;
  }
  std::size_t left() const { return p_.size() - at_; }

 private:
  std::span<const std::byte> p_;
  std::size_t at_ = 0;
};

Error corrupt(std::string_view what) {
  return make_error(ErrorCode::kCorrupt, "sftp", "",
                    fmt::format("malformed reply from the server: {}", what));
}

}  // namespace

std::string init_request() {
  Writer w(Type::kInit);
  w.u32(kProtocolVersion);
  return w.finish();
}

std::string open_request(std::uint32_t id, std::string_view path, std::uint32_t flags,
                         const Attrs& attrs) {
  Writer w(Type::kOpen);
  w.u32(id).str(path).u32(flags).attrs(attrs);
  return w.finish();
}

std::string close_request(std::uint32_t id, std::string_view handle) {
  return handle_request(Type::kClose, id, handle);
}

std::string read_request(std::uint32_t id, std::string_view handle, std::uint64_t offset,
                         std::uint32_t length) {
  Writer w(Type::kRead);
  w.u32(id).str(handle).u64(offset).u32(length);
  return w.finish();
}

std::string write_request(std::uint32_t id, std::string_view handle, std::uint64_t offset,
                          std::span<const std::byte> data) {
  Writer w(Type::kWrite);
  w.u32(id).str(handle).u64(offset).bytes(data);
  return w.finish();
}

std::string path_request(Type type, std::uint32_t id, std::string_view path) {
  Writer w(type);
  w.u32(id).str(path);
  return w.finish();
}

std::string handle_request(Type type, std::uint32_t id, std::string_view handle) {
  Writer w(type);
  w.u32(id).str(handle);
  return w.finish();
}

std::string setstat_request(std::uint32_t id, std::string_view path, const Attrs& attrs) {
  Writer w(Type::kSetstat);
  w.u32(id).str(path).attrs(attrs);
  return w.finish();
}

std::string fsetstat_request(std::uint32_t id, std::string_view handle, const Attrs& attrs) {
  Writer w(Type::kFsetstat);
  w.u32(id).str(handle).attrs(attrs);
  return w.finish();
}

std::string mkdir_request(std::uint32_t id, std::string_view path, const Attrs& attrs) {
  Writer w(Type::kMkdir);
  w.u32(id).str(path).attrs(attrs);
  return w.finish();
}

std::string rename_request(std::uint32_t id, std::string_view from, std::string_view to) {
  Writer w(Type::kRename);
  w.u32(id).str(from).str(to);
  return w.finish();
}

std::string symlink_request(std::uint32_t id, std::string_view link, std::string_view target) {
  Writer w(Type::kSymlink);
  w.u32(id).str(target).str(link);  // OpenSSH's order (see protocol.hpp)
  return w.finish();
}

std::string posix_rename_request(std::uint32_t id, std::string_view from, std::string_view to) {
  Writer w(Type::kExtended);
  w.u32(id).str("posix-rename@openssh.com").str(from).str(to);
  return w.finish();
}

std::string fsync_request(std::uint32_t id, std::string_view handle) {
  Writer w(Type::kExtended);
  w.u32(id).str("fsync@openssh.com").str(handle);
  return w.finish();
}

std::string lsetstat_request(std::uint32_t id, std::string_view path, const Attrs& attrs) {
  Writer w(Type::kExtended);
  w.u32(id).str("lsetstat@openssh.com").str(path).attrs(attrs);
  return w.finish();
}

std::string limits_request(std::uint32_t id) {
  Writer w(Type::kExtended);
  w.u32(id).str("limits@openssh.com");
  return w.finish();
}

Result<Limits> parse_limits(std::string_view payload) {
  Reader r(std::as_bytes(std::span(payload.data(), payload.size())));
  Limits l;
  if (!r.u64(l.max_packet) || !r.u64(l.max_read) || !r.u64(l.max_write) ||
      !r.u64(l.max_open_handles) || r.left() != 0) {
    return corrupt("limits@openssh.com reply");
  }
  return l;
}

Result<Reply> parse_reply(std::span<const std::byte> packet) {
  if (packet.size() > kMaxPacket) return corrupt("packet too long");
  Reader r(packet);
  Reply out;
  std::uint8_t type = 0;
  if (!r.u8(type)) return corrupt("empty packet");
  out.type = static_cast<Type>(type);
  if (out.type == Type::kVersion) {
    if (!r.u32(out.version)) return corrupt("short VERSION");
    while (r.left() > 0) {
      std::string name;
      std::string data;
      if (!r.str(name, 256) || !r.str(data, 4096)) return corrupt("VERSION extension");
      if (out.extensions.size() >= 64) return corrupt("more than 64 extensions");
      out.extensions.emplace_back(std::move(name), std::move(data));
    }
    return out;
  }
  if (!r.u32(out.id)) return corrupt("no request id");
  switch (out.type) {
    case Type::kStatus: {
      std::uint32_t code = 0;
      if (!r.u32(code)) return corrupt("short STATUS");
      out.status = static_cast<Status>(code);
      // The message and language tag are optional in some servers.
      if (r.left() > 0) {
        std::string lang;
        if (!r.str(out.message, 1024) || (r.left() > 0 && !r.str(lang, 256))) {
          return corrupt("STATUS message");
        }
      }
      break;
    }
    case Type::kHandle:
      if (!r.str(out.bytes, kMaxHandle) || out.bytes.empty()) return corrupt("HANDLE");
      break;
    case Type::kData:
      if (!r.str(out.bytes, kMaxData)) return corrupt("DATA");
      break;
    case Type::kName: {
      std::uint32_t count = 0;
      // Each entry is at least two strings and a flags word: 12 bytes.
      if (!r.u32(count) || count > r.left() / 12) return corrupt("NAME count");
      out.names.reserve(count);
      for (std::uint32_t i = 0; i < count; ++i) {
        NameEntry e;
        if (!r.str(e.name, 4096) || !r.str(e.longname, 8192) || !r.attrs(e.attrs)) {
          return corrupt("NAME entry");
        }
        out.names.push_back(std::move(e));
      }
      break;
    }
    case Type::kAttrs:
      if (!r.attrs(out.attrs)) return corrupt("ATTRS");
      break;
    case Type::kExtendedReply:
      out.bytes.assign(reinterpret_cast<const char*>(packet.data()) + (packet.size() - r.left()),
                       r.left());
      return out;
    default:
      return corrupt(fmt::format("a packet of type {} is no reply", type));
  }
  if (r.left() != 0) return corrupt("bytes after the reply");
  return out;
}

void Framer::feed(std::span<const std::byte> bytes) {
  if (broken_) return;
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > (1u << 20)) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

std::optional<Result<std::vector<std::byte>>> Framer::next() {
  if (broken_) return Result<std::vector<std::byte>>(corrupt("the stream is broken"));
  if (buffered() < 4) return std::nullopt;
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i)
    n = (n << 8) | static_cast<std::uint8_t>(buf_[pos_ + static_cast<std::size_t>(i)]);
  if (n == 0 || n > kMaxPacket) {
    broken_ = true;
    return Result<std::vector<std::byte>>(
        corrupt(fmt::format("a packet of {} bytes (the most is {})", n, kMaxPacket)));
  }
  if (buffered() < 4 + static_cast<std::size_t>(n)) return std::nullopt;
  const auto begin = buf_.begin() + static_cast<std::ptrdiff_t>(pos_ + 4);
  std::vector<std::byte> packet(begin, begin + static_cast<std::ptrdiff_t>(n));
  pos_ += 4 + n;
  return Result<std::vector<std::byte>>(std::move(packet));
}

Error status_error(const Reply& reply, std::string_view op, std::string_view path) {
  const std::string said = printable_name(reply.message, 200);
  switch (reply.status) {
    case Status::kNoSuchFile:
      return make_error(ErrorCode::kNotFound, op, path, said);
    case Status::kPermissionDenied:
      return make_error(ErrorCode::kPermission, op, path, said);
    case Status::kOpUnsupported:
      return make_error(ErrorCode::kUnsupported, op, path,
                        fmt::format("the server does not support it ({})", said));
    case Status::kNoConnection:
    case Status::kConnectionLost:
      return make_error(ErrorCode::kUnavailable, op, path, said, RetryClass::kRetryCall);
    case Status::kEof:
      return make_error(ErrorCode::kIo, op, path, "end of file");
    default:
      return make_error(ErrorCode::kIo, op, path,
                        fmt::format("the server failed (SFTP status {}): {}",
                                    static_cast<std::uint32_t>(reply.status), said));
  }
}

}  // namespace xfer::sftp
