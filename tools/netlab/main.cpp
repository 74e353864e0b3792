// netlab: the network lab's command line (docs/netlab.md).
//   netlab up TOPOLOGY.toml [--name N] [--ttl T] [--seed S]
//   netlab exec [--lab N] HOST -- COMMAND…     (exit status passed through)
//   netlab set [--lab N] LINK [from=HOST] key=value…
//   netlab stats [--lab N]   netlab hosts [--lab N]   netlab list
//   netlab down [NAME | --all]
// Threading: one thread, except `emulate` (lab.hpp).

#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "lab.hpp"
#include "topology.hpp"

namespace {

int fail(const xfer::Error& e) {
  fmt::print(stderr, "netlab: {}\n", e.message());
  return 1;
}

// `netlab exec [--lab N] HOST [--] COMMAND…`, parsed by hand: everything
// after the host belongs to the command, options included.
int exec_command(int argc, char** argv) {
  std::string lab;
  int i = 2;
  if (i < argc && std::string(argv[i]) == "--lab" && i + 1 < argc) {
    lab = argv[i + 1];
    i += 2;
  } else if (i < argc && std::string(argv[i]).rfind("--lab=", 0) == 0) {
    lab = std::string(argv[i]).substr(6);
    ++i;
  }
  if (i >= argc) {
    fmt::print(stderr, "netlab exec: name a host: netlab exec HOST -- COMMAND…\n");
    return 2;
  }
  const std::string host = argv[i++];
  if (i < argc && std::string(argv[i]) == "--") ++i;
  std::vector<std::string> cmd(argv + i, argv + argc);
  auto name = netlab::pick_lab(lab);
  if (!name.ok()) return fail(name.error());
  auto st = netlab::lab_exec(*name, host, cmd);
  fmt::print(stderr, "netlab exec: {}\n", st.error().message());
  return 127;
}

std::string read_file(const std::string& path, bool* ok) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  *ok = static_cast<bool>(in) || in.eof();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "exec") return exec_command(argc, argv);

  CLI::App app{"netlab: hosts in network namespaces joined by emulated links"};
  app.require_subcommand(1);

  auto* up = app.add_subcommand("up", "bring a lab up from a topology file");
  std::string topo_path;
  std::string name;
  std::string ttl;
  std::int64_t seed = -1;
  up->add_option("topology", topo_path, "the topology file (TOML)")->required();
  up->add_option("--name", name, "the lab's name (default: [lab] name, else 'lab')");
  up->add_option("--ttl", ttl, "take the lab down after this long (default: [lab] ttl, else 2h)");
  up->add_option("--seed", seed, "seed of the links' randomness (default: [lab] seed, else 1)");

  std::string lab;
  auto* set = app.add_subcommand("set", "change a link while traffic runs (tc units)");
  std::string link;
  std::vector<std::string> settings;
  set->add_option("--lab", lab, "the lab (default: $NETLAB_LAB, or the only one up)");
  set->add_option("link", link, "the link's name")->required();
  set->add_option("settings", settings, "key=value… e.g. rate=1gbit delay=25ms loss=0.1% up=0")
      ->required();

  auto* stats = app.add_subcommand("stats", "the links' counters and the emulator's CPU, as JSON");
  stats->add_option("--lab", lab, "the lab");
  auto* hosts = app.add_subcommand("hosts", "the hosts and their addresses, as JSON");
  hosts->add_option("--lab", lab, "the lab");
  auto* list = app.add_subcommand("list", "the labs that are up");

  auto* down = app.add_subcommand("down", "take a lab down (namespaces, processes, emulator)");
  std::string down_name;
  bool all = false;
  down->add_option("name", down_name, "the lab (default: the only one up)");
  down->add_flag("--all", all, "every lab, and any xnl-* namespace left behind");

  auto* emulate = app.add_subcommand("emulate", "");  // started by `up`, not by people
  emulate->group("");
  std::string state;
  emulate->add_option("--state", state)->required();

  app.footer("netlab exec [--lab N] HOST -- COMMAND… runs a command inside a host.");
  CLI11_PARSE(app, argc, argv);

  if (emulate->parsed()) return netlab::emulate_main(state);
  if (geteuid() != 0) {
    fmt::print(stderr, "netlab: needs root (network namespaces)\n");
    return 1;
  }
  if (up->parsed()) {
    bool ok = false;
    const std::string text = read_file(topo_path, &ok);
    if (!ok) {
      fmt::print(stderr, "netlab: cannot read {}\n", topo_path);
      return 1;
    }
    auto topo = netlab::parse_topology(text, topo_path);
    if (!topo.ok()) return fail(topo.error());
    // Overrides go into the copy the emulator reads.
    std::string effective = text;
    if (!name.empty()) topo->name = name;
    if (!ttl.empty()) {
      auto ns = netlab::parse_time(ttl);
      if (!ns.ok()) return fail(ns.error());
      topo->ttl_ns = *ns;
    }
    if (seed >= 0) topo->seed = static_cast<std::uint64_t>(seed);
    if (auto st = netlab::check_name("lab", topo->name, 16); !st.ok()) return fail(st.error());
    // The emulator reads the file again: restate [lab] with the overrides.
    {
      std::string stripped;
      std::istringstream in(text);
      bool in_lab = false;
      for (std::string line; std::getline(in, line);) {
        std::string t = line.substr(0, line.find('#'));
        t.erase(0, t.find_first_not_of(" \t"));
        if (!t.empty() && t[0] == '[') in_lab = t.rfind("[lab]", 0) == 0;
        if (!in_lab) stripped += line + "\n";
      }
      effective = fmt::format("[lab]\nname = \"{}\"\nseed = {}\nttl = \"{}ns\"\n\n{}", topo->name,
                              topo->seed, topo->ttl_ns, stripped);
      auto check = netlab::parse_topology(effective, topo_path);
      if (!check.ok()) return fail(check.error());
    }
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return fail(xfer::errno_error(errno, "readlink", "/proc/self/exe"));
    self[n] = '\0';
    if (auto st = netlab::lab_up(*topo, effective, self); !st.ok()) return fail(st.error());
    auto h = netlab::hosts_json(topo->name);
    fmt::print("lab {} is up (ttl {} s; netlab down {})\n", topo->name,
               topo->ttl_ns / 1'000'000'000, topo->name);
    if (h.ok()) {
      const auto j = nlohmann::json::parse(*h, nullptr, false);
      for (const auto& [host, v] : j["hosts"].items()) {
        for (const auto& a : v["addresses"]) {
          fmt::print("  {:<12} {:<15} {}\n", host, a["address"].get<std::string>(),
                     a["link"].get<std::string>());
        }
      }
    }
    return 0;
  }
  if (down->parsed()) {
    if (all) {
      auto st = netlab::lab_down_all();
      return st.ok() ? 0 : fail(st.error());
    }
    // A named lab is taken down whatever is left of it (idempotent).
    auto n = down_name.empty() ? netlab::pick_lab(down_name) : xfer::Result<std::string>(down_name);
    if (!n.ok()) return fail(n.error());
    auto st = netlab::lab_down(*n);
    return st.ok() ? 0 : fail(st.error());
  }
  if (list->parsed()) {
    for (const auto& l : netlab::labs()) fmt::print("{}\n", l);
    return 0;
  }
  auto n = netlab::pick_lab(lab);
  if (!n.ok()) return fail(n.error());
  if (hosts->parsed()) {
    auto h = netlab::hosts_json(*n);
    if (!h.ok()) return fail(h.error());
    fmt::print("{}", *h);
    return 0;
  }
  std::string request = "stats";
  if (set->parsed()) {
    request = "set " + link;
    for (const auto& s : settings) {
      if (s.find_first_of(" \t\n") != std::string::npos) {
        fmt::print(stderr, "netlab set: '{}' has a space\n", s);
        return 2;
      }
      request += " " + s;
    }
  }
  auto reply = netlab::control_request(*n, request);
  if (!reply.ok()) return fail(reply.error());
  fmt::print("{}", *reply);
  return 0;
}
