#pragma once
// The xfer data-channel frame codec (docs/protocol.md). Pure functions over
// byte spans: no I/O, no allocation beyond the returned values, every length
// bounds-checked. Anything the decoder does not understand is refused with
// ErrorCode::kCorrupt and a message naming what was wrong; it never reads
// outside the span it was given.
//
// Wire layout of one frame (all integers little-endian):
//
//   0  u8  type          FrameType
//   1  u8  flags         FrameFlags bits
//   2  u16 reserved      must be 0
//   4  u32 length        payload bytes that follow the header (incl. the
//                        16-byte AEAD tag when kFlagSealed), <= kMaxPayload
//   8  u64 id            request/file handle id chosen by the client
//  16  u64 offset        byte offset in the file (0 when not applicable)
//  24  u64 payload_hash  XXH3-64 of the plaintext payload (0 for empty)
//  32  u32 aux           type-specific small value (status, count, ...)
//  36  u32 header_check  low 32 bits of XXH3-64 over bytes [0, 36)
//
// then `length` payload bytes.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xfer/core/result.hpp"

namespace xfer::protocol {

inline constexpr std::size_t kHeaderSize = 40;
inline constexpr std::uint32_t kMaxPayload = 64u << 20;  // 64 MiB incl. tag
inline constexpr std::size_t kTagSize = 16;              // AES-256-GCM tag
// First bytes a client sends on a data connection, before any frame.
inline constexpr std::array<std::uint8_t, 8> kMagic = {'X', 'F', 'E', 'R', 'D', 'A', 'T', 'A'};
inline constexpr std::uint16_t kProtocolVersion = 1;

enum class FrameType : std::uint8_t {
  kHello = 1,      // c->s: Hello payload (first frame of a connection)
  kHelloOk = 2,    // s->c: HelloOk payload
  kError = 3,      // either way: ErrorBody payload; id = failed request
  kOpenWrite = 4,  // c->s: OpenWrite payload; id = new handle
  kOpenOk = 5,     // s->c: reply to kOpenWrite / kOpenRead; payload OpenReply
  kData = 6,       // c->s (upload) or s->c (read reply): id, offset, bytes
  kAck = 7,        // s->c: id = handle, offset = acknowledged offset, aux = bytes
  kCommit = 8,     // c->s: id = handle; reply kAck (offset = 0, aux = 0) or kError
  kAbort = 9,      // c->s: id = handle; reply kAck
  kPutFile = 10,   // c->s: whole small file: PutFile payload; reply kAck or kError
  kOpenRead = 11,  // c->s: OpenRead payload; id = new handle; reply kOpenOk
  kRead = 12,  // c->s: id = handle, offset, aux = length; reply kData (aux = bytes, may be short at
               // EOF)
  kClose = 13,    // c->s: id = handle; reply kAck
  kSuspend = 14,  // c->s: id = handle: keep the resumable partial; reply kAck
  kPing = 15,     // either way; reply kPong with the same id
  kPong = 16,
  // c->s: id = handle (opened with kMetaBasis), offset = where in the new
  // file, CopyBasis payload: bytes of the file being replaced, copied on
  // the server (sync's delta). Reply kAck (offset echoed) or kError.
  kCopyBasis = 17,
};

enum FrameFlags : std::uint8_t {
  kFlagSealed = 1u << 0,  // payload is AES-256-GCM ciphertext followed by a 16-byte tag
};

struct FrameHeader {
  FrameType type = FrameType::kPing;
  std::uint8_t flags = 0;
  std::uint32_t length = 0;
  std::uint64_t id = 0;
  std::uint64_t offset = 0;
  std::uint64_t payload_hash = 0;
  std::uint32_t aux = 0;

  bool operator==(const FrameHeader&) const = default;  // field-wise (tests, fuzzer)
};

// Serialises `h` (computing header_check) into exactly kHeaderSize bytes.
void encode_header(const FrameHeader& h, std::span<std::byte, kHeaderSize> out);
std::array<std::byte, kHeaderSize> encode_header(const FrameHeader& h);
// Parses and validates a header: check value, reserved bits, known type,
// known flags, length <= kMaxPayload. kCorrupt otherwise.
Result<FrameHeader> decode_header(std::span<const std::byte> in);
// XXH3-64 of a payload as carried in payload_hash (0 for an empty payload).
std::uint64_t payload_hash(std::span<const std::byte> payload);
std::string_view to_string(FrameType type);

// ---- Payload bodies. Each has encode (appends to `out`) and decode (whole
// span must be consumed exactly; kCorrupt on truncation or trailing bytes).
// Strings are u32 length + bytes (max 64 KiB); paths must be valid UTF-8-free
// byte strings without NUL.

// The flag bits of the bodies below, by name (the wire values are fixed).
inline constexpr std::uint16_t kHelloSeal = 1u << 0;   // Hello/HelloOk: sealed frames
inline constexpr std::uint32_t kMetaSparse = 1u << 0;  // FileMeta: keep holes
inline constexpr std::uint32_t kMetaFsync = 1u << 1;   // FileMeta: fdatasync before commit
inline constexpr std::uint32_t kMetaResume = 1u << 2;  // FileMeta: resume an existing partial
inline constexpr std::uint32_t kMetaBasis = 1u << 3;   // FileMeta: the old file is a delta's basis
inline constexpr std::uint32_t kReplyResumed = 1u << 0;  // OpenReply: a partial was resumed
inline constexpr std::uint32_t kReplyInlined = 1u << 1;  // OpenReply: inline_data is the file

struct Hello {
  std::uint16_t version = kProtocolVersion;
  std::uint16_t flags = 0;                    // kHelloSeal: the client asks for sealed frames
  std::string data_token;                     // from OpenSession
  std::array<std::uint8_t, 32> public_key{};  // client X25519 public key (zeros when not sealing)
  std::array<std::uint8_t, 16> nonce{};       // client random

  bool operator==(const Hello&) const = default;  // field-wise (tests, fuzzer)
};
struct HelloOk {
  std::uint16_t version = kProtocolVersion;
  std::uint16_t flags = 0;                    // kHelloSeal: sealed frames follow (both directions)
  std::array<std::uint8_t, 32> public_key{};  // server X25519 public key
  std::array<std::uint8_t, 16> nonce{};       // server random
  std::uint64_t connection_id = 0;

  bool operator==(const HelloOk&) const = default;  // field-wise (tests, fuzzer)
};
struct ErrorBody {
  std::uint32_t code = 0;   // xfer::ErrorCode
  std::uint32_t retry = 0;  // xfer::RetryClass
  std::string message;

  bool operator==(const ErrorBody&) const = default;  // field-wise (tests, fuzzer)
};
struct FileMeta {  // what the server needs to create a file
  std::string path;
  std::uint64_t size = 0;
  std::uint32_t mode = 0644;
  std::int64_t mtime_ns = 0;
  std::uint32_t flags = 0;  // kMetaSparse | kMetaFsync | kMetaResume
  std::string resume_name;  // empty: not resumable
  // Present on the wire only with kMetaBasis: what the old file must be.
  std::uint64_t basis_size = 0;
  std::int64_t basis_mtime_ns = 0;

  bool operator==(const FileMeta&) const = default;  // field-wise (tests, fuzzer)
};
struct CopyBasis {
  std::uint64_t basis_offset = 0;
  std::uint64_t length = 0;  // at most kMaxCopyBasis

  bool operator==(const CopyBasis&) const = default;  // field-wise (tests, fuzzer)
};
// The most one COPY_BASIS frame may copy (the server's connection thread
// does it before reading the next frame).
inline constexpr std::uint64_t kMaxCopyBasis = 64ull << 20;
struct OpenWrite {
  FileMeta meta;

  bool operator==(const OpenWrite&) const = default;  // field-wise (tests, fuzzer)
};
struct OpenRead {
  std::string path;
  std::uint32_t inline_limit = 0;  // server may inline the whole file when size <= this

  bool operator==(const OpenRead&) const = default;  // field-wise (tests, fuzzer)
};
struct OpenReply {
  std::uint64_t size = 0;
  std::uint32_t mode = 0;
  std::int64_t mtime_ns = 0;
  std::uint32_t flags = 0;             // kReplyResumed (OpenWrite), kReplyInlined (OpenRead)
  std::vector<std::byte> inline_data;  // the whole file when kReplyInlined is set

  bool operator==(const OpenReply&) const = default;  // field-wise (tests, fuzzer)
};
struct PutFile {
  FileMeta meta;
  std::vector<std::byte> data;  // exactly meta.size bytes

  bool operator==(const PutFile&) const = default;  // field-wise (tests, fuzzer)
};

void encode(const Hello& v, std::vector<std::byte>& out);
void encode(const HelloOk& v, std::vector<std::byte>& out);
void encode(const ErrorBody& v, std::vector<std::byte>& out);
void encode(const OpenWrite& v, std::vector<std::byte>& out);
void encode(const OpenRead& v, std::vector<std::byte>& out);
void encode(const OpenReply& v, std::vector<std::byte>& out);
void encode(const PutFile& v, std::vector<std::byte>& out);
void encode(const CopyBasis& v, std::vector<std::byte>& out);
// PutFile without copying the data: encodes the meta part; the file bytes
// follow it directly in the payload (meta.size bytes).
void encode_put_file_meta(const FileMeta& meta, std::vector<std::byte>& out);

Result<Hello> decode_hello(std::span<const std::byte> in);
Result<HelloOk> decode_hello_ok(std::span<const std::byte> in);
Result<ErrorBody> decode_error(std::span<const std::byte> in);
Result<OpenWrite> decode_open_write(std::span<const std::byte> in);
Result<OpenRead> decode_open_read(std::span<const std::byte> in);
Result<CopyBasis> decode_copy_basis(std::span<const std::byte> in);
Result<OpenReply> decode_open_reply(std::span<const std::byte> in);
// Splits a PutFile payload into its meta and a view of the data (no copy).
struct PutFileView {
  FileMeta meta;
  std::span<const std::byte> data;
};
Result<PutFileView> decode_put_file(std::span<const std::byte> in);

}  // namespace xfer::protocol
