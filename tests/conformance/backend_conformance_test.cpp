// One body of tests run against every backend (typed tests). Each backend
// provides a Traits type that brings up its real endpoint (the local file
// system; an in-process xferd for xfer://; an OpenSSH sshd; an s3rver) and
// names a fresh empty root folder on it (a fresh bucket on s3). Backends that lack a capability
// must say so and return kUnsupported; the tests check both sides of that
// contract, and no test skips: "reduced" (reduced_backend.hpp, the local
// backend without random_writes, parallel_writers, resume, symlinks and
// zero_copy_send) runs the kUnsupported half of each. An object store
// (s3) runs the other branches its capabilities name: whole_parts (a
// chunked file is written part by part, each part in order, parts in
// parallel; resume is by part, from the notes the journal keeps) and no
// directories (a folder is only the prefix of what is in it).
//
// Traits flags for legitimate differences between backends:
//   kHasIdentity              stat() fills device/inode (local only: a remote
//                             server's identity numbers mean nothing here)
//   kSmallSourcesAreSnapshots a small Source is read whole when it is opened
//                             (xfer inlines files <= 1 MiB in the open reply),
//                             so check_unchanged() on it has nothing to check

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "xfer/backend/azure.hpp"
#include "xfer/backend/local.hpp"
#include "xfer/backend/registry.hpp"
#include "xfer/backend/s3.hpp"
#include "xfer/backend/sftp.hpp"
#include "xfer/backend/xfer.hpp"
#include "xfer/server/auth.hpp"
#include "xfer/server/config.hpp"
#include "xfer/server/server.hpp"

#include "../servers/azurite.hpp"
#include "../servers/s3rver.hpp"
#include "../servers/sshd.hpp"
#include "reduced_backend.hpp"

namespace xfer {
namespace {

// xfer and xferd ignore SIGPIPE (apps/xfer/common.cpp, src/server/run.cpp):
// a data connection the peer closed is an error to report, not the end of
// the process. This process uses the library in-process the same way, so
// it does the same (a server closing a connection under a write killed the
// whole suite once: ctest's "SIGPIPE***Exception").
[[maybe_unused]] const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

int& traits_counter() {
  static int c = 0;
  return c;
}

struct LocalTraits {
  static constexpr const char* kName = "local";
  static constexpr bool kHasIdentity = true;
  static constexpr bool kSmallSourcesAreSnapshots = false;
  std::filesystem::path dir;
  LocalTraits() {
    dir = std::filesystem::temp_directory_path() /
          ("xfer_conf_" + std::to_string(::getpid()) + "_" + std::to_string(traits_counter()++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~LocalTraits() { std::filesystem::remove_all(dir); }
  std::unique_ptr<Backend> make() {
    auto url = parse_url("file://" + dir.string());
    return std::move(BackendRegistry::with_builtins()->create(*url)).value();
  }
  std::string root() const { return dir.string(); }
};

// The local backend behind the reduced-capability wrapper: sequential
// writes only, no resume, no symlinks, no native handle.
struct ReducedTraits : LocalTraits {
  static constexpr const char* kName = "reduced";
  std::unique_ptr<Backend> make() { return make_reduced_backend(LocalTraits::make()); }
};

// A full xferd in this process (gRPC control + TCP data server) serving a
// fresh temporary root, with authentication on; the backend talks to it
// over loopback with a read-write token for the whole root. Paths are
// server paths ("/a/b"). kSealed: the data channel is sealed (AES-GCM), as
// it is by default for every server that is not on loopback.
template <bool kSealed>
struct XferTraitsT {
  static constexpr const char* kName = kSealed ? "xfer_sealed" : "xfer";
  static constexpr bool kHasIdentity = false;
  static constexpr bool kSmallSourcesAreSnapshots = true;
  static constexpr const char* kSecret = "conformance-secret-0123456789abcdef";
  std::filesystem::path base;  // holds root/ and state/ (state_dir outside the root)
  std::filesystem::path dir;   // the served root
  std::unique_ptr<server::Server> server;
  std::string token;

  XferTraitsT() {
    base = std::filesystem::temp_directory_path() /
           ("xfer_confx_" + std::to_string(::getpid()) + "_" + std::to_string(traits_counter()++));
    dir = base / "root";
    std::filesystem::remove_all(base);
    std::filesystem::create_directories(dir);
    std::filesystem::create_directories(base / "state");
    server::ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.data_listen = {"127.0.0.1:0"};
    config.root = dir.string();
    config.state_dir = (base / "state").string();
    config.secret = kSecret;
    config.auth_required = true;
    auto started = server::Server::start(config);
    if (!started) {
      ADD_FAILURE() << "xferd did not start: " << started.error().message();
      return;
    }
    server = std::move(*started);
    server::TokenScope scope;
    scope.subject = "conformance";
    scope.prefix = "/";
    scope.write = true;
    scope.expires_at = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count() +
                       3600;
    auto issued = server::issue_token(kSecret, scope);
    if (!issued) {
      ADD_FAILURE() << "issue_token: " << issued.error().message();
      return;
    }
    token = *issued;
  }
  ~XferTraitsT() {
    if (server) server->shutdown(2);
    server.reset();
    std::filesystem::remove_all(base);
  }
  std::unique_ptr<Backend> make() {
    if (!server) return nullptr;
    auto url = parse_url("xfer://" + server->control_address() + "/");
    if (!url) {
      ADD_FAILURE() << url.error().message();
      return nullptr;
    }
    EndpointOptions options;
    options.token = token;
    options.encrypt = kSealed ? 1 : -1;  // -1: auto, plaintext on loopback
    auto b = BackendRegistry::with_builtins()->create(*url, options);
    if (!b) {
      ADD_FAILURE() << "create xfer backend: " << b.error().message();
      return nullptr;
    }
    return std::move(*b);
  }
  std::string root() const { return "/"; }
};
using XferTraits = XferTraitsT<false>;
using XferSealedTraits = XferTraitsT<true>;

// sftp:// against a real OpenSSH sshd (tests/servers/sshd.hpp), one for
// the whole suite, each test in a fresh folder on it; the backend logs in
// with the client key the server accepts and checks the server's host key
// against a known_hosts file made here, as a user's would be. Paths are
// the server's absolute paths.
struct SftpTraits {
  static constexpr const char* kName = "sftp";
  static constexpr bool kHasIdentity = false;
  static constexpr bool kSmallSourcesAreSnapshots = false;
  static xfer::testing::SshdServer* server() {
    static std::unique_ptr<xfer::testing::SshdServer> sshd = [] {
      auto s = std::make_unique<xfer::testing::SshdServer>(
          std::filesystem::temp_directory_path() /
          ("xfer_conf_sshd_" + std::to_string(::getpid())));
      if (!s->start()) ADD_FAILURE() << "sshd: " << s->error();
      return s;
    }();
    return sshd->running() ? sshd.get() : nullptr;
  }
  std::filesystem::path dir;
  SftpTraits() {
    dir = std::filesystem::temp_directory_path() /
          ("xfer_confs_" + std::to_string(::getpid()) + "_" + std::to_string(traits_counter()++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~SftpTraits() { std::filesystem::remove_all(dir); }
  std::unique_ptr<Backend> make() {
    auto* sshd = server();
    if (sshd == nullptr) return nullptr;
    auto url = parse_url(fmt::format("sftp://{}@127.0.0.1:{}/", sshd->user(), sshd->port()));
    Profile profile;
    profile.type = "sftp";
    profile.fields["key_file"] = sshd->client_key().string();
    profile.fields["known_hosts"] = sshd->known_hosts().string();
    EndpointOptions options;
    options.ambient_credentials = false;
    auto b = make_sftp_backend(*url, profile, options);
    if (!b) {
      ADD_FAILURE() << "sftp backend: " << b.error().message();
      return nullptr;
    }
    return std::move(*b);
  }
  std::string root() const { return dir.string(); }
};

// s3:// against a real s3rver (tests/servers/s3rver.hpp), one for the whole
// suite, each test in a bucket of its own (its root is the bucket's).
struct S3Traits {
  static constexpr const char* kName = "s3";
  static constexpr bool kHasIdentity = false;
  static constexpr bool kSmallSourcesAreSnapshots = false;
  static xfer::testing::S3rverServer* server() {
    static std::unique_ptr<xfer::testing::S3rverServer> s3 = [] {
      auto s = std::make_unique<xfer::testing::S3rverServer>(
          std::filesystem::temp_directory_path() / ("xfer_conf_s3_" + std::to_string(::getpid())),
          "first");
      if (!s->start()) ADD_FAILURE() << "s3rver: " << s->error();
      return s;
    }();
    return s3->running() ? s3.get() : nullptr;
  }
  std::string bucket;
  S3Traits() {
    bucket = "conf-" + std::to_string(traits_counter()++);
    if (auto* s3 = server(); s3 != nullptr && !s3->make_bucket(bucket)) {
      ADD_FAILURE() << s3->error();
    }
  }
  std::unique_ptr<Backend> make() {
    auto* s3 = server();
    if (s3 == nullptr) return nullptr;
    auto url = parse_url("s3://" + bucket + "/");
    Profile profile;
    profile.type = "s3";
    profile.fields["endpoint"] = s3->endpoint();
    profile.fields["access_key_id"] = "S3RVER";
    profile.fields["secret_access_key"] = "S3RVER";
    EndpointOptions options;
    options.ambient_credentials = false;
    auto b = make_s3_backend(*url, profile, options);
    if (!b) {
      ADD_FAILURE() << "s3 backend: " << b.error().message();
      return nullptr;
    }
    return std::move(*b);
  }
  std::string root() const { return "/"; }
};

// az:// against a real Azurite (tests/servers/azurite.hpp), one for the
// whole suite, each test in a container of its own.
struct AzureTraits {
  static constexpr const char* kName = "az";
  static constexpr bool kHasIdentity = false;
  static constexpr bool kSmallSourcesAreSnapshots = false;
  static xfer::testing::AzuriteServer* server() {
    static std::unique_ptr<xfer::testing::AzuriteServer> az = [] {
      auto s = std::make_unique<xfer::testing::AzuriteServer>(
          std::filesystem::temp_directory_path() / ("xfer_conf_az_" + std::to_string(::getpid())),
          "first");
      if (!s->start()) ADD_FAILURE() << "Azurite: " << s->error();
      return s;
    }();
    return az->running() ? az.get() : nullptr;
  }
  std::string container;
  AzureTraits() {
    container = "conf-" + std::to_string(traits_counter()++);
    if (auto* az = server(); az != nullptr && !az->make_container(container)) {
      ADD_FAILURE() << az->error();
    }
  }
  std::unique_ptr<Backend> make() {
    auto* az = server();
    if (az == nullptr) return nullptr;
    auto url = parse_url("az://" + container + "/");
    Profile profile;
    profile.type = "azure";
    profile.fields["endpoint"] = az->endpoint();
    profile.fields["account"] = xfer::testing::AzuriteServer::kAccount;
    profile.fields["key"] = xfer::testing::AzuriteServer::kKey;
    EndpointOptions options;
    options.ambient_credentials = false;
    auto b = make_azure_backend(*url, profile, options);
    if (!b) {
      ADD_FAILURE() << "az backend: " << b.error().message();
      return nullptr;
    }
    return std::move(*b);
  }
  std::string root() const { return "/"; }
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
  void SetUp() override {
    backend_ = traits_.make();
    ASSERT_TRUE(backend_ != nullptr) << "no backend for " << Traits::kName;
  }
  std::string p(const std::string& rel) const { return join_path(traits_.root(), rel); }
  // An mtime as the backend keeps it: cut to its granularity (whole
  // seconds on sftp).
  std::int64_t stored(std::int64_t ns) const {
    const std::int64_t g = backend_->capabilities().mtime_granularity_ns;
    return g > 1 ? ns - ns % g : ns;
  }

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

  // The kUnsupported half of the contract: `r` was refused as outside the
  // backend's capabilities, and its error names the operation and the path.
  template <typename R>
  void expect_unsupported(const R& r, std::string_view operation, const std::string& rel) {
    ASSERT_FALSE(r.ok()) << operation << " of " << rel << " was accepted";
    EXPECT_EQ(r.error().code, ErrorCode::kUnsupported) << r.error().message();
    EXPECT_EQ(r.error().operation, operation) << r.error().message();
    EXPECT_NE(r.error().path.find(rel), std::string::npos) << r.error().message();
  }

  struct Range {
    std::size_t begin = 0, end = 0;
  };
  // A sink that takes a chunked file part by part (whole_parts without
  // random_writes: an object store).
  bool by_parts() const {
    const auto& caps = backend_->capabilities();
    return caps.whole_parts && !caps.random_writes;
  }
  // `want`, or the backend's smallest part if that is larger.
  std::size_t part_size(std::size_t want) const {
    return std::max<std::size_t>(want, backend_->capabilities().min_part_size);
  }
  static void lay_out(SinkOptions& so, std::size_t part) {
    so.part_size = part;
    so.parts = (so.size + part - 1) / part;
  }
  // Writers for a file of `size` bytes in parts of `part`: writer w takes
  // parts w, w + n, ..., the last of them first, each part in order in
  // pieces of `piece` bytes.
  static std::vector<std::vector<Range>> part_writers(std::size_t size, std::size_t part,
                                                      std::size_t n, std::size_t piece) {
    std::vector<std::vector<Range>> writers(n);
    const std::size_t parts = (size + part - 1) / part;
    for (std::size_t k = parts; k-- > 0;) {
      const std::size_t end = std::min(size, (k + 1) * part);
      for (std::size_t o = k * part; o < end; o += piece) {
        writers[k % n].push_back({o, std::min(end, o + piece)});
      }
    }
    return writers;
  }
  // Writes the ranges of `data` into `sink`, one list per writer, each
  // writer its ranges in the order given; the writers run at once with
  // parallel_writers, one after another without. With random_writes every
  // range is taken. Without, the sink takes bytes in order only: what it
  // took makes a prefix of the file, everything else was refused as
  // kUnsupported write_at of `rel` (and something was: the lists are out
  // of order), and the rest is then written in order here. A sink that
  // takes parts (by_parts) is given part_writers and takes every range.
  // Either way the sink ends up holding all of `data`.
  void write_ranges(Sink& sink, const std::vector<std::byte>& data,
                    const std::vector<std::vector<Range>>& writers, const std::string& rel) {
    std::mutex mutex;
    std::vector<Range> accepted;
    std::vector<Error> refused;
    auto run = [&](const std::vector<Range>& ranges) {
      for (Range r : ranges) {
        Status s = sink.write_at(Offset{r.begin}, {data.data() + r.begin, r.end - r.begin});
        std::lock_guard lock(mutex);
        if (s.ok()) {
          accepted.push_back(r);
        } else {
          refused.push_back(s.error());
        }
      }
    };
    const auto& caps = backend_->capabilities();
    if (caps.parallel_writers) {
      std::vector<std::thread> threads;
      for (const auto& ranges : writers) threads.emplace_back(run, std::cref(ranges));
      for (auto& t : threads) t.join();
    } else {
      for (const auto& ranges : writers) run(ranges);
    }
    if (caps.random_writes || by_parts()) {
      for (const Error& e : refused) ADD_FAILURE() << e.message();
      return;
    }
    EXPECT_FALSE(refused.empty()) << "a sequential sink took every range out of order";
    for (const Error& e : refused) expect_unsupported(Status(e), "write_at", rel);
    std::sort(accepted.begin(), accepted.end(),
              [](const Range& a, const Range& b) { return a.begin < b.begin; });
    std::size_t prefix = 0;
    for (Range r : accepted) {
      EXPECT_EQ(r.begin, prefix) << "a sequential sink took [" << r.begin << ", " << r.end
                                 << ") before the bytes ahead of it";
      prefix = std::max(prefix, r.end);
    }
    ASSERT_TRUE(sink.write_at(Offset{prefix}, {data.data() + prefix, data.size() - prefix}).ok());
  }

  // Without resume, a sink opened without a resume_name keeps nothing when
  // it is suspended (or destroyed) after `n` bytes of `data`.
  void expect_plain_sink_discarded(const std::string& rel, const std::vector<std::byte>& data,
                                   std::size_t n, bool suspend) {
    {
      SinkOptions plain;
      plain.size = data.size();
      auto sink = backend_->open_sink(p(rel), plain);
      ASSERT_TRUE(sink.ok()) << sink.error().message();
      ASSERT_TRUE((*sink)->write_at(Offset{0}, {data.data(), n}).ok());
      if (suspend) {
        ASSERT_TRUE((*sink)->suspend().ok());
      }
    }
    EXPECT_TRUE(names("").empty()) << "a sink that cannot resume kept something";
  }
  // Without resume, open_sink with a resume_name is refused, as a new
  // partial and as an existing one, and creates nothing.
  void expect_resume_refused(const std::string& rel, SinkOptions so) {
    ASSERT_FALSE(so.resume_name.empty());
    for (bool existing : {false, true}) {
      SCOPED_TRACE(existing ? "resume_existing" : "new partial");
      so.resume_existing = existing;
      auto sink = backend_->open_sink(p(rel), so);
      expect_unsupported(sink, "open_sink", rel);
    }
    EXPECT_FALSE(backend_->stat(p(rel)).ok());
    EXPECT_TRUE(names("").empty()) << "a refused resumable open left something";
  }

  // Resume on a sink that takes parts: the first of three parts is
  // written whole, the sink is left (`how`), then opened again with what
  // the journal would keep (its resume_note and the part's chunk_note). It
  // says it resumed, takes the other two parts and publishes the whole
  // file, which was not visible before.
  enum class Leave { kSuspended, kDestroyed, kToANewClient };
  void resume_by_parts(const std::string& rel, std::uint64_t seed, const std::string& job,
                       Leave how) {
    const std::size_t part = part_size(1 << 20);
    auto data = pattern(part * 3 - 1000, seed);
    SinkOptions so;
    so.size = data.size();
    so.resume_name = job;
    lay_out(so, part);
    std::string note, etag;
    {
      auto sink = backend_->open_sink(p(rel), so);
      ASSERT_TRUE(sink.ok()) << sink.error().message();
      EXPECT_FALSE((*sink)->resumed());
      ASSERT_TRUE((*sink)->write_at(Offset{0}, {data.data(), part}).ok());
      ASSERT_TRUE((*sink)->write_at(Offset{part}, {data.data() + part, 1000}).ok());
      note = (*sink)->resume_note();
      etag = (*sink)->chunk_note(0);
      EXPECT_FALSE(etag.empty()) << "a part written whole has a note";
      EXPECT_EQ((*sink)->chunk_note(1), "") << "a part not written whole has none";
      if (how != Leave::kDestroyed) {
        ASSERT_TRUE((*sink)->suspend().ok());
      }
    }
    if (how == Leave::kToANewClient) {
      backend_.reset();
      backend_ = traits_.make();
      ASSERT_TRUE(backend_ != nullptr);
    }
    EXPECT_FALSE(backend_->stat(p(rel)).ok()) << "a partial is not published";
    so.resume_existing = true;
    so.resume_note = note;
    so.chunk_notes = {etag, "", ""};
    auto sink = backend_->open_sink(p(rel), so);
    ASSERT_TRUE(sink.ok()) << sink.error().message();
    EXPECT_TRUE((*sink)->resumed());
    for (std::size_t k = 1; k < 3; ++k) {
      const std::size_t end = std::min(data.size(), (k + 1) * part);
      ASSERT_TRUE(
          (*sink)->write_at(Offset{k * part}, {data.data() + k * part, end - k * part}).ok());
    }
    Status committed = (*sink)->commit();
    ASSERT_TRUE(committed.ok()) << committed.error().message();
    EXPECT_TRUE(get(rel) == data);
    EXPECT_EQ(names(""), std::set<std::string>{rel}) << "no partial left after commit";
  }

  Traits traits_;
  std::unique_ptr<Backend> backend_;
};

// Test names read "BackendConformance/local.X", ".../xfer.X", ".../xfer_sealed.X",
// ".../reduced.X".
struct TraitsName {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};
using BackendTypes = ::testing::Types<LocalTraits, XferTraits, XferSealedTraits, ReducedTraits,
                                      SftpTraits, S3Traits, AzureTraits>;
TYPED_TEST_SUITE(BackendConformance, BackendTypes, TraitsName);

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
    EXPECT_EQ(st->mtime_ns, this->stored(1'600'000'000'123'456'789LL));
  }
}

// Four writers, the last chunk first. A sequential backend refuses the
// chunks out of order (write_ranges) and takes the rest in order.
// A sink that takes parts gets four writers of whole parts, last part first.
TYPED_TEST(BackendConformance, ParallelOutOfOrderWrites) {
  constexpr std::size_t kChunk = 256 * 1024, kChunks = 24;
  const bool by_parts = this->by_parts();
  const std::size_t part = this->part_size(kChunk);
  auto data = pattern(by_parts ? part * 4 - 100 : kChunk * kChunks - 100, 2);
  SinkOptions so;
  so.size = data.size();
  if (by_parts) TestFixture::lay_out(so, part);
  auto sink = this->backend_->open_sink(this->p("par.bin"), so);
  ASSERT_TRUE(sink.ok()) << sink.error().message();
  std::vector<std::vector<typename TestFixture::Range>> writers(4);
  if (by_parts) {
    writers = TestFixture::part_writers(data.size(), part, 4, 1 << 20);
  } else {
    for (std::size_t k = 0; k < kChunks; ++k) {
      const std::size_t begin = (kChunks - 1 - k) * kChunk;
      writers[k % 4].push_back({begin, std::min(data.size(), begin + kChunk)});
    }
  }
  this->write_ranges(**sink, data, writers, "par.bin");
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
  if (!b.capabilities().resume) {
    this->expect_plain_sink_discarded("r.bin", data, 65536, /*suspend=*/true);
    this->expect_resume_refused("r.bin", so);
    return;
  }
  if (this->by_parts()) {
    this->resume_by_parts("r.bin", 9, "job42", TestFixture::Leave::kSuspended);
    so.part_size = this->part_size(1 << 20);
    so.parts = 1;
    auto again = b.open_sink(this->p("s.bin"), so);
    ASSERT_TRUE(again.ok());
    ASSERT_TRUE((*again)->write_at(Offset{0}, {data.data(), 100}).ok());
    ASSERT_TRUE((*again)->abort().ok());
    EXPECT_EQ(this->names(""), std::set<std::string>{"r.bin"});
    return;
  }
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

// sync's delta at the backend: signature() of a file where it lives, and
// a sink that rebuilds a new version from blocks of the old one
// (copy_basis) plus written bytes. The old file must be what its
// signature saw; a copy outside it is refused; nothing is left behind.
TYPED_TEST(BackendConformance, DeltaSinkRebuildsFromTheOldFile) {
  auto& b = *this->backend_;
  const auto old_data = pattern(3u << 20, 21);
  this->put("d.bin", old_data);
  const CdcParams params = cdc_params_for(old_data.size());
  auto old_sig = b.signature(this->p("d.bin"), params, old_data.size(), nullptr);
  ASSERT_TRUE(old_sig.ok()) << old_sig.error().message();
  ASSERT_TRUE(validate_signature(*old_sig, params).ok());
  Xxh3Stream128 whole;
  whole.update(old_data);
  EXPECT_EQ(std::pair(old_sig->digest.high, old_sig->digest.low), whole.digest());
  EXPECT_EQ(old_sig->size, old_data.size());

  // The new version: 7 bytes inserted at the start, 64 KiB replaced in the middle.
  std::vector<std::byte> new_data(7, std::byte{0x42});
  new_data.insert(new_data.end(), old_data.begin(), old_data.end());
  const auto fresh = pattern(64u << 10, 22);
  std::copy(fresh.begin(), fresh.end(), new_data.begin() + (3u << 19));
  Signature new_sig;
  new_sig.params = params;
  new_sig.size = new_data.size();
  CdcChunker chunker(params, [&](const BlockSig& blk) { new_sig.blocks.push_back(blk); });
  chunker.update(new_data);
  chunker.finish();
  const DeltaPlan plan = plan_delta(new_sig, *old_sig);
  EXPECT_GT(plan.matched_bytes, old_data.size() - (1u << 20));

  SinkOptions so;
  so.size = new_data.size();
  so.attrs.mode = 0640;
  so.basis = true;
  so.basis_size = old_sig->size;
  if (!b.capabilities().basis_copy) {
    // Without basis_copy a sink may refuse a basis outright.
    so.basis_mtime_ns = old_sig->mtime_ns;
    auto sink = b.open_sink(this->p("d.bin"), so);
    if (!sink.ok()) {
      this->expect_unsupported(sink, "open_sink", "d.bin");
      EXPECT_TRUE(this->get("d.bin") == old_data);
      EXPECT_EQ(this->names(""), std::set<std::string>{"d.bin"});
      return;
    }
    ASSERT_TRUE((*sink)->abort().ok());
  }
  so.basis_mtime_ns = old_sig->mtime_ns + 1;  // not what the signature saw
  {
    auto refused = b.open_sink(this->p("d.bin"), so);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ErrorCode::kChanged) << refused.error().message();
  }
  so.basis_mtime_ns = old_sig->mtime_ns;
  auto sink = b.open_sink(this->p("d.bin"), so);
  ASSERT_TRUE(sink.ok()) << sink.error().message();
  const Status outside = (*sink)->copy_basis(Offset{0}, Offset{old_data.size() - 10}, Length{11});
  ASSERT_FALSE(outside.ok());
  if (outside.error().code == ErrorCode::kUnsupported) {
    this->expect_unsupported(outside, "copy_basis", "d.bin");
    ASSERT_TRUE((*sink)->abort().ok());
  } else {
    EXPECT_EQ(outside.error().code, ErrorCode::kInvalidArgument) << outside.error().message();
    for (const DeltaOp& op : plan.ops) {
      const Status s =
          op.from_basis
              ? (*sink)->copy_basis(Offset{op.offset}, Offset{op.basis_offset}, Length{op.length})
              : (*sink)->write_at(Offset{op.offset}, std::span<const std::byte>(new_data).subspan(
                                                         op.offset, op.length));
      ASSERT_TRUE(s.ok()) << s.error().message();
    }
    EXPECT_TRUE(this->get("d.bin") == old_data) << "the old file stays until the commit";
    ASSERT_TRUE((*sink)->commit().ok());
    EXPECT_TRUE(this->get("d.bin") == new_data);
  }
  EXPECT_EQ(this->names(""), std::set<std::string>{"d.bin"});
}

// Without directories (an object store) a folder is the prefix of what is
// in it: mkdir makes nothing, the folder comes and goes with its objects.
TYPED_TEST(BackendConformance, NamespaceOperations) {
  auto& b = *this->backend_;
  if (!b.capabilities().directories) {
    ASSERT_TRUE(b.mkdir(this->p("d"), false).ok());
    ASSERT_TRUE(b.mkdir(this->p("d"), false).ok());
    ASSERT_TRUE(b.mkdir(this->p("x/y/z"), false).ok());
    EXPECT_TRUE(this->names("").empty()) << "mkdir made something";
    auto none = b.stat(this->p("d"));
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.error().code, ErrorCode::kNotFound);
    ASSERT_TRUE(b.touch(this->p("d/empty"), std::nullopt).ok());
    auto st = b.stat(this->p("d/empty"));
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->size, 0u);
    ASSERT_TRUE(b.touch(this->p("d/empty"), 1'000'000'000'000'000'000LL).ok());
    if (b.capabilities().mtime) {
      EXPECT_EQ(b.stat(this->p("d/empty"))->mtime_ns, this->stored(1'000'000'000'000'000'000LL));
    }
    this->put("d/file", pattern(10, 6));
    this->put("x/y/z/deep", pattern(10, 7));
    EXPECT_EQ(b.stat(this->p("d"))->type, EntryType::kDirectory);
    EXPECT_EQ(this->names("d"), (std::set<std::string>{"empty", "file"}));
    EXPECT_EQ(this->names(""), (std::set<std::string>{"d/", "x/"}));
    EXPECT_EQ(this->names("x"), (std::set<std::string>{"y/"}));
    Status renamed = b.rename(this->p("d/file"), this->p("x/moved"));
    ASSERT_FALSE(renamed.ok()) << "an object store renamed in place";
    EXPECT_TRUE(renamed.error().code == ErrorCode::kCrossDevice ||
                renamed.error().code == ErrorCode::kUnsupported)
        << renamed.error().message();
    EXPECT_TRUE(this->get("d/file") == pattern(10, 6));
    auto rm_dir = b.remove(this->p("x"), false);
    ASSERT_FALSE(rm_dir.ok());
    EXPECT_EQ(rm_dir.error().code, ErrorCode::kNotEmpty);
    ASSERT_TRUE(b.remove(this->p("x"), true).ok());
    EXPECT_EQ(this->names(""), std::set<std::string>{"d/"});
    ASSERT_TRUE(b.remove(this->p("d/empty"), false).ok());
    ASSERT_TRUE(b.remove(this->p("d/file"), false).ok());
    EXPECT_TRUE(this->names("").empty()) << "a folder outlived its last object";
    auto missing = b.remove(this->p("nope"), false);
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
    return;
  }
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
    EXPECT_EQ(b.stat(this->p("d/empty"))->mtime_ns, this->stored(1'000'000'000'000'000'000LL));
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
    this->expect_unsupported(s, "symlink", "ln");
    auto st = b.stat(this->p("ln"));
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::kNotFound);
    EXPECT_TRUE(this->names("").empty());
    return;
  }
  ASSERT_TRUE(s.ok()) << s.error().message();
  auto st = b.stat(this->p("ln"));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->type, EntryType::kSymlink);
  EXPECT_EQ(st->symlink_target, "target/that/does/not/exist");
  EXPECT_EQ(st->mtime_ns, this->stored(a.mtime_ns));
  ASSERT_TRUE(b.symlink("other", this->p("ln"), a).ok()) << "replaces atomically";
  EXPECT_EQ(b.stat(this->p("ln"))->symlink_target, "other");
}

TYPED_TEST(BackendConformance, SourceDetectsChangeAndRefusesDirectories) {
  auto& b = *this->backend_;
  // Small files are snapshots on some backends (read whole at open: nothing
  // can change under the copy), so the change check runs on a large file
  // there, and on both sizes elsewhere.
  std::vector<std::size_t> sizes = {4096, (2u << 20) + 5};
  if (TypeParam::kSmallSourcesAreSnapshots) sizes.erase(sizes.begin());
  for (std::size_t size : sizes) {
    SCOPED_TRACE("size " + std::to_string(size));
    this->put("c.bin", pattern(size, 7));
    auto src = b.open_source(this->p("c.bin"));
    ASSERT_TRUE(src.ok());
    EXPECT_TRUE((*src)->check_unchanged().ok());
    std::vector<std::byte> buf(100);
    auto past_end = (*src)->read_at(Offset{size + 904}, buf);
    ASSERT_TRUE(past_end.ok());
    EXPECT_EQ(*past_end, 0u);
    this->put("c.bin.new", pattern(8192, 8));
    ASSERT_TRUE(b.touch(this->p("c.bin"), 42'000'000'000LL).ok());
    auto changed = (*src)->check_unchanged();
    ASSERT_FALSE(changed.ok());
    EXPECT_EQ(changed.error().code, ErrorCode::kChanged);
    EXPECT_EQ(changed.error().retry, RetryClass::kRetryFile);
  }
  ASSERT_TRUE(b.mkdir(this->p("dir"), false).ok());
  if (!b.capabilities().directories) this->put("dir/in", pattern(1, 9));  // a folder is a prefix
  auto dir = b.open_source(this->p("dir"));
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().code, ErrorCode::kIsDirectory);
}

// zero_copy_send: a Source exposes a descriptor that reads the file's bytes;
// without it, native_handle() is -1.
TYPED_TEST(BackendConformance, NativeHandleOnlyWithZeroCopySend) {
  auto data = pattern(5000, 80);
  this->put("z.bin", data);
  auto src = this->backend_->open_source(this->p("z.bin"));
  ASSERT_TRUE(src.ok()) << src.error().message();
  const int fd = (*src)->native_handle();
  if (!this->backend_->capabilities().zero_copy_send) {
    EXPECT_EQ(fd, -1);
    return;
  }
  ASSERT_GE(fd, 0);
  std::vector<std::byte> back(data.size() + 1);
  EXPECT_EQ(::pread(fd, back.data(), back.size(), 0), static_cast<ssize_t>(data.size()));
  back.resize(data.size());
  EXPECT_TRUE(back == data);
}

// flat_listing: list_tree() names every file below a folder by its path
// below it, with its size, the names below any folder together, nothing
// from beside the folder; a file is kNotDirectory, nothing kNotFound.
// Without it: kUnsupported.
TYPED_TEST(BackendConformance, ListTreeNamesEveryFileBelow) {
  auto& b = *this->backend_;
  auto tree = [&](const std::string& rel, std::vector<std::pair<std::string, std::uint64_t>>* out) {
    return b.list_tree(this->p(rel), [&](Entry&& e) {
      EXPECT_EQ(e.type, EntryType::kFile) << e.name;
      out->emplace_back(e.name, e.attrs ? e.attrs->size : ~0ull);
      return ok_status();
    });
  };
  std::vector<std::pair<std::string, std::uint64_t>> got;
  if (!b.capabilities().flat_listing) {
    ASSERT_TRUE(b.mkdir(this->p("t"), false).ok());
    this->expect_unsupported(tree("t", &got), "list_tree", "t");
    EXPECT_TRUE(got.empty());
    return;
  }
  const std::vector<std::pair<std::string, std::uint64_t>> want = {
      {"a", 1}, {"b/c", 2}, {"b/d/e", 3}, {"b/d/f g", 4}, {"b-x", 5}, {"b0/h", 6}};
  for (const auto& [name, size] : want) this->put("t/" + name, pattern(size, 3));
  this->put("tz", pattern(7, 3));    // beside the folder, with its name as a prefix
  this->put("t0/i", pattern(8, 3));  // the same
  ASSERT_TRUE(tree("t", &got).ok());
  EXPECT_EQ(std::set(got.begin(), got.end()), std::set(want.begin(), want.end()));
  EXPECT_EQ(got.size(), want.size());
  // The names below each folder come together: a folder left is never
  // come back to.
  std::set<std::string> left;
  std::string in;
  for (const auto& [name, size] : got) {
    const std::string folder = name.find('/') == std::string::npos ? "" : dir_name(name);
    for (std::string f = in; !f.empty() && folder.rfind(f + "/", 0) != 0 && f != folder;
         f = f.find('/') == std::string::npos ? "" : dir_name(f)) {
      left.insert(f);
    }
    EXPECT_EQ(left.count(folder), 0u) << "back in " << folder << " for " << name;
    in = folder;
  }
  got.clear();
  ASSERT_TRUE(tree("t/b/d", &got).ok());
  EXPECT_EQ(std::set(got.begin(), got.end()),
            (std::set<std::pair<std::string, std::uint64_t>>{{"e", 3}, {"f g", 4}}));
  auto file = tree("t/a", &got);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.error().code, ErrorCode::kNotDirectory);
  auto none = tree("nothing", &got);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);
}

TYPED_TEST(BackendConformance, SetAttrsOnDirectories) {
  auto& b = *this->backend_;
  ASSERT_TRUE(b.mkdir(this->p("sd"), false).ok());
  if (!b.capabilities().directories) this->put("sd/in", pattern(1, 9));  // a folder is a prefix
  FileAttrs a;
  a.type = EntryType::kDirectory;
  a.mode = 0750;
  a.mtime_ns = 1'234'567'890'000'000'001LL;
  ASSERT_TRUE(b.set_attrs(this->p("sd"), a).ok());
  auto st = b.stat(this->p("sd"));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->type, EntryType::kDirectory);
  if (!b.capabilities().directories) return;  // a prefix keeps no attributes
  if (b.capabilities().permissions) {
    EXPECT_EQ(st->mode, 0750u);
  }
  if (b.capabilities().mtime) {
    EXPECT_EQ(st->mtime_ns, this->stored(a.mtime_ns));
  }
}

// ---- data paths in detail (large sinks, inline vs streamed reads, resume) ---

// Reads [offset, offset + n) in one read_at call.
std::vector<std::byte> read_range(Source& src, std::uint64_t offset, std::size_t n) {
  std::vector<std::byte> out(n);
  auto got = src.read_at(Offset{offset}, out);
  EXPECT_TRUE(got.ok()) << (got.ok() ? "" : got.error().message());
  out.resize(got.ok() ? *got : 0);
  return out;
}

// Eight writers, each its range back to front; a sequential backend refuses
// what is out of order (write_ranges) and takes the rest in order.
TYPED_TEST(BackendConformance, EightThreadsWriteDisjointRangesThenCommit) {
  const auto& caps = this->backend_->capabilities();
  constexpr std::size_t kThreads = 8;
  constexpr std::size_t kPiece = 100'003;  // odd sizes: no alignment luck
  // A sink that takes parts: eight parts, one writer each, in pieces.
  const bool by_parts = this->by_parts();
  const std::size_t part = this->part_size(3 * kPiece);
  auto data = pattern(by_parts ? kThreads * part - 77 : kThreads * 3 * kPiece + 77, 21);
  SinkOptions so;
  so.size = data.size();
  so.attrs.mode = 0600;
  so.attrs.mtime_ns = 1'700'000'000'000'000'000LL;
  if (by_parts) TestFixture::lay_out(so, part);
  auto sink = this->backend_->open_sink(this->p("eight.bin"), so);
  ASSERT_TRUE(sink.ok()) << sink.error().message();
  const std::size_t share = (data.size() + kThreads - 1) / kThreads;
  std::vector<std::vector<typename TestFixture::Range>> writers(kThreads);
  if (by_parts) {
    writers = TestFixture::part_writers(data.size(), part, kThreads, kPiece);
  } else {
    for (std::size_t t = 0; t < kThreads; ++t) {
      const std::size_t begin = t * share, end = std::min(data.size(), begin + share);
      for (std::size_t o = begin; o < end; o += kPiece) {
        writers[t].push_back({o, std::min(o + kPiece, end)});
      }
      std::reverse(writers[t].begin(), writers[t].end());
    }
  }
  this->write_ranges(**sink, data, writers, "eight.bin");
  EXPECT_FALSE(this->backend_->stat(this->p("eight.bin")).ok()) << "visible before commit";
  ASSERT_TRUE((*sink)->commit().ok());
  auto st = this->backend_->stat(this->p("eight.bin"));
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, data.size());
  if (caps.permissions) {
    EXPECT_EQ(st->mode, 0600u);
  }
  if (caps.mtime) {
    EXPECT_EQ(st->mtime_ns, this->stored(so.attrs.mtime_ns));
  }
  EXPECT_TRUE(this->get("eight.bin") == data);
  EXPECT_EQ(this->names(""), std::set<std::string>{"eight.bin"}) << "no temporary left";
}

TYPED_TEST(BackendConformance, AbortOfLargeSinksLeavesNothing) {
  auto data = pattern(3 * 1024 * 1024 + 1, 22);
  SinkOptions so;
  so.size = data.size();
  {
    auto sink = this->backend_->open_sink(this->p("big-aborted.bin"), so);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->write_at(Offset{0}, data).ok());
    ASSERT_TRUE((*sink)->abort().ok());
    ASSERT_TRUE((*sink)->abort().ok()) << "abort is idempotent";
  }
  {
    auto sink = this->backend_->open_sink(this->p("big-dropped.bin"), so);
    ASSERT_TRUE(sink.ok());
    Status ahead = (*sink)->write_at(Offset{1 << 20}, {data.data(), 1 << 20});
    if (this->backend_->capabilities().random_writes) {
      ASSERT_TRUE(ahead.ok()) << ahead.error().message();
    } else {
      // A sequential sink refuses a write past its first byte and stays usable.
      this->expect_unsupported(ahead, "write_at", "big-dropped.bin");
      ASSERT_TRUE((*sink)->write_at(Offset{0}, {data.data(), 1 << 20}).ok());
    }
  }  // destroyed without commit
  this->put("kept.bin", pattern(10, 23));
  EXPECT_EQ(this->names(""), std::set<std::string>{"kept.bin"});
}

// abort() "discards everything written": a commit() that comes after it must
// not publish anything, whatever it returns.
TYPED_TEST(BackendConformance, CommitAfterAbortPublishesNothing) {
  for (std::size_t size : {std::size_t{1000}, std::size_t{(2u << 20) + 1}}) {
    SCOPED_TRACE("size " + std::to_string(size));
    auto data = pattern(size, 24);
    SinkOptions so;
    so.size = size;
    const std::string name = "late" + std::to_string(size);
    auto sink = this->backend_->open_sink(this->p(name), so);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->write_at(Offset{0}, data).ok());
    ASSERT_TRUE((*sink)->abort().ok());
    Status late = (*sink)->commit();
    EXPECT_FALSE(this->backend_->stat(this->p(name)).ok())
        << "commit after abort published the file (commit returned "
        << (late.ok() ? std::string("ok") : late.error().message()) << ")";
  }
  EXPECT_TRUE(this->names("").empty());
}

TYPED_TEST(BackendConformance, SmallAndLargeFilesReadBackExactly) {
  // 0 bytes, 100 KiB (inlined/whole-file on xfer), exactly 1 MiB and one
  // byte more (the xfer whole-file and inline limits), 3 MiB (streamed).
  // 256 KiB and one byte more: what an object store's open_source_to_read
  // fetches with the open. Each through both opens.
  const std::vector<std::size_t> sizes = {0,        100 * 1024,     256 * 1024, 256 * 1024 + 1,
                                          1u << 20, (1u << 20) + 1, 3u << 20};
  for (std::size_t n = 0; n < 2 * sizes.size(); ++n) {
    const std::size_t size = sizes[n / 2];
    const bool to_read = n % 2 == 1;
    SCOPED_TRACE("size " + std::to_string(size) + (to_read ? " to read" : ""));
    const std::string name = "s" + std::to_string(size);
    auto data = pattern(size, 30 + size);
    if (!to_read) this->put(name, data);
    auto st = this->backend_->stat(this->p(name));
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->size, size);
    auto file = this->backend_->stat_file(this->p(name));
    ASSERT_TRUE(file.ok()) << file.error().message();
    EXPECT_EQ(file->type, EntryType::kFile);
    EXPECT_EQ(file->size, size);
    EXPECT_EQ(file->mtime_ns, st->mtime_ns);
    auto src = to_read ? this->backend_->open_source_to_read(this->p(name))
                       : this->backend_->open_source(this->p(name));
    ASSERT_TRUE(src.ok()) << src.error().message();
    EXPECT_EQ((*src)->attrs().size, size);
    // Whole, in odd pieces, and a range that runs past the end.
    EXPECT_TRUE(read_range(**src, 0, size) == data);
    std::vector<std::byte> pieces;
    for (std::size_t o = 0; o < size; o += 70'001) {
      auto part = read_range(**src, o, std::min<std::size_t>(70'001, size - o));
      pieces.insert(pieces.end(), part.begin(), part.end());
    }
    EXPECT_TRUE(pieces == data);
    if (size > 10) {
      auto tail = read_range(**src, size - 10, 1000);
      EXPECT_TRUE(tail.size() == 10 && std::equal(tail.begin(), tail.end(), data.end() - 10))
          << "short read at end of file: got " << tail.size();
    }
    EXPECT_EQ((*src)->attrs().mtime_ns, st->mtime_ns);
    EXPECT_TRUE((*src)->check_unchanged().ok());
  }
}

// stat_file() and open_source_to_read(), the copy's quicker looks: the
// same answers as stat() and open_source() for a file and for nothing; a
// folder is never a file; and a large file opened to read still notices a
// change (a small one may be a snapshot, as above).
TYPED_TEST(BackendConformance, QuickLooksAnswerLikeTheFullOnes) {
  auto& b = *this->backend_;
  auto none = b.stat_file(this->p("nope"));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::kNotFound);
  auto deep = b.stat_file(this->p("no/such/file"));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.error().code, ErrorCode::kNotFound);
  auto missing = b.open_source_to_read(this->p("missing.bin"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound) << missing.error().message();
  ASSERT_TRUE(b.mkdir(this->p("dir"), false).ok());
  this->put("dir/in", pattern(10, 1));
  auto dir = b.stat_file(this->p("dir"));
  EXPECT_TRUE(!dir.ok() || dir->type == EntryType::kDirectory);
  if (!dir.ok()) {
    EXPECT_EQ(dir.error().code, ErrorCode::kNotFound) << dir.error().message();
  }
  auto opened_dir = b.open_source_to_read(this->p("dir"));
  ASSERT_FALSE(opened_dir.ok());
  EXPECT_EQ(opened_dir.error().code, ErrorCode::kIsDirectory) << opened_dir.error().message();
  const std::size_t size = (2u << 20) + 5;
  this->put("c.bin", pattern(size, 7));
  auto src = b.open_source_to_read(this->p("c.bin"));
  ASSERT_TRUE(src.ok()) << src.error().message();
  EXPECT_TRUE((*src)->check_unchanged().ok());
  EXPECT_TRUE(read_range(**src, 0, 1000) == pattern(1000, 7));
  ASSERT_TRUE(b.touch(this->p("c.bin"), 42'000'000'000LL).ok());
  auto changed = (*src)->check_unchanged();
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(changed.error().code, ErrorCode::kChanged);
}

TYPED_TEST(BackendConformance, ReadAtOrBeyondEndReturnsZero) {
  for (std::size_t size : {std::size_t{100 * 1024}, std::size_t{3u << 20}}) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string name = "eof" + std::to_string(size);
    this->put(name, pattern(size, 40));
    auto src = this->backend_->open_source(this->p(name));
    ASSERT_TRUE(src.ok());
    std::vector<std::byte> buf(4096);
    for (std::uint64_t off :
         {std::uint64_t{size}, std::uint64_t{size + 1}, std::uint64_t{size + 123'456'789}}) {
      auto n = (*src)->read_at(Offset{off}, buf);
      ASSERT_TRUE(n.ok()) << "offset " << off << ": " << n.error().message();
      EXPECT_EQ(*n, 0u) << "offset " << off;
    }
  }
}

TYPED_TEST(BackendConformance, OpenSourceOfMissingFileIsNotFound) {
  auto r = this->backend_->open_source(this->p("missing.bin"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound) << r.error().message();
  EXPECT_EQ(r.error().retry, RetryClass::kFatal);
  auto deep = this->backend_->open_source(this->p("no/such/dir/file"));
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.error().code, ErrorCode::kNotFound) << deep.error().message();
  auto listing =
      this->backend_->list(this->p("no-such-dir"), {}, [](Entry&&) { return ok_status(); });
  ASSERT_FALSE(listing.ok());
  EXPECT_EQ(listing.error().code, ErrorCode::kNotFound) << listing.error().message();
}

// Sink contract: "Destroying a Sink that was not committed aborts it (a
// resumable one is suspended)".
TYPED_TEST(BackendConformance, DestroyingAResumableSinkKeepsItsPartial) {
  auto& b = *this->backend_;
  auto data = pattern(2 * 1024 * 1024, 50);
  SinkOptions so;
  so.size = data.size();
  so.resume_name = "job-destroyed";
  if (!b.capabilities().resume) {
    this->expect_plain_sink_discarded("d.bin", data, 1 << 20, /*suspend=*/false);
    this->expect_resume_refused("d.bin", so);
    return;
  }
  if (this->by_parts()) {
    this->resume_by_parts("d.bin", 50, "job-destroyed", TestFixture::Leave::kDestroyed);
    return;
  }
  {
    auto sink = b.open_sink(this->p("d.bin"), so);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->write_at(Offset{0}, {data.data(), 1 << 20}).ok());
  }  // destroyed: neither committed nor suspended explicitly
  EXPECT_FALSE(b.stat(this->p("d.bin")).ok()) << "a partial is not published";
  so.resume_existing = true;
  auto sink = b.open_sink(this->p("d.bin"), so);
  ASSERT_TRUE(sink.ok());
  EXPECT_TRUE((*sink)->resumed()) << "the destroyed sink's partial is gone";
  std::vector<std::byte> first(1 << 20);
  auto n = (*sink)->read_back(Offset{0}, first);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, first.size());
  EXPECT_TRUE(std::equal(first.begin(), first.end(), data.begin())) << "partial content kept";
  ASSERT_TRUE((*sink)->write_at(Offset{1 << 20}, {data.data() + (1 << 20), 1 << 20}).ok());
  ASSERT_TRUE((*sink)->commit().ok());
  EXPECT_TRUE(this->get("d.bin") == data);
  EXPECT_EQ(this->names(""), std::set<std::string>{"d.bin"});
}

// The partial survives the client: a suspended sink is resumed through a new
// backend instance (for xfer: a new client, gRPC channel and data session).
TYPED_TEST(BackendConformance, ResumeThroughANewBackendInstance) {
  auto data = pattern(3 * 1024 * 1024 + 3, 51);
  constexpr std::size_t kFirst = 1'500'000;
  SinkOptions so;
  so.size = data.size();
  so.resume_name = "job-across";
  if (!this->backend_->capabilities().resume) {
    this->expect_plain_sink_discarded("x.bin", data, kFirst, /*suspend=*/true);
    this->backend_ = this->traits_.make();  // a new client finds no partial either
    ASSERT_TRUE(this->backend_ != nullptr);
    this->expect_resume_refused("x.bin", so);
    return;
  }
  if (this->by_parts()) {
    this->resume_by_parts("x.bin", 51, "job-across", TestFixture::Leave::kToANewClient);
    return;
  }
  {
    auto sink = this->backend_->open_sink(this->p("x.bin"), so);
    ASSERT_TRUE(sink.ok());
    EXPECT_FALSE((*sink)->resumed());
    ASSERT_TRUE((*sink)->write_at(Offset{0}, {data.data(), kFirst}).ok());
    ASSERT_TRUE((*sink)->suspend().ok());
  }
  this->backend_.reset();  // the first client goes away
  this->backend_ = this->traits_.make();
  ASSERT_TRUE(this->backend_ != nullptr);
  EXPECT_FALSE(this->backend_->stat(this->p("x.bin")).ok()) << "a partial is not published";
  so.resume_existing = true;
  auto sink = this->backend_->open_sink(this->p("x.bin"), so);
  ASSERT_TRUE(sink.ok()) << sink.error().message();
  EXPECT_TRUE((*sink)->resumed());
  std::vector<std::byte> first(kFirst);
  auto n = (*sink)->read_back(Offset{0}, first);
  ASSERT_TRUE(n.ok()) << n.error().message();
  EXPECT_EQ(*n, kFirst);
  EXPECT_TRUE(std::equal(first.begin(), first.end(), data.begin())) << "partial content kept";
  ASSERT_TRUE((*sink)->write_at(Offset{kFirst}, {data.data() + kFirst, data.size() - kFirst}).ok());
  ASSERT_TRUE((*sink)->commit().ok());
  EXPECT_TRUE(this->get("x.bin") == data);
  EXPECT_EQ(this->names(""), std::set<std::string>{"x.bin"}) << "no partial left after commit";
}

TYPED_TEST(BackendConformance, IdentityFieldsWhenKnown) {
  this->put("i1", pattern(10, 60));
  this->put("i2", pattern(10, 61));
  auto a = this->backend_->stat(this->p("i1"));
  auto a2 = this->backend_->stat(this->p("i1"));
  auto c = this->backend_->stat(this->p("i2"));
  ASSERT_TRUE(a.ok() && a2.ok() && c.ok());
  if (TypeParam::kHasIdentity) {
    EXPECT_NE(a->inode, 0u);
    EXPECT_EQ(a->device, a2->device);
    EXPECT_EQ(a->inode, a2->inode);
    EXPECT_NE(a->inode, c->inode);
  } else {
    // Unknown identity must read as 0 so loop/self-copy checks skip it.
    EXPECT_EQ(a->device, 0u);
    EXPECT_EQ(a->inode, 0u);
  }
}

// ---- sealed sessions -----------------------------------------------------------
//
// A canary for the typed xfer_sealed runs: a sealed handshake that goes wrong
// can leave every call waiting for the client's 120 s reply timeout, so this
// runs a few round trips under a watchdog that stops the server after 10 s
// and says plainly what broke.
TEST(XferSealedConformance, FilesRoundTripOverASealedSession) {
  XferSealedTraits traits;
  std::unique_ptr<Backend> backend = traits.make();
  ASSERT_TRUE(backend != nullptr);
  auto work = std::async(std::launch::async, [&]() -> std::string {
    // 0 bytes and 100 KiB: whole-file frames and inline reads; 3 MiB + 1:
    // open/write/commit and streamed reads.
    for (std::size_t size :
         {std::size_t{0}, std::size_t{100 * 1024}, std::size_t{(3u << 20) + 1}}) {
      const std::string path = "/sealed" + std::to_string(size);
      auto data = pattern(size, 70 + size);
      SinkOptions so;
      so.size = size;
      auto sink = backend->open_sink(path, so);
      if (!sink) return path + ": open_sink: " + sink.error().message();
      if (Status w = (*sink)->write_at(Offset{0}, data); !w.ok())
        return path + ": write: " + w.error().message();
      if (Status c = (*sink)->commit(); !c.ok()) return path + ": commit: " + c.error().message();
      auto src = backend->open_source(path);
      if (!src) return path + ": open_source: " + src.error().message();
      std::vector<std::byte> back(size);
      auto n = (*src)->read_at(Offset{0}, back);
      if (!n) return path + ": read: " + n.error().message();
      back.resize(*n);
      if (back != data) return path + ": read back differs";
    }
    return "";
  });
  if (work.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "no answer in 10 s over a sealed session; stopping the server";
    traits.server->shutdown(0);
  }
  EXPECT_EQ(work.get(), "");
  backend.reset();
}

}  // namespace
}  // namespace xfer
