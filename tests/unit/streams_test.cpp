// The statistics board's controller events and the one-line "limited by"
// that the summary prints (include/xfer/metrics/streams.hpp).

#include "xfer/metrics/streams.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace xfer {
namespace {

// An upload stream that lived 10 s, `busy` of them with data in flight.
StreamStat upload(double busy, double rwnd = 0, double sndbuf = 0, std::uint64_t retrans = 0) {
  StreamStat s;
  s.endpoint = "xfer://10.0.0.2:7400";
  s.bytes_sent = 100u << 20;
  s.bytes_received = 1u << 20;
  s.seconds = 10;
  s.busy_s = busy;
  s.rwnd_limited_s = rwnd;
  s.sndbuf_limited_s = sndbuf;
  s.retransmits = retrans;
  return s;
}

TEST(LimitedBy, NamesWhatHeldTheTransferBack) {
  EXPECT_EQ(describe_limit({}), "");
  EXPECT_NE(describe_limit({upload(9.5, 0, 0, 724)}).find("the network (congestion window; 1.00%"),
            std::string::npos)
      << describe_limit({upload(9.5, 0, 0, 724)});
  EXPECT_NE(describe_limit({upload(9, 6)}).find("the receiver's window (67% of the busy time)"),
            std::string::npos);
  EXPECT_NE(describe_limit({upload(9, 0, 4.5)}).find("the send buffer (50%"), std::string::npos);
  EXPECT_NE(describe_limit({upload(2), upload(3)}).find("the endpoints, not the network"),
            std::string::npos)
      << describe_limit({upload(2), upload(3)});
  StreamStat down = upload(0.1);
  std::swap(down.bytes_sent, down.bytes_received);
  EXPECT_NE(describe_limit({down}).find("a download"), std::string::npos);
}

TEST(StreamStatsBoard, KeepsTheNewestControllerEventsInOrder) {
  StreamStatsBoard board;
  for (std::size_t i = 0; i < StreamStatsBoard::kMaxEvents + 10; ++i) {
    board.record(ControllerEvent{"xfer://h:1", static_cast<double>(i), 4, 0, 0, "keep"});
  }
  auto e = board.events();
  ASSERT_EQ(e.size(), StreamStatsBoard::kMaxEvents);
  EXPECT_EQ(e.front().seconds, 10.0);
  EXPECT_EQ(e.back().seconds, static_cast<double>(StreamStatsBoard::kMaxEvents + 9));
}

}  // namespace
}  // namespace xfer
