// The http backend's parsers (src/backend/http/index.cpp): index pages as
// nginx and Apache write them, Content-Range, HTTP dates, percent-coding,
// and what a hostile page may try.

#include <gtest/gtest.h>

#include <string>

#include "backend/http/index.hpp"

namespace xfer::http {
namespace {

std::string names(const IndexPage& page) {
  std::string out;
  for (const auto& e : page.entries) {
    out += e.name;
    if (e.type == EntryType::kDirectory) out += '/';
    out += ' ';
  }
  return out;
}

// nginx 1.22's autoindex page, as it writes it (names shortened in the
// text, escaped in the href; "./" before a name with a colon).
constexpr std::string_view kNginx = R"X(<html>
<head><title>Index of /pub/dir/</title></head>
<body>
<h1>Index of /pub/dir/</h1><hr><pre><a href="../">../</a>
<a href="sub/">sub/</a>                                               04-Dec-2026 10:15                   -
<a href="a%20b.txt">a b.txt</a>                                            04-Dec-2026 10:16                  12
<a href="./c:d.bin">c:d.bin</a>                                            01-Jan-2025 00:00                   0
<a href="%C3%A9t%C3%A9.txt">&#233;t&#233;.txt</a>                                          04-Dec-2026 10:16                   3
<a href="x&amp;y.txt">x&amp;y.txt</a>                                          04-Dec-2026 10:16                   3
</pre><hr></body>
</html>
)X";

TEST(HttpIndex, NginxHtmlPage) {
  auto page = parse_index(kNginx, IndexFormat::kHtml, "/pub/dir/");
  ASSERT_TRUE(page.ok()) << page.error().message();
  EXPECT_EQ(names(*page), "sub/ a b.txt c:d.bin \xC3\xA9t\xC3\xA9.txt x&y.txt ");
  // The folder's listed time, to the minute (04-Dec-2026 10:15 UTC).
  ASSERT_TRUE(page->entries[0].listed_mtime_ns.has_value());
  EXPECT_EQ(*page->entries[0].listed_mtime_ns, 1796379300LL * 1'000'000'000LL);
  EXPECT_FALSE(page->entries[1].size.has_value()) << "HTML sizes are not taken as exact";
}

// Apache's default FancyIndexing table: sorting links and the parent
// directory (an absolute href) are no entries.
TEST(HttpIndex, ApacheHtmlPage) {
  constexpr std::string_view kApache = R"X(<table>
<tr><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th></tr>
<tr><td><a href="/pub/">Parent Directory</a></td></tr>
<tr><td><a href="file.iso">file.iso</a></td><td align="right">2026-12-04 10:00  </td></tr>
<tr><td><A HREF='nested/'>nested/</A></td></tr>
<tr><td><a href="/pub/dir/abs.txt">abs.txt</a></td></tr>
</table>)X";
  auto page = parse_index(kApache, IndexFormat::kHtml, "/pub/dir/");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(names(*page), "file.iso nested/ abs.txt ");
}

TEST(HttpIndex, LinksThatNameNoEntryAreSkipped) {
  constexpr std::string_view kHostile = R"X(
<a href="https://elsewhere.example/x">x</a>
<a href="//elsewhere.example/y">y</a>
<a href="mailto:root@localhost">m</a>
<a href="javascript:alert(1)">j</a>
<a href="../../etc/passwd">p</a>
<a href="a/b/c">deep</a>
<a href="%2e%2e/">dotdot</a>
<a href="%2e%2e">dotdot2</a>
<a href="x%2Fy">slash</a>
<a href="bad%zz">bad escape</a>
<a href="nul%00">nul</a>
<a href="/other/dir/file">other</a>
<a href="#top">fragment</a>
<a href="ok.txt#frag">ok</a>
<a href="ok.txt">ok again</a>
<ahref="nospace">no</a>
<a data-href="z">z</a>
)X";
  auto page = parse_index(kHostile, IndexFormat::kHtml, "/pub/dir/");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(names(*page), "ok.txt ");
  EXPECT_GE(page->skipped, 3u);
}

TEST(HttpIndex, NameLongerThanAComponentIsSkipped) {
  const std::string page_text = "<a href=\"" + std::string(300, 'n') + "\">n</a>";
  auto page = parse_index(page_text, IndexFormat::kHtml, "/");
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->entries.empty());
  EXPECT_EQ(page->skipped, 1u);
}

TEST(HttpIndex, NginxJsonPage) {
  constexpr std::string_view kJson = R"X([
{ "name":"sub", "type":"directory", "mtime":"Fri, 04 Dec 2026 10:15:07 GMT" },
{ "name":"a b.txt", "type":"file", "mtime":"Fri, 04 Dec 2026 10:16:01 GMT", "size":12 },
{ "name":"sock", "type":"other", "mtime":"Fri, 04 Dec 2026 10:16:01 GMT" },
{ "name":"../x", "type":"file", "mtime":"Fri, 04 Dec 2026 10:16:01 GMT", "size":1 },
{ "name":"nosize", "type":"file", "mtime":"Fri, 04 Dec 2026 10:16:01 GMT" },
{ "type":"file" }, 7
])X";
  auto page = parse_index(kJson, IndexFormat::kJson, "/pub/");
  ASSERT_TRUE(page.ok()) << page.error().message();
  EXPECT_EQ(names(*page), "sub/ a b.txt sock nosize ");
  ASSERT_EQ(page->entries.size(), 4u);
  EXPECT_EQ(page->entries[1].size, 12u);
  EXPECT_EQ(page->entries[1].mtime_ns, 1796379361LL * 1'000'000'000LL);
  EXPECT_EQ(page->entries[2].type, EntryType::kOther);
  EXPECT_FALSE(page->entries[3].size.has_value()) << "a file without size has no exact attrs";
  EXPECT_EQ(page->skipped, 3u);
}

TEST(HttpIndex, JsonThatIsNoIndexIsCorrupt) {
  for (std::string_view text : {"", "{", "{\"name\":\"x\"}", "nul\0l"}) {
    auto page = parse_index(text, IndexFormat::kJson, "/");
    ASSERT_FALSE(page.ok()) << text;
    EXPECT_EQ(page.error().code, ErrorCode::kCorrupt);
  }
}

// What a hostile page may try: a link of '&' (each once a search to the
// page's end), names of xfer's own temporaries, values nested in values.
TEST(HttpIndex, HostilePagesCostLinearTimeAndNameNoTemporaries) {
  std::string amps = "<a href=\"" + std::string(4u << 20, '&') + "x\">x</a><a href=\"ok\">ok</a>";
  auto page = parse_index(amps, IndexFormat::kHtml, "/");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(names(*page), "ok ");
  auto html = parse_index("<a href=\".a.xfer-tmp-file\">t</a><a href=\".b.xfer-part-1\">p</a>",
                          IndexFormat::kHtml, "/");
  ASSERT_TRUE(html.ok());
  EXPECT_TRUE(html->entries.empty());
  auto json = parse_index(
      R"X([[{"name":"inner","type":"file"}], 1, {"name":{"deep":"x"}}, {"name":".a.xfer-tmp-1","type":"file"},
          {"name":"kept","type":"file","size":1,"mtime":"Fri, 04 Dec 2026 10:16:01 GMT","extra":[[["x"]]]}])X",
      IndexFormat::kJson, "/");
  ASSERT_TRUE(json.ok()) << json.error().message();
  EXPECT_EQ(names(*json), "kept ");
  EXPECT_EQ(json->entries[0].size, 1u);
}

TEST(HttpIndex, ContentRange) {
  auto r = parse_content_range("bytes 0-1048575/5368709120");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->last, 1048575u);
  EXPECT_EQ(r->total, 5368709120u);
  r = parse_content_range("bytes */0");
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->first.has_value());
  EXPECT_EQ(r->total, 0u);
  EXPECT_TRUE(parse_content_range("bytes 5-9/*").has_value());
  for (std::string_view bad :
       {"", "bytes", "bytes 9-5/10", "bytes 0-10/10", "items 0-1/2", "bytes -1-2/3",
        "bytes 0-1/99999999999999999999", "bytes */*", "bytes 1/2"}) {
    EXPECT_FALSE(parse_content_range(bad).has_value()) << bad;
  }
}

TEST(HttpIndex, DatesAndCoding) {
  EXPECT_EQ(parse_http_date("Fri, 04 Dec 2026 10:16:01 GMT"), 1796379361LL * 1'000'000'000LL);
  EXPECT_FALSE(parse_http_date("yesterday-ish").has_value());
  EXPECT_FALSE(parse_http_date("").has_value());
  EXPECT_EQ(percent_decode("a%20b%2Fc"), "a b/c");
  EXPECT_FALSE(percent_decode("a%2").has_value());
  EXPECT_FALSE(percent_decode("a%00").has_value());
  EXPECT_EQ(percent_encode_path("/a b/é?#%"), "/a%20b/%C3%A9%3F%23%25");
  EXPECT_TRUE(is_strong_etag("\"5f-abc\""));
  EXPECT_FALSE(is_strong_etag("W/\"5f-abc\""));
  EXPECT_FALSE(is_strong_etag(""));
}

}  // namespace
}  // namespace xfer::http
