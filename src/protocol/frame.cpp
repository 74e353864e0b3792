// The data-channel frame codec (frame.hpp): pure functions over byte spans,
// every length bounds-checked before use. Any thread; fuzzed
// (tests/fuzz/frame_fuzz.cpp).

#include "xfer/protocol/frame.hpp"

#include <fmt/format.h>

#include <cassert>
#include <cstring>

#include "xfer/core/checksum.hpp"

// The data-channel codec. Layouts are documented in frame.hpp and, byte by
// byte, in docs/protocol.md ("Frames"); keep the three in step.
//
// Sealed frames (kFlagSealed): the codec does not look at the payload, and a
// sealed frame carries payload_hash = 0 by convention — the AES-256-GCM tag
// authenticates the payload (and the header, which is the AAD), so a second
// checksum would add nothing. The sender writes 0, the receiver ignores the
// field; nothing here enforces it because the codec never sees plaintext of a
// sealed frame.

namespace xfer::protocol {
namespace {

// Longest string a body may carry (paths, tokens, error messages).
constexpr std::uint32_t kMaxString = 64u << 10;

Error corrupt(std::string_view operation, std::string detail) {
  return make_error(ErrorCode::kCorrupt, operation, {}, detail, RetryClass::kFatal);
}

// Little-endian appender. Encoding cannot fail: callers hand in well-formed
// values (lengths checked with asserts; see str()).
class Writer {
 public:
  explicit Writer(std::vector<std::byte>& out) : out_(out) {}

  void u16(std::uint16_t v) { put_le(v, 2); }
  void u32(std::uint32_t v) { put_le(v, 4); }
  void u64(std::uint64_t v) { put_le(v, 8); }
  void i64(std::int64_t v) { put_le(static_cast<std::uint64_t>(v), 8); }
  void raw(std::span<const std::byte> bytes) {
    out_.insert(out_.end(), bytes.begin(), bytes.end());
  }
  template <std::size_t N>
  void array(const std::array<std::uint8_t, N>& a) {
    raw(std::as_bytes(std::span(a)));
  }
  // u32 length + bytes. A string over kMaxString is a caller bug (the peer
  // would refuse the body); paths and tokens are far below it.
  void str(std::string_view s) {
    assert(s.size() <= kMaxString);
    u32(static_cast<std::uint32_t>(s.size()));
    raw(std::as_bytes(std::span(s.data(), s.size())));
  }
  // u32 length + bytes.
  void vec(std::span<const std::byte> v) {
    assert(v.size() <= kMaxPayload);
    u32(static_cast<std::uint32_t>(v.size()));
    raw(v);
  }

 private:
  void put_le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::byte>(v >> (8 * i)));
  }
  std::vector<std::byte>& out_;
};

// Bounds-checked little-endian reader over one body. Every method either
// reads entirely inside the span or returns kCorrupt naming the body, the
// field and the offset; it never reads past the end.
class Reader {
 public:
  Reader(std::span<const std::byte> in, std::string_view body) : in_(in), body_(body) {}

  Status u16(std::uint16_t& v, std::string_view field) {
    std::uint64_t x = 0;
    XFER_TRY(get_le(x, 2, field));
    v = static_cast<std::uint16_t>(x);
    return ok_status();
  }
  Status u32(std::uint32_t& v, std::string_view field) {
    std::uint64_t x = 0;
    XFER_TRY(get_le(x, 4, field));
    v = static_cast<std::uint32_t>(x);
    return ok_status();
  }
  Status u64(std::uint64_t& v, std::string_view field) { return get_le(v, 8, field); }
  Status i64(std::int64_t& v, std::string_view field) {
    std::uint64_t x = 0;
    XFER_TRY(get_le(x, 8, field));
    v = static_cast<std::int64_t>(x);
    return ok_status();
  }
  template <std::size_t N>
  Status array(std::array<std::uint8_t, N>& a, std::string_view field) {
    XFER_TRY(need(N, field));
    std::memcpy(a.data(), in_.data() + pos_, N);
    pos_ += N;
    return ok_status();
  }
  // u32 length + bytes, at most kMaxString. `is_path` also refuses NUL, which
  // would silently truncate the name at the first system call.
  Status str(std::string& s, std::string_view field, bool is_path) {
    std::uint32_t n = 0;
    XFER_TRY(u32(n, field));
    if (n > kMaxString) {
      return fail(fmt::format("{} length {} exceeds the limit of {} bytes", field, n, kMaxString));
    }
    XFER_TRY(need(n, field));
    const char* p = reinterpret_cast<const char*>(in_.data() + pos_);
    if (is_path && std::memchr(p, '\0', n) != nullptr) {
      return fail(fmt::format("{} contains a NUL byte", field));
    }
    s.assign(p, n);
    pos_ += n;
    return ok_status();
  }
  // u32 length + bytes.
  Status vec(std::vector<std::byte>& v, std::string_view field) {
    std::uint32_t n = 0;
    XFER_TRY(u32(n, field));
    XFER_TRY(need(n, field));
    v.assign(in_.begin() + static_cast<std::ptrdiff_t>(pos_),
             in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return ok_status();
  }
  // Everything not read yet, consumed.
  std::span<const std::byte> rest() {
    auto r = in_.subspan(pos_);
    pos_ = in_.size();
    return r;
  }
  // The body must be consumed exactly.
  Status finish() const {
    if (pos_ != in_.size()) {
      return fail(fmt::format("{} trailing bytes after the body", in_.size() - pos_));
    }
    return ok_status();
  }
  Error fail(std::string detail) const { return corrupt(fmt::format("decode {}", body_), detail); }

 private:
  Status need(std::size_t n, std::string_view field) const {
    if (in_.size() - pos_ < n) {
      return fail(fmt::format("truncated at offset {}: {} needs {} bytes, {} left", pos_, field, n,
                              in_.size() - pos_));
    }
    return ok_status();
  }
  Status get_le(std::uint64_t& v, int n, std::string_view field) {
    XFER_TRY(need(static_cast<std::size_t>(n), field));
    v = 0;
    for (int i = 0; i < n; ++i) {
      v |= static_cast<std::uint64_t>(in_[pos_ + static_cast<std::size_t>(i)]) << (8 * i);
    }
    pos_ += static_cast<std::size_t>(n);
    return ok_status();
  }

  std::span<const std::byte> in_;
  std::string_view body_;
  std::size_t pos_ = 0;
};

std::uint64_t load_le(std::span<const std::byte> in, std::size_t pos, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    v |= static_cast<std::uint64_t>(in[pos + static_cast<std::size_t>(i)]) << (8 * i);
  }
  return v;
}

void store_le(std::span<std::byte> out, std::size_t pos, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i)
    out[pos + static_cast<std::size_t>(i)] = static_cast<std::byte>(v >> (8 * i));
}

constexpr std::size_t kCheckedBytes = 36;  // header_check covers [0, 36)

std::uint32_t header_check(std::span<const std::byte> header) {
  return static_cast<std::uint32_t>(xxh3_64(header.first(kCheckedBytes)));
}

bool known_type(std::uint8_t t) {
  return t >= static_cast<std::uint8_t>(FrameType::kHello) &&
         t <= static_cast<std::uint8_t>(FrameType::kCopyBasis);
}

constexpr std::uint8_t kKnownFlags = kFlagSealed;

// FileMeta is shared by OpenWrite and PutFile.
void put_meta(Writer& w, const FileMeta& m) {
  w.str(m.path);
  w.u64(m.size);
  w.u32(m.mode);
  w.i64(m.mtime_ns);
  w.u32(m.flags);
  w.str(m.resume_name);
  if ((m.flags & kMetaBasis) != 0) {
    w.u64(m.basis_size);
    w.i64(m.basis_mtime_ns);
  }
}

Status get_meta(Reader& r, FileMeta& m) {
  XFER_TRY(r.str(m.path, "path", /*is_path=*/true));
  XFER_TRY(r.u64(m.size, "size"));
  XFER_TRY(r.u32(m.mode, "mode"));
  XFER_TRY(r.i64(m.mtime_ns, "mtime_ns"));
  XFER_TRY(r.u32(m.flags, "flags"));
  XFER_TRY(r.str(m.resume_name, "resume_name", /*is_path=*/true));
  if ((m.flags & kMetaBasis) != 0) {
    XFER_TRY(r.u64(m.basis_size, "basis_size"));
    XFER_TRY(r.i64(m.basis_mtime_ns, "basis_mtime_ns"));
  }
  return ok_status();
}

}  // namespace

// ---- Header.

void encode_header(const FrameHeader& h, std::span<std::byte, kHeaderSize> out) {
  store_le(out, 0, static_cast<std::uint8_t>(h.type), 1);
  store_le(out, 1, h.flags, 1);
  store_le(out, 2, 0, 2);  // reserved
  store_le(out, 4, h.length, 4);
  store_le(out, 8, h.id, 8);
  store_le(out, 16, h.offset, 8);
  store_le(out, 24, h.payload_hash, 8);
  store_le(out, 32, h.aux, 4);
  store_le(out, 36, header_check(out), 4);
}

std::array<std::byte, kHeaderSize> encode_header(const FrameHeader& h) {
  std::array<std::byte, kHeaderSize> out{};
  encode_header(h, std::span<std::byte, kHeaderSize>(out));
  return out;
}

// Reads the first kHeaderSize bytes of `in`; bytes after them (typically the
// payload) are not looked at. The check value is verified first, so a
// damaged header is reported as such rather than as a strange field value.
Result<FrameHeader> decode_header(std::span<const std::byte> in) {
  constexpr std::string_view kOp = "decode frame header";
  if (in.size() < kHeaderSize) {
    return corrupt(kOp,
                   fmt::format("truncated frame header: {} of {} bytes", in.size(), kHeaderSize));
  }
  const auto stored = static_cast<std::uint32_t>(load_le(in, 36, 4));
  if (stored != header_check(in)) return corrupt(kOp, "frame header check mismatch");
  if (load_le(in, 2, 2) != 0) return corrupt(kOp, "reserved frame header bits set");
  const auto type = static_cast<std::uint8_t>(load_le(in, 0, 1));
  if (!known_type(type)) return corrupt(kOp, fmt::format("unknown frame type {}", type));
  const auto flags = static_cast<std::uint8_t>(load_le(in, 1, 1));
  if ((flags & ~kKnownFlags) != 0) {
    return corrupt(kOp, fmt::format("unknown frame flags 0x{:02x}", flags & ~kKnownFlags));
  }
  FrameHeader h;
  h.type = static_cast<FrameType>(type);
  h.flags = flags;
  h.length = static_cast<std::uint32_t>(load_le(in, 4, 4));
  if (h.length > kMaxPayload) {
    return corrupt(kOp, fmt::format("frame payload length {} exceeds the limit of {} bytes",
                                    h.length, kMaxPayload));
  }
  h.id = load_le(in, 8, 8);
  h.offset = load_le(in, 16, 8);
  h.payload_hash = load_le(in, 24, 8);
  h.aux = static_cast<std::uint32_t>(load_le(in, 32, 4));
  return h;
}

std::uint64_t payload_hash(std::span<const std::byte> payload) {
  return payload.empty() ? 0 : xxh3_64(payload);
}

std::string_view to_string(FrameType type) {
  switch (type) {
    case FrameType::kHello:
      return "HELLO";
    case FrameType::kHelloOk:
      return "HELLO_OK";
    case FrameType::kError:
      return "ERROR";
    case FrameType::kOpenWrite:
      return "OPEN_WRITE";
    case FrameType::kOpenOk:
      return "OPEN_OK";
    case FrameType::kData:
      return "DATA";
    case FrameType::kAck:
      return "ACK";
    case FrameType::kCommit:
      return "COMMIT";
    case FrameType::kAbort:
      return "ABORT";
    case FrameType::kPutFile:
      return "PUT_FILE";
    case FrameType::kOpenRead:
      return "OPEN_READ";
    case FrameType::kRead:
      return "READ";
    case FrameType::kClose:
      return "CLOSE";
    case FrameType::kSuspend:
      return "SUSPEND";
    case FrameType::kPing:
      return "PING";
    case FrameType::kPong:
      return "PONG";
    case FrameType::kCopyBasis:
      return "COPY_BASIS";
  }
  return "UNKNOWN";
}

// ---- Bodies: encode.

void encode(const CopyBasis& v, std::vector<std::byte>& out) {
  Writer w(out);
  w.u64(v.basis_offset);
  w.u64(v.length);
}

void encode(const Hello& v, std::vector<std::byte>& out) {
  Writer w(out);
  w.u16(v.version);
  w.u16(v.flags);
  w.str(v.data_token);
  w.array(v.public_key);
  w.array(v.nonce);
}

void encode(const HelloOk& v, std::vector<std::byte>& out) {
  Writer w(out);
  w.u16(v.version);
  w.u16(v.flags);
  w.array(v.public_key);
  w.array(v.nonce);
  w.u64(v.connection_id);
}

void encode(const ErrorBody& v, std::vector<std::byte>& out) {
  Writer w(out);
  w.u32(v.code);
  w.u32(v.retry);
  // A message is for humans: cut an overlong one (at a UTF-8 character
  // boundary) rather than send a body the peer must refuse.
  std::string_view msg = v.message;
  if (msg.size() > kMaxString) {
    std::size_t n = kMaxString;
    while (n > 0 && (static_cast<unsigned char>(msg[n]) & 0xC0) == 0x80) --n;
    msg = msg.substr(0, n);
  }
  w.str(msg);
}

void encode(const OpenWrite& v, std::vector<std::byte>& out) {
  Writer w(out);
  put_meta(w, v.meta);
}

void encode(const OpenRead& v, std::vector<std::byte>& out) {
  Writer w(out);
  w.str(v.path);
  w.u32(v.inline_limit);
}

void encode(const OpenReply& v, std::vector<std::byte>& out) {
  Writer w(out);
  w.u64(v.size);
  w.u32(v.mode);
  w.i64(v.mtime_ns);
  w.u32(v.flags);
  w.vec(v.inline_data);
}

void encode(const PutFile& v, std::vector<std::byte>& out) {
  assert(v.data.size() == v.meta.size);
  encode_put_file_meta(v.meta, out);
  Writer(out).raw(v.data);
}

void encode_put_file_meta(const FileMeta& meta, std::vector<std::byte>& out) {
  Writer w(out);
  put_meta(w, meta);
}

// ---- Bodies: decode.

Result<Hello> decode_hello(std::span<const std::byte> in) {
  Reader r(in, "HELLO");
  Hello v;
  XFER_TRY(r.u16(v.version, "version"));
  XFER_TRY(r.u16(v.flags, "flags"));
  XFER_TRY(r.str(v.data_token, "data_token", /*is_path=*/false));
  XFER_TRY(r.array(v.public_key, "public_key"));
  XFER_TRY(r.array(v.nonce, "nonce"));
  XFER_TRY(r.finish());
  return v;
}

Result<HelloOk> decode_hello_ok(std::span<const std::byte> in) {
  Reader r(in, "HELLO_OK");
  HelloOk v;
  XFER_TRY(r.u16(v.version, "version"));
  XFER_TRY(r.u16(v.flags, "flags"));
  XFER_TRY(r.array(v.public_key, "public_key"));
  XFER_TRY(r.array(v.nonce, "nonce"));
  XFER_TRY(r.u64(v.connection_id, "connection_id"));
  XFER_TRY(r.finish());
  return v;
}

// code and retry are passed through as numbers: the receiver maps values it
// does not know (a newer peer) to kInternal / kFatal.
Result<ErrorBody> decode_error(std::span<const std::byte> in) {
  Reader r(in, "ERROR");
  ErrorBody v;
  XFER_TRY(r.u32(v.code, "code"));
  XFER_TRY(r.u32(v.retry, "retry"));
  XFER_TRY(r.str(v.message, "message", /*is_path=*/false));
  XFER_TRY(r.finish());
  return v;
}

Result<OpenWrite> decode_open_write(std::span<const std::byte> in) {
  Reader r(in, "OPEN_WRITE");
  OpenWrite v;
  XFER_TRY(get_meta(r, v.meta));
  XFER_TRY(r.finish());
  return v;
}

Result<CopyBasis> decode_copy_basis(std::span<const std::byte> in) {
  Reader r(in, "COPY_BASIS");
  CopyBasis v;
  XFER_TRY(r.u64(v.basis_offset, "basis_offset"));
  XFER_TRY(r.u64(v.length, "length"));
  XFER_TRY(r.finish());
  return v;
}

Result<OpenRead> decode_open_read(std::span<const std::byte> in) {
  Reader r(in, "OPEN_READ");
  OpenRead v;
  XFER_TRY(r.str(v.path, "path", /*is_path=*/true));
  XFER_TRY(r.u32(v.inline_limit, "inline_limit"));
  XFER_TRY(r.finish());
  return v;
}

// Inlined data must be the whole file (flags bit 1 and inline_data.size() ==
// size); without bit 1 inline_data must be empty.
Result<OpenReply> decode_open_reply(std::span<const std::byte> in) {
  Reader r(in, "OPEN_OK");
  OpenReply v;
  XFER_TRY(r.u64(v.size, "size"));
  XFER_TRY(r.u32(v.mode, "mode"));
  XFER_TRY(r.i64(v.mtime_ns, "mtime_ns"));
  XFER_TRY(r.u32(v.flags, "flags"));
  XFER_TRY(r.vec(v.inline_data, "inline_data"));
  XFER_TRY(r.finish());
  if ((v.flags & kReplyInlined) != 0) {
    if (v.inline_data.size() != v.size) {
      return r.fail(fmt::format("inline_data has {} bytes but the file size is {}",
                                v.inline_data.size(), v.size));
    }
  } else if (!v.inline_data.empty()) {
    return r.fail("inline_data present without the inlined flag");
  }
  return v;
}

Result<PutFileView> decode_put_file(std::span<const std::byte> in) {
  Reader r(in, "PUT_FILE");
  PutFileView v;
  XFER_TRY(get_meta(r, v.meta));
  v.data = r.rest();
  if (v.data.size() != v.meta.size) {
    return r.fail(fmt::format("data has {} bytes but meta.size is {}", v.data.size(), v.meta.size));
  }
  return v;
}

}  // namespace xfer::protocol
