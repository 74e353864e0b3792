// The checkpoint journal codec (torn tails, CRC mismatches, truncation) and
// the store's recovery, snapshots, compaction and backpressure.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "xfer/checkpoint/checkpoint.hpp"
#include "xfer/checkpoint/records.hpp"

namespace xfer::checkpoint {
namespace {

namespace fs = std::filesystem;

std::vector<Record> sample_records() {
  return {FileBegin{42, 1000, -5, 100, "src/a b", "dst/\xc3\xa9\n"},
          ChunkDone{42, 3, 0xdeadbeef},
          FileDone{42, 1000, 1'700'000'000'000'000'001LL},
          FileReset{7},
          ChunkProgress{42, 5, 65536},
          SinkNote{42, kFileNote, "upload-id/with\0nul"},
          SinkNote{42, 3, "\"9b2cf535f27731c974343645a3985328\""}};
}

TEST(Records, RoundTripEveryType) {
  std::vector<std::byte> buf;
  for (const auto& r : sample_records()) encode(r, buf);
  std::span<const std::byte> in(buf);
  for (const auto& want : sample_records()) {
    Decoded d = decode(in);
    ASSERT_EQ(d.status, DecodeStatus::kOk) << d.reason;
    EXPECT_TRUE(d.record == want);
    in = in.subspan(d.consumed);
  }
  EXPECT_EQ(decode(in).status, DecodeStatus::kEnd);
}

TEST(Records, EveryTruncationIsTornNeverMisread) {
  std::vector<std::byte> buf;
  encode(sample_records()[0], buf);
  for (std::size_t n = 1; n < buf.size(); ++n) {
    Decoded d = decode(std::span<const std::byte>(buf).subspan(0, n));
    EXPECT_EQ(d.status, DecodeStatus::kTorn) << "prefix of " << n << " bytes";
  }
}

TEST(Records, AnyFlippedByteIsDetected) {
  std::vector<std::byte> good;
  encode(sample_records()[1], good);
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto bad = good;
    bad[i] ^= std::byte{0x10};
    Decoded d = decode(bad);
    EXPECT_NE(d.status, DecodeStatus::kOk) << "flip at byte " << i;
  }
}

TEST(Records, RejectsAbsurdLengthAndUnknownType) {
  std::vector<std::byte> huge = {std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                                 std::byte{0x7f}, std::byte{0},    std::byte{0},
                                 std::byte{0},    std::byte{0},    std::byte{1}};
  EXPECT_EQ(decode(huge).status, DecodeStatus::kCorrupt);
  // A well-framed record of type 99 (valid CRC) is still refused.
  std::vector<std::byte> body = {std::byte{99}, std::byte{1}};
  std::uint32_t crc = crc32(body);
  std::vector<std::byte> rec = {std::byte{1}, std::byte{0}, std::byte{0}, std::byte{0}};
  for (int i = 0; i < 4; ++i) rec.push_back(static_cast<std::byte>(crc >> (8 * i)));
  rec.insert(rec.end(), body.begin(), body.end());
  Decoded d = decode(rec);
  EXPECT_EQ(d.status, DecodeStatus::kCorrupt);
  EXPECT_EQ(d.reason, "unknown record type");
  EXPECT_EQ(decode({}).status, DecodeStatus::kEnd);
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("xfer_ckpt_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::unique_ptr<Checkpoint> open(Options o = {}) {
    o.dir = dir_.string();
    auto cp = Checkpoint::open(o);
    EXPECT_TRUE(cp.ok()) << (cp.ok() ? "" : cp.error().message());
    return cp.ok() ? std::move(cp).value() : nullptr;
  }
  static FileBegin file(std::uint64_t key) {
    return FileBegin{key, 10 * 1024, 123, 1024, "s" + std::to_string(key), "d"};
  }
  fs::path dir_;
};

TEST_F(CheckpointTest, EmptyStateOpens) {
  auto cp = open();
  ASSERT_TRUE(cp);
  EXPECT_EQ(cp->done_count(), 0u);
  EXPECT_TRUE(cp->active_files().empty());
  EXPECT_TRUE(cp->flush().ok());
}

TEST_F(CheckpointTest, RecoversChunksAndDoneFiles) {
  {
    auto cp = open();
    EXPECT_EQ(cp->begin_file(file(1)).done_count(), 0u);
    for (std::uint64_t c : {0, 2, 9}) cp->chunk_done(1, c, 100 + c);
    cp->begin_file(file(2));
    cp->chunk_done(2, 1, 0);
    ASSERT_TRUE(cp->finish_file({2, 10 * 1024, 123}, true).ok());
    ASSERT_TRUE(cp->finish_file({3, 77, 1}, false).ok());  // a whole file: soft record
    ASSERT_TRUE(cp->flush().ok());
  }  // a clean stop; the crash cases follow
  auto cp = open();
  Progress p = cp->begin_file(file(1));
  ASSERT_EQ(p.done.size(), 10u);
  EXPECT_EQ(p.done_count(), 3u);
  EXPECT_TRUE(p.done[0] && p.done[2] && p.done[9]);
  EXPECT_EQ(p.hashes[9], 109u);
  auto d = cp->done(2);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->size, 10u * 1024);
  EXPECT_FALSE(cp->done(1).has_value());
  ASSERT_TRUE(cp->done(3).has_value());
  EXPECT_EQ(cp->done(3)->size, 77u);
  EXPECT_EQ(cp->stats().recovered_chunks.load(), 3u);
}

TEST_F(CheckpointTest, ChangedGeometryStartsOver) {
  {
    auto cp = open();
    cp->begin_file(file(1));
    cp->chunk_done(1, 4, 0);
    ASSERT_TRUE(cp->flush().ok());
  }
  auto cp = open();
  FileBegin changed = file(1);
  changed.mtime_ns = 999;  // the source was modified in between
  EXPECT_EQ(cp->begin_file(changed).done_count(), 0u);
}

TEST_F(CheckpointTest, TornTailIsTruncatedAndTheRestKept) {
  {
    auto cp = open();
    cp->begin_file(file(1));
    cp->chunk_done(1, 1, 0);
    cp->chunk_done(1, 2, 0);
    ASSERT_TRUE(cp->flush().ok());
  }
  const auto journal = dir_ / "journal";
  const auto good_size = fs::file_size(journal);
  {
    std::vector<std::byte> rec;
    encode(ChunkDone{1, 3, 0}, rec);
    std::ofstream out(journal, std::ios::binary | std::ios::app);
    out.write(reinterpret_cast<const char*>(rec.data()),
              static_cast<std::streamsize>(rec.size() - 4));
  }
  auto cp = open();
  EXPECT_EQ(cp->stats().truncated_bytes.load(), kRecordHeaderSize + 24 - 4);
  EXPECT_EQ(fs::file_size(journal), good_size);
  Progress p = cp->begin_file(file(1));
  EXPECT_EQ(p.done_count(), 2u);
  EXPECT_FALSE(p.done[3]);
}

TEST_F(CheckpointTest, CrcMismatchDropsTheBadRecordAndAfter) {
  {
    auto cp = open();
    cp->begin_file(file(1));
    cp->chunk_done(1, 1, 0);
    ASSERT_TRUE(cp->flush().ok());
    cp->chunk_done(1, 5, 0);
    ASSERT_TRUE(cp->flush().ok());
  }
  const auto journal = dir_ / "journal";
  {
    std::fstream f(journal, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(fs::file_size(journal) - 1));
    f.put('\x55');  // last byte of the last record
  }
  auto cp = open();
  Progress p = cp->begin_file(file(1));
  EXPECT_TRUE(p.done[1]);
  EXPECT_FALSE(p.done[5]);
  EXPECT_GT(cp->stats().truncated_bytes.load(), 0u);
}

TEST_F(CheckpointTest, TruncatedAndEmptyFilesRecover) {
  {
    auto cp = open();
    cp->begin_file(file(1));
    cp->chunk_done(1, 0, 0);
    ASSERT_TRUE(cp->finish_file({1, 1, 1}, true).ok());
  }
  fs::resize_file(dir_ / "done.idx", 5);  // torn in the middle of its only record
  fs::resize_file(dir_ / "journal", 0);
  auto cp = open();
  EXPECT_FALSE(cp->done(1).has_value());
  EXPECT_EQ(fs::file_size(dir_ / "done.idx"), 0u);
}

TEST_F(CheckpointTest, SnapshotsAreAtomicAndSurviveCompaction) {
  Options o;
  o.snapshot_every = 2;
  o.compact_bytes = 100;  // compact often
  {
    auto cp = open(o);
    cp->begin_file(file(1));
    for (std::uint64_t c = 0; c < 10; c += 2) {
      cp->chunk_done(1, c, c + 1);
      ASSERT_TRUE(cp->flush().ok());
    }
    EXPECT_GT(cp->stats().snapshots.load(), 0u);
    EXPECT_GT(cp->stats().compactions.load(), 0u);
  }
  EXPECT_LT(fs::file_size(dir_ / "journal"), 100u);
  // A snapshot write interrupted before its rename leaves only a .tmp file,
  // which recovery ignores and removes.
  std::ofstream(dir_ / "snapshots" / "0000000000000009.snap.tmp") << "half";
  auto cp = open(o);
  EXPECT_FALSE(fs::exists(dir_ / "snapshots" / "0000000000000009.snap.tmp"));
  Progress p = cp->begin_file(file(1));
  EXPECT_EQ(p.done_count(), 5u);
  EXPECT_EQ(p.hashes[8], 9u);
}

// Progress within a chunk survives a restart, from the journal and from a
// snapshot (compaction), is superseded by the chunk's ChunkDone, and a
// value past the chunk is ignored.
TEST_F(CheckpointTest, ProgressWithinAChunkIsRecovered) {
  Options o;
  {
    auto cp = open(o);
    cp->begin_file(file(1));
    cp->chunk_progress(1, 3, 512);
    cp->chunk_progress(1, 3, 768);
    cp->chunk_progress(1, 4, 256);
    cp->chunk_done(1, 4, 7);
    cp->chunk_progress(1, 5, 4096);  // past the chunk (1024): ignored
    ASSERT_TRUE(cp->flush().ok());
  }
  {
    auto cp = open(o);
    Progress p = cp->begin_file(file(1));
    ASSERT_EQ(p.partial.size(), 10u);
    EXPECT_EQ(p.partial[3], 768u);
    EXPECT_EQ(p.partial[4], 0u) << "done supersedes progress";
    EXPECT_TRUE(p.done[4]);
    EXPECT_EQ(p.partial[5], 0u);
    EXPECT_TRUE(p.begun());
    EXPECT_EQ(cp->recorded_chunk_size(file(1)), 1024u);
  }
  // Through a compaction: the snapshot carries the partial chunks.
  o.snapshot_every = 1;
  o.compact_bytes = 64;
  {
    auto cp = open(o);
    cp->begin_file(file(2));
    cp->chunk_progress(2, 7, 100);
    cp->chunk_done(2, 0, 1);
    ASSERT_TRUE(cp->flush().ok());
    EXPECT_GT(cp->stats().compactions.load(), 0u);
  }
  auto cp = open(o);
  Progress p = cp->begin_file(file(2));
  EXPECT_EQ(p.partial[7], 100u);
  EXPECT_TRUE(p.done[0]);
  EXPECT_EQ(cp->begin_file(file(1)).partial[3], 768u);
}

// What a sink said of its partial (an S3 upload id) and of its chunks (part
// ETags) comes back after a restart, from the journal and from a snapshot
// (compaction); a reset forgets it, and a note over kMaxNote is dropped.
TEST_F(CheckpointTest, SinkNotesAreRecovered) {
  Options o;
  {
    auto cp = open(o);
    cp->begin_file(file(1));
    cp->sink_note(1, kFileNote, "upload-1");
    cp->sink_note(1, 2, "etag-2");
    cp->chunk_done(1, 2, 0);
    cp->sink_note(1, 99, "out of range");  // ignored
    cp->sink_note(7, 0, "no such file");   // ignored
    ASSERT_TRUE(cp->flush().ok());
  }
  {
    auto cp = open(o);
    EXPECT_EQ(cp->file_note(1), "upload-1");
    Progress p = cp->begin_file(file(1));
    EXPECT_EQ(p.note, "upload-1");
    ASSERT_EQ(p.notes.size(), 10u);
    EXPECT_EQ(p.notes[2], "etag-2");
    EXPECT_EQ(p.notes[3], "");
    EXPECT_EQ(cp->file_note(7), "");
  }
  o.snapshot_every = 1;
  o.compact_bytes = 64;
  {
    auto cp = open(o);
    cp->begin_file(file(2));
    cp->sink_note(2, kFileNote, "upload-2");
    cp->sink_note(2, 0, "etag-0");
    cp->chunk_done(2, 0, 1);
    cp->sink_note(2, 9, std::string(kMaxNote + 1, 'x'));  // too long: nothing kept
    cp->chunk_done(2, 9, 1);
    ASSERT_TRUE(cp->flush().ok());
    EXPECT_GT(cp->stats().compactions.load(), 0u);
  }
  {
    auto cp = open(o);
    Progress p = cp->begin_file(file(2));
    EXPECT_EQ(p.note, "upload-2");
    EXPECT_EQ(p.notes[0], "etag-0");
    EXPECT_EQ(p.notes[9], "");
    EXPECT_TRUE(p.done[9]);
    EXPECT_EQ(cp->begin_file(file(1)).notes[2], "etag-2");
    cp->reset_file(2);
    ASSERT_TRUE(cp->flush().ok());
  }
  auto cp = open(o);
  EXPECT_EQ(cp->file_note(2), "");
  EXPECT_EQ(cp->begin_file(file(2)).note, "");
}

TEST_F(CheckpointTest, CorruptSnapshotIsIgnoredJournalStillCounts) {
  Options o;
  o.snapshot_every = 1;
  {
    auto cp = open(o);
    cp->begin_file(file(1));
    cp->chunk_done(1, 3, 0);
    ASSERT_TRUE(cp->flush().ok());
  }
  for (auto& e : fs::directory_iterator(dir_ / "snapshots")) {
    std::fstream f(e.path(), std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(20);
    f.put('\x01');
  }
  auto cp = open(o);
  EXPECT_TRUE(cp->begin_file(file(1)).done[3]);  // from the journal
}

TEST_F(CheckpointTest, BackpressureLosesNothing) {
  Options o;
  o.queue_capacity = 4;
  constexpr int kThreads = 4, kPerThread = 200;
  {
    auto cp = open(o);
    for (int t = 0; t < kThreads; ++t) {
      FileBegin b{static_cast<std::uint64_t>(t + 1), kPerThread * 10ull, 1, 10, "s", "d"};
      cp->begin_file(b);
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int c = 0; c < kPerThread; ++c) {
          cp->chunk_done(static_cast<std::uint64_t>(t + 1), static_cast<std::uint64_t>(c), 0);
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_TRUE(cp->flush().ok());
    EXPECT_LE(cp->stats().max_queue_depth.load(), 4u);
    EXPECT_GT(cp->stats().backpressure_waits.load(), 0u);
  }
  auto cp = open(o);
  EXPECT_EQ(cp->stats().recovered_chunks.load(), static_cast<std::uint64_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace xfer::checkpoint
