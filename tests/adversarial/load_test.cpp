// The load test of the hardening issue: 300 idle, 100 slow-loris and 50
// busy honest clients at once against one xferd limited to 1024
// descriptors. Every honest client must complete; afterwards the server's
// descriptors, threads and memory return to their idle level. Bounded: the
// attackers stop by themselves after the honest clients are done.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "peer.hpp"
#include "xferd_harness.hpp"

namespace xfer_adv {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class Load : public xfer_it::XferTest {};

TEST_F(Load, IdleSlowAndBusyClientsUnderNofile1024) {
  ASSERT_FALSE(xfer_it::xferd_bin().empty()) << "XFERD_BIN is not set";
  ::unsetenv("XFER_TOKEN");
  xfer_it::XferdOptions o;
  o.rlimit_nofile = 1024;
  xfer_it::XferdProcess srv(tmp() / "srv", o);
  ASSERT_TRUE(srv.start());
  constexpr int kIdle = 300, kSlow = 100, kBusy = 50;
  // Honest clients' data, prepared before the attack.
  for (int i = 0; i < kBusy; ++i) {
    xfer_it::TreeSpec spec;
    spec.seed = 1000 + static_cast<std::uint64_t>(i);
    spec.files = 20;
    spec.dirs = 3;
    spec.max_depth = 2;
    spec.max_size = 64 << 10;
    xfer_it::generate_tree(tmp() / "src" / ("c" + std::to_string(i)), spec);
  }
  std::vector<std::string> toks;
  for (int i = 0; i < kBusy; ++i) {
    toks.push_back(srv.token("/", true, 3600, "user-" + std::to_string(i)));
  }
  const ProcFigures idle = settled_figures(srv.pid());

  // The attack: idle connections to both ports, and slow-loris handshakes
  // (one byte of the magic every second), from 127.0.0.2-127.0.0.101.
  std::vector<int> idle_fds;
  std::string control = srv.control_address();
  for (int i = 0; i < kIdle; ++i) {
    const std::string src = "127.0.0." + std::to_string(2 + i % 100);
    int fd = tcp_connect(i % 2 ? srv.data_address() : control, src);
    if (fd >= 0) idle_fds.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::thread loris([&] {
    std::vector<int> fds;
    for (int i = 0; i < kSlow; ++i) {
      int fd = tcp_connect(srv.data_address(), "127.0.0." + std::to_string(2 + i % 100));
      if (fd >= 0) fds.push_back(fd);
    }
    const std::string magic = "XFERDATA";
    for (std::size_t tick = 0; !stop.load() && tick < 120; ++tick) {
      for (int& fd : fds) {
        if (fd < 0) continue;
        const char c = magic[tick % magic.size()];
        if (::send(fd, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
          ::close(fd);  // the server cut it: open another, as an attacker would
          fd = tcp_connect(srv.data_address(), "127.0.0." + std::to_string(2 + tick % 100));
        }
      }
      std::this_thread::sleep_for(1s);
    }
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  });

  // Once the server has taken in the idle connections and the first round
  // of slow handshakes.
  const ProcFigures attacked = settled_figures(srv.pid());
  std::vector<xfer_it::RunResult> results(kBusy);
  std::vector<std::thread> clients;
  std::atomic<std::size_t> peak_fds{0}, peak_threads{0};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling.load()) {
      const ProcFigures f = proc_figures(srv.pid());
      if (f.fds > peak_fds.load()) peak_fds.store(f.fds);
      if (f.threads > peak_threads.load()) peak_threads.store(f.threads);
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto t0 = Clock::now();
  for (int i = 0; i < kBusy; ++i) {
    clients.emplace_back([&, i] {
      const std::string name = "c" + std::to_string(i);
      results[static_cast<std::size_t>(i)] =
          xfer_it::run_xfer({"--token", toks[static_cast<std::size_t>(i)], "transfer", "-r",
                             "--no-progress", (tmp() / "src" / name).string(), srv.url("/" + name)},
                            180s);
    });
  }
  for (auto& t : clients) t.join();
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  stop.store(true);
  loris.join();
  for (int fd : idle_fds) ::close(fd);
  sampling.store(false);
  sampler.join();

  for (int i = 0; i < kBusy; ++i) {
    const auto& r = results[static_cast<std::size_t>(i)];
    EXPECT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(xfer_it::compare_trees(tmp() / "src" / ("c" + std::to_string(i)),
                                       srv.root() / ("c" + std::to_string(i))));
  }
  EXPECT_LT(peak_fds.load(), 1024u);
  // Back to idle: connections reaped, threads joined, memory returned
  // (gRPC closes the idle control connections on its own schedule; the data
  // side within a watchdog tick).
  ProcFigures after{};
  for (int i = 0; i < 50; ++i) {
    after = proc_figures(srv.pid());
    if (after.fds <= idle.fds + 8 && after.threads <= idle.threads + 8 &&
        after.rss_kib <= idle.rss_kib + 16 * 1024) {
      break;
    }
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_LE(after.fds, idle.fds + 8);
  EXPECT_LE(after.threads, idle.threads + 8);
  EXPECT_LE(after.rss_kib, idle.rss_kib + 16 * 1024);
  // The documented bound: 4.5 MiB per data connection at most; this load
  // stays far below it.
  EXPECT_LT(after.hwm_kib, 300u * 1024);
  EXPECT_TRUE(srv.alive()) << srv.log();
  RecordProperty("honest_seconds", std::to_string(took));
  RecordProperty("idle_fds", static_cast<int>(idle.fds));
  RecordProperty("attacked_fds", static_cast<int>(attacked.fds));
  RecordProperty("peak_fds", static_cast<int>(peak_fds.load()));
  RecordProperty("peak_threads", static_cast<int>(peak_threads.load()));
  RecordProperty("after_fds", static_cast<int>(after.fds));
  RecordProperty("idle_rss_kib", static_cast<int>(idle.rss_kib));
  RecordProperty("peak_rss_kib", static_cast<int>(after.hwm_kib));
  RecordProperty("after_rss_kib", static_cast<int>(after.rss_kib));
  std::printf(
      "load: honest %.2f s; fds idle %zu attacked %zu peak %zu after %zu; threads idle %zu "
      "peak %zu after %zu; RSS idle %zu KiB peak %zu KiB after %zu KiB\n",
      took, idle.fds, attacked.fds, peak_fds.load(), after.fds, idle.threads, peak_threads.load(),
      after.threads, idle.rss_kib, after.hwm_kib, after.rss_kib);
}

}  // namespace
}  // namespace xfer_adv
