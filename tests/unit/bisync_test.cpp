// The state file of sync --bidirectional (engine/bisync.hpp): written and
// read back exactly, whatever bytes a name holds; anything it did not
// write (a damaged or edited file) refused with the line named, never
// half-read: a state read wrong would turn into deletions.

#include <gtest/gtest.h>

#include "xfer/engine/bisync.hpp"

namespace xfer {
namespace {

BisyncRecord file(std::string path, std::uint64_t size, std::int64_t a, std::int64_t b) {
  BisyncRecord r;
  r.path = std::move(path);
  r.size = size;
  r.mode = 0640;
  r.mtime_a = a;
  r.mtime_b = b;
  return r;
}

TEST(BisyncState, RoundTripsAnyName) {
  std::vector<BisyncRecord> in;
  BisyncRecord dir;
  dir.path = "a dir";
  dir.type = EntryType::kDirectory;
  in.push_back(dir);
  in.push_back(file("a dir/100% sure\n\twith controls", 7, -5, 9'000'000'000'000'000'000));
  BisyncRecord link;
  link.path = "link";
  link.type = EntryType::kSymlink;
  link.target = "../some where/%41";
  link.mtime_a = 1;
  link.mtime_b = 2;
  in.push_back(link);
  in.push_back(file("\xc3\xa9t\xc3\xa9", 0, 0, 0));
  const std::string text = format_bisync_state("/x y", "xfer://h/d", in);
  auto out = parse_bisync_state(text, "state");
  ASSERT_TRUE(out) << out.error().message();
  ASSERT_EQ(out->size(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ((*out)[i].path, in[i].path);
    EXPECT_EQ((*out)[i].type, in[i].type);
    EXPECT_EQ((*out)[i].size, in[i].size);
    EXPECT_EQ((*out)[i].mode, in[i].mode);
    EXPECT_EQ((*out)[i].mtime_a, in[i].mtime_a);
    EXPECT_EQ((*out)[i].mtime_b, in[i].mtime_b);
    EXPECT_EQ((*out)[i].target, in[i].target);
  }
  // An empty state (two empty folders synced) is a state.
  auto empty = parse_bisync_state(format_bisync_state("a", "b", {}), "state");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(BisyncState, RefusesWhatItDidNotWrite) {
  const std::string head = "xfer-bisync-v1\n";
  const std::pair<std::string, std::string> bad[] = {
      {"", "empty"},
      {"rsync state\n", "not a state file"},
      {head + "f 1 644 1 1 x", "cut short"},
      {head + "f 1 644 1 1 ../x\n", "not names"},
      {head + "f 1 644 1 1 /abs\n", ""},
      {head + "f 1 644 1 1 a//b\n", ""},
      {head + "f 1 644 1 1 a/\n", ""},
      {head + "f 1 644 1 1 b\nf 1 644 1 1 a\n", "out of order"},
      {head + "f 1 644 1 1 a\nf 1 644 1 1 a\n", "out of order"},
      {head + "f -1 644 1 1 a\n", "bad number"},
      {head + "f 1 99999 1 1 a\n", "bad number"},
      {head + "f 1 644 1 1 a extra\n", "field count"},
      {head + "l 1 644 1 1 a\n", "field count"},
      {head + "x 1 644 1 1 a\n", "unknown entry type"},
      {head + "f 1 644 1 1 a%2\n", "escape"},
      {head + "f 1 644 1 1 a%zz\n", "escape"},
      {head + "f 1 644 1 1 a%00b\n", ""},              // a NUL in a name
      {head + "f 1 644 1 1 %2E%2E/x\n", "not names"},  // escaped, still ".."
      {head + "f 1 644 1 99999999999999999999 a\n", "bad number"},
      {head + "f 1 644\n", "too few fields"},
  };
  for (const auto& [text, why] : bad) {
    auto r = parse_bisync_state(text, "state");
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message().find(why), std::string::npos)
        << text << " -> " << r.error().message();
    EXPECT_NE(r.error().path.find("state:"), std::string::npos) << r.error().path;
  }
}

TEST(BisyncState, OneFilePerPairOfFolders) {
  EXPECT_EQ(bisync_state_file("/s", "/a", "/b"), bisync_state_file("/s", "/a", "/b"));
  EXPECT_NE(bisync_state_file("/s", "/a", "/b"), bisync_state_file("/s", "/b", "/a"));
  EXPECT_EQ(bisync_state_file("/s", "/a", "/b").rfind("/s/bisync/", 0), 0u);
}

}  // namespace
}  // namespace xfer
