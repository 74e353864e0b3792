// The lab's link model and topology files, without namespaces: serialisation
// at the rate, drop-tail queue, random and Gilbert–Elliott loss rates over
// many frames, reordering, duplication, cuts, seeded repeatability; units in
// tc's spelling; topology errors that name what is wrong.

#include <gtest/gtest.h>

#include <cmath>

#include "model.hpp"
#include "topology.hpp"

namespace netlab {
namespace {

constexpr std::int64_t kMs = 1'000'000;

DirectionParams params(std::initializer_list<std::pair<const char*, const char*>> kv) {
  DirectionParams p;
  for (const auto& [k, v] : kv) {
    auto st = set_param(p, k, v);
    EXPECT_TRUE(st.ok()) << k << "=" << v << ": " << st.error().message();
  }
  return p;
}

TEST(NetlabModel, FramesLeaveAtTheLinkRateAfterTheDelay) {
  DirectionModel m(1);
  m.set(params({{"rate", "100mbit"}, {"delay", "10ms"}, {"queue", "1mb"}}));
  // 1500-byte frames last 120 µs at 100 Mbit/s; ten arriving together leave
  // one after the other.
  for (int i = 0; i < 10; ++i) {
    const Verdict v = m.admit(0, 1500);
    ASSERT_EQ(v.fate, Fate::kDeliver);
    EXPECT_EQ(v.deliver_at_ns, (i + 1) * 120'000 + 10 * kMs) << "frame " << i;
  }
  EXPECT_EQ(m.backlog_bytes(0), 15000u);
  EXPECT_EQ(m.backlog_bytes(600'000), 7500u);  // half of them serialised
  // A frame arriving after the queue drained waits for nothing.
  EXPECT_EQ(m.admit(5 * kMs, 1500).deliver_at_ns, 5 * kMs + 120'000 + 10 * kMs);
}

TEST(NetlabModel, AFullQueueDropsTheTail) {
  DirectionModel m(1);
  m.set(params({{"rate", "10mbit"}, {"queue", "15000b"}}));
  int delivered = 0;
  int dropped = 0;
  for (int i = 0; i < 20; ++i) {
    const Verdict v = m.admit(0, 1500);
    (v.fate == Fate::kDeliver ? delivered : dropped) += 1;
    if (v.fate != Fate::kDeliver) {
      EXPECT_EQ(v.fate, Fate::kQueueFull);
    }
  }
  EXPECT_EQ(delivered, 10);
  EXPECT_EQ(dropped, 10);
  EXPECT_EQ(m.counters().queue_full, 10u);
}

TEST(NetlabModel, DefaultQueueIsOneBandwidthDelayProduct) {
  const DirectionParams p = params({{"rate", "1gbit"}, {"delay", "25ms"}});
  EXPECT_EQ(p.effective_queue_bytes(), 6'250'000u);  // 1 Gbit/s × 50 ms
  EXPECT_EQ(params({{"rate", "1mbit"}}).effective_queue_bytes(), 65536u);
}

TEST(NetlabModel, RandomLossMatchesItsRate) {
  DirectionModel m(7);
  m.set(params({{"loss", "1%"}}));
  const int n = 1'000'000;
  for (int i = 0; i < n; ++i) (void)m.admit(i, 100);
  const double rate = static_cast<double>(m.counters().lost) / n;
  EXPECT_NEAR(rate, 0.01, 0.0005);
}

TEST(NetlabModel, GilbertElliottLossIsBurstyAndHasItsStationaryRate) {
  DirectionModel m(11);
  m.set(params({{"ge_p", "1%"}, {"ge_r", "25%"}, {"ge_loss_bad", "80%"}}));
  const int n = 2'000'000;
  int runs = 0;
  bool last = false;
  for (int i = 0; i < n; ++i) {
    const bool lost = m.admit(i, 100).fate == Fate::kLost;
    runs += lost && !last ? 1 : 0;
    last = lost;
  }
  // Stationary share of the bad state p / (p + r), times its loss.
  const double expected = 0.01 / (0.01 + 0.25) * 0.8;
  const double rate = static_cast<double>(m.counters().lost) / n;
  EXPECT_NEAR(rate, expected, expected * 0.05);
  // Losses come in bursts: the mean run is well above 1 (about 3 here).
  EXPECT_GT(static_cast<double>(m.counters().lost) / runs, 2.0);
}

TEST(NetlabModel, JitterKeepsOrderAndReorderHoldsFramesBack) {
  DirectionModel m(3);
  m.set(params({{"delay", "10ms"}, {"jitter", "2ms"}}));
  std::int64_t last = 0;
  std::int64_t lo = INT64_MAX;
  std::int64_t hi = 0;
  // Frames 5 ms apart show the spread; frames closer than the jitter are
  // held in order (a later frame never overtakes an earlier one).
  for (int i = 0; i < 10000; ++i) {
    const std::int64_t t = i % 2 == 0 ? i * 5 * kMs : i * 5 * kMs - 4 * kMs;
    const Verdict v = m.admit(t, 100);
    ASSERT_GE(v.deliver_at_ns, last);
    last = v.deliver_at_ns;
    if (i % 2 == 0) {
      lo = std::min(lo, v.deliver_at_ns - t);
      hi = std::max(hi, v.deliver_at_ns - t);
    }
  }
  EXPECT_LT(lo, 9 * kMs);  // spread over ±2 ms
  EXPECT_GT(hi, 11 * kMs);
  EXPECT_LE(hi, 12 * kMs + 100'000);

  DirectionModel r(5);
  r.set(params({{"delay", "5ms"}, {"reorder", "10%"}, {"reorder_gap", "3ms"}}));
  int held = 0;
  for (int i = 0; i < 10000; ++i) {
    const Verdict v = r.admit(i * 1000, 100);
    if (!v.in_order) {
      ++held;
      EXPECT_EQ(v.deliver_at_ns, i * 1000 + 8 * kMs);
    }
  }
  EXPECT_NEAR(held, 1000, 120);
}

TEST(NetlabModel, DuplicatesAndCuts) {
  DirectionModel m(9);
  m.set(params({{"duplicate", "5%"}}));
  int dups = 0;
  for (int i = 0; i < 100000; ++i) dups += m.admit(i, 100).duplicate ? 1 : 0;
  EXPECT_NEAR(dups, 5000, 400);
  m.set(params({{"up", "0"}}));
  EXPECT_EQ(m.admit(200000, 100).fate, Fate::kCut);
  EXPECT_EQ(m.counters().cut, 1u);
}

TEST(NetlabModel, TheSameSeedGivesTheSameRun) {
  auto run = [](std::uint64_t seed) {
    DirectionModel m(seed);
    m.set(params({{"loss", "3%"}, {"jitter", "1ms"}, {"delay", "5ms"}, {"reorder", "1%"}}));
    std::vector<std::int64_t> out;
    for (int i = 0; i < 5000; ++i) {
      const Verdict v = m.admit(i * 10000, 1000);
      out.push_back(v.fate == Fate::kDeliver ? v.deliver_at_ns : -1);
    }
    return out;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(NetlabModel, UnitsAreTcs) {
  EXPECT_EQ(*parse_rate("1gbit"), 1'000'000'000u);
  EXPECT_EQ(*parse_rate("2.5mbit"), 2'500'000u);
  EXPECT_EQ(*parse_rate("1mbps"), 8'000'000u);  // bytes per second, as tc
  EXPECT_EQ(*parse_time("25ms"), 25 * kMs);
  EXPECT_EQ(*parse_time("300us"), 300'000);
  EXPECT_EQ(*parse_time("1.5s"), 1'500'000'000);
  EXPECT_EQ(*parse_time("10min"), std::int64_t{600} * 1'000'000'000);
  EXPECT_EQ(*parse_bytes("1mb"), 1048576u);
  EXPECT_EQ(*parse_bytes("64kb"), 65536u);
  EXPECT_DOUBLE_EQ(*parse_probability("0.1%"), 0.001);
  EXPECT_DOUBLE_EQ(*parse_probability("0.25"), 0.25);
  for (const char* bad : {"", "fast", "-1mbit", "1zbit", "nan"}) {
    EXPECT_FALSE(parse_rate(bad).ok()) << bad;
  }
  EXPECT_FALSE(parse_probability("150%").ok());
  EXPECT_FALSE(parse_time("2 parsecs").ok());
  DirectionParams p;
  auto st = set_param(p, "latency", "5ms");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("unknown link setting"), std::string::npos);
  EXPECT_FALSE(set_param(p, "delay", "11s").ok()) << "frames would wait in memory too long";
  EXPECT_FALSE(set_param(p, "up", "maybe").ok());
}

TEST(NetlabTopology, ParsesHostsLinksAndPerDirectionSettings) {
  auto t = parse_topology(R"(
[lab]
name = "demo"
seed = 9
ttl = "10min"
[hosts.a]
[hosts.b]
sysctl = { "net.ipv4.tcp_congestion_control" = "cubic" }
[links.ab]
hosts = ["a", "b"]
rate = "1gbit"
delay = "25ms"
loss = "0.1%"
mtu = 9000
[links.ab.from.b]
loss = "1%"
[links.ab2]
hosts = ["a", "b"]
subnet = "192.168.7.0/24"
)",
                          "t.toml");
  ASSERT_TRUE(t.ok()) << t.error().message();
  EXPECT_EQ(t->name, "demo");
  EXPECT_EQ(t->seed, 9u);
  EXPECT_EQ(t->ttl_ns, std::int64_t{600} * 1'000'000'000);
  ASSERT_EQ(t->links.size(), 2u);
  const Link& ab = t->links[0];
  EXPECT_EQ(ab.mtu, 9000);
  EXPECT_EQ(ab.dir[0].rate_bps, 1'000'000'000u);
  EXPECT_DOUBLE_EQ(ab.dir[0].loss, 0.001);
  EXPECT_DOUBLE_EQ(ab.dir[1].loss, 0.01);
  EXPECT_EQ(ab.dir[1].delay_ns, 25 * kMs) << "the link's settings are the base of both directions";
  EXPECT_EQ(ab.address(0), "10.99.0.1");
  EXPECT_EQ(ab.address(1), "10.99.0.2");
  EXPECT_EQ(t->links[1].address(1), "192.168.7.2");
  EXPECT_EQ(t->host("b")->sysctl.at("net.ipv4.tcp_congestion_control"), "cubic");
  EXPECT_EQ(t->host_ns("a"), "xnl-demo-a");
}

TEST(NetlabTopology, ErrorsNameWhatIsWrong) {
  const std::pair<const char*, const char*> cases[] = {
      {"[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = [\"a\", \"c\"]\n", "no host 'c'"},
      {"[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = [\"a\", \"b\"]\ndelay = \"5 parsecs\"\n",
       "links.ab.delay"},
      {"[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = [\"a\", \"b\"]\nlatency = \"5ms\"\n",
       "unknown link setting"},
      {"[hosts.A]\n", "host name"},
      {"[hosts.sw]\n", "'sw'"},
      {"[hosts.a]\n", "no [links.NAME]"},
      {"[lab]\nname = \"x/y\"\n[hosts.a]\n", "lab name"},
      {"[network]\n", "unknown table [network]"},
      {"[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = [\"a\", \"b\"]\nmtu = 70000\n", "mtu"},
      {"[hosts.a]\nsysctl = { \"kernel.panic\" = \"1\" }\n[hosts.b]\n", "not a net.* key"},
      {"[hosts.a]\n[hosts.b]\n[links.ab]\nhosts = [\"a\", \"b\"]\n[links.ab.from.c]\nloss = 1\n",
       "from.c"},
      {"[hosts.a]\n[hosts.b]\n[links.x]\nhosts = [\"a\", \"b\"]\nsubnet = \"10.1.2.0/16\"\n",
       "A.B.C.0/24"},
      {"[hosts.a\n", "line 1"},
  };
  for (const auto& [text, want] : cases) {
    auto t = parse_topology(text, "t.toml");
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_NE(t.error().message().find(want), std::string::npos)
        << "for:\n"
        << text << "got: " << t.error().message();
  }
}

}  // namespace
}  // namespace netlab
