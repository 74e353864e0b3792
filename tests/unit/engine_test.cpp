// Engine pieces (planner, scheduler, retry policy) and whole transfers run
// in-process through the registry, including a fault-injecting backend that
// wraps the local one (transient read errors, corrupt writes).

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "engine/planner.hpp"
#include "engine/retry.hpp"
#include "engine/scheduler.hpp"
#include "xfer/backend/local.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/engine/changes.hpp"
#include "xfer/engine/transfer.hpp"

namespace xfer {
namespace {

namespace fs = std::filesystem;

TEST(Planner, SmallFilesGoWhole) {
  Capabilities local;
  local.random_writes = local.parallel_writers = true;
  TransferOptions opt;
  EXPECT_EQ(plan_file(0, local, local, opt).strategy, Strategy::kWhole);
  EXPECT_EQ(plan_file(opt.small_file_threshold, local, local, opt).strategy, Strategy::kWhole);
}

TEST(Planner, LargeFilesAreChunkedWithinBounds) {
  Capabilities local;
  local.random_writes = local.parallel_writers = true;
  TransferOptions opt;
  FilePlan p = plan_file(4ull << 30, local, local, opt);
  EXPECT_EQ(p.strategy, Strategy::kChunked);
  EXPECT_GE(p.chunk_size, 8ull << 20);
  EXPECT_LE(p.chunk_size, 64ull << 20);
  EXPECT_EQ(p.chunks, ((4ull << 30) + p.chunk_size - 1) / p.chunk_size);
  opt.chunk_size = 1 << 20;
  EXPECT_EQ(plan_file(100ull << 20, local, local, opt).chunks, 100u);
}

TEST(Planner, ChunksInFlightAndTheirSizeFollowTheLink) {
  Capabilities caps;
  caps.random_writes = caps.parallel_writers = true;
  TransferOptions opt;  // chunk_parallelism auto, io_size 1 MiB, memory 256 MiB
  const FilePlan local = plan_file(2ull << 30, caps, caps, opt, LinkEstimate{0.05});
  EXPECT_EQ(local.parallelism, 4u) << "loopback and LANs keep 4";
  EXPECT_EQ(local.chunk_size, 32ull << 20) << "2 GiB in 64 chunks";
  // 50 ms: a window of 2 × 50 ms × 2.5 Gbit/s = 31.25 MB, 30 calls of 1 MiB.
  const FilePlan wan = plan_file(2ull << 30, caps, caps, opt, LinkEstimate{50});
  EXPECT_EQ(wan.parallelism, 30u);
  EXPECT_EQ(plan_file(2ull << 30, caps, caps, opt, LinkEstimate{600}).parallelism, 64u)
      << "at most 64";
  // A chunk is one call of 1 MiB per round trip at a time: about a second
  // of them (the seed's table: 8 MB on good WANs, 4 MB on poor ones, 1 MB
  // over satellites).
  EXPECT_EQ(wan.chunk_size, 20ull << 20);
  EXPECT_EQ(wan.chunks, 103u);
  EXPECT_EQ(plan_file(2ull << 30, caps, caps, opt, LinkEstimate{150}).chunk_size, 6ull << 20);
  EXPECT_EQ(plan_file(2ull << 30, caps, caps, opt, LinkEstimate{600}).chunk_size, 1ull << 20);
  // And about a second of the measured goodput: 4 MB/s makes 3 MiB chunks.
  EXPECT_EQ(plan_file(2ull << 30, caps, caps, opt, LinkEstimate{0.05, 4e6}).chunk_size, 3ull << 20);
  // Whole io_size pieces (--verify hashes each): 4 MiB calls over 150 ms
  // make 26.7 MiB, so 24.
  TransferOptions big_io = opt;
  big_io.io_size = 4ull << 20;
  EXPECT_EQ(plan_file(2ull << 30, caps, caps, big_io, LinkEstimate{150}).chunk_size, 24ull << 20);
  big_io.io_size = 3ull << 20;
  EXPECT_EQ(plan_file(2ull << 30, caps, caps, big_io, LinkEstimate{0.05}).chunk_size % (3u << 20),
            0u);
  // Never more than kMaxAutoChunks: 1 TiB over 600 ms keeps 64 MiB chunks.
  EXPECT_EQ(plan_file(1ull << 40, caps, caps, opt, LinkEstimate{600}).chunk_size, 64ull << 20);
  // A file resumed from a checkpoint keeps the layout it was begun with.
  EXPECT_EQ(plan_file(2ull << 30, caps, caps, opt, LinkEstimate{150}, 32ull << 20).chunk_size,
            32ull << 20);
  // Half the memory budget bounds the window: 32 MiB of 1 MiB buffers.
  opt.memory = 32ull << 20;
  EXPECT_EQ(plan_file(2ull << 30, caps, caps, opt, LinkEstimate{150}).parallelism, 16u);
  // Explicit values are kept.
  opt.chunk_parallelism = 3;
  opt.chunk_size = 16ull << 20;
  const FilePlan fixed = plan_file(2ull << 30, caps, caps, opt, LinkEstimate{150, 1e6});
  EXPECT_EQ(fixed.parallelism, 3u);
  EXPECT_EQ(fixed.chunk_size, 16ull << 20);
}

TEST(Planner, RespectsSinkPartRules) {
  Capabilities src, s3;
  src.random_writes = true;
  s3.random_writes = s3.parallel_writers = true;
  s3.min_part_size = 5ull << 20;
  s3.max_parts = 10;
  TransferOptions opt;
  opt.chunk_size = 1 << 20;
  FilePlan p = plan_file(200ull << 20, src, s3, opt);
  EXPECT_LE(p.chunks, 10u);
  EXPECT_GE(p.chunk_size, 5ull << 20);
  Capabilities sequential;  // no random writes: never split
  EXPECT_EQ(plan_file(1ull << 30, src, sequential, opt).strategy, Strategy::kWhole);
  // Whole parts (an object store's multipart upload): split, within the
  // part rules, though no write lands at any other offset.
  Capabilities parts;
  parts.whole_parts = parts.parallel_writers = true;
  parts.min_part_size = 5ull << 20;
  parts.max_parts = 10;
  p = plan_file(200ull << 20, src, parts, opt);
  EXPECT_EQ(p.strategy, Strategy::kChunked);
  EXPECT_LE(p.chunks, 10u);
  EXPECT_GE(p.chunk_size, 5ull << 20);
}

TEST(RetryPolicy, ClassesAndBackoffBounds) {
  RetryPolicy p(3, std::chrono::milliseconds(10), std::chrono::milliseconds(100));
  Error transient = errno_error(EAGAIN, "read", "x");
  Error fatal = errno_error(ENOENT, "open", "x");
  Error file = make_error(ErrorCode::kChanged, "read", "x", "", RetryClass::kRetryFile);
  EXPECT_TRUE(p.retry_call(transient, 1));
  EXPECT_FALSE(p.retry_call(transient, 3));
  EXPECT_FALSE(p.retry_call(fatal, 1));
  EXPECT_FALSE(p.retry_call(file, 1));
  EXPECT_TRUE(p.retry_file(file, 2));
  EXPECT_FALSE(p.retry_file(fatal, 1));
  for (unsigned a = 1; a < 10; ++a) EXPECT_LE(p.backoff(a).count(), 100);
}

TEST(Scheduler, ChunksBeforeNewFilesAndFenceOnLast) {
  Scheduler s(8);
  ASSERT_TRUE(s.push_file({0, "a", "a2", EntryType::kFile}));
  ASSERT_TRUE(s.push_file({0, "b", "b2", EntryType::kFile}));
  s.close_input();
  WorkItem w = s.next();
  ASSERT_EQ(w.kind, WorkItem::Kind::kFile);
  EXPECT_EQ(w.file.source, "a");
  auto f = std::make_shared<ChunkedFile>();
  f->chunks = 3;
  f->parallelism = 2;
  auto first = s.add_chunked(f);
  s.file_classified();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->chunk, 0u);
  WorkItem c1 = s.next();  // a chunk is preferred over file "b"
  ASSERT_EQ(c1.kind, WorkItem::Kind::kChunk);
  EXPECT_EQ(c1.chunk, 1u);
  WorkItem b = s.next();  // parallelism 2 reached: the next file comes out
  ASSERT_EQ(b.kind, WorkItem::Kind::kFile);
  s.file_classified();
  EXPECT_FALSE(s.chunk_finished(f, std::nullopt));
  WorkItem c2 = s.next();
  EXPECT_EQ(c2.chunk, 2u);
  EXPECT_FALSE(s.chunk_finished(f, std::nullopt));
  EXPECT_TRUE(s.chunk_finished(f, std::nullopt));  // last one out finalizes
  EXPECT_EQ(s.next().kind, WorkItem::Kind::kDone);
}

TEST(Scheduler, FailureStopsHandingOutChunks) {
  Scheduler s(8);
  auto f = std::make_shared<ChunkedFile>();
  f->chunks = 10;
  f->parallelism = 4;
  auto first = s.add_chunked(f);
  WorkItem second = s.next();
  ASSERT_EQ(second.kind, WorkItem::Kind::kChunk);
  EXPECT_FALSE(s.chunk_finished(f, make_error(ErrorCode::kIo, "read", "x")));
  EXPECT_TRUE(s.chunk_finished(f, std::nullopt));
  s.close_input();
  EXPECT_EQ(s.next().kind, WorkItem::Kind::kDone);
}

// ---------------------------------------------------------------- fault injection

// Wraps the local backend. Reads fail with EAGAIN `read_failures` times in
// total; writes corrupt one byte of the first `corrupt_writes` writes.
struct Faults {
  std::atomic<int> read_failures{0};
  std::atomic<int> corrupt_writes{0};
  std::atomic<int> grow_on_read{0};  // appends to the source file during reads
};
Faults g_faults;

class FaultySource final : public Source {
 public:
  FaultySource(std::unique_ptr<Source> inner, std::string path)
      : inner_(std::move(inner)), path_(std::move(path)) {}
  const FileAttrs& attrs() const override { return inner_->attrs(); }
  Result<std::size_t> read_at(Offset off, std::span<std::byte> buf) override {
    if (g_faults.read_failures.fetch_sub(1) > 0) return errno_error(EAGAIN, "read", path_);
    if (g_faults.grow_on_read.fetch_sub(1) > 0) {
      std::ofstream(path_, std::ios::app) << "more bytes";
    }
    return inner_->read_at(off, buf);
  }
  Status check_unchanged() override { return inner_->check_unchanged(); }

 private:
  std::unique_ptr<Source> inner_;
  std::string path_;
};

class FaultySink final : public Sink {
 public:
  explicit FaultySink(std::unique_ptr<Sink> inner) : inner_(std::move(inner)) {}
  Status write_at(Offset off, std::span<const std::byte> data) override {
    if (g_faults.corrupt_writes.fetch_sub(1) > 0 && !data.empty()) {
      std::vector<std::byte> bad(data.begin(), data.end());
      bad[0] ^= std::byte{0xff};
      return inner_->write_at(off, bad);
    }
    return inner_->write_at(off, data);
  }
  Result<std::size_t> read_back(Offset off, std::span<std::byte> buf) override {
    return inner_->read_back(off, buf);
  }
  Status commit() override { return inner_->commit(); }
  Status abort() override { return inner_->abort(); }

 private:
  std::unique_ptr<Sink> inner_;
};

// Forwards every call to the local backend: the test backends below change
// only what they are about.
class LocalForwarder : public Backend {
 public:
  LocalForwarder() : inner_(make_local_backend()), caps_(inner_->capabilities()) {}
  const Capabilities& capabilities() const override { return caps_; }
  std::string describe() const override { return "test"; }
  Result<FileAttrs> stat(std::string_view p) override { return inner_->stat(p); }
  Status list(std::string_view p, const ListOptions& o, const EntrySink& s) override {
    return inner_->list(p, o, s);
  }
  Status mkdir(std::string_view p, bool parents) override { return inner_->mkdir(p, parents); }
  Status remove(std::string_view p, bool r) override { return inner_->remove(p, r); }
  Status rename(std::string_view a, std::string_view b) override { return inner_->rename(a, b); }
  Status touch(std::string_view p, std::optional<std::int64_t> t) override {
    return inner_->touch(p, t);
  }
  Status symlink(std::string_view t, std::string_view p, const FileAttrs& a) override {
    return inner_->symlink(t, p, a);
  }
  Status set_attrs(std::string_view p, const FileAttrs& a) override {
    return inner_->set_attrs(p, a);
  }
  Result<std::unique_ptr<Source>> open_source(std::string_view p) override {
    return inner_->open_source(p);
  }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view p, const SinkOptions& o) override {
    return inner_->open_sink(p, o);
  }

 protected:
  std::unique_ptr<Backend> inner_;
  Capabilities caps_;
};

class FaultyBackend final : public LocalForwarder {
 public:
  std::string describe() const override { return "faulty"; }
  Result<std::unique_ptr<Source>> open_source(std::string_view p) override {
    XFER_ASSIGN_OR_RETURN(auto src, inner_->open_source(p));
    return std::unique_ptr<Source>(new FaultySource(std::move(src), std::string(p)));
  }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view p, const SinkOptions& o) override {
    XFER_ASSIGN_OR_RETURN(auto sink, inner_->open_sink(p, o));
    return std::unique_ptr<Sink>(new FaultySink(std::move(sink)));
  }
};

// A destination with object-store part rules (min_part_size, max_parts),
// recording the layout the engine announces and every write it makes.
struct PartLog {
  std::mutex mu;
  SinkOptions options;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> writes;  // offset, length
};
PartLog g_parts;

class PartsSink final : public Sink {
 public:
  explicit PartsSink(std::unique_ptr<Sink> inner) : inner_(std::move(inner)) {}
  Status write_at(Offset off, std::span<const std::byte> data) override {
    {
      std::lock_guard lock(g_parts.mu);
      g_parts.writes.emplace_back(off.get(), data.size());
    }
    return inner_->write_at(off, data);
  }
  Result<std::size_t> read_back(Offset off, std::span<std::byte> buf) override {
    return inner_->read_back(off, buf);
  }
  Status commit() override { return inner_->commit(); }
  Status abort() override { return inner_->abort(); }

 private:
  std::unique_ptr<Sink> inner_;
};

class PartsBackend final : public LocalForwarder {
 public:
  PartsBackend() {
    caps_.min_part_size = 5ull << 20;
    caps_.max_parts = 4;
  }
  std::string describe() const override { return "parts"; }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view p, const SinkOptions& o) override {
    {
      std::lock_guard lock(g_parts.mu);
      g_parts.options = o;
    }
    XFER_ASSIGN_OR_RETURN(auto sink, inner_->open_sink(p, o));
    return std::unique_ptr<Sink>(new PartsSink(std::move(sink)));
  }
};

// Sources of unknown size (HTTP without a length, a pipe): size 0,
// size_known false, and reads that come back short, as a network's do.
class StreamSource final : public Source {
 public:
  explicit StreamSource(std::unique_ptr<Source> inner) : inner_(std::move(inner)) {
    attrs_ = inner_->attrs();
    attrs_.size = 0;
    attrs_.size_known = false;
  }
  const FileAttrs& attrs() const override { return attrs_; }
  Result<std::size_t> read_at(Offset off, std::span<std::byte> buf) override {
    return inner_->read_at(off, buf.subspan(0, std::min<std::size_t>(buf.size(), 100000)));
  }
  Status check_unchanged() override { return ok_status(); }

 private:
  std::unique_ptr<Source> inner_;
  FileAttrs attrs_;
};

class StreamBackend final : public LocalForwarder {
 public:
  explicit StreamBackend(bool needs_size) { caps_.needs_size = needs_size; }
  std::string describe() const override { return "stream"; }
  Result<FileAttrs> stat(std::string_view p) override {
    XFER_ASSIGN_OR_RETURN(FileAttrs a, inner_->stat(p));
    if (a.type == EntryType::kFile) {
      a.size = 0;
      a.size_known = false;
    }
    return a;
  }
  Result<std::unique_ptr<Source>> open_source(std::string_view p) override {
    XFER_ASSIGN_OR_RETURN(auto src, inner_->open_source(p));
    return std::unique_ptr<Source>(new StreamSource(std::move(src)));
  }
};

// A destination on a link the test describes (what its backend measured),
// that asks for a cancel after a number of writes.
struct FarLink {
  LinkEstimate link;
  std::atomic<int> writes_left{-1};  // < 0: never cancel
  std::atomic<bool> cancel{false};
};
FarLink g_far;

class FarSink final : public Sink {
 public:
  explicit FarSink(std::unique_ptr<Sink> inner) : inner_(std::move(inner)) {}
  Status write_at(Offset off, std::span<const std::byte> data) override {
    XFER_TRY(inner_->write_at(off, data));
    if (g_far.writes_left.fetch_sub(1) == 1) g_far.cancel = true;
    return ok_status();
  }
  Result<std::size_t> read_back(Offset off, std::span<std::byte> buf) override {
    return inner_->read_back(off, buf);
  }
  Status commit() override { return inner_->commit(); }
  Status abort() override { return inner_->abort(); }
  Status suspend() override { return inner_->suspend(); }
  bool resumed() const override { return inner_->resumed(); }

 private:
  std::unique_ptr<Sink> inner_;
};

class FarBackend final : public LocalForwarder {
 public:
  std::string describe() const override { return "far"; }
  LinkEstimate link_estimate() const override { return g_far.link; }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view p, const SinkOptions& o) override {
    XFER_ASSIGN_OR_RETURN(auto sink, inner_->open_sink(p, o));
    return std::unique_ptr<Sink>(new FarSink(std::move(sink)));
  }
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backends_->register_scheme(
        "faulty",
        [](const Url&, const Profile&, const EndpointOptions&) -> Result<std::unique_ptr<Backend>> {
          return std::unique_ptr<Backend>(new FaultyBackend());
        });
    backends_->register_scheme(
        "parts",
        [](const Url&, const Profile&, const EndpointOptions&) -> Result<std::unique_ptr<Backend>> {
          return std::unique_ptr<Backend>(new PartsBackend());
        });
    backends_->register_scheme(
        "far",
        [](const Url&, const Profile&, const EndpointOptions&) -> Result<std::unique_ptr<Backend>> {
          return std::unique_ptr<Backend>(new FarBackend());
        });
    for (bool needs_size : {false, true}) {
      backends_->register_scheme(
          needs_size ? "sized" : "stream",
          [needs_size](const Url&, const Profile&,
                       const EndpointOptions&) -> Result<std::unique_ptr<Backend>> {
            return std::unique_ptr<Backend>(new StreamBackend(needs_size));
          });
    }
    dir_ = fs::temp_directory_path() /
           ("xfer_engine_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    state_ = dir_.string() + ".state";  // job state outside the compared folder
    fs::remove_all(state_);
    g_faults.read_failures = 0;
    g_faults.corrupt_writes = 0;
    g_faults.grow_on_read = 0;
  }
  void TearDown() override {
    fs::remove_all(dir_);
    fs::remove_all(state_);
  }

  std::string write_file(const std::string& name, std::size_t size) {
    std::mt19937_64 rng(size);
    std::string data(size, '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    std::ofstream(dir_ / name, std::ios::binary) << data;
    return data;
  }
  static std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::string faulty(const std::string& name) { return "faulty://" + (dir_ / name).string(); }
  // A request whose URLs may name faulty:// (this test's own registry).
  TransferRequest request(std::string source, std::string destination) const {
    TransferRequest req{{std::move(source)}, std::move(destination), {}, backends_};
    return req;
  }

  std::shared_ptr<BackendRegistry> backends_ = BackendRegistry::with_builtins();
  fs::path dir_;
  fs::path state_;
};

// The planner follows the destination's part rules and tells the sink the
// layout before the first byte; every write then lies inside one part, so an
// object store can upload one chunk as one part.
TEST_F(EngineTest, SinkLearnsThePartLayoutBeforeWritingAndWritesStayInsideParts) {
  const std::string data = write_file("src.bin", (23u << 20) + 12345);
  {
    std::lock_guard lock(g_parts.mu);
    g_parts.options = {};
    g_parts.writes.clear();
  }
  TransferRequest req =
      request((dir_ / "src.bin").string(), "parts://" + (dir_ / "dst.bin").string());
  req.options.state_root = state_.string();
  req.options.zero_copy = false;
  req.options.chunk_size = 1ull << 20;  // asks for 24 parts of 1 MiB; the sink allows 4 of >= 5M
  req.options.small_file_threshold = 1ull << 20;
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(read_file(dir_ / "dst.bin"), data);
  std::lock_guard lock(g_parts.mu);
  const std::uint64_t part = g_parts.options.part_size;
  EXPECT_EQ(g_parts.options.parts, 4u);
  EXPECT_GE(part, 5ull << 20);
  EXPECT_EQ((data.size() + part - 1) / part, g_parts.options.parts);
  ASSERT_FALSE(g_parts.writes.empty());
  for (auto [offset, length] : g_parts.writes) {
    ASSERT_GT(length, 0u);
    EXPECT_EQ(offset / part, (offset + length - 1) / part)
        << "a write at " << offset << "+" << length << " crosses a part boundary";
  }
}

// A source whose size is known only at its end is read in order to its end:
// the destination gets every byte (also checked by --verify), and a
// destination that must know the size first refuses it, leaving nothing.
TEST_F(EngineTest, SourceOfUnknownSizeIsReadToItsEnd) {
  for (std::size_t size : {std::size_t{0}, std::size_t{5}, std::size_t{(3u << 20) + 777}}) {
    const std::string data = write_file("src.bin", size);
    for (bool verify : {false, true}) {
      fs::remove(dir_ / "dst.bin");
      TransferRequest req =
          request("stream://" + (dir_ / "src.bin").string(), (dir_ / "dst.bin").string());
      req.options.state_root = state_.string();
      req.options.verify = verify;
      TransferCounters counters;
      struct Errors : TransferObserver {
        std::string text;
        void on_error(const Error& e) override { text += e.message() + "\n"; }
      } errors;
      auto r = run_transfer(req, counters, &errors);
      ASSERT_TRUE(r.ok()) << r.error().message();
      EXPECT_EQ(r->files_done, 1u)
          << errors.text << size << " failed " << r->files_failed << " skipped " << r->files_skipped
          << " resumed " << r->files_resumed;
      EXPECT_EQ(read_file(dir_ / "dst.bin"), data) << size << (verify ? " verify" : "");
      EXPECT_EQ(r->bytes_done, size);
      if (verify) {
        EXPECT_EQ(counters.bytes_verified.load(), size);
      }
    }
  }
  fs::remove(dir_ / "dst.bin");
  TransferRequest req =
      request("stream://" + (dir_ / "src.bin").string(), "sized://" + (dir_ / "dst.bin").string());
  req.options.state_root = state_.string();
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->files_failed, 1u);
  EXPECT_FALSE(fs::exists(dir_ / "dst.bin"));
}

// A transfer with a change feed stays open after its first scan: what the
// feed reports changed (a new file, a new folder, a file written again) is
// copied, a path that tries to leave the source is refused, and the run
// ends when the feed is closed and its copies are done.
TEST_F(EngineTest, ChangeFeedKeepsTheTransferOpenAndCopiesWhatChanged) {
  fs::create_directories(dir_ / "src");
  auto put = [&](const fs::path& p, const std::string& data) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
  };
  put(dir_ / "src" / "a", "first a");
  auto feed = std::make_shared<ChangeFeed>();
  TransferRequest req = request((dir_ / "src").string(), (dir_ / "dst").string());
  req.options.recursive = true;
  req.options.state_root = state_.string();
  req.changes = feed;
  TransferCounters counters;
  struct Errors : TransferObserver {
    std::mutex mu;
    std::string text;
    void on_error(const Error& e) override {
      std::lock_guard lock(mu);
      text += e.message() + "\n";
    }
  } errors;
  std::optional<Result<TransferResult>> result;
  std::thread run([&] { result = run_transfer(req, counters, &errors); });
  for (int i = 0; i < 500 && !fs::exists(dir_ / "dst" / "a"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(fs::exists(dir_ / "dst" / "a")) << "the first scan copies what is there";
  const std::string big = write_file("src/big", 3u << 20);  // chunked
  put(dir_ / "src" / "sub" / "deep" / "c", "new folder");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later mtime
  put(dir_ / "src" / "a", "second a, longer");
  for (const char* path : {"big", "sub", "a", "../escape", "sub/../../x", "a"}) {
    ASSERT_TRUE(feed->push({0, path}));
  }
  feed->close();
  run.join();
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->ok()) << result->error().message();
  // Seen twice under a loaded full run (never alone): say what the engine
  // reported and counted, to find out why.
  EXPECT_EQ(read_file(dir_ / "dst" / "a"), "second a, longer")
      << "errors: " << errors.text << "files done " << (*result)->files_done << ", unchanged "
      << (*result)->files_unchanged << ", resumed " << (*result)->files_resumed << ", failed "
      << (*result)->files_failed;
  EXPECT_EQ(read_file(dir_ / "dst" / "big"), big);
  EXPECT_EQ(read_file(dir_ / "dst" / "sub" / "deep" / "c"), "new folder");
  EXPECT_NE(errors.text.find("changed path"), std::string::npos) << errors.text;
  EXPECT_FALSE(fs::exists(dir_ / "escape"));
  EXPECT_FALSE(fs::exists(dir_ / "x"));
  EXPECT_FALSE(feed->push({0, "late"})) << "a closed feed takes nothing";
}

// A sync asks the destination guard before it changes an entry, with the
// entry's listed attributes: what it refuses stays as it is (skipped),
// the rest is synced.
TEST_F(EngineTest, ASyncLeavesWhatTheDestinationGuardRefuses) {
  auto put = [&](const fs::path& p, const std::string& data) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
  };
  put(dir_ / "src" / "a.txt", "new a");
  put(dir_ / "src" / "b.txt", "new b, longer");
  put(dir_ / "src" / "dir" / "c.txt", "new c");
  put(dir_ / "dst" / "a.txt", "old a, long");
  put(dir_ / "dst" / "b.txt", "old b");
  TransferRequest req = request((dir_ / "src").string() + "/", (dir_ / "dst").string());
  req.options.recursive = true;
  req.options.sync = true;
  req.options.state_root = state_.string();
  std::mutex mu;
  std::map<std::string, std::optional<std::uint64_t>> asked;  // path -> listed size
  req.destination_guard = [&](const std::string& path, const std::optional<FileAttrs>& now) {
    std::lock_guard lock(mu);
    asked[path] = now ? std::optional<std::uint64_t>(now->size) : std::nullopt;
    return path != "b.txt";
  };
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(read_file(dir_ / "dst" / "a.txt"), "new a");
  EXPECT_EQ(read_file(dir_ / "dst" / "b.txt"), "old b") << "refused: left alone";
  EXPECT_EQ(read_file(dir_ / "dst" / "dir" / "c.txt"), "new c");
  EXPECT_GE(r->files_skipped, 1u);
  ASSERT_EQ(asked.count("b.txt"), 1u);
  EXPECT_EQ(asked["b.txt"], std::optional<std::uint64_t>(5)) << "the destination as listed";
  ASSERT_EQ(asked.count("dir/c.txt"), 1u);
  EXPECT_FALSE(asked["dir/c.txt"].has_value()) << "nothing there yet";
}

TEST_F(EngineTest, TransientReadErrorsAreRetried) {
  std::string data = write_file("src.bin", 3 << 20);
  g_faults.read_failures = 2;
  TransferRequest req = request(faulty("src.bin"), (dir_ / "dst.bin").string());
  req.options.state_root = state_.string();
  req.options.zero_copy = false;
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->files_done, 1u);
  EXPECT_EQ(r->files_failed, 0u);
  EXPECT_GE(r->retries, 2u);
  EXPECT_TRUE(read_file(dir_ / "dst.bin") == data);
}

TEST_F(EngineTest, VerifyCatchesCorruptWriteAndRecopies) {
  std::string data = write_file("src.bin", 20 << 20);  // chunked
  g_faults.corrupt_writes = 1;
  TransferRequest req = request(faulty("src.bin"), faulty("dst.bin"));
  req.options.state_root = state_.string();
  req.options.verify = true;
  req.options.chunk_size = 4 << 20;
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->files_done, 1u);
  EXPECT_GE(r->retries, 1u);
  EXPECT_TRUE(read_file(dir_ / "dst.bin") == data);
}

TEST_F(EngineTest, WithoutVerifyCorruptionIsNotDetectedLocally) {
  // Documents the contract: --verify is what catches a bad write.
  write_file("src.bin", 1 << 20);
  g_faults.corrupt_writes = 1;
  TransferRequest req = request(faulty("src.bin"), faulty("dst.bin"));
  req.options.state_root = state_.string();
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(read_file(dir_ / "dst.bin") != read_file(dir_ / "src.bin"));
}

TEST_F(EngineTest, PersistentErrorsFailTheFileAndLeaveNothing) {
  write_file("src.bin", 2 << 20);
  g_faults.read_failures = 1000;
  TransferRequest req = request(faulty("src.bin"), (dir_ / "dst.bin").string());
  req.options.state_root = state_.string();
  req.options.retry_base = std::chrono::milliseconds(1);
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->files_failed, 1u);
  ASSERT_EQ(r->errors.size(), 1u);
  EXPECT_EQ(r->errors[0].code, ErrorCode::kUnavailable);
  EXPECT_FALSE(fs::exists(dir_ / "dst.bin"));
  for (auto& e : fs::directory_iterator(dir_)) EXPECT_EQ(e.path().filename(), "src.bin");
}

TEST_F(EngineTest, SourceGrowingDuringCopyIsRetriedThenConsistent) {
  write_file("src.bin", 30 << 20);
  g_faults.grow_on_read = 1;  // first read appends; the retry sees a stable file
  TransferRequest req = request(faulty("src.bin"), (dir_ / "dst.bin").string());
  req.options.state_root = state_.string();
  req.options.chunk_size = 4 << 20;
  req.options.zero_copy = false;
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->files_done, 1u);
  EXPECT_GE(r->retries, 1u);
  EXPECT_TRUE(read_file(dir_ / "dst.bin") == read_file(dir_ / "src.bin"));
}

// Chunks follow the link (smaller over long round trips), so the link a
// resumed run measures may call for another layout: the file keeps the one
// its checkpoint recorded, and what was done is not sent again.
TEST_F(EngineTest, ResumedFileKeepsTheChunkLayoutOfItsCheckpointWhenTheLinkChanged) {
  const std::string data = write_file("src.bin", 64 << 20);
  TransferRequest req =
      request((dir_ / "src.bin").string(), "far://" + (dir_ / "dst.bin").string());
  req.options.state_root = state_.string();
  req.options.zero_copy = false;
  req.options.chunk_parallelism = 2;  // 8 MiB chunks by the layout, 6 MiB by a 150 ms link
  g_far.link = LinkEstimate{150};
  g_far.cancel = false;
  g_far.writes_left = 20;  // of 1 MiB: three or so chunks done, then a cancel
  TransferCounters counters;
  auto r = run_transfer(req, counters, nullptr, &g_far.cancel);
  ASSERT_TRUE(r.ok()) << r.error().message();
  ASSERT_TRUE(r->cancelled);
  EXPECT_FALSE(fs::exists(dir_ / "dst.bin"));
  // Over loopback now: the planner alone would lay out 8 MiB chunks.
  g_far.link = LinkEstimate{};
  g_far.writes_left = -1;
  g_far.cancel = false;
  TransferCounters again;
  auto r2 = run_transfer(req, again, nullptr, &g_far.cancel);
  ASSERT_TRUE(r2.ok()) << r2.error().message();
  EXPECT_EQ(r2->files_done, 1u);
  EXPECT_GE(r2->bytes_resumed, 12u << 20) << "at least two 6 MiB chunks were done";
  // Every byte the first run wrote, whole chunks and the begun ones' pieces
  // alike, in the first run's layout (ignored, nothing would be resumed).
  EXPECT_EQ(r2->bytes_resumed, r->bytes_done);
  EXPECT_EQ(r2->bytes_resumed + r2->bytes_done, 64u << 20);
  EXPECT_EQ(read_file(dir_ / "dst.bin"), data);
}

TEST_F(EngineTest, CancelLeavesNoPartialFile) {
  // Without checkpoints nothing at all is left; with them only the hidden
  // resumable partial, and a second run resumes it.
  write_file("src.bin", 64 << 20);
  for (bool checkpoint : {false, true}) {
    TransferRequest req{{(dir_ / "src.bin").string()}, (dir_ / "dst.bin").string(), {}};
    req.options.state_root = state_.string();
    req.options.checkpoint = checkpoint;
    req.options.bwlimit = 16 << 20;  // slow enough to cancel mid-way
    req.options.chunk_size = 1 << 20;
    std::atomic<bool> cancel{false};
    TransferCounters counters;
    // Cancelled once 8 MiB are copied (whole 1 MiB chunks the journal holds).
    std::thread canceller([&] {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (counters.bytes_done.load() < (8u << 20) && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      cancel = true;
    });
    auto r = run_transfer(req, counters, nullptr, &cancel);
    canceller.join();
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->cancelled);
    EXPECT_FALSE(fs::exists(dir_ / "dst.bin"));
    std::vector<std::string> names;
    for (auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    if (!checkpoint) {
      EXPECT_EQ(names, std::vector<std::string>{"src.bin"});
      continue;
    }
    ASSERT_EQ(names.size(), 2u);
    EXPECT_EQ(names[0].rfind(".dst.bin.xfer-part-", 0), 0u) << names[0];
    req.options.bwlimit = 0;
    TransferCounters again;
    auto r2 = run_transfer(req, again, nullptr);
    ASSERT_TRUE(r2.ok());
    EXPECT_EQ(r2->files_done, 1u);
    EXPECT_GT(r2->bytes_resumed, 0u);
    EXPECT_EQ(r2->bytes_resumed + r2->bytes_done, 64u << 20);
    EXPECT_TRUE(read_file(dir_ / "dst.bin") == read_file(dir_ / "src.bin"));
  }
}

TEST_F(EngineTest, ChunkedCopyMatchesWithAndWithoutZeroCopy) {
  std::string data = write_file("src.bin", (40 << 20) + 12345);
  for (bool zc : {true, false}) {
    TransferRequest req{{(dir_ / "src.bin").string()}, (dir_ / "dst.bin").string(), {}};
    req.options.state_root = state_.string();
    req.options.chunk_size = 3 << 20;
    req.options.zero_copy = zc;
    req.options.ignore_times = true;  // the second run copies again
    TransferCounters counters;
    auto r = run_transfer(req, counters, nullptr);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(read_file(dir_ / "dst.bin") == data) << "zero_copy=" << zc;
    EXPECT_EQ(counters.chunks_done.load(), 14u);
  }
}

}  // namespace
}  // namespace xfer
