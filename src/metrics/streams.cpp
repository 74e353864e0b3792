// The per-connection statistics board (streams.hpp): live providers and
// last snapshots by group, under one mutex. Written by backends' connection
// code, read by progress renderers and xferd's WatchJob, on any thread.

#include "xfer/metrics/streams.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace xfer {

std::string describe_limit(const std::vector<StreamStat>& streams) {
  double life = 0, busy = 0, rwnd = 0, sndbuf = 0;
  std::uint64_t sent = 0, received = 0, retransmits = 0;
  for (const auto& s : streams) {
    life += s.seconds;
    busy += s.busy_s;
    rwnd += s.rwnd_limited_s;
    sndbuf += s.sndbuf_limited_s;
    sent += s.bytes_sent;
    received += s.bytes_received;
    retransmits += s.retransmits;
  }
  if (streams.empty() || sent + received == 0 || life <= 0) return {};
  if (received > sent) {
    return "the network or the server (a download: its sending side is the server's)";
  }
  const double segments = static_cast<double>(sent) / 1448.0;
  const double retrans_pct = 100.0 * static_cast<double>(retransmits) / std::max(1.0, segments);
  if (busy < 0.5 * life) {
    return fmt::format(
        "the endpoints, not the network (the connections had nothing to send {:.0f}% of the "
        "time: disk, CPU, or many small files)",
        100.0 * (1.0 - busy / life));
  }
  if (rwnd > 0.3 * busy) {
    return fmt::format(
        "the receiver's window ({:.0f}% of the busy time): the server's socket buffers "
        "(limits.socket_buffer_kib) or its disk",
        100.0 * rwnd / busy);
  }
  if (sndbuf > 0.3 * busy) {
    return fmt::format(
        "the send buffer ({:.0f}% of the busy time): raise net.core.wmem_max, or run as root",
        100.0 * sndbuf / busy);
  }
  return fmt::format("the network (congestion window; {:.2f}% of segments retransmitted)",
                     retrans_pct);
}

std::uint64_t StreamStatsBoard::add(std::string group, Provider provider) {
  std::lock_guard lock(mu_);
  std::uint64_t id = next_++;
  entries_[id] = Entry{std::move(group), std::move(provider), {}};
  return id;
}

void StreamStatsBoard::remove(std::uint64_t id) {
  Provider p;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    p = std::move(it->second.provider);
    it->second.provider = nullptr;
  }
  // Called outside the lock: the provider may take its own locks.
  auto last = p ? p() : std::vector<StreamStat>{};
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it != entries_.end()) it->second.last = std::move(last);
}

void StreamStatsBoard::remove(std::uint64_t id, std::vector<StreamStat> final_stats) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  it->second.provider = nullptr;
  it->second.last = std::move(final_stats);
}

std::vector<StreamStat> StreamStatsBoard::snapshot(const std::string& group) {
  std::vector<Provider> live;
  std::vector<StreamStat> out;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, e] : entries_) {
      if (!group.empty() && e.group != group) continue;
      if (e.provider)
        live.push_back(e.provider);
      else
        out.insert(out.end(), e.last.begin(), e.last.end());
    }
  }
  for (auto& p : live) {
    auto v = p();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

void StreamStatsBoard::record(ControllerEvent event) {
  std::lock_guard lock(mu_);
  if (events_.size() >= kMaxEvents) events_.erase(events_.begin());
  events_.push_back(std::move(event));
}

std::vector<ControllerEvent> StreamStatsBoard::events() {
  std::lock_guard lock(mu_);
  return events_;
}

void StreamStatsBoard::clear(const std::string& group) {
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    if ((group.empty() || it->second.group == group) && !it->second.provider) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace xfer
