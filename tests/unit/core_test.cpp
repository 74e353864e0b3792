#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "xfer/core/checksum.hpp"
#include "xfer/core/config.hpp"
#include "xfer/core/result.hpp"
#include "xfer/core/units.hpp"
#include "xfer/core/url.hpp"

namespace xfer {
namespace {

TEST(Result, CarriesValueOrError) {
  Result<int> ok = 7;
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 7);
  Result<int> bad = errno_error(ENOENT, "open", "/x");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(bad.error().retry, RetryClass::kFatal);
  EXPECT_EQ(bad.error().message(), "open /x: No such file or directory");
}

TEST(Result, RetryClassFromErrno) {
  EXPECT_EQ(errno_error(EAGAIN, "read", "").retry, RetryClass::kRetryCall);
  EXPECT_EQ(errno_error(EINTR, "read", "").retry, RetryClass::kRetryCall);
  EXPECT_EQ(errno_error(ENOSPC, "write", "").code, ErrorCode::kNoSpace);
  EXPECT_EQ(errno_error(ENOSPC, "write", "").retry, RetryClass::kFatal);
  EXPECT_EQ(errno_error(EIO, "read", "").retry, RetryClass::kRetryFile);
  EXPECT_EQ(errno_error(EXDEV, "rename", "").code, ErrorCode::kCrossDevice);
}

Status fails_then_propagates() {
  XFER_TRY(Status(make_error(ErrorCode::kCorrupt, "verify", "f", "bad chunk")));
  return ok_status();
}

Result<int> assign_chain(bool fail) {
  auto inner = [&]() -> Result<int> {
    if (fail) return make_error(ErrorCode::kIo, "read", "p");
    return 41;
  };
  XFER_ASSIGN_OR_RETURN(int v, inner());
  return v + 1;
}

TEST(Result, TryMacrosPropagate) {
  Status s = fails_then_propagates();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message(), "verify f: bad chunk");
  EXPECT_EQ(*assign_chain(false), 42);
  EXPECT_EQ(assign_chain(true).error().code, ErrorCode::kIo);
}

TEST(Url, BarePathsAreLocalAndLiteral) {
  auto u = parse_url("/data/a%20b:c");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "file");
  EXPECT_EQ(u->path, "/data/a%20b:c");
  EXPECT_FALSE(u->trailing_slash);
  EXPECT_TRUE(parse_url("rel/dir/")->trailing_slash);
  EXPECT_EQ(parse_url("rel/dir/")->to_string(), "rel/dir/");
}

TEST(Url, FileUrls) {
  auto u = parse_url("file:///tmp/x%20y");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "file");
  EXPECT_EQ(u->path, "/tmp/x y");
  EXPECT_TRUE(parse_url("file://localhost/tmp").ok());
  EXPECT_FALSE(parse_url("file://otherhost/tmp").ok());
  EXPECT_FALSE(parse_url("file://").ok());
}

TEST(Url, GenericSchemesParse) {
  auto u = parse_url("xfer://alice@host.example:7000/srv/data/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "xfer");
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->host, "host.example");
  EXPECT_EQ(u->port, 7000);
  EXPECT_EQ(u->path, "/srv/data/");
  EXPECT_TRUE(u->trailing_slash);
  auto v6 = parse_url("sftp://[::1]:2222/x");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 2222);
  EXPECT_EQ(v6->to_string(), "sftp://[::1]:2222/x");
  EXPECT_FALSE(parse_url("xfer://h:99999/x").ok());
  EXPECT_FALSE(parse_url("xfer://h:12ab/x").ok());
  EXPECT_FALSE(parse_url("s3://b/k%zz").ok());
  EXPECT_FALSE(parse_url("s3://b/k%2").ok());
  EXPECT_FALSE(parse_url("").ok());
}

TEST(Url, PathHelpers) {
  EXPECT_EQ(join_path("a/", "b"), "a/b");
  EXPECT_EQ(join_path("/", "b"), "/b");
  EXPECT_EQ(join_path("", "b"), "b");
  EXPECT_EQ(base_name("a/b/"), "b");
  EXPECT_EQ(base_name("/"), "");
  EXPECT_EQ(dir_name("a/b"), "a");
  EXPECT_EQ(dir_name("b"), ".");
  EXPECT_EQ(dir_name("/b"), "/");
}

TEST(Checksum, StreamingEqualsOneShot) {
  std::array<std::byte, 10000> data;
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>(i * 31 + 7);
  Xxh3Stream s;
  s.update({data.data(), 1234});
  s.update({data.data() + 1234, data.size() - 1234});
  EXPECT_EQ(s.digest(), xxh3_64(data));
  auto copy = data;
  copy[5000] ^= std::byte{1};
  EXPECT_NE(xxh3_64(copy), xxh3_64(data));
  // Known value: XXH3-64 of the empty input.
  EXPECT_EQ(xxh3_64({}), 0x2D06800538D394C2ull);
}

TEST(Units, ParseSize) {
  EXPECT_EQ(*parse_size("0"), 0u);
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("16M"), 16ull << 20);
  EXPECT_EQ(*parse_size("1.5G"), 3ull << 29);
  EXPECT_EQ(*parse_size("2KiB"), 2048u);
  EXPECT_EQ(*parse_size("1t"), 1ull << 40);
  EXPECT_FALSE(parse_size("").ok());
  EXPECT_FALSE(parse_size("-1M").ok());
  EXPECT_FALSE(parse_size("12X").ok());
  EXPECT_FALSE(parse_size("M").ok());
  EXPECT_FALSE(parse_size("1BB").ok());
  EXPECT_FALSE(parse_size("99999999999T").ok());
}

// --bwlimit reads as rsync and rclone do: a bare number is KiB/s.
TEST(Units, ParseRateAsRsyncAndRclone) {
  EXPECT_EQ(*parse_rate("30000"), 30000ull * 1024);
  EXPECT_EQ(*parse_rate("0"), 0u);
  EXPECT_EQ(*parse_rate("30M"), 30ull << 20);
  EXPECT_EQ(*parse_rate("30M/s"), 30ull << 20);
  EXPECT_EQ(*parse_rate("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*parse_rate("64KB/s"), 64ull << 10);
  EXPECT_EQ(*parse_rate("30000B"), 30000u);
  EXPECT_EQ(*parse_rate("30000B/s"), 30000u);
  EXPECT_EQ(*parse_rate("800Mbit"), 100'000'000u);
  EXPECT_EQ(*parse_rate("1Gbit/s"), 125'000'000u);
  EXPECT_EQ(*parse_rate("100Mbps"), 12'500'000u);
  EXPECT_EQ(*parse_rate("512kbit"), 64'000u);
  EXPECT_EQ(*parse_rate("8bit"), 1u);
  auto ambiguous = parse_rate("100Mb");
  ASSERT_FALSE(ambiguous.ok());
  EXPECT_NE(ambiguous.error().message().find("100M for bytes or 100Mbit for bits"),
            std::string::npos)
      << ambiguous.error().message();
  for (const char* bad : {"", "-1", "fast", "10X", "10Xbit", "M", "/s", "1e400"}) {
    EXPECT_FALSE(parse_rate(bad).ok()) << bad;
  }
}

TEST(Units, Format) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_duration(3.25), "3.2s");
  EXPECT_EQ(format_duration(62), "1m02s");
}

}  // namespace
}  // namespace xfer
