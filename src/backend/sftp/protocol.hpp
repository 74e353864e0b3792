#pragma once
// SFTP version 3 (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it) on
// the wire: the requests the sftp:// backend sends, and the replies it
// reads, which are a server's bytes and hostile (docs/dependencies.md,
// "The SFTP library", says why xfer speaks SFTP itself on a channel that
// libssh opens: pipelined writes). Every length is checked against what
// is left of its packet before anything is sized from it; a packet is at
// most kMaxPacket bytes.
//
// Pure functions and a value type (Framer); any thread, one Framer per
// channel.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xfer/core/result.hpp"

namespace xfer::sftp {

inline constexpr std::uint32_t kProtocolVersion = 3;
// OpenSSH's sftp-server refuses packets over 256 KiB; a reply of a read of
// 255 KiB fits, with room for its header.
inline constexpr std::size_t kMaxPacket = (256u << 10) + 1024;
// The most bytes one read or write carries (the data of a DATA reply or a
// WRITE request), under kMaxPacket.
inline constexpr std::uint32_t kMaxData = 255u << 10;
// A file handle is at most 256 bytes (the draft's limit).
inline constexpr std::size_t kMaxHandle = 256;

enum class Type : std::uint8_t {
  kInit = 1,
  kVersion = 2,
  kOpen = 3,
  kClose = 4,
  kRead = 5,
  kWrite = 6,
  kLstat = 7,
  kFstat = 8,
  kSetstat = 9,
  kFsetstat = 10,
  kOpendir = 11,
  kReaddir = 12,
  kRemove = 13,
  kMkdir = 14,
  kRmdir = 15,
  kRealpath = 16,
  kStat = 17,
  kRename = 18,
  kReadlink = 19,
  kSymlink = 20,
  kStatus = 101,
  kHandle = 102,
  kData = 103,
  kName = 104,
  kAttrs = 105,
  kExtended = 200,
  kExtendedReply = 201,
};

// SSH_FXF_* open flags.
inline constexpr std::uint32_t kOpenRead = 0x01;
inline constexpr std::uint32_t kOpenWrite = 0x02;
inline constexpr std::uint32_t kOpenAppend = 0x04;
inline constexpr std::uint32_t kOpenCreate = 0x08;
inline constexpr std::uint32_t kOpenTruncate = 0x10;
inline constexpr std::uint32_t kOpenExclusive = 0x20;

// SSH_FX_* status codes.
enum class Status : std::uint32_t {
  kOk = 0,
  kEof = 1,
  kNoSuchFile = 2,
  kPermissionDenied = 3,
  kFailure = 4,
  kBadMessage = 5,
  kNoConnection = 6,
  kConnectionLost = 7,
  kOpUnsupported = 8,
};

// File attributes; each member is present when the server sent it (or the
// request sets it). Times are whole seconds (32 bits: 1970-2106).
struct Attrs {
  std::optional<std::uint64_t> size;
  std::optional<std::uint32_t> uid;
  std::optional<std::uint32_t> gid;
  std::optional<std::uint32_t> permissions;  // st_mode bits, type included
  std::optional<std::uint32_t> atime;
  std::optional<std::uint32_t> mtime;
};

// ---- requests: one whole packet each (the length prefix included)

std::string init_request();
std::string open_request(std::uint32_t id, std::string_view path, std::uint32_t flags,
                         const Attrs& attrs);
std::string close_request(std::uint32_t id, std::string_view handle);
std::string read_request(std::uint32_t id, std::string_view handle, std::uint64_t offset,
                         std::uint32_t length);
std::string write_request(std::uint32_t id, std::string_view handle, std::uint64_t offset,
                          std::span<const std::byte> data);
// kStat, kLstat, kOpendir, kRemove, kRmdir, kRealpath, kReadlink: a path.
std::string path_request(Type type, std::uint32_t id, std::string_view path);
// kFstat, kReaddir: a handle.
std::string handle_request(Type type, std::uint32_t id, std::string_view handle);
std::string setstat_request(std::uint32_t id, std::string_view path, const Attrs& attrs);
std::string fsetstat_request(std::uint32_t id, std::string_view handle, const Attrs& attrs);
std::string mkdir_request(std::uint32_t id, std::string_view path, const Attrs& attrs);
std::string rename_request(std::uint32_t id, std::string_view from, std::string_view to);
// A symlink at `link` pointing to `target`. OpenSSH sends (and expects)
// the two in the opposite order of the draft: target first.
std::string symlink_request(std::uint32_t id, std::string_view link, std::string_view target);
// posix-rename@openssh.com (replaces `to` atomically).
std::string posix_rename_request(std::uint32_t id, std::string_view from, std::string_view to);
// fsync@openssh.com.
std::string fsync_request(std::uint32_t id, std::string_view handle);
// lsetstat@openssh.com: setstat that does not follow a symlink.
std::string lsetstat_request(std::uint32_t id, std::string_view path, const Attrs& attrs);
// limits@openssh.com: the server's packet, read and write sizes.
std::string limits_request(std::uint32_t id);

// ---- replies

struct NameEntry {
  std::string name;
  std::string longname;  // ls -l style, unused
  Attrs attrs;
};

struct Reply {
  Type type = Type::kStatus;
  std::uint32_t id = 0;  // not in kVersion
  // kStatus
  Status status = Status::kOk;
  std::string message;
  // kHandle: the handle; kData: the bytes; kExtendedReply: the payload
  std::string bytes;
  // kName
  std::vector<NameEntry> names;
  // kAttrs
  Attrs attrs;
  // kVersion
  std::uint32_t version = 0;
  std::vector<std::pair<std::string, std::string>> extensions;
};

// One packet without its length prefix. kCorrupt for anything malformed:
// a short field, a count larger than the bytes left could hold, a handle
// over kMaxHandle, data over kMaxData, trailing bytes after a fixed reply,
// or a type a client never receives.
Result<Reply> parse_reply(std::span<const std::byte> packet);

// The payload of the EXTENDED_REPLY to limits_request (0 for "no limit
// stated"); kCorrupt when it is not four 64-bit numbers.
struct Limits {
  std::uint64_t max_packet = 0;
  std::uint64_t max_read = 0;
  std::uint64_t max_write = 0;
  std::uint64_t max_open_handles = 0;
};
Result<Limits> parse_limits(std::string_view payload);

// Cuts a byte stream into packets (the 4-byte length prefix removed).
// A length of 0 or over kMaxPacket is kCorrupt, and so is everything
// after it (the stream cannot be resynchronised).
class Framer {
 public:
  void feed(std::span<const std::byte> bytes);
  // The next whole packet, nullopt while it is incomplete.
  std::optional<Result<std::vector<std::byte>>> next();
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::vector<std::byte> buf_;
  std::size_t pos_ = 0;
  bool broken_ = false;
};

// The Error a STATUS reply other than kOk stands for, about `op` on `path`
// (kNotFound, kPermission, kUnsupported, kUnavailable, kIo).
Error status_error(const Reply& reply, std::string_view op, std::string_view path);

}  // namespace xfer::sftp
