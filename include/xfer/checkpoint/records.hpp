#pragma once
// The checkpoint journal's records and their codec: pure functions over byte
// spans, bounds-checked. On-disk layout (docs/journal-format.md):
//
//   record := u32 payload_len | u32 crc32(type || payload) | u8 type | payload
//
// all integers little-endian. A decoder never reads past its input and
// reports a torn (truncated) tail separately from corruption, so recovery can
// truncate a torn last record and refuse anything else.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "xfer/core/result.hpp"

namespace xfer::checkpoint {

inline constexpr std::size_t kRecordHeaderSize = 9;     // len + crc + type
inline constexpr std::uint32_t kMaxPayload = 1u << 20;  // larger is corruption

enum class RecordType : std::uint8_t {
  kFileBegin = 1,      // a chunked file starts (or restarts) with this geometry
  kChunkDone = 2,      // one chunk is written at the destination
  kFileDone = 3,       // the file is committed under its final name
  kFileReset = 4,      // forget progress (the source changed)
  kChunkProgress = 5,  // the first `bytes` of a chunk are written at the destination
  kSinkNote = 6,       // what the destination said of the file or a chunk (an upload id, an ETag)
};

struct FileBegin {
  std::uint64_t file_key = 0;  // XXH3 of the destination path
  std::uint64_t size = 0;      // source size when the file started
  std::int64_t mtime_ns = 0;   // source mtime when the file started
  std::uint64_t chunk_size = 0;
  std::string source;
  std::string destination;
  bool operator==(const FileBegin&) const = default;
};

struct ChunkDone {
  std::uint64_t file_key = 0;
  std::uint64_t chunk = 0;
  std::uint64_t xxh3 = 0;  // of the chunk's bytes; 0 when not computed
  bool operator==(const ChunkDone&) const = default;
};

struct FileDone {
  std::uint64_t file_key = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileDone&) const = default;
};

struct FileReset {
  std::uint64_t file_key = 0;
  bool operator==(const FileReset&) const = default;
};

// Within a chunk: its first `bytes` are at the destination (each piece
// written and, over the network, acknowledged), so a resume sends only
// the rest of it. Superseded by the chunk's ChunkDone.
struct ChunkProgress {
  std::uint64_t file_key = 0;
  std::uint64_t chunk = 0;
  std::uint64_t bytes = 0;
  bool operator==(const ChunkProgress&) const = default;
};

// What a destination needs to reopen its partial in a later run, recorded
// as it said it (Sink::resume_note, Sink::chunk_note): for chunk kFileNote,
// the file's (an S3 multipart upload id); otherwise that chunk's (the ETag
// of its part), recorded just before its ChunkDone. Opaque to the journal;
// at most kMaxNote bytes.
inline constexpr std::uint64_t kFileNote = ~0ull;
inline constexpr std::size_t kMaxNote = 4096;
struct SinkNote {
  std::uint64_t file_key = 0;
  std::uint64_t chunk = kFileNote;
  std::string text;
  bool operator==(const SinkNote&) const = default;
};

using Record = std::variant<FileBegin, ChunkDone, FileDone, FileReset, ChunkProgress, SinkNote>;

// Appends the encoded record to `out`.
void encode(const Record& record, std::vector<std::byte>& out);

enum class DecodeStatus {
  kOk,       // one record decoded; `consumed` bytes used
  kEnd,      // input is empty
  kTorn,     // input ends inside a record (a crash mid-append): truncate here
  kCorrupt,  // bad CRC, unknown type, absurd length or malformed payload
};

struct Decoded {
  DecodeStatus status = DecodeStatus::kEnd;
  std::size_t consumed = 0;
  Record record;
  std::string reason;  // for kCorrupt
};

// Decodes the first record of `in`.
Decoded decode(std::span<const std::byte> in);

// CRC-32 (zlib polynomial) used by records, snapshots and the done-index.
std::uint32_t crc32(std::span<const std::byte> data);

}  // namespace xfer::checkpoint
