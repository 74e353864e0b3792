// The verifier (engine.hpp): --verify reads every written piece back from
// the sink and compares its XXH3 with the source's; on resume, a chunk the
// journal calls done is checked before it is trusted. Runs on the worker
// that finalizes a file (verify_pieces) or runs the chunk.

#include "engine/engine.hpp"

namespace xfer::detail {

// --verify on resume: is chunk `chunk` of the partial intact? Compared with
// the XXH3 the journal recorded, or, when none was (zero-copy), with the
// source's bytes. Fills the piece hashes the final verification reads.
Result<bool> Engine::resumed_chunk_intact(ChunkedFile& file, std::uint64_t chunk) {
  const std::uint64_t begin = chunk * file.chunk_size;
  const std::uint64_t end = std::min(file.size, begin + file.chunk_size);
  const std::uint64_t recorded = chunk < file.resume_hashes.size() ? file.resume_hashes[chunk] : 0;
  Buffer dst = pool_.acquire();
  Xxh3Stream dst_hash, src_hash;
  for (std::uint64_t pos = begin; pos < end; pos += opt_.io_size) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(opt_.io_size, end - pos));
    XFER_ASSIGN_OR_RETURN(std::size_t got,
                          file.sink->read_back(Offset{pos}, dst.writable().subspan(0, n)));
    if (got != n) return false;
    std::span<const std::byte> bytes(dst.data(), n);
    dst_hash.update(bytes);
    if (file.piece_hashes) file.piece_hashes[pos / opt_.io_size] = xxh3_64(bytes);
    if (recorded == 0) {
      Buffer src = pool_.acquire();
      XFER_ASSIGN_OR_RETURN(std::size_t sgot,
                            file.source->read_at(Offset{pos}, src.writable().subspan(0, n)));
      if (sgot != n) return false;
      src_hash.update({src.data(), n});
    }
  }
  return dst_hash.digest() == (recorded != 0 ? recorded : src_hash.digest());
}

// --verify: read every piece back from the sink and compare its XXH3 with
// the one taken from the source bytes. A mismatch is kCorrupt/RetryFile.
Status Engine::verify_pieces(Sink& sink, std::uint64_t size, const std::uint64_t* hashes) {
  Buffer buf = pool_.acquire();
  const std::uint64_t io = opt_.io_size;
  for (std::uint64_t pos = 0; pos < size; pos += io) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(io, size - pos));
    XFER_ASSIGN_OR_RETURN(std::size_t got,
                          sink.read_back(Offset{pos}, buf.writable().subspan(0, n)));
    if (got != n || xxh3_64({buf.data(), n}) != hashes[pos / io]) {
      return make_error(ErrorCode::kCorrupt, "verify", "",
                        fmt::format("destination differs from source at offset {}", pos),
                        RetryClass::kRetryFile);
    }
    counters_.bytes_verified.fetch_add(n, std::memory_order_relaxed);
  }
  return ok_status();
}

}  // namespace xfer::detail
