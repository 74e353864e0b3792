// libFuzzer target for what a web server sends that the http backend parses
// (src/backend/http/index.cpp): index pages (HTML and nginx's JSON),
// Content-Range values, HTTP dates and percent-encoded paths. The first
// byte picks the parser. None may crash, read out of bounds or take
// quadratic time; what parses must keep its promises: every listed name is
// a valid path component, listed once; a Content-Range is ordered and
// inside its total; a decoded path encodes and decodes back to itself.
// Built by this build's fuzz rules (tests/fuzz/CMakeLists.txt), run by
// run_fuzz.sh.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "backend/http/index.hpp"
#include "xfer/core/names.hpp"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "http_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  using namespace xfer::http;
  switch (data[0] % 4) {
    case 0:
    case 1: {
      auto page = parse_index(text, data[0] % 4 == 0 ? IndexFormat::kHtml : IndexFormat::kJson,
                              "/pub/dir/");
      if (!page) return 0;
      std::set<std::string> seen;
      for (const auto& e : page->entries) {
        check(xfer::validate_name_component(e.name, "name").ok(), "an invalid name was listed");
        check(seen.insert(e.name).second, "a name was listed twice");
        check(!e.size.has_value() || e.mtime_ns.has_value(), "a size without a time");
      }
      break;
    }
    case 2: {
      if (auto r = parse_content_range(text)) {
        check(!r->first || *r->first <= r->last, "a range that ends before it starts");
        check(!r->total || !r->first || r->last < *r->total, "a range past its total");
        check(r->first || r->total, "neither a range nor a total");
      }
      (void)parse_http_date(text);
      break;
    }
    default: {
      if (auto decoded = percent_decode(text)) {
        auto again = percent_decode(percent_encode_path(*decoded));
        check(again.has_value() && *again == *decoded, "percent coding does not round-trip");
      }
      break;
    }
  }
  return 0;
}
