// Validation and pairing of a session's data paths (paths.hpp).
// Threading: pure functions.

#include "backend/xfer/paths.hpp"

#include <fmt/format.h>

#include "protocol/conn.hpp"
#include "xfer/core/names.hpp"
#include "xfer/core/url.hpp"

namespace xfer {
namespace {

constexpr std::size_t kMaxAddressText = 64;  // "[v6]:port" fits in 53

std::string host_port(const std::string& host, std::uint16_t port) {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                             : fmt::format("{}:{}", host, port);
}

}  // namespace

Result<std::vector<DataPath>> plan_data_paths(const std::vector<std::string>& advertised,
                                              const std::string& control_host,
                                              const std::vector<std::string>& local) {
  auto bad = [](std::string_view what, std::string_view why) {
    return make_error(ErrorCode::kCorrupt, "open session", printable_name(what, kMaxAddressText),
                      fmt::format("the server advertised a bad data address: {}", why));
  };
  if (advertised.empty()) return bad("", "none at all");
  if (advertised.size() > kMaxDataPaths) {
    return bad("", fmt::format("{} of them (at most {})", advertised.size(), kMaxDataPaths));
  }
  std::vector<std::pair<std::string, std::uint16_t>> servers;
  for (const std::string& a : advertised) {
    if (a.size() > kMaxAddressText) return bad(a, "too long");
    auto hp = protocol::split_host_port(a);
    if (!hp) return bad(a, hp.error().detail);
    auto [host, port] = *hp;
    if (port == 0) return bad(a, "port 0");
    if (host == "0.0.0.0" || host == "::")
      host = control_host;
    else if (!is_ip_literal(host))
      return bad(a, "not a numeric IP address");
    bool seen = false;
    for (const auto& s : servers) seen = seen || (s.first == host && s.second == port);
    if (!seen) servers.emplace_back(std::move(host), port);
  }
  const std::size_t n = std::max(servers.size(), local.size());
  std::vector<DataPath> paths;
  for (std::size_t i = 0; i < n; ++i) {
    DataPath p;
    p.host = servers[i % servers.size()].first;
    p.port = servers[i % servers.size()].second;
    if (!local.empty()) p.local = local[i % local.size()];
    p.name = p.local.empty() ? host_port(p.host, p.port)
                             : fmt::format("{}>{}", p.local, host_port(p.host, p.port));
    paths.push_back(std::move(p));
  }
  return paths;
}

}  // namespace xfer
