// libFuzzer target for the text xfer reads from the user's files and URLs:
// sealed secrets (core/secrets.cpp), credentials.toml
// (backend/credentials.cpp), ~/.ssh/config and ~/.aws/* (backend/profile.cpp)
// and URLs with query parameters (core/url.cpp); and what a server
// advertises as its data addresses with the --bind list they are paired
// with (backend/xfer/paths.cpp, core/url.cpp); include/exclude rules and
// the paths matched against them (engine/filter.cpp). The first byte picks the
// parser. None may crash or read out of bounds; what parses must survive a
// round trip (a URL printed and parsed again, a credentials file written
// and read again, is the same). Built by this build's fuzz rules
// (tests/fuzz/CMakeLists.txt), run by run_fuzz.sh.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "backend/xfer/paths.hpp"
#include "xfer/backend/credentials.hpp"
#include "xfer/backend/profile.hpp"
#include "xfer/core/secrets.hpp"
#include "xfer/core/url.hpp"
#include "xfer/engine/filter.hpp"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "config_fuzz: %s\n", what);
    std::abort();
  }
}

bool same(const xfer::Url& a, const xfer::Url& b) {
  return a.scheme == b.scheme && a.user == b.user && a.host == b.host && a.port == b.port &&
         a.path == b.path && a.query == b.query && a.remote == b.remote;
}

// Argon2 with the costs an input asks for would spend the fuzzer's time and
// memory on the key derivation, not on the parser: only small costs run.
bool cheap_costs(std::string_view s) {
  const auto m = s.find("m=");
  if (m == std::string_view::npos) return true;
  return std::strtoull(std::string(s.substr(m + 2, 12)).c_str(), nullptr, 10) <= 64;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 7) {
    case 0: {
      if (!cheap_costs(text)) return 0;
      (void)xfer::unseal_secret(text, "passphrase");
      break;
    }
    case 1: {
      auto store = xfer::CredentialStore::parse(text, "fuzz.toml");
      if (!store) break;
      auto again = xfer::CredentialStore::parse(store->to_text(), "fuzz.toml");
      check(again.ok(), "a written credentials file does not read back");
      check(again->remotes().size() == store->remotes().size(), "remotes lost in a round trip");
      for (const auto& r : store->remotes()) {
        const auto* back = again->remote(r.name);
        check(back != nullptr && back->type == r.type && back->fields == r.fields,
              "a remote changed in a round trip");
      }
      break;
    }
    case 2:
      (void)xfer::ssh_config_for(text, "host.example");
      break;
    case 3:
      (void)xfer::ini_section(text, "default");
      break;
    case 4: {
      auto url = xfer::parse_url(text);
      if (!url || url->is_local()) break;
      auto again = xfer::parse_url(url->to_string());
      check(again.ok(), "a printed URL does not parse");
      check(same(*url, *again), "a URL changed in a round trip");
      break;
    }
    case 5: {
      // First line: a --bind list; the others: advertised data addresses.
      std::vector<std::string> lines;
      for (std::string_view rest = text; !rest.empty() && lines.size() < 40;) {
        const auto nl = rest.find('\n');
        lines.emplace_back(rest.substr(0, nl));
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
      }
      if (lines.empty()) break;
      auto local = xfer::parse_address_list(lines.front());
      if (!local) break;
      for (const auto& a : *local) check(xfer::is_ip_literal(a), "--bind took a non-address");
      const std::vector<std::string> advertised(lines.begin() + 1, lines.end());
      auto paths = xfer::plan_data_paths(advertised, "192.0.2.1", (data[0] & 0x80) != 0, *local);
      if (!paths) break;
      check(!paths->empty() && paths->size() <= xfer::kMaxDataPaths, "path count out of bounds");
      for (const auto& p : *paths) {
        check(xfer::is_ip_literal(p.host) && p.port != 0, "a path to a non-address");
        check(p.host.rfind("127.", 0) != 0 || (data[0] & 0x80) != 0,
              "loopback from a remote server");
      }
      break;
    }
    case 6: {
      // A filter file (as --filter-from, or the rules a job request
      // carries), then paths to match: the part after the first NUL, one
      // per line. What parses must print and parse back to the same rules.
      const auto nul = text.find('\0');
      xfer::FilterSet f;
      if (!f.add_filter_text(text.substr(0, nul), "fuzz").ok()) break;
      check(f.rules().size() <= xfer::FilterSet::kMaxRules, "more rules than the bound");
      xfer::FilterSet again;
      check(again.add_filter_text(f.to_text(), "again").ok(), "printed rules do not parse");
      check(again.to_text() == f.to_text(), "rules changed in a round trip");
      if (nul == std::string_view::npos) break;
      std::string_view paths = text.substr(nul + 1);
      for (int i = 0; i < 16 && !paths.empty(); ++i) {
        const auto nl = paths.find('\n');
        const std::string_view path = paths.substr(0, nl);
        check(f.excluded(path, true) == again.excluded(path, true), "round trip changed a match");
        (void)f.excluded(path, false);
        paths = nl == std::string_view::npos ? std::string_view() : paths.substr(nl + 1);
      }
      break;
    }
  }
  return 0;
}
