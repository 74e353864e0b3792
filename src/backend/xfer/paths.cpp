// Validation and pairing of a session's data paths (paths.hpp).
// Threading: pure functions.

#include "backend/xfer/paths.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <fmt/format.h>

#include "protocol/conn.hpp"
#include "xfer/core/names.hpp"
#include "xfer/core/url.hpp"

namespace xfer {
namespace {

constexpr std::size_t kMaxAddressText = 64;  // "[v6]:port" fits in 53

// Where an address reaches. A server may advertise addresses of ordinary
// (unicast, global or private) scope; loopback only when the client
// reached it over loopback itself (a remote server must not make the
// client probe its own local services); never link-local (no zone to name
// the interface), multicast, broadcast or "this network".
enum class Scope { kUnspecified, kLoopback, kLinkLocal, kNoUnicast, kUnicast, kInvalid };

struct Parsed {
  Scope scope = Scope::kInvalid;
  int family = 0;
};

Parsed classify(const std::string& host) {
  in_addr a4{};
  in6_addr a6{};
  auto v4 = [](std::uint32_t a) {
    if (a == 0) return Scope::kUnspecified;
    if ((a >> 24) == 0) return Scope::kNoUnicast;       // 0.0.0.0/8
    if ((a >> 24) == 127) return Scope::kLoopback;      // 127/8
    if ((a >> 16) == 0xa9fe) return Scope::kLinkLocal;  // 169.254/16
    if ((a >> 28) >= 0xe) return Scope::kNoUnicast;     // multicast, reserved, broadcast
    return Scope::kUnicast;
  };
  if (::inet_pton(AF_INET, host.c_str(), &a4) == 1) return {v4(ntohl(a4.s_addr)), AF_INET};
  if (::inet_pton(AF_INET6, host.c_str(), &a6) != 1) return {};
  const std::uint8_t* b = a6.s6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    const std::uint32_t a = (std::uint32_t{b[12]} << 24) | (std::uint32_t{b[13]} << 16) |
                            (std::uint32_t{b[14]} << 8) | b[15];
    return {v4(a), AF_INET6};
  }
  if (IN6_IS_ADDR_UNSPECIFIED(&a6)) return {Scope::kUnspecified, AF_INET6};
  if (IN6_IS_ADDR_LOOPBACK(&a6)) return {Scope::kLoopback, AF_INET6};
  if (IN6_IS_ADDR_LINKLOCAL(&a6)) return {Scope::kLinkLocal, AF_INET6};
  if (IN6_IS_ADDR_MULTICAST(&a6) || IN6_IS_ADDR_V4COMPAT(&a6)) return {Scope::kNoUnicast, AF_INET6};
  return {Scope::kUnicast, AF_INET6};
}

std::string host_port(const std::string& host, std::uint16_t port) {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port)
                                             : fmt::format("{}:{}", host, port);
}

}  // namespace

Result<std::vector<DataPath>> plan_data_paths(const std::vector<std::string>& advertised,
                                              const std::string& control_host,
                                              bool control_is_loopback,
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
    switch (classify(host).scope) {
      case Scope::kInvalid:
        return bad(a, "not a numeric IP address");
      case Scope::kUnspecified:
        host = control_host;  // a wildcard listener: where the control channel went
        break;
      case Scope::kLoopback:
        if (!control_is_loopback) return bad(a, "loopback, but the server is not on this host");
        break;
      case Scope::kLinkLocal:
        return bad(a, "link-local");
      case Scope::kNoUnicast:
        return bad(a, "not a unicast address");
      case Scope::kUnicast:
        break;
    }
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
    if (!local.empty()) {
      p.local = local[i % local.size()];
      const int from = classify(p.local).family;
      const int to = classify(p.host).family;
      if (to != 0 && from != to) {
        return make_error(ErrorCode::kInvalidArgument, "--bind", p.local,
                          fmt::format("an IPv{} address cannot reach the server's data address {} "
                                      "(IPv{})",
                                      from == AF_INET ? 4 : 6, p.host, to == AF_INET ? 4 : 6));
      }
    }
    p.name = p.local.empty() ? host_port(p.host, p.port)
                             : fmt::format("{}>{}", p.local, host_port(p.host, p.port));
    paths.push_back(std::move(p));
  }
  return paths;
}

}  // namespace xfer
