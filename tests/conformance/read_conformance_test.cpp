// The read-only part of the backend contract (backend.hpp), run on every
// backend that can be a source: the local file system (which proves the
// suite), and http, http with nginx's JSON index, and https (HTTP/2, a CA
// made by the test) against a real nginx started here. Files are put in
// place on disk, under the folder the endpoint serves; the backend only
// reads them. Read-only backends must refuse every write with
// kUnsupported naming the operation and the path, and leave nothing.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "../servers/nginx.hpp"
#include "xfer/backend/http.hpp"
#include "xfer/backend/local.hpp"
#include "xfer/backend/registry.hpp"

namespace xfer {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const char* what) {
  static int counter = 0;
  fs::path d =
      fs::temp_directory_path() / (std::string("xfer_rconf_") + what + "_" +
                                   std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

struct LocalTraits {
  static constexpr const char* kName = "local";
  static constexpr bool kReadOnly = false;
  static constexpr bool kListsHidden = true;
  fs::path dir = fresh_dir("local");
  ~LocalTraits() { fs::remove_all(dir); }
  std::unique_ptr<Backend> make() { return make_local_backend(); }
  fs::path disk() const { return dir; }
  std::string root() const { return dir.string(); }
};

// nginx serving a fresh folder; the backend made from one of its URLs.
enum class Port { kHtml, kJson, kTls };
template <Port kPort>
struct HttpTraitsT {
  static constexpr const char* kName = kPort == Port::kHtml   ? "http"
                                       : kPort == Port::kJson ? "http_json"
                                                              : "https";
  static constexpr bool kReadOnly = true;
  // nginx's autoindex never shows names starting with '.' (they are still
  // served to whoever names them).
  static constexpr bool kListsHidden = false;
  fs::path dir = fresh_dir("nginx");
  testing::NginxServer nginx{dir};
  HttpTraitsT() {
    if (!nginx.start()) ADD_FAILURE() << "nginx: " << nginx.error();
  }
  ~HttpTraitsT() {
    nginx.stop();
    fs::remove_all(dir);
  }
  std::unique_ptr<Backend> make() {
    if (!nginx.running()) return nullptr;
    const std::string text = kPort == Port::kHtml   ? nginx.http_url("/")
                             : kPort == Port::kJson ? nginx.json_url("/")
                                                    : nginx.https_url("/");
    auto url = parse_url(text);
    if (!url) return nullptr;
    EndpointOptions options;
    if (kPort == Port::kTls) options.ca = nginx.ca_file().string();
    auto b = BackendRegistry::with_client_backends()->create(*url, options);
    if (!b) {
      ADD_FAILURE() << b.error().message();
      return nullptr;
    }
    return std::move(*b);
  }
  fs::path disk() const { return nginx.root(); }
  std::string root() const { return "/"; }
};

std::vector<std::byte> pattern(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

// Whole seconds: what every endpoint here keeps.
constexpr std::int64_t kMtime = 1'700'000'000;

void put_on_disk(const fs::path& p, const std::vector<std::byte>& data,
                 std::int64_t mtime = kMtime) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  f.close();
  timespec times[2] = {{mtime, 0}, {mtime, 0}};
  ::utimensat(AT_FDCWD, p.c_str(), times, 0);
}

template <typename Traits>
class ReadConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = traits_.make();
    ASSERT_TRUE(backend_ != nullptr) << "no backend for " << Traits::kName;
  }
  std::string p(const std::string& rel) const { return join_path(traits_.root(), rel); }
  fs::path disk(const std::string& rel) const { return traits_.disk() / rel; }

  // Reads all of `rel` in pieces of `piece` bytes, in order.
  std::vector<std::byte> read_all(const std::string& rel, std::size_t piece) {
    auto src = backend_->open_source(p(rel));
    EXPECT_TRUE(src.ok()) << (src.ok() ? "" : src.error().message());
    if (!src.ok()) return {};
    const std::uint64_t size = (*src)->attrs().size;
    std::vector<std::byte> out(size);
    std::uint64_t pos = 0;
    (*src)->will_read(Offset{0}, Length{size});
    while (pos < size) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(piece, size - pos));
      auto got = (*src)->read_at(Offset{pos}, std::span(out).subspan(pos, n));
      EXPECT_TRUE(got.ok()) << (got.ok() ? "" : got.error().message());
      if (!got.ok() || *got == 0) break;
      pos += *got;
    }
    EXPECT_EQ(pos, size);
    std::array<std::byte, 16> more{};
    auto end = (*src)->read_at(Offset{size}, more);
    EXPECT_TRUE(end.ok() && *end == 0);
    EXPECT_TRUE((*src)->check_unchanged().ok());
    return out;
  }

  Traits traits_;
  std::unique_ptr<Backend> backend_;
};

using ReadBackends = ::testing::Types<LocalTraits, HttpTraitsT<Port::kHtml>,
                                      HttpTraitsT<Port::kJson>, HttpTraitsT<Port::kTls>>;
struct TraitsName {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};
TYPED_TEST_SUITE(ReadConformance, ReadBackends, TraitsName);

TYPED_TEST(ReadConformance, StatOfFileFolderAndMissing) {
  put_on_disk(this->disk("d/f.bin"), pattern(1234, 1), kMtime + 7);
  auto f = this->backend_->stat(this->p("d/f.bin"));
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->type, EntryType::kFile);
  EXPECT_EQ(f->size, 1234u);
  EXPECT_EQ(f->mtime_ns / 1'000'000'000, kMtime + 7);
  auto d = this->backend_->stat(this->p("d"));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->type, EntryType::kDirectory);
  auto missing = this->backend_->stat(this->p("d/nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound) << missing.error().message();
}

// Names a server must escape, and attributes when asked for.
TYPED_TEST(ReadConformance, ListNamesTypesAndAttributes) {
  const std::vector<std::string> files = {
      "plain.txt", "a b.txt", "x&y.txt",    "q?.txt",
      "h#.txt",    "c:d.txt", "pct%41.txt", "\xC3\xA9t\xC3\xA9.txt",
      ".hidden"};
  for (std::size_t i = 0; i < files.size(); ++i) {
    put_on_disk(this->disk("list/" + files[i]), pattern(100 + i, i), kMtime + static_cast<int>(i));
  }
  fs::create_directories(this->disk("list/sub dir"));
  std::set<std::string> want;
  for (const auto& f : files) {
    if (f.front() != '.' || TypeParam::kListsHidden) want.insert(f);
  }
  want.insert("sub dir/");
  for (const bool attrs : {false, true}) {
    SCOPED_TRACE(attrs ? "with attributes" : "names only");
    std::set<std::string> got;
    ListOptions options;
    options.want_attrs = attrs;
    Status s = this->backend_->list(this->p("list"), options, [&](Entry&& e) {
      got.insert(e.name + (e.type == EntryType::kDirectory ? "/" : ""));
      if (attrs) {
        EXPECT_TRUE(e.attrs.has_value()) << e.name;
        if (e.attrs && e.type == EntryType::kFile) {
          const auto it = std::find(files.begin(), files.end(), e.name);
          const auto i = static_cast<std::size_t>(it - files.begin());
          EXPECT_EQ(e.attrs->size, 100 + i) << e.name;
          EXPECT_EQ(e.attrs->mtime_ns / 1'000'000'000, kMtime + static_cast<int>(i)) << e.name;
        }
      }
      return ok_status();
    });
    ASSERT_TRUE(s.ok()) << s.error().message();
    EXPECT_EQ(got, want);
  }
  auto missing = this->backend_->list(this->p("nolist"), {}, [](Entry&&) { return ok_status(); });
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound) << missing.error().message();
}

TYPED_TEST(ReadConformance, SmallAndLargeFilesReadBackExactly) {
  const std::vector<std::size_t> sizes = {
      0, 1, (1u << 20) - 1, 1u << 20, (1u << 20) + 1, (5u << 20) + 7};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::string name = "sizes/f" + std::to_string(i);
    const auto data = pattern(sizes[i], 100 + i);
    put_on_disk(this->disk(name), data);
    for (const std::size_t piece :
         {std::size_t{4096}, std::size_t{1} << 20, std::size_t{3} << 20}) {
      SCOPED_TRACE(name + " in pieces of " + std::to_string(piece));
      EXPECT_TRUE(this->read_all(name, piece) == data);
    }
  }
}

// Eight threads read disjoint ranges of one Source at once, each hinting
// its range first (as the engine's workers do), then some unhinted ones.
TYPED_TEST(ReadConformance, ParallelRangesOfOneSource) {
  const auto data = pattern((9u << 20) + 123, 7);
  put_on_disk(this->disk("big.bin"), data);
  auto src = this->backend_->open_source(this->p("big.bin"));
  ASSERT_TRUE(src.ok()) << src.error().message();
  ASSERT_EQ((*src)->attrs().size, data.size());
  std::vector<std::byte> out(data.size());
  const std::size_t part = data.size() / 8 + 1;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (std::size_t t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const std::uint64_t begin = t * part;
      const std::uint64_t end = std::min<std::uint64_t>(data.size(), begin + part);
      if (t % 2 == 0) (*src)->will_read(Offset{begin}, Length{end - begin});
      for (std::uint64_t pos = begin; pos < end;) {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(256 << 10, end - pos));
        auto got = (*src)->read_at(Offset{pos}, std::span(out).subspan(pos, n));
        if (!got.ok() || *got != n) {
          ++failures;
          return;
        }
        pos += n;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(out == data);
  // Random reads, anywhere.
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20; ++i) {
    const std::uint64_t at = rng() % data.size();
    std::vector<std::byte> buf(static_cast<std::size_t>(1 + rng() % (200 << 10)));
    auto got = (*src)->read_at(Offset{at}, buf);
    ASSERT_TRUE(got.ok()) << got.error().message();
    const std::size_t want = std::min<std::size_t>(buf.size(), data.size() - at);
    ASSERT_EQ(*got, want);
    EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(want),
                           data.begin() + static_cast<std::ptrdiff_t>(at)));
  }
}

TYPED_TEST(ReadConformance, OpenOfMissingOrFolderIsRefused) {
  fs::create_directories(this->disk("folder"));
  auto missing = this->backend_->open_source(this->p("missing.bin"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound) << missing.error().message();
  auto folder = this->backend_->open_source(this->p("folder"));
  ASSERT_FALSE(folder.ok());
  EXPECT_EQ(folder.error().code, ErrorCode::kIsDirectory) << folder.error().message();
}

// A file replaced after it was opened is never read as a mix of two
// versions: a read of the new bytes fails kChanged, or check_unchanged
// says so before anything is published.
TYPED_TEST(ReadConformance, AFileReplacedAfterOpenIsDetected) {
  const auto before = pattern(6u << 20, 11);
  put_on_disk(this->disk("changing.bin"), before, kMtime);
  auto src = this->backend_->open_source(this->p("changing.bin"));
  ASSERT_TRUE(src.ok()) << src.error().message();
  std::vector<std::byte> head(1 << 20);
  ASSERT_TRUE((*src)->read_at(Offset{0}, head).ok());
  put_on_disk(this->disk("changing.bin"), pattern(6u << 20, 12), kMtime + 60);
  std::vector<std::byte> rest(1 << 20);
  auto got = (*src)->read_at(Offset{3u << 20}, rest);
  if (got.ok()) {
    Status unchanged = (*src)->check_unchanged();
    ASSERT_FALSE(unchanged.ok()) << "a replaced file went unnoticed";
    EXPECT_EQ(unchanged.error().code, ErrorCode::kChanged) << unchanged.error().message();
  } else {
    EXPECT_EQ(got.error().code, ErrorCode::kChanged) << got.error().message();
    EXPECT_EQ(got.error().retry, RetryClass::kRetryFile);
  }
}

TYPED_TEST(ReadConformance, WritesAreRefusedByAReadOnlyEndpoint) {
  if constexpr (!TypeParam::kReadOnly) {
    // A writable backend takes them (the full suite checks what they do).
    EXPECT_TRUE(this->backend_->mkdir(this->p("made"), false).ok());
    EXPECT_TRUE(fs::is_directory(this->disk("made")));
  } else {
    auto expect = [&](const auto& r, std::string_view op, const std::string& rel) {
      ASSERT_FALSE(r.ok()) << op;
      EXPECT_EQ(r.error().code, ErrorCode::kUnsupported) << r.error().message();
      EXPECT_EQ(r.error().operation, op);
      EXPECT_NE(r.error().path.find(rel), std::string::npos) << r.error().message();
    };
    put_on_disk(this->disk("kept.txt"), pattern(10, 1));
    SinkOptions so;
    so.size = 10;
    expect(this->backend_->open_sink(this->p("new.txt"), so), "open_sink", "new.txt");
    expect(this->backend_->mkdir(this->p("made"), false), "mkdir", "made");
    expect(this->backend_->remove(this->p("kept.txt"), false), "remove", "kept.txt");
    expect(this->backend_->rename(this->p("kept.txt"), this->p("moved.txt")), "rename", "kept.txt");
    expect(this->backend_->touch(this->p("kept.txt"), std::nullopt), "touch", "kept.txt");
    expect(this->backend_->symlink("kept.txt", this->p("link"), FileAttrs{}), "symlink", "link");
    expect(this->backend_->set_attrs(this->p("kept.txt"), FileAttrs{}), "set_attrs", "kept.txt");
    std::set<std::string> left;
    for (const auto& e : fs::directory_iterator(this->traits_.disk())) {
      left.insert(e.path().filename().string());
    }
    EXPECT_EQ(left, std::set<std::string>{"kept.txt"});
  }
}

}  // namespace
}  // namespace xfer
