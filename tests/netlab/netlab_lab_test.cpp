// The network lab, on real namespaces (needs root): its accuracy promises
// (ping RTT against the configured delay, iperf3 UDP loss against the
// configured rate, one TCP flow on a clean 1 Gbit/s link), changes while
// traffic runs (rate, cut and restore), teardown that leaves nothing, and
// xfer across emulated links: a lossy link and a link cut for 5 s.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.hpp"
#include "wire_relay.hpp"
#include "xferd_harness.hpp"

namespace xfer_it {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

std::string netlab_bin() {
  const char* p = std::getenv("NETLAB_BIN");
  return p != nullptr ? p : NETLAB_BIN_BUILT;
}

// A lab of this test: up in the constructor (the test fails if it cannot
// come up), down in the destructor. Its name is unique per process.
class Lab {
 public:
  Lab(const fs::path& dir, const std::string& topology, const std::string& ttl = "300s") {
    static int count = 0;
    name_ = "t" + std::to_string(::getpid() % 100000) + "x" + std::to_string(count++);
    const fs::path file = dir / (name_ + ".toml");
    std::ofstream(file) << topology;
    up_ = run({netlab_bin(), "up", file.string(), "--name", name_, "--ttl", ttl}, 60s);
  }
  ~Lab() {
    if (up_.exit_code == 0) {
      auto r = run({netlab_bin(), "down", name_}, 60s);
      EXPECT_EQ(r.exit_code, 0) << r.describe();
    }
  }
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  const RunResult& up_result() const { return up_; }
  const std::string& name() const { return name_; }

  std::vector<std::string> in(const std::string& host, std::vector<std::string> argv) const {
    std::vector<std::string> full = {netlab_bin(), "exec", "--lab", name_, host, "--"};
    full.insert(full.end(), argv.begin(), argv.end());
    return full;
  }
  RunResult exec(const std::string& host, std::vector<std::string> argv,
                 std::chrono::seconds timeout = 60s) const {
    return run(in(host, std::move(argv)), timeout);
  }
  RunResult set(std::vector<std::string> settings) const {
    std::vector<std::string> argv = {netlab_bin(), "set", "--lab", name_};
    argv.insert(argv.end(), settings.begin(), settings.end());
    return run(argv, 30s);
  }
  Json stats() const {
    auto r = run({netlab_bin(), "stats", "--lab", name_}, 30s);
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    return Json::parse(r.out, nullptr, false);
  }

  // iperf3 against a one-shot server in `server` bound to `address`; the
  // client's JSON report. The server is started as a daemon and may need a
  // moment: the client tries again while the connection is refused.
  Json iperf(const std::string& server, const std::string& address, const std::string& client,
             std::vector<std::string> args) const {
    auto s = exec(server, {"iperf3", "-s", "-1", "-D", "-B", address});
    EXPECT_EQ(s.exit_code, 0) << s.describe();
    std::vector<std::string> argv = {"iperf3", "-c", address, "-J"};
    argv.insert(argv.end(), args.begin(), args.end());
    for (int attempt = 0; attempt < 30; ++attempt) {
      auto r = exec(client, argv, 60s);
      Json j = Json::parse(r.out, nullptr, false);
      if (r.exit_code == 0 && j.is_object()) return j;
      if (r.out.find("Connection refused") == std::string::npos) {
        ADD_FAILURE() << r.describe();
        return {};
      }
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "iperf3 server never answered";
    return {};
  }

 private:
  std::string name_;
  RunResult up_;
};

std::string two_hosts(const std::string& link_settings) {
  return "[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = [\"a\", \"b\"]\n" + link_settings;
}

// "rtt min/avg/max/mdev = 20.298/20.530/20.669/0.072 ms" → avg.
double ping_avg_ms(const RunResult& r) {
  const auto pos = r.out.find("rtt min/avg/max/mdev = ");
  if (pos == std::string::npos) return -1;
  const auto first = r.out.find('/', pos + 23);
  return std::atof(r.out.c_str() + first + 1);
}

class NetlabTest : public XferTest {
 protected:
  void SetUp() override {
    // The harness reads these from the environment; the build's binaries
    // unless the caller named others.
    ::setenv("XFER_BIN", XFER_BIN_BUILT, 0);
    ::setenv("XFERD_BIN", XFERD_BIN_BUILT, 0);
    XferTest::SetUp();
    if (::geteuid() != 0) GTEST_SKIP() << "the lab needs root (network namespaces)";
  }
};

#define ASSERT_LAB_UP(lab) ASSERT_EQ((lab).up_result().exit_code, 0) << (lab).up_result().describe()

TEST_F(NetlabTest, PingRttIsTheConfiguredDelay) {
  Lab lab(tmp(), two_hosts("rate = \"1gbit\"\ndelay = \"10ms\"\n"));
  ASSERT_LAB_UP(lab);
  EXPECT_NE(lab.up_result().out.find("10.99.0.2"), std::string::npos) << lab.up_result().out;
  (void)lab.exec("a", {"ping", "-c", "1", "-W", "2", "10.99.0.2"});  // ARP first
  for (int delay_ms : {10, 50}) {
    if (delay_ms != 10)
      ASSERT_EQ(lab.set({"ab", "delay=" + std::to_string(delay_ms) + "ms"}).exit_code, 0);
    auto r = lab.exec("a", {"ping", "-q", "-c", "20", "-i", "0.05", "10.99.0.2"});
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    const double rtt = 2.0 * delay_ms;
    const double avg = ping_avg_ms(r);
    std::printf("netlab: delay %d ms one way: ping RTT %.3f ms (configured %.0f)\n", delay_ms, avg,
                rtt);
    EXPECT_NEAR(avg, rtt, std::max(1.0, 0.02 * rtt)) << r.out;
  }
}

TEST_F(NetlabTest, UdpLossIsTheConfiguredRate) {
  Lab lab(tmp(),
          two_hosts("rate = \"1gbit\"\ndelay = \"2ms\"\n[links.ab.from.a]\nloss = \"2%\"\n"));
  ASSERT_LAB_UP(lab);
  Json j = lab.iperf("b", "10.99.0.2", "a", {"-u", "-b", "50M", "-t", "3"});
  ASSERT_TRUE(j.contains("end")) << j.dump();
  const double lost = j["end"]["sum"]["lost_percent"].get<double>();
  std::printf("netlab: UDP loss %.3f%% (configured 2%%)\n", lost);
  EXPECT_NEAR(lost, 2.0, 0.4);
  // The emulator counted the same.
  Json s = lab.stats();
  const Json& d = s["links"][0]["directions"][0];
  ASSERT_EQ(d["from"], "a");
  const double counted = 100.0 * d["lost"].get<double>() / d["frames_in"].get<double>();
  EXPECT_NEAR(counted, 2.0, 0.4) << d.dump();
  EXPECT_EQ(s["links"][0]["directions"][1]["lost"], 0) << "only frames a sends are lost";
}

TEST_F(NetlabTest, OneTcpFlowFillsACleanGigabitLink) {
  Lab lab(tmp(), two_hosts("rate = \"1gbit\"\ndelay = \"0.5ms\"\n"));
  ASSERT_LAB_UP(lab);
  const double cpu0 = lab.stats()["cpu_seconds"].get<double>();
  Json j = lab.iperf("b", "10.99.0.2", "a", {"-t", "4"});
  ASSERT_TRUE(j.contains("end")) << j.dump();
  const double bps = j["end"]["sum_received"]["bits_per_second"].get<double>();
  const double bytes = j["end"]["sum_received"]["bytes"].get<double>();
  const double cpu = lab.stats()["cpu_seconds"].get<double>() - cpu0;
  std::printf(
      "netlab: one TCP flow on 1 Gbit/s, 1 ms RTT: %.0f Mbit/s; emulator CPU %.2f s per Gbit\n",
      bps / 1e6, cpu / (bytes * 8 / 1e9));
  RecordProperty("mbit_per_second", static_cast<int>(bps / 1e6));
  // What this asserts: the emulator is not a gross bottleneck and the link
  // enforces its rate. The emulator is one user-space thread; on the
  // 2-core machine with the rest of the suite running beside it, one flow
  // measured 876 Mbit/s (CI, stop 21) against about 940 alone, so the floor
  // leaves room for a busy neighbour. How close it comes to the line rate is
  // a figure for bench/ (netlab rows), not a pass/fail here.
  EXPECT_GE(bps, 0.75e9);
  EXPECT_LE(bps, 1.0e9) << "more than the configured rate got through";
}

TEST_F(NetlabTest, LinksChangeWhileTrafficRuns) {
  Lab lab(tmp(), two_hosts("rate = \"1gbit\"\ndelay = \"5ms\"\n"));
  ASSERT_LAB_UP(lab);
  ASSERT_EQ(lab.set({"ab", "rate=100mbit"}).exit_code, 0);
  Json j = lab.iperf("b", "10.99.0.2", "a", {"-t", "3"});
  ASSERT_TRUE(j.contains("end")) << j.dump();
  const double bps = j["end"]["sum_received"]["bits_per_second"].get<double>();
  std::printf("netlab: one TCP flow on a link set to 100 Mbit/s: %.1f Mbit/s\n", bps / 1e6);
  EXPECT_GT(bps, 80e6);
  // Goodput is about 95% of the frames' rate; iperf3's receiver may time a
  // little less than the whole test, so allow a few percent above.
  EXPECT_LT(bps, 103e6);

  ASSERT_EQ(lab.set({"ab", "up=0"}).exit_code, 0);
  auto cut = lab.exec("a", {"ping", "-c", "2", "-W", "1", "10.99.0.2"});
  EXPECT_EQ(cut.exit_code, 1) << cut.describe();
  ASSERT_EQ(lab.set({"ab", "up=1"}).exit_code, 0);
  auto back = lab.exec("a", {"ping", "-c", "2", "-W", "2", "10.99.0.2"});
  EXPECT_EQ(back.exit_code, 0) << back.describe();

  // A bad setting changes nothing and says why.
  auto bad = lab.set({"ab", "rate=200mbit", "delay=5parsecs"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("parse time"), std::string::npos) << bad.describe();
  auto unknown = lab.set({"nolink", "rate=1gbit"});
  EXPECT_NE(unknown.err.find("no link 'nolink'"), std::string::npos) << unknown.describe();
  EXPECT_EQ(lab.stats()["links"][0]["directions"][0]["params"]["rate_bps"], 100'000'000);
  // exec passes the exit status through.
  EXPECT_EQ(lab.exec("b", {"sh", "-c", "exit 7"}).exit_code, 7);
}

TEST_F(NetlabTest, DownLeavesNothingBehindAndTtlBoundsALab) {
  std::string name;
  pid_t sleeper = 0;
  {
    Lab lab(tmp(), two_hosts("delay = \"1ms\"\n"));
    ASSERT_LAB_UP(lab);
    name = lab.name();
    auto r = lab.exec("a", {"sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"});
    sleeper = static_cast<pid_t>(std::atoi(r.out.c_str()));
    ASSERT_GT(sleeper, 0) << r.describe();
    ASSERT_EQ(::kill(sleeper, 0), 0);
  }
  EXPECT_NE(::kill(sleeper, 0), 0) << "a process left in the lab is stopped at down";
  for (const char* host : {"a", "b", "sw"}) {
    EXPECT_FALSE(fs::exists("/run/netns/xnl-" + name + "-" + host)) << host;
  }
  EXPECT_FALSE(fs::exists("/run/netlab/" + name));

  Lab brief(tmp(), two_hosts(""), "2s");
  ASSERT_LAB_UP(brief);
  const auto until = std::chrono::steady_clock::now() + 20s;
  // The namespaces go first, the state folder last.
  while ((fs::exists("/run/netns/xnl-" + brief.name() + "-a") ||
          fs::exists("/run/netlab/" + brief.name())) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_FALSE(fs::exists("/run/netns/xnl-" + brief.name() + "-a")) << "past its ttl a lab goes";
  EXPECT_FALSE(fs::exists("/run/netlab/" + brief.name()));
}

TEST_F(NetlabTest, ABadTopologyChangesNothing) {
  const fs::path file = tmp() / "bad.toml";
  std::ofstream(file) << two_hosts("delay = \"5 parsecs\"\n");
  auto r = run(
      {netlab_bin(), "up", file.string(), "--name", "tbad" + std::to_string(::getpid() % 100000)});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("links.ab.delay"), std::string::npos) << r.describe();
  EXPECT_FALSE(fs::exists("/run/netns/xnl-tbad" + std::to_string(::getpid() % 100000) + "-a"));
}

// ------------------------------------------------------------ xfer on the lab

class XferOnLab : public NetlabTest {
 protected:
  // A two-host lab with `link` settings, xferd inside host b on b's address,
  // and a 64 MiB file of `seed` to send from a.
  void start(const std::string& link, std::uint64_t seed) {
    start_topology(two_hosts(link), {}, seed, 64ull << 20);
  }
  // A lab of `topology` (hosts a and b), xferd inside b on 10.99.0.2 and
  // `more_data_hosts`, and a file of `bytes` to send from a.
  void start_topology(const std::string& topology, std::vector<std::string> more_data_hosts,
                      std::uint64_t seed, std::uint64_t bytes) {
    lab_ = std::make_unique<Lab>(tmp(), topology);
    ASSERT_LAB_UP(*lab_);
    XferdOptions opt;
    opt.host = "10.99.0.2";
    opt.more_data_hosts = std::move(more_data_hosts);
    opt.command_prefix = {netlab_bin(), "exec", "--lab", lab_->name(), "b", "--"};
    srv_ = std::make_unique<XferdProcess>(tmp() / "srv", opt);
    auto st = srv_->start(30s);
    ASSERT_TRUE(st) << st.message();
    file_ = tmp() / "f.bin";
    write_random_file(file_, seed, bytes);
  }
  // `xfer cp` of the file to b, run inside a.
  std::vector<std::string> copy_command(std::vector<std::string> flags = {}) const {
    std::vector<std::string> cmd = {xfer_bin(), "--token", srv_->token("/", true), "cp"};
    cmd.insert(cmd.end(), flags.begin(), flags.end());
    cmd.insert(cmd.end(), {file_.string(), srv_->url("/f.bin")});
    return lab_->in("a", cmd);
  }
  void TearDown() override {
    srv_.reset();  // the server first: it runs inside the lab
    lab_.reset();
    NetlabTest::TearDown();
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<XferdProcess> srv_;
  fs::path file_;
};

TEST_F(XferOnLab, ALossyLinkCarriesEveryByte) {
  ASSERT_NO_FATAL_FAILURE(start("rate = \"50mbit\"\ndelay = \"10ms\"\nloss = \"1%\"\n", 61));
  auto r = run(copy_command(), 240s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(files_equal(file_, srv_->root() / "f.bin"));
  const Json s = lab_->stats();
  EXPECT_GT(s["links"][0]["directions"][0]["lost"].get<int>(), 100) << "the link did lose frames";
  std::printf("netlab: 64 MiB over 50 Mbit/s, 20 ms, 1%% loss: %.1f s\n", r.seconds);
}

// Waits (polling the emulator, at most `deadline`) until direction `dir`
// of link `link` has delivered `bytes`; returns what it had then.
std::uint64_t wait_delivered(const Lab& lab, int link, int dir, std::uint64_t bytes,
                             std::chrono::seconds deadline = 60s) {
  std::uint64_t got = 0;
  xfer_it::wait_until(
      [&] {
        got = lab.stats()["links"][link]["directions"][dir]["bytes_delivered"].get<std::uint64_t>();
        return got >= bytes;
      },
      deadline);
  return got;
}

// The link goes down for five seconds once 8 MiB of the 64 have crossed
// it (the scenario's five seconds are the cut's length, not a wait for
// anything), and comes back: the copy waits and completes.
TEST_F(XferOnLab, ALinkCutForFiveSecondsDelaysButDoesNotBreakACopy) {
  ASSERT_NO_FATAL_FAILURE(start("rate = \"100mbit\"\ndelay = \"10ms\"\n", 62));
  const Lab& lab = *lab_;
  std::thread cutter;
  std::uint64_t at_cut = 0;
  auto r = run(copy_command(), 240s, [&](pid_t) {
    cutter = std::thread([&] {
      at_cut = wait_delivered(lab, 0, 0, 8u << 20);
      EXPECT_EQ(lab.set({"ab", "up=0"}).exit_code, 0);
      std::this_thread::sleep_for(5s);
      EXPECT_EQ(lab.set({"ab", "up=1"}).exit_code, 0);
    });
  });
  cutter.join();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(files_equal(file_, srv_->root() / "f.bin"));
  EXPECT_GE(at_cut, 8u << 20) << "the copy never got going";
  EXPECT_LT(at_cut, 64u << 20) << "the cut came after the copy";
  EXPECT_GT(lab.stats()["links"][0]["directions"][0]["cut"].get<int>(), 0)
      << "the cut hit the copy's traffic";
}

// The summary line of `xfer --json` output.
Json summary_of(const std::string& out) {
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::size_t eol = std::min(out.find('\n', pos), out.size());
    const std::string line = out.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.find("\"event\":\"summary\"") == std::string::npos) continue;
    return Json::parse(line, nullptr, false);
  }
  return Json();
}

// Auto streams grow while each added connection raises the goodput: with
// Reno over 1% loss one connection carries a few Mbit/s of a 100 Mbit/s
// link, so the controller climbs from 4 towards --streams-max (8 here) and
// never past it; the summary shows its decisions and what limited the copy.
TEST_F(XferOnLab, AutoStreamsGrowWhileTheyPayAndStayWithinTheMaximum) {
  ASSERT_NO_FATAL_FAILURE(
      start("rate = \"100mbit\"\ndelay = \"10ms\"\nloss = \"1%\"\nqueue = \"1mb\"\n", 63));
  auto r = run(copy_command({"--json", "--cc", "reno", "--streams-max", "8"}), 240s);
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(files_equal(file_, srv_->root() / "f.bin"));
  const Json sum = summary_of(r.out);
  ASSERT_TRUE(sum.is_object()) << r.out;
  ASSERT_TRUE(sum["controller"].is_array()) << sum.dump();
  // The stream decisions (the engine's "chunk size" ones are among them).
  std::vector<Json> events;
  bool chunk_event = false;
  for (const auto& e : sum["controller"]) {
    if (e["action"] == "chunk size") {
      chunk_event = true;
      // 64 MiB lays out in 8 MiB chunks; 20 ms caps them at 50 MiB (a
      // second of 1 MiB calls, one per round trip), which leaves 8.
      EXPECT_EQ(e["chunk_size"].get<std::uint64_t>(), 8u << 20) << e.dump();
      EXPECT_GE(e["rtt_ms"].get<double>(), 19.0) << e.dump();
    } else {
      events.push_back(e);
    }
  }
  EXPECT_TRUE(chunk_event) << sum["controller"].dump();
  ASSERT_FALSE(events.empty()) << sum.dump();
  EXPECT_EQ(events[0]["action"], "start");
  EXPECT_EQ(events[0]["streams"], 4);
  unsigned most = 0;
  for (const auto& e : events) most = std::max(most, e["streams"].get<unsigned>());
  EXPECT_GE(most, 6u) << sum["controller"].dump();
  EXPECT_LE(most, 8u) << sum["controller"].dump();
  EXPECT_NE(sum["limited_by"].get<std::string>(), "") << sum.dump();
  std::printf("%s\n", sum["controller"].dump().c_str());
  std::printf("netlab: 64 MiB, Reno, 100 Mbit/s 20 ms 1%% loss: %.1f s, up to %u streams; %s\n",
              r.seconds, most, sum["limited_by"].get<std::string>().c_str());
}

// Two NICs on each side (links ab and ab2, each its own subnet); xferd in b
// listens on both and advertises both, so the client's connections are
// dealt over the two paths.
class XferOnTwoPaths : public XferOnLab {
 protected:
  void start(const std::string& ab, const std::string& ab2, std::uint64_t seed,
             std::uint64_t bytes) {
    ASSERT_NO_FATAL_FAILURE(
        start_topology("[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = [\"a\", \"b\"]\n" + ab +
                           "[links.ab2]\nhosts = [\"a\", \"b\"]\n" + ab2,
                       {"10.99.1.2"}, seed, bytes));
    ASSERT_EQ(srv_->data_addresses().size(), 2u);
  }
  // Copies the file with `flags` and checks the bytes at the server.
  void copy_ok(const std::vector<std::string>& flags, std::chrono::seconds timeout, RunResult& r) {
    r = run(copy_command(flags), timeout);
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(files_equal(file_, srv_->root() / "f.bin"));
  }
  // Bytes a→b that link `i` delivered.
  static std::uint64_t carried(const Json& stats, int i) {
    return stats["links"][i]["directions"][0]["bytes_delivered"].get<std::uint64_t>();
  }
};

// One of two paths dies for good once it has carried 8 MiB of the copy: its
// connections are given up on (no TCP progress while the other path
// moves) and their chunks go over the other path; the copy completes, and
// well before the two minutes a stalled call would otherwise wait.
TEST_F(XferOnTwoPaths, OnePathCutTheCopyCompletesOnTheOther) {
  ASSERT_NO_FATAL_FAILURE(start("rate = \"100mbit\"\ndelay = \"10ms\"\n",
                                "rate = \"100mbit\"\ndelay = \"10ms\"\n", 71, 96ull << 20));
  const Lab& lab = *lab_;
  std::thread cutter;
  auto r = run(copy_command({"--json"}), 90s, [&](pid_t) {
    cutter = std::thread([&] {
      wait_delivered(lab, 1, 0, 8u << 20);  // the second path carries the copy
      EXPECT_EQ(lab.set({"ab2", "up=0"}).exit_code, 0);
    });
  });
  cutter.join();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(files_equal(file_, srv_->root() / "f.bin"));
  const Json s = lab.stats();
  EXPECT_GT(carried(s, 1), 4ull << 20) << "the second path carried data before its cut";
  EXPECT_GT(s["links"][1]["directions"][0]["cut"].get<int>(), 0) << "the cut hit traffic";
  EXPECT_GT(carried(s, 0), 48ull << 20);
  EXPECT_LT(r.seconds, 45.0) << "stalled calls waited for their timeout";
  // The summary shows the streams of both paths.
  EXPECT_NE(r.out.find("\"path\":\"10.99.1.2:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"path\":\"10.99.0.2:"), std::string::npos) << r.out;
  std::printf("netlab: 96 MiB over 2 x 100 Mbit/s, one path cut after 8 MiB: %.1f s\n", r.seconds);
}

// The same cut under a download: the client cannot see the server's
// unacknowledged data, but it sees a reply stop half-way (the watchdog
// closes such a connection) and reads not yet begun move to the other
// path's idle connections; the copy completes long before the two
// minutes a read would wait for its reply.
TEST_F(XferOnTwoPaths, OnePathCutUnderADownloadTheCopyCompletesOnTheOther) {
  ASSERT_NO_FATAL_FAILURE(start("rate = \"100mbit\"\ndelay = \"10ms\"\n",
                                "rate = \"100mbit\"\ndelay = \"10ms\"\n", 74, 96ull << 20));
  fs::copy_file(file_, srv_->root() / "f.bin");
  const fs::path got = tmp() / "down.bin";
  const Lab& lab = *lab_;
  std::thread cutter;
  auto r = run(lab.in("a", {xfer_bin(), "--token", srv_->token("/", false), "cp", "--json",
                            srv_->url("/f.bin"), got.string()}),
               110s, [&](pid_t) {
                 cutter = std::thread([&] {
                   wait_delivered(lab, 1, 1, 8u << 20);  // b to a: the download
                   EXPECT_EQ(lab.set({"ab2", "up=0"}).exit_code, 0);
                 });
               });
  cutter.join();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(files_equal(file_, got));
  const Json s = lab.stats();
  EXPECT_GT(s["links"][1]["directions"][1]["cut"].get<int>(), 0) << "the cut hit traffic";
  EXPECT_LT(r.seconds, 60.0) << "reads on the dead path waited for their timeout";
  std::printf("netlab: 96 MiB download over 2 x 100 Mbit/s, one path cut after 8 MiB: %.1f s\n",
              r.seconds);
}

// Paths of unequal rate get calls in proportion to what they move (the
// client joins the shortest queue), not in turn: over 100 and 25 Mbit/s
// the fast path carries about four fifths.
TEST_F(XferOnTwoPaths, CallsFollowEachPathsGoodput) {
  ASSERT_NO_FATAL_FAILURE(start("rate = \"100mbit\"\ndelay = \"10ms\"\n",
                                "rate = \"25mbit\"\ndelay = \"10ms\"\n", 72, 64ull << 20));
  RunResult r;
  ASSERT_NO_FATAL_FAILURE(copy_ok({"--json"}, 90s, r));
  const Json s = lab_->stats();
  const double fast = static_cast<double>(carried(s, 0));
  const double slow = static_cast<double>(carried(s, 1));
  const double share = fast / (fast + slow);
  EXPECT_GT(slow, 2.0 * (1 << 20)) << "the slow path was used";
  EXPECT_GT(share, 0.65) << "calls dealt in turn would give the fast path half";
  std::printf("netlab: 64 MiB over 100 + 25 Mbit/s: %.1f s, fast path's share %.2f\n", r.seconds,
              share);
}

// A path fifty times slower than the other: a call queued on it waits
// seconds while the fast path runs out of work. Such calls move to an idle
// connection (after a second and four round trips), and the summary counts
// them; without that the copy would wait on the slow path's queue.
TEST_F(XferOnTwoPaths, CallsStuckOnASlowPathMoveToAnIdleConnection) {
  ASSERT_NO_FATAL_FAILURE(start("rate = \"100mbit\"\ndelay = \"10ms\"\n",
                                "rate = \"2mbit\"\ndelay = \"10ms\"\n", 73, 32ull << 20));
  RunResult r;
  ASSERT_NO_FATAL_FAILURE(copy_ok({"--json"}, 120s, r));
  const Json sum = summary_of(r.out);
  ASSERT_TRUE(sum.is_object()) << r.out;
  unsigned moved = 0;
  for (const auto& e : sum["controller"]) {
    if (e["action"] == "moved") moved += e["moved"].get<unsigned>();
  }
  EXPECT_GT(moved, 0u) << sum["controller"].dump();
  const Json s = lab_->stats();
  std::printf(
      "netlab: 32 MiB over 100 + 2 Mbit/s: %.1f s, %u calls moved, slow path carried %.1f MiB\n",
      r.seconds, moved, static_cast<double>(carried(s, 1)) / (1 << 20));
}

// ------------------------------------------------------------ sealing on the wire

// What crosses the wire between a client in lab host a and xferd in b,
// recorded by a relay in a: the client reaches xferd at a's own address
// (10.99.0.1, not loopback, so "between hosts"), the relay forwards to b.
// xferd listens on the wildcard address, so the data address it advertises
// is "the host of your control channel": the relay's, which carries both.
// A file of one marker repeated shows whether data travelled in clear.
class SealingOnTheWire : public NetlabTest {
 protected:
  static constexpr std::string_view kMarker = "XFER-WIRE-MARKER-7b1d9e";

  void start(const std::string& policy) {
    lab_ = std::make_unique<Lab>(tmp(), two_hosts("rate = \"1gbit\"\n"));
    ASSERT_LAB_UP(*lab_);
    XferdOptions opt;
    opt.host = "0.0.0.0";
    opt.command_prefix = {netlab_bin(), "exec", "--lab", lab_->name(), "b", "--"};
    opt.extra_toml = "[data]\nencrypt = \"" + policy + "\"\n";
    srv_ = std::make_unique<XferdProcess>(tmp() / "srv", opt);
    auto st = srv_->start(30s);
    ASSERT_TRUE(st) << st.message();
    const int c = srv_->control_port();
    const int d = srv_->data_port();
    relay_ =
        std::make_unique<WireRelay>(std::vector<WireRelay::Route>{{"10.99.0.1", c, "10.99.0.2", c},
                                                                  {"10.99.0.1", d, "10.99.0.2", d}},
                                    "xnl-" + lab_->name() + "-a");
    ASSERT_TRUE(relay_->ready());
    url_ = "xfer://10.99.0.1:" + std::to_string(c);
    std::string text;
    while (text.size() < (4u << 20)) text += std::string(kMarker) + " ";
    file_ = tmp() / "marked.txt";
    write_file(file_, text);
    write_file(srv_->root() / "served.txt", text);
  }
  // `xfer cp` inside a, with `flags`, from src to dst.
  RunResult copy(std::vector<std::string> flags, const std::string& src, const std::string& dst) {
    std::vector<std::string> cmd = {xfer_bin(), "--token", srv_->token("/", true), "cp"};
    cmd.insert(cmd.end(), flags.begin(), flags.end());
    cmd.insert(cmd.end(), {src, dst});
    return lab_->exec("a", cmd, 120s);
  }
  // An upload and a download, both checked at the destination; whether
  // the marker was seen on the wire.
  void round_trip(std::vector<std::string> flags, bool* seen) {
    // Fresh destinations (an unchanged one would be skipped) and a fresh
    // record.
    fs::remove(srv_->root() / "up.txt");
    fs::remove(tmp() / "down.txt");
    relay_->clear();
    auto up = copy(flags, file_.string(), url_ + "/up.txt");
    ASSERT_EQ(up.exit_code, 0) << up.describe();
    EXPECT_TRUE(files_equal(file_, srv_->root() / "up.txt"));
    auto down = copy(flags, url_ + "/served.txt", (tmp() / "down.txt").string());
    ASSERT_EQ(down.exit_code, 0) << down.describe();
    EXPECT_TRUE(files_equal(srv_->root() / "served.txt", tmp() / "down.txt"));
    // Both files crossed the relay: it saw at least their bytes.
    EXPECT_GE(relay_->bytes(), 2 * lsize(file_)) << "the data did not pass the relay";
    EXPECT_GE(relay_->connections(), 3u);
    *seen = relay_->contains(kMarker);
    last_ = down;
  }
  void TearDown() override {
    relay_.reset();
    srv_.reset();
    lab_.reset();
    NetlabTest::TearDown();
  }

  std::unique_ptr<Lab> lab_;
  std::unique_ptr<XferdProcess> srv_;
  std::unique_ptr<WireRelay> relay_;
  std::string url_;
  fs::path file_;
  RunResult last_;
};

TEST_F(SealingOnTheWire, PlaintextWhenAskedSealedByDefaultAndWithEncrypt) {
  ASSERT_NO_FATAL_FAILURE(start("auto"));
  bool seen = false;
  ASSERT_NO_FATAL_FAILURE(round_trip({"--no-encrypt"}, &seen));
  EXPECT_TRUE(seen) << "--no-encrypt: the marker should be on the wire (the relay works)";
  ASSERT_NO_FATAL_FAILURE(round_trip({}, &seen));
  EXPECT_FALSE(seen) << "default between hosts must be sealed";
  ASSERT_NO_FATAL_FAILURE(round_trip({"--encrypt"}, &seen));
  EXPECT_FALSE(seen) << "--encrypt must seal";
}

TEST_F(SealingOnTheWire, AlwaysRefusesPlaintextAndSealsAutoClients) {
  ASSERT_NO_FATAL_FAILURE(start("always"));
  auto r = copy({"--no-encrypt"}, file_.string(), url_ + "/up.txt");
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("data.encrypt = always"), std::string::npos) << r.err;
  EXPECT_FALSE(lexists(srv_->root() / "up.txt"));
  EXPECT_TRUE(xfer_hidden_files(srv_->root()).empty());
  bool seen = true;
  ASSERT_NO_FATAL_FAILURE(round_trip({}, &seen));
  EXPECT_FALSE(seen);
}

TEST_F(SealingOnTheWire, NeverRefusesEncryptAndTellsAutoClientsItIsPlaintext) {
  ASSERT_NO_FATAL_FAILURE(start("never"));
  auto r = copy({"--encrypt"}, file_.string(), url_ + "/up.txt");
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  EXPECT_NE(r.err.find("data.encrypt = never"), std::string::npos) << r.err;
  EXPECT_FALSE(lexists(srv_->root() / "up.txt"));
  EXPECT_FALSE(relay_->contains(kMarker));
  bool seen = false;
  ASSERT_NO_FATAL_FAILURE(round_trip({}, &seen));
  EXPECT_TRUE(seen) << "a never server gets plaintext";
  EXPECT_NE(last_.err.find("plaintext"), std::string::npos) << last_.err;
}

}  // namespace
}  // namespace xfer_it
