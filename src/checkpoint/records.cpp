// The journal's record codec (records.hpp): length + CRC32 framed records.
// Pure functions: any thread.

#include "xfer/checkpoint/records.hpp"

#include <zlib.h>

#include <cstring>
#include <type_traits>

namespace xfer::checkpoint {
namespace {

// Little-endian writer/reader over byte vectors and spans.
void put_u8(std::vector<std::byte>& out, std::uint8_t v) {
  out.push_back(std::byte{v});
}
void put_u32(std::vector<std::byte>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
void put_str(std::vector<std::byte>& out, const std::string& s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  bool u8(std::uint8_t& v) {
    if (pos_ + 1 > in_.size()) return false;
    v = static_cast<std::uint8_t>(in_[pos_++]);
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (pos_ + 4 > in_.size()) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(in_[pos_ + i]) << (8 * i);
    pos_ += 4;
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (pos_ + 8 > in_.size()) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(in_[pos_ + i]) << (8 * i);
    pos_ += 8;
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t u = 0;
    if (!u64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool str(std::string& s) {
    std::uint32_t n = 0;
    if (!u32(n) || pos_ + n > in_.size()) return false;
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
};

RecordType type_of(const Record& r) {
  return std::visit(
      [](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, FileBegin>) return RecordType::kFileBegin;
        if constexpr (std::is_same_v<T, ChunkDone>) return RecordType::kChunkDone;
        if constexpr (std::is_same_v<T, FileDone>) return RecordType::kFileDone;
        if constexpr (std::is_same_v<T, ChunkProgress>) return RecordType::kChunkProgress;
        if constexpr (std::is_same_v<T, SinkNote>) return RecordType::kSinkNote;
        return RecordType::kFileReset;
      },
      r);
}

}  // namespace

std::uint32_t crc32(std::span<const std::byte> data) {
  uLong c = ::crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths; feed large inputs in pieces.
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t n = std::min<std::size_t>(data.size() - pos, 1u << 30);
    c = ::crc32(c, reinterpret_cast<const Bytef*>(data.data() + pos), static_cast<uInt>(n));
    pos += n;
  }
  return static_cast<std::uint32_t>(c);
}

void encode(const Record& record, std::vector<std::byte>& out) {
  std::vector<std::byte> body;  // type || payload
  put_u8(body, static_cast<std::uint8_t>(type_of(record)));
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, FileBegin>) {
          put_u64(body, v.file_key);
          put_u64(body, v.size);
          put_u64(body, static_cast<std::uint64_t>(v.mtime_ns));
          put_u64(body, v.chunk_size);
          put_str(body, v.source);
          put_str(body, v.destination);
        } else if constexpr (std::is_same_v<T, ChunkDone>) {
          put_u64(body, v.file_key);
          put_u64(body, v.chunk);
          put_u64(body, v.xxh3);
        } else if constexpr (std::is_same_v<T, FileDone>) {
          put_u64(body, v.file_key);
          put_u64(body, v.size);
          put_u64(body, static_cast<std::uint64_t>(v.mtime_ns));
        } else if constexpr (std::is_same_v<T, ChunkProgress>) {
          put_u64(body, v.file_key);
          put_u64(body, v.chunk);
          put_u64(body, v.bytes);
        } else if constexpr (std::is_same_v<T, SinkNote>) {
          put_u64(body, v.file_key);
          put_u64(body, v.chunk);
          put_str(body, v.text);
        } else {
          put_u64(body, v.file_key);
        }
      },
      record);
  put_u32(out, static_cast<std::uint32_t>(body.size() - 1));
  put_u32(out, crc32(body));
  out.insert(out.end(), body.begin(), body.end());
}

Decoded decode(std::span<const std::byte> in) {
  Decoded d;
  if (in.empty()) return d;
  if (in.size() < kRecordHeaderSize) {
    d.status = DecodeStatus::kTorn;
    return d;
  }
  Reader header(in.subspan(0, 8));
  std::uint32_t len = 0, crc = 0;
  header.u32(len);
  header.u32(crc);
  if (len > kMaxPayload) {
    d.status = DecodeStatus::kCorrupt;
    d.reason = "record length out of range";
    return d;
  }
  if (in.size() < kRecordHeaderSize + len) {
    d.status = DecodeStatus::kTorn;
    return d;
  }
  std::span<const std::byte> body = in.subspan(8, 1 + len);
  if (crc32(body) != crc) {
    d.status = DecodeStatus::kCorrupt;
    d.reason = "CRC mismatch";
    return d;
  }
  Reader r(body.subspan(1));
  bool ok = false;
  switch (static_cast<RecordType>(body[0])) {
    case RecordType::kFileBegin: {
      FileBegin v;
      std::uint64_t mt = 0;
      ok = r.u64(v.file_key) && r.u64(v.size) && r.u64(mt) && r.u64(v.chunk_size) &&
           r.str(v.source) && r.str(v.destination) && r.done();
      v.mtime_ns = static_cast<std::int64_t>(mt);
      d.record = std::move(v);
      break;
    }
    case RecordType::kChunkDone: {
      ChunkDone v;
      ok = r.u64(v.file_key) && r.u64(v.chunk) && r.u64(v.xxh3) && r.done();
      d.record = v;
      break;
    }
    case RecordType::kFileDone: {
      FileDone v;
      ok = r.u64(v.file_key) && r.u64(v.size) && r.i64(v.mtime_ns) && r.done();
      d.record = v;
      break;
    }
    case RecordType::kFileReset: {
      FileReset v;
      ok = r.u64(v.file_key) && r.done();
      d.record = v;
      break;
    }
    case RecordType::kChunkProgress: {
      ChunkProgress v;
      ok = r.u64(v.file_key) && r.u64(v.chunk) && r.u64(v.bytes) && r.done();
      d.record = v;
      break;
    }
    case RecordType::kSinkNote: {
      SinkNote v;
      ok = r.u64(v.file_key) && r.u64(v.chunk) && r.str(v.text) && r.done() &&
           v.text.size() <= kMaxNote;
      d.record = std::move(v);
      break;
    }
    default:
      d.status = DecodeStatus::kCorrupt;
      d.reason = "unknown record type";
      return d;
  }
  if (!ok) {
    d.status = DecodeStatus::kCorrupt;
    d.reason = "malformed payload";
    return d;
  }
  d.status = DecodeStatus::kOk;
  d.consumed = kRecordHeaderSize + len;
  return d;
}

}  // namespace xfer::checkpoint
