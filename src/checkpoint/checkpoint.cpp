// The checkpoint store. See include/xfer/checkpoint/checkpoint.hpp for the
// contract and docs/journal-format.md for the files it writes.
//
// Threads: workers record into sharded, locked state; one flusher thread
// per job group-commits the journal; snapshots and compaction run on it.

#include "xfer/checkpoint/checkpoint.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "xfer/core/checksum.hpp"
#include "xfer/core/files.hpp"
#include "xfer/core/log.hpp"
#include "xfer/io/unique_fd.hpp"

namespace xfer::checkpoint {
namespace {

using Clock = std::chrono::steady_clock;
constexpr char kSnapshotMagic[8] = {'X', 'F', 'S', 'N', 'A', 'P', '0', '1'};

using Fd = UniqueFd;

Status write_all(int fd, std::span<const std::byte> data, const std::string& path) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "write", path);
    }
    done += static_cast<std::size_t>(n);
  }
  return ok_status();
}

Result<std::vector<std::byte>> read_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::vector<std::byte>{};
    return errno_error(errno, "open", path);
  }
  std::vector<std::byte> out;
  std::byte buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "read", path);
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

// Writes `data` to `path` atomically: temp file, fsync, rename.
Status write_atomic(const std::string& path, std::span<const std::byte> data) {
  return write_file_atomically(
      path, std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
}

Status fsync_dir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return errno_error(errno, "open", dir);
  if (::fsync(fd.get()) != 0) return errno_error(errno, "fsync", dir);
  return ok_status();
}

struct FileState {
  FileBegin begin;
  Progress progress;
  std::uint64_t seq = 0;  // updates applied
};

std::uint64_t chunk_count(const FileBegin& b) {
  if (b.chunk_size == 0) return 0;
  return std::max<std::uint64_t>(1, (b.size + b.chunk_size - 1) / b.chunk_size);
}

bool same_geometry(const FileBegin& a, const FileBegin& b) {
  return a.size == b.size && a.mtime_ns == b.mtime_ns && a.chunk_size == b.chunk_size &&
         a.source == b.source;
}

// A SinkNote into `p`; false when it names no chunk of the file.
bool apply_note(Progress& p, std::uint64_t chunk, const std::string& text) {
  if (chunk == kFileNote) {
    p.note = text;
    return true;
  }
  if (chunk >= p.notes.size()) return false;
  p.notes[chunk] = text;
  return true;
}

FileState fresh_state(const FileBegin& b) {
  FileState s;
  s.begin = b;
  std::uint64_t n = chunk_count(b);
  s.progress.done.assign(n, false);
  s.progress.hashes.assign(n, 0);
  s.progress.partial.assign(n, 0);
  s.progress.notes.assign(n, {});
  return s;
}

// Snapshot := magic(8) | u32 body_len | u32 crc32(body) | body
// body     := FileBegin record | u64 seq | u64 chunks | bitmap | u64 hash[chunks]
//             [ u64 count | (u64 chunk, u64 bytes)[count] ]   chunks begun, not done
//             [ str note | u64 count | (u64 chunk, str note)[count] ]  SinkNotes
// (the partial part is absent in snapshots written before ChunkProgress,
// the notes part when the file has no note)
std::vector<std::byte> encode_snapshot(const FileState& s) {
  std::vector<std::byte> body;
  encode(s.begin, body);
  auto put_u64 = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) body.push_back(static_cast<std::byte>(v >> (8 * i)));
  };
  put_u64(s.seq);
  const std::uint64_t n = s.progress.done.size();
  put_u64(n);
  std::vector<std::byte> bitmap((n + 7) / 8);
  for (std::uint64_t i = 0; i < n; ++i) {
    if (s.progress.done[i]) bitmap[i / 8] |= static_cast<std::byte>(1u << (i % 8));
  }
  body.insert(body.end(), bitmap.begin(), bitmap.end());
  for (std::uint64_t h : s.progress.hashes) put_u64(h);
  std::uint64_t begun = 0;
  for (std::uint64_t i = 0; i < n; ++i) begun += !s.progress.done[i] && s.progress.partial[i] > 0;
  put_u64(begun);
  for (std::uint64_t i = 0; i < n; ++i) {
    if (s.progress.done[i] || s.progress.partial[i] == 0) continue;
    put_u64(i);
    put_u64(s.progress.partial[i]);
  }
  std::uint64_t noted = 0;
  for (const std::string& t : s.progress.notes) noted += !t.empty();
  if (noted > 0 || !s.progress.note.empty()) {
    auto put_str = [&](const std::string& t) {
      const auto len = static_cast<std::uint32_t>(t.size());
      for (int i = 0; i < 4; ++i) body.push_back(static_cast<std::byte>(len >> (8 * i)));
      const auto* b = reinterpret_cast<const std::byte*>(t.data());
      body.insert(body.end(), b, b + t.size());
    };
    put_str(s.progress.note);
    put_u64(noted);
    for (std::uint64_t i = 0; i < n; ++i) {
      if (s.progress.notes[i].empty()) continue;
      put_u64(i);
      put_str(s.progress.notes[i]);
    }
  }
  std::vector<std::byte> out;
  for (char c : kSnapshotMagic) out.push_back(static_cast<std::byte>(c));
  std::uint32_t len = static_cast<std::uint32_t>(body.size());
  std::uint32_t crc = crc32(body);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(len >> (8 * i)));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(crc >> (8 * i)));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::optional<FileState> decode_snapshot(std::span<const std::byte> in) {
  if (in.size() < 16 || std::memcmp(in.data(), kSnapshotMagic, 8) != 0) return std::nullopt;
  auto u32_at = [&](std::size_t off) {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(in[off + i]) << (8 * i);
    return v;
  };
  std::uint32_t len = u32_at(8), crc = u32_at(12);
  if (in.size() != 16ull + len) return std::nullopt;
  std::span<const std::byte> body = in.subspan(16);
  if (crc32(body) != crc) return std::nullopt;
  Decoded d = decode(body);
  if (d.status != DecodeStatus::kOk || !std::holds_alternative<FileBegin>(d.record)) {
    return std::nullopt;
  }
  FileState s = fresh_state(std::get<FileBegin>(d.record));
  std::size_t pos = d.consumed;
  auto u64 = [&](std::uint64_t& v) {
    if (pos + 8 > body.size()) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(body[pos + i]) << (8 * i);
    pos += 8;
    return true;
  };
  std::uint64_t n = 0;
  if (!u64(s.seq) || !u64(n) || n != s.progress.done.size()) return std::nullopt;
  std::size_t bitmap_bytes = (n + 7) / 8;
  if (pos + bitmap_bytes + 8 * n > body.size()) return std::nullopt;
  for (std::uint64_t i = 0; i < n; ++i) {
    s.progress.done[i] = (static_cast<unsigned>(body[pos + i / 8]) >> (i % 8)) & 1u;
  }
  pos += bitmap_bytes;
  for (std::uint64_t i = 0; i < n; ++i) u64(s.progress.hashes[i]);
  if (pos == body.size()) return s;  // a snapshot of before ChunkProgress
  std::uint64_t begun = 0;
  if (!u64(begun) || begun > n || pos + 16 * begun > body.size()) return std::nullopt;
  for (std::uint64_t k = 0; k < begun; ++k) {
    std::uint64_t chunk = 0, bytes = 0;
    u64(chunk);
    u64(bytes);
    if (chunk >= n || bytes >= s.begin.chunk_size) return std::nullopt;
    s.progress.partial[chunk] = bytes;
  }
  if (pos == body.size()) return s;  // no notes
  auto str = [&](std::string& t) {
    if (pos + 4 > body.size()) return false;
    std::uint32_t size = 0;
    for (int i = 0; i < 4; ++i) size |= static_cast<std::uint32_t>(body[pos + i]) << (8 * i);
    pos += 4;
    if (size > kMaxNote || pos + size > body.size()) return false;
    t.assign(reinterpret_cast<const char*>(body.data() + pos), size);
    pos += size;
    return true;
  };
  std::uint64_t noted = 0;
  if (!str(s.progress.note) || !u64(noted) || noted > n) return std::nullopt;
  for (std::uint64_t k = 0; k < noted; ++k) {
    std::uint64_t chunk = 0;
    if (!u64(chunk) || chunk >= n || !str(s.progress.notes[chunk])) return std::nullopt;
  }
  if (pos != body.size()) return std::nullopt;
  return s;
}

class CheckpointImpl final : public Checkpoint {
 public:
  explicit CheckpointImpl(Options o) : opt_(std::move(o)) {}

  ~CheckpointImpl() override {
    {
      std::lock_guard lock(q_mu_);
      stop_ = true;
    }
    q_cv_.notify_all();
    if (flusher_.joinable()) flusher_.join();
  }

  Status start() {
    std::error_code ec;
    std::filesystem::create_directories(snap_dir(), ec);
    if (ec) return errno_error(ec.value(), "mkdir", snap_dir());
    XFER_TRY(recover_done_index());
    XFER_TRY(recover_snapshots());
    XFER_TRY(recover_journal());
    flusher_ = std::thread([this] { flusher_loop(); });
    return ok_status();
  }

  std::optional<FileDone> done(std::uint64_t key) const override {
    const DoneShard& ds = done_shard(key);
    std::lock_guard lock(ds.mu);
    auto it = ds.done.find(key);
    if (it == ds.done.end()) return std::nullopt;
    return it->second;
  }

  std::size_t done_count() const override {
    std::size_t n = 0;
    for (const auto& ds : done_shards_) {
      std::lock_guard lock(ds.mu);
      n += ds.done.size();
    }
    return n;
  }

  Progress begin_file(const FileBegin& b) override {
    Progress result;
    {
      Shard& sh = shard(b.file_key);
      std::lock_guard lock(sh.mu);
      auto it = sh.files.find(b.file_key);
      if (it != sh.files.end() && same_geometry(it->second.begin, b)) {
        result = it->second.progress;
      } else {
        sh.files[b.file_key] = fresh_state(b);
        result = sh.files[b.file_key].progress;
      }
    }
    enqueue(b);
    return result;
  }

  std::uint64_t recorded_chunk_size(const FileBegin& like) const override {
    const Shard& sh = shard(like.file_key);
    std::lock_guard lock(sh.mu);
    auto it = sh.files.find(like.file_key);
    if (it == sh.files.end()) return 0;
    const FileBegin& b = it->second.begin;
    if (b.size != like.size || b.mtime_ns != like.mtime_ns || b.source != like.source) return 0;
    return it->second.progress.begun() ? b.chunk_size : 0;
  }

  void chunk_done(std::uint64_t key, std::uint64_t chunk, std::uint64_t xxh3) override {
    {
      Shard& sh = shard(key);
      std::lock_guard lock(sh.mu);
      auto it = sh.files.find(key);
      if (it == sh.files.end() || chunk >= it->second.progress.done.size()) return;
      it->second.progress.done[chunk] = true;
      it->second.progress.hashes[chunk] = xxh3;
      it->second.progress.partial[chunk] = 0;
      ++it->second.seq;
    }
    enqueue(ChunkDone{key, chunk, xxh3});
  }

  void chunk_progress(std::uint64_t key, std::uint64_t chunk, std::uint64_t bytes) override {
    {
      Shard& sh = shard(key);
      std::lock_guard lock(sh.mu);
      auto it = sh.files.find(key);
      if (it == sh.files.end() || chunk >= it->second.progress.done.size() ||
          it->second.progress.done[chunk] || bytes >= it->second.begin.chunk_size) {
        return;
      }
      it->second.progress.partial[chunk] = bytes;
    }
    enqueue(ChunkProgress{key, chunk, bytes});
  }

  void sink_note(std::uint64_t key, std::uint64_t chunk, std::string text) override {
    if (text.size() > kMaxNote) text.clear();
    {
      Shard& sh = shard(key);
      std::lock_guard lock(sh.mu);
      auto it = sh.files.find(key);
      if (it == sh.files.end() || !apply_note(it->second.progress, chunk, text)) return;
    }
    enqueue(SinkNote{key, chunk, std::move(text)});
  }

  std::string file_note(std::uint64_t key) const override {
    const Shard& sh = shard(key);
    std::lock_guard lock(sh.mu);
    auto it = sh.files.find(key);
    return it == sh.files.end() ? std::string() : it->second.progress.note;
  }

  void reset_file(std::uint64_t key) override {
    {
      Shard& sh = shard(key);
      std::lock_guard lock(sh.mu);
      sh.files.erase(key);
    }
    enqueue(FileReset{key});
  }

  Status finish_file(const FileDone& d, bool sync) override {
    if (!sync) {
      // A whole file, already published under its final name: its record
      // only spares a resumed run a look at the destination. It waits in its
      // done shard (one lock, no queue) until the flusher appends a batch to
      // the done-index, riding on the next fsync.
      DoneShard& ds = done_shard(d.file_key);
      bool nudge = false;
      {
        std::lock_guard lock(ds.mu);
        ds.done[d.file_key] = d;
        ds.pending.push_back(d);
        nudge = ds.pending.size() == kSoftBatch;
      }
      if (nudge) q_cv_.notify_one();
      return ok_status();
    }
    {
      Shard& sh = shard(d.file_key);
      std::lock_guard lock(sh.mu);
      sh.files.erase(d.file_key);
    }
    {
      DoneShard& ds = done_shard(d.file_key);
      std::lock_guard lock(ds.mu);
      ds.done[d.file_key] = d;
    }
    return wait_durable(enqueue(d));
  }

  // A full flusher pass that starts after this call: it takes the queue and
  // every soft record pending in the done shards, and fsyncs both files.
  Status flush() override {
    std::unique_lock lock(q_mu_);
    const std::uint64_t target = passes_started_ + 1;
    flush_requested_ = true;
    q_cv_.notify_all();
    durable_cv_.wait(lock, [&] { return passes_done_ >= target || !flusher_error_.ok(); });
    return flusher_error_;
  }

  const Stats& stats() const override { return stats_; }

  std::uint64_t recorded_bytes() const override {
    std::uint64_t n = 0;
    for (const auto& ds : done_shards_) {
      std::lock_guard lock(ds.mu);
      for (const auto& [k, d] : ds.done) n += d.size;
    }
    for (const auto& sh : shards_) {
      std::lock_guard lock(sh.mu);
      for (const auto& [k, st] : sh.files) {
        const FileBegin& b = st.begin;
        for (std::uint64_t c = 0; c < st.progress.done.size(); ++c) {
          const std::uint64_t first = c * b.chunk_size;
          if (first >= b.size) break;
          const std::uint64_t len = std::min(b.chunk_size, b.size - first);
          if (st.progress.done[c]) {
            n += len;
          } else if (c < st.progress.partial.size()) {
            n += std::min(st.progress.partial[c], len);
          }
        }
      }
    }
    return n;
  }

  std::vector<FileBegin> active_files() const override {
    std::vector<FileBegin> out;
    for (const auto& sh : shards_) {
      std::lock_guard lock(sh.mu);
      for (const auto& [k, s] : sh.files) out.push_back(s.begin);
    }
    return out;
  }

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::uint64_t, FileState> files;
  };
  struct Pending {
    Record record;
    Clock::time_point enqueued;
  };
  struct DoneShard {
    mutable std::mutex mu;
    std::unordered_map<std::uint64_t, FileDone> done;
    std::vector<FileDone> pending;  // soft records not yet in the done-index
  };
  struct SnapshotClock {
    unsigned updates = 0;
    Clock::time_point last = Clock::now();
  };

  Shard& shard(std::uint64_t key) { return shards_[key % shards_.size()]; }
  const Shard& shard(std::uint64_t key) const { return shards_[key % shards_.size()]; }
  DoneShard& done_shard(std::uint64_t key) { return done_shards_[key % done_shards_.size()]; }
  const DoneShard& done_shard(std::uint64_t key) const {
    return done_shards_[key % done_shards_.size()];
  }
  std::string journal_path() const { return opt_.dir + "/journal"; }
  std::string done_path() const { return opt_.dir + "/done.idx"; }
  std::string snap_dir() const { return opt_.dir + "/snapshots"; }
  std::string snap_path(std::uint64_t key) const {
    return fmt::format("{}/{:016x}.snap", snap_dir(), key);
  }

  std::uint64_t enqueue(Record r) {
    std::unique_lock lock(q_mu_);
    if (queue_.size() >= opt_.queue_capacity) {
      stats_.backpressure_waits.fetch_add(1, std::memory_order_relaxed);
      q_cv_.notify_all();
      space_cv_.wait(lock, [&] { return queue_.size() < opt_.queue_capacity || stop_; });
    }
    queue_.push_back({std::move(r), Clock::now()});
    std::uint64_t seq = ++enqueued_seq_;
    // Group commit: the first record of a batch wakes the flusher; records
    // that arrive during its fsync form the next batch.
    if (queue_.size() == 1) q_cv_.notify_one();
    std::uint64_t depth = queue_.size();
    stats_.queue_depth.store(depth, std::memory_order_relaxed);
    if (depth > stats_.max_queue_depth.load(std::memory_order_relaxed)) {
      stats_.max_queue_depth.store(depth, std::memory_order_relaxed);
    }
    return seq;
  }

  Status wait_durable(std::uint64_t seq) {
    std::unique_lock lock(q_mu_);
    flush_requested_ = true;
    q_cv_.notify_all();
    durable_cv_.wait(lock, [&] { return durable_seq_ >= seq || !flusher_error_.ok() || stop_; });
    return flusher_error_;
  }

  void flusher_loop() {
    for (;;) {
      std::vector<Pending> batch;
      std::uint64_t batch_seq = 0;
      bool stopping = false;
      bool force_sync = false;
      std::uint64_t pass = 0;
      {
        std::unique_lock lock(q_mu_);
        // Group commit: write as soon as there is anything; records that
        // arrive during an fsync form the next batch. The interval only
        // bounds how long an idle flusher sleeps (snapshot timing).
        q_cv_.wait_for(lock, opt_.flush_interval,
                       [&] { return stop_ || flush_requested_ || !queue_.empty(); });
        batch.swap(queue_);
        batch_seq = enqueued_seq_;
        pass = ++passes_started_;
        force_sync = flush_requested_ || stop_;
        flush_requested_ = false;
        stopping = stop_;
        stats_.queue_depth.store(0, std::memory_order_relaxed);
      }
      space_cv_.notify_all();
      std::vector<FileDone> soft;
      for (auto& ds : done_shards_) {
        std::lock_guard lock(ds.mu);
        soft.insert(soft.end(), ds.pending.begin(), ds.pending.end());
        ds.pending.clear();
      }
      Status s = (batch.empty() && soft.empty() && !force_sync)
                     ? ok_status()
                     : write_batch(batch, soft, force_sync);
      if (s.ok()) s = maybe_snapshot_and_compact(batch);
      {
        std::lock_guard lock(q_mu_);
        if (!s.ok() && flusher_error_.ok()) {
          flusher_error_ = s;
          log().error("checkpoint: {}", s.error().message());
        }
        durable_seq_ = batch_seq;
        passes_done_ = pass;
      }
      durable_cv_.notify_all();
      if (stopping) {
        std::lock_guard lock(q_mu_);
        if (queue_.empty()) return;
      }
    }
  }

  Status write_batch(const std::vector<Pending>& batch, const std::vector<FileDone>& soft,
                     bool force_sync) {
    std::vector<std::byte> journal_bytes, done_bytes;
    bool hard_done = false;
    for (const auto& p : batch) {
      if (const auto* d = std::get_if<FileDone>(&p.record)) {
        encode(*d, done_bytes);
        hard_done = true;
      }
      encode(p.record, journal_bytes);
    }
    for (const auto& d : soft) encode(d, done_bytes);
    if (!done_bytes.empty()) XFER_TRY(write_all(done_fd_.get(), done_bytes, done_path()));
    if (hard_done || force_sync) {
      if (::fdatasync(done_fd_.get()) != 0) return errno_error(errno, "fsync", done_path());
      stats_.fsyncs.fetch_add(1, std::memory_order_relaxed);
    }
    if (!journal_bytes.empty()) {
      XFER_TRY(write_all(journal_fd_.get(), journal_bytes, journal_path()));
      if (::fdatasync(journal_fd_.get()) != 0) return errno_error(errno, "fsync", journal_path());
      stats_.fsyncs.fetch_add(1, std::memory_order_relaxed);
    }
    stats_.records.fetch_add(batch.size() + soft.size(), std::memory_order_relaxed);
    stats_.done_bytes_total.fetch_add(done_bytes.size(), std::memory_order_relaxed);
    stats_.journal_bytes.fetch_add(journal_bytes.size(), std::memory_order_relaxed);
    stats_.journal_bytes_total.fetch_add(journal_bytes.size(), std::memory_order_relaxed);
    if (batch.empty()) return ok_status();
    auto lag = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() -
                                                                     batch.front().enqueued);
    auto lag_us = static_cast<std::uint64_t>(lag.count());
    stats_.flush_lag_us.store(lag_us, std::memory_order_relaxed);
    if (lag_us > stats_.max_flush_lag_us.load(std::memory_order_relaxed)) {
      stats_.max_flush_lag_us.store(lag_us, std::memory_order_relaxed);
    }
    return ok_status();
  }

  std::optional<FileState> copy_state(std::uint64_t key) {
    Shard& sh = shard(key);
    std::lock_guard lock(sh.mu);
    auto it = sh.files.find(key);
    if (it == sh.files.end()) return std::nullopt;
    return it->second;
  }

  Status write_snapshot(std::uint64_t key) {
    auto st = copy_state(key);
    if (!st) return ok_status();
    XFER_TRY(write_atomic(snap_path(key), encode_snapshot(*st)));
    stats_.snapshots.fetch_add(1, std::memory_order_relaxed);
    return ok_status();
  }

  Status maybe_snapshot_and_compact(const std::vector<Pending>& batch) {
    auto now = Clock::now();
    for (const auto& p : batch) {
      std::visit(
          [&](const auto& r) {
            using T = std::decay_t<decltype(r)>;
            if constexpr (std::is_same_v<T, ChunkDone>) {
              ++snap_clock_[r.file_key].updates;
            } else if constexpr (std::is_same_v<T, ChunkProgress> || std::is_same_v<T, SinkNote>) {
              // Many per chunk, or followed by the chunk's ChunkDone: they
              // ride in the journal until a ChunkDone or a compaction
              // snapshots them.
            } else if constexpr (std::is_same_v<T, FileBegin>) {
              snap_clock_.try_emplace(r.file_key);
            } else {
              snap_clock_.erase(r.file_key);
              ::unlink(snap_path(r.file_key).c_str());
            }
          },
          p.record);
    }
    for (auto& [key, sc] : snap_clock_) {
      if (sc.updates == 0) continue;
      if (sc.updates >= opt_.snapshot_every || now - sc.last >= opt_.snapshot_interval) {
        XFER_TRY(write_snapshot(key));
        sc.updates = 0;
        sc.last = now;
      }
    }
    if (stats_.journal_bytes.load(std::memory_order_relaxed) < opt_.compact_bytes) {
      return ok_status();
    }
    // Compaction: every active file gets a snapshot (durable, directory
    // synced), then the journal restarts empty. Replay is idempotent, so a
    // crash anywhere in between recovers the same state.
    std::vector<std::uint64_t> keys;
    for (const auto& sh : shards_) {
      std::lock_guard lock(sh.mu);
      for (const auto& [k, s] : sh.files) keys.push_back(k);
    }
    for (std::uint64_t k : keys) XFER_TRY(write_snapshot(k));
    XFER_TRY(fsync_dir(snap_dir()));
    if (::ftruncate(journal_fd_.get(), 0) != 0)
      return errno_error(errno, "truncate", journal_path());
    if (::fdatasync(journal_fd_.get()) != 0) return errno_error(errno, "fsync", journal_path());
    for (auto& [k, sc] : snap_clock_) {
      sc.updates = 0;
      sc.last = now;
    }
    stats_.journal_bytes.store(0, std::memory_order_relaxed);
    stats_.compactions.fetch_add(1, std::memory_order_relaxed);
    return ok_status();
  }

  // Reads every record of `path`, applies the good ones, truncates a torn or
  // corrupt tail, and leaves the file open for appending in `fd`.
  template <typename Apply>
  Status replay(const std::string& path, Fd& fd, Apply apply) {
    XFER_ASSIGN_OR_RETURN(std::vector<std::byte> data, read_file(path));
    std::size_t pos = 0;
    for (;;) {
      Decoded d = decode(std::span<const std::byte>(data).subspan(pos));
      if (d.status == DecodeStatus::kOk) {
        apply(d.record);
        pos += d.consumed;
        continue;
      }
      if (d.status == DecodeStatus::kCorrupt) {
        log().warn("checkpoint: {} is corrupt at offset {} ({}); dropping the rest", path, pos,
                   d.reason);
      }
      break;
    }
    fd = Fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
    if (!fd.valid()) return errno_error(errno, "open", path);
    if (pos < data.size()) {
      stats_.truncated_bytes.fetch_add(data.size() - pos, std::memory_order_relaxed);
      if (::ftruncate(fd.get(), static_cast<off_t>(pos)) != 0) {
        return errno_error(errno, "truncate", path);
      }
    }
    return ok_status();
  }

  Status recover_done_index() {
    return replay(done_path(), done_fd_, [&](const Record& r) {
      if (const auto* d = std::get_if<FileDone>(&r)) done_shard(d->file_key).done[d->file_key] = *d;
    });
  }

  Status recover_snapshots() {
    DIR* dir = ::opendir(snap_dir().c_str());
    if (dir == nullptr) return errno_error(errno, "open", snap_dir());
    std::vector<std::string> names;
    while (dirent* de = ::readdir(dir)) {
      std::string n = de->d_name;
      if (n.size() > 5 && n.compare(n.size() - 5, 5, ".snap") == 0) names.push_back(n);
      if (n.size() > 4 && n.compare(n.size() - 4, 4, ".tmp") == 0) {
        ::unlinkat(::dirfd(dir), de->d_name, 0);  // an interrupted snapshot write
      }
    }
    ::closedir(dir);
    for (const auto& n : names) {
      std::string path = snap_dir() + "/" + n;
      auto data = read_file(path);
      std::optional<FileState> st;
      if (data) st = decode_snapshot(*data);
      if (!st) {
        log().warn("checkpoint: ignoring unreadable snapshot {}", path);
        ::unlink(path.c_str());
        continue;
      }
      if (done_shard(st->begin.file_key).done.count(st->begin.file_key) != 0) {
        ::unlink(path.c_str());
        continue;
      }
      std::uint64_t key = st->begin.file_key;
      shard(key).files[key] = std::move(*st);
    }
    return ok_status();
  }

  Status recover_journal() {
    XFER_TRY(replay(journal_path(), journal_fd_, [&](const Record& r) {
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            auto& files = shard(v.file_key).files;
            if constexpr (std::is_same_v<T, FileBegin>) {
              auto it = files.find(v.file_key);
              if (it == files.end() || !same_geometry(it->second.begin, v)) {
                files[v.file_key] = fresh_state(v);
              }
            } else if constexpr (std::is_same_v<T, ChunkDone>) {
              auto it = files.find(v.file_key);
              if (it != files.end() && v.chunk < it->second.progress.done.size()) {
                it->second.progress.done[v.chunk] = true;
                it->second.progress.hashes[v.chunk] = v.xxh3;
                it->second.progress.partial[v.chunk] = 0;
                ++it->second.seq;
              }
            } else if constexpr (std::is_same_v<T, ChunkProgress>) {
              auto it = files.find(v.file_key);
              if (it != files.end() && v.chunk < it->second.progress.done.size() &&
                  !it->second.progress.done[v.chunk] && v.bytes < it->second.begin.chunk_size) {
                it->second.progress.partial[v.chunk] = v.bytes;
              }
            } else if constexpr (std::is_same_v<T, SinkNote>) {
              auto it = files.find(v.file_key);
              if (it != files.end()) apply_note(it->second.progress, v.chunk, v.text);
            } else if constexpr (std::is_same_v<T, FileDone>) {
              files.erase(v.file_key);
              done_shard(v.file_key).done[v.file_key] = v;
            } else {
              files.erase(v.file_key);
            }
          },
          r);
    }));
    struct stat st {};
    if (::fstat(journal_fd_.get(), &st) == 0) {
      stats_.journal_bytes.store(static_cast<std::uint64_t>(st.st_size));
    }
    for (auto& sh : shards_) {
      for (auto& [k, s] : sh.files) {
        stats_.recovered_files.fetch_add(1, std::memory_order_relaxed);
        stats_.recovered_chunks.fetch_add(s.progress.done_count(), std::memory_order_relaxed);
        snap_clock_.try_emplace(k);
      }
    }
    return ok_status();
  }

  const Options opt_;
  Stats stats_;
  std::array<Shard, 16> shards_;
  std::array<DoneShard, 16> done_shards_;

  std::mutex q_mu_;
  std::condition_variable q_cv_;
  std::condition_variable space_cv_;
  std::condition_variable durable_cv_;
  std::vector<Pending> queue_;
  std::uint64_t enqueued_seq_ = 0;
  std::uint64_t durable_seq_ = 0;
  bool flush_requested_ = false;
  std::uint64_t passes_started_ = 0;  // flusher passes, for flush()
  std::uint64_t passes_done_ = 0;
  bool stop_ = false;
  static constexpr std::size_t kSoftBatch = 1024;  // soft records per shard that wake the flusher
  Status flusher_error_;

  // Flusher thread only (and recovery before it starts).
  std::unordered_map<std::uint64_t, SnapshotClock> snap_clock_;
  Fd journal_fd_;
  Fd done_fd_;
  std::thread flusher_;
};

}  // namespace

std::uint64_t Progress::done_count() const {
  std::uint64_t n = 0;
  for (bool b : done) n += b ? 1 : 0;
  return n;
}

bool Progress::begun() const {
  if (done_count() > 0) return true;
  for (std::uint64_t b : partial) {
    if (b > 0) return true;
  }
  return false;
}

std::uint64_t file_key(const std::string& destination) {
  return xxh3_64(std::as_bytes(std::span(destination.data(), destination.size())));
}

Result<std::unique_ptr<Checkpoint>> Checkpoint::open(const Options& options) {
  auto cp = std::make_unique<CheckpointImpl>(options);
  XFER_TRY(cp->start());
  return std::unique_ptr<Checkpoint>(std::move(cp));
}

}  // namespace xfer::checkpoint
