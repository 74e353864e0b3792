// One body of tests run against every backend (typed tests). Each backend
// provides a Traits type that brings up its real endpoint (the local file
// system here; later a real xferd, sshd or s3rver process) and names a fresh
// empty root folder on it. Backends that lack a capability must say so and
// return kUnsupported; the tests check both sides of that contract.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "xfer/backend/local.hpp"
#include "xfer/backend/registry.hpp"

namespace xfer {
namespace {

struct LocalTraits {
  static constexpr const char* kName = "local";
  std::filesystem::path dir;
  LocalTraits() {
    dir = std::filesystem::temp_directory_path() /
          ("xfer_conf_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~LocalTraits() { std::filesystem::remove_all(dir); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::unique_ptr<Backend> make() {
    auto url = parse_url("file://" + dir.string());
    return std::move(BackendRegistry::instance().create(*url)).value();
  }
  std::string root() const { return dir.string(); }
};

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

template <typename Traits>
class BackendConformance : public ::testing::Test {
 protected:
  void SetUp() override { backend_ = traits_.make(); }
  std::string p(const std::string& rel) const { return join_path(traits_.root(), rel); }

  // Writes `data` through a sink and commits it.
  void put(const std::string& rel, const std::vector<std::byte>& data) {
    SinkOptions so;
    so.size = data.size();
    so.attrs.mode = 0640;
    so.attrs.mtime_ns = 1'600'000'000'123'456'789LL;
    auto sink = backend_->open_sink(p(rel), so);
    ASSERT_TRUE(sink.ok()) << sink.error().message();
    ASSERT_TRUE((*sink)->write_at(Offset{0}, data).ok());
    ASSERT_TRUE((*sink)->commit().ok());
  }
  std::vector<std::byte> get(const std::string& rel) {
    auto src = backend_->open_source(p(rel));
    EXPECT_TRUE(src.ok()) << (src.ok() ? "" : src.error().message());
    if (!src.ok()) return {};
    std::vector<std::byte> out((*src)->attrs().size);
    auto n = (*src)->read_at(Offset{0}, out);
    EXPECT_TRUE(n.ok());
    out.resize(n.ok() ? *n : 0);
    return out;
  }
  std::set<std::string> names(const std::string& rel) {
    std::set<std::string> out;
    Status s = backend_->list(p(rel), {}, [&](Entry&& e) {
      out.insert(e.name + (e.type == EntryType::kDirectory ? "/" : ""));
      return ok_status();
    });
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
    return out;
  }

  Traits traits_;
  std::unique_ptr<Backend> backend_;
};

using BackendTypes = ::testing::Types<LocalTraits>;
TYPED_TEST_SUITE(BackendConformance, BackendTypes);

TYPED_TEST(BackendConformance, StatMissingIsNotFound) {
  auto r = this->backend_->stat(this->p("nope"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(r.error().retry, RetryClass::kFatal);
}

TYPED_TEST(BackendConformance, WriteCommitReadBackWithAttributes) {
  auto data = pattern(3 * 1024 * 1024 + 17, 1);
  this->put("f.bin", data);
  EXPECT_TRUE(this->get("f.bin") == data);
  auto st = this->backend_->stat(this->p("f.bin"));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->type, EntryType::kFile);
  EXPECT_EQ(st->size, data.size());
  const auto& caps = this->backend_->capabilities();
  if (caps.permissions) {
    EXPECT_EQ(st->mode, 0640u);
  }
  if (caps.mtime) {
    EXPECT_EQ(st->mtime_ns, 1'600'000'000'123'456'789LL);
  }
}

TYPED_TEST(BackendConformance, ParallelOutOfOrderWrites) {
  const auto& caps = this->backend_->capabilities();
  if (!caps.random_writes || !caps.parallel_writers) GTEST_SKIP() << "sequential backend";
  constexpr std::size_t kChunk = 256 * 1024, kChunks = 24;
  auto data = pattern(kChunk * kChunks - 100, 2);
  SinkOptions so;
  so.size = data.size();
  auto sink = this->backend_->open_sink(this->p("par.bin"), so);
  ASSERT_TRUE(sink.ok());
  std::vector<std::size_t> order(kChunks);
  for (std::size_t i = 0; i < kChunks; ++i) order[i] = kChunks - 1 - i;  // last chunk first
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t k = static_cast<std::size_t>(t); k < kChunks; k += 4) {
        std::size_t c = order[k];
        std::size_t begin = c * kChunk, end = std::min(data.size(), begin + kChunk);
        if (!(*sink)->write_at(Offset{begin}, {data.data() + begin, end - begin}).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_FALSE(this->backend_->stat(this->p("par.bin")).ok()) << "visible before commit";
  ASSERT_TRUE((*sink)->commit().ok());
  EXPECT_TRUE(this->get("par.bin") == data);
}

TYPED_TEST(BackendConformance, AbortAndDestroyLeaveNothing) {
  auto data = pattern(100000, 3);
  {
    SinkOptions so;
    so.size = data.size();
    auto sink = this->backend_->open_sink(this->p("aborted.bin"), so);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->write_at(Offset{0}, data).ok());
    ASSERT_TRUE((*sink)->abort().ok());
    ASSERT_TRUE((*sink)->abort().ok()) << "abort is idempotent";
  }
  {
    SinkOptions so;
    so.size = data.size();
    auto sink = this->backend_->open_sink(this->p("dropped.bin"), so);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->write_at(Offset{0}, {data.data(), 5000}).ok());
  }  // destroyed without commit
  EXPECT_TRUE(this->names("").empty());
}

TYPED_TEST(BackendConformance, ResumableSinkKeepsItsPartialAcrossOpens) {
  auto& b = *this->backend_;
  auto data = pattern(3 * 65536, 9);
  SinkOptions so;
  so.size = data.size();
  so.resume_name = "job42";
  if (!b.capabilities().resume) GTEST_SKIP() << "backend cannot resume";
  {
    auto sink = b.open_sink(this->p("r.bin"), so);
    ASSERT_TRUE(sink.ok());
    EXPECT_FALSE((*sink)->resumed());
    ASSERT_TRUE((*sink)->write_at(Offset{0}, {data.data(), 65536}).ok());
    ASSERT_TRUE((*sink)->suspend().ok());
  }
  EXPECT_FALSE(b.stat(this->p("r.bin")).ok()) << "a suspended partial is not published";
  so.resume_existing = true;
  auto sink = b.open_sink(this->p("r.bin"), so);
  ASSERT_TRUE(sink.ok());
  EXPECT_TRUE((*sink)->resumed());
  std::vector<std::byte> first(65536);
  auto n = (*sink)->read_back(Offset{0}, first);
  ASSERT_TRUE(n.ok());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), data.begin())) << "partial content kept";
  ASSERT_TRUE((*sink)->write_at(Offset{65536}, {data.data() + 65536, data.size() - 65536}).ok());
  ASSERT_TRUE((*sink)->commit().ok());
  EXPECT_TRUE(this->get("r.bin") == data);
  EXPECT_EQ(this->names(""), std::set<std::string>{"r.bin"}) << "no partial left after commit";
  // Aborting a resumable sink discards its partial.
  so.resume_existing = false;
  auto again = b.open_sink(this->p("s.bin"), so);
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->write_at(Offset{0}, {data.data(), 100}).ok());
  ASSERT_TRUE((*again)->abort().ok());
  EXPECT_EQ(this->names(""), std::set<std::string>{"r.bin"});
}

TYPED_TEST(BackendConformance, CommitReplacesExistingAtomically) {
  this->put("r.bin", pattern(1000, 4));
  auto second = pattern(2000, 5);
  this->put("r.bin", second);
  EXPECT_TRUE(this->get("r.bin") == second);
  EXPECT_EQ(this->names(""), std::set<std::string>{"r.bin"});
}

TYPED_TEST(BackendConformance, NamespaceOperations) {
  auto& b = *this->backend_;
  ASSERT_TRUE(b.mkdir(this->p("d"), false).ok());
  auto again = b.mkdir(this->p("d"), false);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kExists);
  EXPECT_TRUE(b.mkdir(this->p("d"), true).ok());
  auto orphan = b.mkdir(this->p("x/y/z"), false);
  ASSERT_FALSE(orphan.ok());
  EXPECT_EQ(orphan.error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(b.mkdir(this->p("x/y/z"), true).ok());
  ASSERT_TRUE(b.touch(this->p("d/empty"), std::nullopt).ok());
  auto st = b.stat(this->p("d/empty"));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, 0u);
  ASSERT_TRUE(b.touch(this->p("d/empty"), 1'000'000'000'000'000'000LL).ok());
  if (b.capabilities().mtime) {
    EXPECT_EQ(b.stat(this->p("d/empty"))->mtime_ns, 1'000'000'000'000'000'000LL);
  }
  this->put("d/file", pattern(10, 6));
  EXPECT_EQ(this->names("d"), (std::set<std::string>{"empty", "file"}));
  EXPECT_EQ(this->names(""), (std::set<std::string>{"d/", "x/"}));
  ASSERT_TRUE(b.rename(this->p("d/file"), this->p("x/moved")).ok());
  EXPECT_EQ(this->names("x"), (std::set<std::string>{"moved", "y/"}));
  auto rm_dir = b.remove(this->p("x"), false);
  ASSERT_FALSE(rm_dir.ok());
  EXPECT_EQ(rm_dir.error().code, ErrorCode::kNotEmpty);
  ASSERT_TRUE(b.remove(this->p("x"), true).ok());
  ASSERT_TRUE(b.remove(this->p("d/empty"), false).ok());
  EXPECT_EQ(this->names(""), std::set<std::string>{"d/"});
  auto missing = b.remove(this->p("nope"), false);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TYPED_TEST(BackendConformance, ListWithAttributesStreamsEveryEntry) {
  auto& b = *this->backend_;
  ASSERT_TRUE(b.mkdir(this->p("many"), false).ok());
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(b.touch(this->p("many/f" + std::to_string(i)), std::nullopt).ok());
  }
  ListOptions lo;
  lo.want_attrs = true;
  int seen = 0;
  ASSERT_TRUE(b.list(this->p("many"), lo, [&](Entry&& e) {
                 ++seen;
                 EXPECT_TRUE(e.attrs.has_value());
                 EXPECT_EQ(e.type, EntryType::kFile);
                 return ok_status();
               }).ok());
  EXPECT_EQ(seen, 300);
  // A sink error stops the listing and comes back out.
  int calls = 0;
  Status stopped = b.list(this->p("many"), {}, [&](Entry&&) -> Status {
    if (++calls == 5) return make_error(ErrorCode::kCancelled, "test", "");
    return ok_status();
  });
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().code, ErrorCode::kCancelled);
  EXPECT_EQ(calls, 5);
}

TYPED_TEST(BackendConformance, SymlinksWhenCapable) {
  auto& b = *this->backend_;
  FileAttrs a;
  a.type = EntryType::kSymlink;
  a.mtime_ns = 1'500'000'000'000'000'000LL;
  Status s = b.symlink("target/that/does/not/exist", this->p("ln"), a);
  if (!b.capabilities().symlinks) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, ErrorCode::kUnsupported);
    return;
  }
  ASSERT_TRUE(s.ok()) << s.error().message();
  auto st = b.stat(this->p("ln"));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->type, EntryType::kSymlink);
  EXPECT_EQ(st->symlink_target, "target/that/does/not/exist");
  EXPECT_EQ(st->mtime_ns, a.mtime_ns);
  ASSERT_TRUE(b.symlink("other", this->p("ln"), a).ok()) << "replaces atomically";
  EXPECT_EQ(b.stat(this->p("ln"))->symlink_target, "other");
}

TYPED_TEST(BackendConformance, SourceDetectsChangeAndRefusesDirectories) {
  auto& b = *this->backend_;
  this->put("c.bin", pattern(4096, 7));
  auto src = b.open_source(this->p("c.bin"));
  ASSERT_TRUE(src.ok());
  EXPECT_TRUE((*src)->check_unchanged().ok());
  std::vector<std::byte> buf(100);
  auto past_end = (*src)->read_at(Offset{5000}, buf);
  ASSERT_TRUE(past_end.ok());
  EXPECT_EQ(*past_end, 0u);
  this->put("c.bin.new", pattern(8192, 8));
  ASSERT_TRUE(b.touch(this->p("c.bin"), 42'000'000'000LL).ok());
  auto changed = (*src)->check_unchanged();
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(changed.error().code, ErrorCode::kChanged);
  EXPECT_EQ(changed.error().retry, RetryClass::kRetryFile);
  ASSERT_TRUE(b.mkdir(this->p("dir"), false).ok());
  auto dir = b.open_source(this->p("dir"));
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().code, ErrorCode::kIsDirectory);
}

TYPED_TEST(BackendConformance, SetAttrsOnDirectories) {
  auto& b = *this->backend_;
  ASSERT_TRUE(b.mkdir(this->p("sd"), false).ok());
  FileAttrs a;
  a.type = EntryType::kDirectory;
  a.mode = 0750;
  a.mtime_ns = 1'234'567'890'000'000'001LL;
  ASSERT_TRUE(b.set_attrs(this->p("sd"), a).ok());
  auto st = b.stat(this->p("sd"));
  ASSERT_TRUE(st.ok());
  if (b.capabilities().permissions) {
    EXPECT_EQ(st->mode, 0750u);
  }
  if (b.capabilities().mtime) {
    EXPECT_EQ(st->mtime_ns, a.mtime_ns);
  }
}

}  // namespace
}  // namespace xfer
