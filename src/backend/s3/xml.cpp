// parse_xml (xml.hpp) on expat: one parser per call, no state kept.

#include "backend/s3/xml.hpp"

#include <expat.h>
#include <fmt/format.h>

namespace xfer::s3 {
namespace {

struct State {
  const XmlVisitor* visit = nullptr;
  XML_Parser parser = nullptr;
  std::string path;  // below the root
  std::string text;
  std::string root;
  int depth = 0;
  std::optional<Error> error;
  bool too_much = false;

  void stop() { XML_StopParser(parser, XML_FALSE); }
};

void on_start(void* user, const XML_Char* name, const XML_Char**) {
  auto* s = static_cast<State*>(user);
  ++s->depth;
  if (s->depth > kMaxDepth) {
    s->too_much = true;
    s->stop();
    return;
  }
  s->text.clear();
  if (s->depth == 1) {
    s->root = name;
    return;
  }
  if (!s->path.empty()) s->path.push_back('/');
  s->path += name;
}

void on_end(void* user, const XML_Char*) {
  auto* s = static_cast<State*>(user);
  if (s->depth > 1) {
    Status st = (*s->visit)(XmlLeaf{s->path, s->text, false});
    if (st.ok()) st = (*s->visit)(XmlLeaf{s->path, {}, true});
    if (!st.ok()) {
      s->error = st.error();
      s->stop();
      return;
    }
    const auto slash = s->path.rfind('/');
    s->path.resize(slash == std::string::npos ? 0 : slash);
  }
  s->text.clear();
  --s->depth;
}

void on_text(void* user, const XML_Char* data, int len) {
  auto* s = static_cast<State*>(user);
  if (s->text.size() + static_cast<std::size_t>(len) > kMaxText) {
    s->too_much = true;
    s->stop();
    return;
  }
  s->text.append(data, static_cast<std::size_t>(len));
}

}  // namespace

Status parse_xml(std::string_view doc, std::string_view what, const XmlVisitor& visit,
                 std::string* root) {
  XML_Parser p = XML_ParserCreate("UTF-8");
  if (p == nullptr) return make_error(ErrorCode::kInternal, "parse", std::string(what), "expat");
  State s;
  s.visit = &visit;
  s.parser = p;
  XML_SetUserData(p, &s);
  XML_SetElementHandler(p, &on_start, &on_end);
  XML_SetCharacterDataHandler(p, &on_text);
  const XML_Status rc = XML_Parse(p, doc.data(), static_cast<int>(doc.size()), XML_TRUE);
  std::string why;
  if (rc == XML_STATUS_ERROR && !s.error && !s.too_much) {
    why = fmt::format("line {}: {}", XML_GetCurrentLineNumber(p),
                      XML_ErrorString(XML_GetErrorCode(p)));
  }
  XML_ParserFree(p);
  if (s.error) return *s.error;
  if (s.too_much) {
    return make_error(ErrorCode::kCorrupt, "parse", std::string(what),
                      fmt::format("the server's XML nests deeper than {} or has a text over {} "
                                  "bytes",
                                  kMaxDepth, kMaxText));
  }
  if (!why.empty()) {
    return make_error(ErrorCode::kCorrupt, "parse", std::string(what),
                      "the server's answer is not XML: " + why);
  }
  if (root != nullptr) *root = s.root;
  return ok_status();
}

}  // namespace xfer::s3
