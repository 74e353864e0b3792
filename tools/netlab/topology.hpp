#pragma once
// A lab's topology, read from a small TOML file (docs/netlab.md): hosts
// (network namespaces), links between two hosts each (several links between
// the same two hosts are several NICs), each link direction's settings, the
// lab's name, seed and time to live. Loading checks everything a later step
// would trip on (names that fit interface and namespace names, hosts that
// exist, units, addresses), so `netlab up` fails before it changes anything.
//
// Threading: plain values.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "model.hpp"
#include "xfer/core/result.hpp"

namespace netlab {

struct Host {
  std::string name;
  // Written into the host's network namespace at `up` (e.g.
  // net.ipv4.tcp_congestion_control = "cubic"); only net.* keys.
  std::map<std::string, std::string> sysctl;
};

struct Link {
  std::string name;
  std::string hosts[2];
  int mtu = 1500;
  std::uint32_t subnet = 0;  // the /24 network, host order (e.g. 10.99.0.0)
  DirectionParams dir[2];    // dir[k]: frames sent by hosts[k]

  // "10.99.0.1": hosts[k]'s address on this link.
  std::string address(int k) const;
  std::string subnet_text() const;  // "10.99.0.0/24"
};

struct Topology {
  std::string name = "lab";
  std::uint64_t seed = 1;
  std::int64_t ttl_ns = std::int64_t{7200} * 1'000'000'000;  // 2 h
  std::vector<Host> hosts;
  std::vector<Link> links;

  const Host* host(std::string_view name) const;
  const Link* link(std::string_view name) const;
  int link_index(std::string_view name) const;  // -1 when unknown

  // The namespace of a host ("xnl-<lab>-<host>") and of the emulator
  // ("xnl-<lab>-sw"). Every namespace of a lab starts with ns_prefix().
  std::string ns_prefix() const { return "xnl-" + name + "-"; }
  std::string host_ns(std::string_view host_name) const {
    return ns_prefix() + std::string(host_name);
  }
  std::string switch_ns() const { return ns_prefix() + "sw"; }
};

// Names: lab 1–16 and host 1–12 characters of [a-z0-9-] not starting with
// '-', link 1–15 (an interface name); a host may not be called "sw".
xfer::Status check_name(std::string_view what, std::string_view name, std::size_t max);

xfer::Result<Topology> parse_topology(std::string_view text, std::string_view origin);
xfer::Result<Topology> load_topology(const std::string& path);

}  // namespace netlab
