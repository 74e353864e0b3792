#pragma once
// The XML answers of S3-compatible stores (and Azure's), read with expat as
// a stream of leaf elements: for every element that holds text, its path
// from the root's child ("Contents/Key") and its text; for every element
// closed, its path with an empty text and `end` set (to close a record).
// Bounded: names and texts are cut at kMaxText, depth at kMaxDepth; expat
// itself refuses entity expansion attacks. Pure; any thread.

#include <functional>
#include <string>
#include <string_view>

#include "xfer/core/result.hpp"

namespace xfer::s3 {

inline constexpr std::size_t kMaxText = 4096;
inline constexpr int kMaxDepth = 16;

struct XmlLeaf {
  std::string_view path;  // "Contents/Key": the root element is not in it
  std::string_view text;
  bool end = false;  // an element closed (any element, leaf or not)
};
using XmlVisitor = std::function<Status(const XmlLeaf&)>;

// Parses `doc` and calls `visit` in document order. kCorrupt (naming `what`)
// for XML that does not parse, is too deep, or has a text over kMaxText; the
// visitor's error stops the parse and is returned. `root` is set to the
// root element's name.
Status parse_xml(std::string_view doc, std::string_view what, const XmlVisitor& visit,
                 std::string* root = nullptr);

}  // namespace xfer::s3
