// Topology files (topology.hpp): TOML through toml++, every value checked.
// Called once by `netlab up` and by the emulator when it starts.

#include "topology.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <toml++/toml.h>

#include <fstream>
#include <set>
#include <sstream>

namespace netlab {
namespace {

xfer::Error bad(std::string_view origin, std::string_view why) {
  return xfer::make_error(xfer::ErrorCode::kInvalidArgument, "topology", origin, why);
}

// A value in the file as text: strings as they are, numbers as written
// (a bare number takes the key's base unit: bit/s, µs, bytes, a share).
xfer::Result<std::string> text_of(const toml::node& n, std::string_view origin,
                                  std::string_view key) {
  if (auto s = n.value_exact<std::string>()) return *s;
  if (auto i = n.value_exact<std::int64_t>()) return fmt::format("{}", *i);
  if (auto d = n.value_exact<double>()) return fmt::format("{}", *d);
  if (auto b = n.value_exact<bool>()) return std::string(*b ? "1" : "0");
  return bad(origin,
             fmt::format("line {}: {} must be a string or a number", n.source().begin.line, key));
}

// Applies the link settings of `table` (all keys but the structural ones) to p.
xfer::Status apply_settings(const toml::table& table, DirectionParams& p, std::string_view origin,
                            std::string_view where) {
  for (const auto& [k, v] : table) {
    const std::string_view key = k.str();
    if (key == "hosts" || key == "mtu" || key == "subnet" || key == "from") continue;
    XFER_ASSIGN_OR_RETURN(auto text, text_of(v, origin, key));
    auto st = set_param(p, key, text);
    if (!st.ok()) {
      return bad(origin, fmt::format("line {}: {}.{}: {}", v.source().begin.line, where, key,
                                     st.error().message()));
    }
  }
  return {};
}

}  // namespace

xfer::Status check_name(std::string_view what, std::string_view name, std::size_t max) {
  bool ok = !name.empty() && name.size() <= max && name.front() != '-';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-');
  }
  if (!ok) {
    return xfer::make_error(
        xfer::ErrorCode::kInvalidArgument, fmt::format("{} name", what), name,
        fmt::format("use 1 to {} of a-z, 0-9 and '-', not starting with '-'", max));
  }
  return {};
}

std::string Link::address(int k) const {
  const std::uint32_t a = subnet + static_cast<std::uint32_t>(k + 1);
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

std::string Link::subnet_text() const {
  return fmt::format("{}.{}.{}.0/24", subnet >> 24, (subnet >> 16) & 255, (subnet >> 8) & 255);
}

const Host* Topology::host(std::string_view n) const {
  for (const auto& h : hosts) {
    if (h.name == n) return &h;
  }
  return nullptr;
}

const Link* Topology::link(std::string_view n) const {
  const int i = link_index(n);
  return i < 0 ? nullptr : &links[static_cast<std::size_t>(i)];
}

int Topology::link_index(std::string_view n) const {
  for (std::size_t i = 0; i < links.size(); ++i) {
    if (links[i].name == n) return static_cast<int>(i);
  }
  return -1;
}

xfer::Result<Topology> parse_topology(std::string_view text, std::string_view origin) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return bad(origin, fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  Topology t;
  for (const auto& [k, v] : root) {
    if (k.str() != "lab" && k.str() != "hosts" && k.str() != "links") {
      return bad(origin, fmt::format("line {}: unknown table [{}] (use [lab], [hosts.NAME], "
                                     "[links.NAME])",
                                     v.source().begin.line, k.str()));
    }
  }
  if (const auto* lab = root["lab"].as_table()) {
    for (const auto& [k, v] : *lab) {
      XFER_ASSIGN_OR_RETURN(auto value, text_of(v, origin, k.str()));
      if (k.str() == "name") {
        t.name = value;
      } else if (k.str() == "seed") {
        auto i = v.value_exact<std::int64_t>();
        if (!i || *i < 0) return bad(origin, "lab.seed must be a non-negative integer");
        t.seed = static_cast<std::uint64_t>(*i);
      } else if (k.str() == "ttl") {
        XFER_ASSIGN_OR_RETURN(t.ttl_ns, parse_time(value));
        if (t.ttl_ns < 1'000'000'000) return bad(origin, "lab.ttl must be at least 1s");
      } else {
        return bad(origin, fmt::format("unknown key lab.{} (name, seed, ttl)", k.str()));
      }
    }
  }
  XFER_TRY(check_name("lab", t.name, 16));

  const auto* hosts = root["hosts"].as_table();
  if (hosts == nullptr || hosts->empty()) return bad(origin, "no [hosts.NAME] tables");
  for (const auto& [k, v] : *hosts) {
    Host h;
    h.name = std::string(k.str());
    XFER_TRY(check_name("host", h.name, 12));
    if (h.name == "sw") return bad(origin, "a host may not be called 'sw' (the emulator's)");
    const auto* ht = v.as_table();
    if (ht == nullptr) return bad(origin, fmt::format("hosts.{} must be a table", h.name));
    for (const auto& [hk, hv] : *ht) {
      if (hk.str() != "sysctl" || !hv.is_table()) {
        return bad(origin, fmt::format("unknown key hosts.{}.{} (sysctl)", h.name, hk.str()));
      }
      for (const auto& [sk, sv] : *hv.as_table()) {
        XFER_ASSIGN_OR_RETURN(auto value, text_of(sv, origin, sk.str()));
        const std::string key(sk.str());
        bool key_ok = key.rfind("net.", 0) == 0 && key.find("..") == std::string::npos;
        for (char c : key)
          key_ok = key_ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                              c == '-');
        if (!key_ok)
          return bad(origin, fmt::format("hosts.{}.sysctl: '{}' is not a net.* key", h.name, key));
        if (value.find('\n') != std::string::npos) return bad(origin, "a sysctl value is one line");
        h.sysctl[key] = value;
      }
    }
    t.hosts.push_back(std::move(h));
  }

  const auto* links = root["links"].as_table();
  if (links == nullptr || links->empty()) return bad(origin, "no [links.NAME] tables");
  std::set<std::uint32_t> subnets;
  for (const auto& [k, v] : *links) {
    Link l;
    l.name = std::string(k.str());
    XFER_TRY(check_name("link", l.name, 15));
    const auto* lt = v.as_table();
    if (lt == nullptr) return bad(origin, fmt::format("links.{} must be a table", l.name));
    const auto* hs = (*lt)["hosts"].as_array();
    if (hs == nullptr || hs->size() != 2 || !(*hs)[0].is_string() || !(*hs)[1].is_string()) {
      return bad(origin, fmt::format("links.{}.hosts must name two hosts", l.name));
    }
    for (int i = 0; i < 2; ++i) {
      l.hosts[i] = *(*hs)[static_cast<std::size_t>(i)].value<std::string>();
      if (t.host(l.hosts[i]) == nullptr) {
        return bad(origin, fmt::format("links.{}: no host '{}'", l.name, l.hosts[i]));
      }
    }
    if (l.hosts[0] == l.hosts[1])
      return bad(origin, fmt::format("links.{} joins a host to itself", l.name));
    if (auto m = (*lt)["mtu"].value_exact<std::int64_t>()) {
      if (*m < 576 || *m > 9000)
        return bad(origin, fmt::format("links.{}.mtu: 576 to 9000", l.name));
      l.mtu = static_cast<int>(*m);
    }
    l.subnet = (10u << 24) | (99u << 16) | (static_cast<std::uint32_t>(t.links.size()) << 8);
    if (t.links.size() > 255) return bad(origin, "at most 256 links");
    if (auto s = (*lt)["subnet"].value_exact<std::string>()) {
      const auto slash = s->find('/');
      in_addr a{};
      if (slash == std::string::npos || s->substr(slash) != "/24" ||
          inet_pton(AF_INET, s->substr(0, slash).c_str(), &a) != 1 ||
          (ntohl(a.s_addr) & 255) != 0) {
        return bad(origin, fmt::format("links.{}.subnet: write A.B.C.0/24", l.name));
      }
      l.subnet = ntohl(a.s_addr);
    }
    if (!subnets.insert(l.subnet).second) {
      return bad(origin, fmt::format("links.{}: subnet {} is used twice", l.name, l.subnet_text()));
    }
    XFER_TRY(apply_settings(*lt, l.dir[0], origin, fmt::format("links.{}", l.name)));
    l.dir[1] = l.dir[0];
    if (const auto* from = (*lt)["from"].as_table()) {
      for (const auto& [fk, fv] : *from) {
        int side = fk.str() == l.hosts[0] ? 0 : fk.str() == l.hosts[1] ? 1 : -1;
        if (side < 0 || !fv.is_table()) {
          return bad(origin, fmt::format("links.{}.from.{}: name one of the link's hosts", l.name,
                                         fk.str()));
        }
        XFER_TRY(apply_settings(*fv.as_table(), l.dir[side], origin,
                                fmt::format("links.{}.from.{}", l.name, fk.str())));
      }
    }
    t.links.push_back(std::move(l));
  }
  return t;
}

xfer::Result<Topology> load_topology(const std::string& path) {
  std::ifstream in(path);
  if (!in) return xfer::errno_error(errno, "open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.size() > (1 << 20)) return bad(path, "larger than 1 MiB");
  return parse_topology(text, path);
}

}  // namespace netlab
