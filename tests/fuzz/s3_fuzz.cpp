// libFuzzer target for what an S3-compatible store sends that the s3
// backend parses: XML answers (src/backend/s3/xml.cpp: listings, errors,
// multipart replies) as a stream of leaf elements. None may crash, read out
// of bounds or take more than linear time; what parses keeps its promises:
// no path deeper than kMaxDepth, no text over kMaxText, every element that
// opens below the root closes. Built by this build's fuzz rules
// (tests/fuzz/CMakeLists.txt), run by run_fuzz.sh.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "backend/s3/xml.hpp"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "s3_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  using namespace xfer::s3;
  std::size_t leaves = 0;
  std::size_t ends = 0;
  std::string root;
  const auto st = parse_xml(
      doc, "fuzz",
      [&](const XmlLeaf& l) {
        std::size_t depth = 1;
        for (char c : l.path) depth += c == '/';
        check(depth < static_cast<std::size_t>(kMaxDepth), "path deeper than kMaxDepth");
        check(l.text.size() <= kMaxText, "text over kMaxText");
        check(!l.end || l.text.empty(), "an end with text");
        (l.end ? ends : leaves) += 1;
        return xfer::ok_status();
      },
      &root);
  if (st.ok()) check(leaves == ends, "an element opened and never closed");
  return 0;
}
