// The per-connection statistics board (streams.hpp): live providers and
// last snapshots by group, under one mutex. Written by backends' connection
// code, read by progress renderers and xferd's WatchJob, on any thread.

#include "xfer/metrics/streams.hpp"

namespace xfer {

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
