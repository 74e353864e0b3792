// libFuzzer target for the text an Azure Blob service (or a user's
// connection string) hands the az backend: src/backend/azure/text.cpp's
// readers. The first byte picks one: RFC 3339 mtimes (x-ms-meta-mtime),
// base64 (Content-MD5, account keys), connection strings. None may crash or
// overflow (UBSan); what parses keeps its promises: an mtime read is
// written back and read again to the same nanosecond, base64 decoded is
// encoded and decoded to the same bytes and never longer than 3/4 of its
// text, a connection string's keys hold no ';'. Its XML goes through
// s3_fuzz's reader. Built by tests/fuzz/CMakeLists.txt, run by run_fuzz.sh.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backend/azure/text.hpp"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "azure_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  using namespace xfer::azure;
  switch (data[0] % 3) {
    case 0: {
      const auto ns = parse_mtime(text);
      if (ns) check(parse_mtime(format_mtime(*ns)) == ns, "an mtime does not read back");
      break;
    }
    case 1: {
      const auto bytes = unbase64(text);
      if (bytes) {
        check(bytes->size() <= text.size() / 4 * 3, "base64 decoded longer than it can be");
        check(unbase64(base64(*bytes)) == bytes || bytes->empty(), "base64 does not read back");
      }
      break;
    }
    default:
      for (const auto& [key, value] : parse_connection_string(text)) {
        check(key.find(';') == std::string::npos, "a connection string key holds ';'");
        check(value.find(';') == std::string::npos, "a connection string value holds ';'");
      }
  }
  return 0;
}
