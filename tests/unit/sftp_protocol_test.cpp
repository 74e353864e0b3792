// SFTP v3 on the wire (src/backend/sftp/protocol.cpp): requests byte for
// byte as OpenSSH's sftp sends them, replies as sftp-server sends them, and
// what a hostile server may send instead.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backend/sftp/protocol.hpp"

namespace xfer::sftp {
namespace {

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> out(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) out[i] = static_cast<std::byte>(s[i]);
  return out;
}

std::string hex(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : s) {
    out += kHex[static_cast<unsigned char>(c) >> 4];
    out += kHex[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

// A packet body (no length prefix) from pieces.
struct Body {
  std::string s;
  Body& u8(std::uint8_t v) {
    s.push_back(static_cast<char>(v));
    return *this;
  }
  Body& u32(std::uint32_t v) {
    for (int k = 24; k >= 0; k -= 8) s.push_back(static_cast<char>((v >> k) & 0xff));
    return *this;
  }
  Body& u64(std::uint64_t v) {
    u32(static_cast<std::uint32_t>(v >> 32));
    return u32(static_cast<std::uint32_t>(v));
  }
  Body& str(std::string_view v) {
    u32(static_cast<std::uint32_t>(v.size()));
    s.append(v);
    return *this;
  }
};

TEST(SftpProtocol, RequestsAreTheBytesOpenSshSends) {
  EXPECT_EQ(hex(init_request()), "000000050100000003");
  // OPEN id 1 "/a" READ, no attributes.
  EXPECT_EQ(hex(open_request(1, "/a", kOpenRead, {})),
            "00000013"
            "03"
            "00000001"
            "000000022f61"
            "00000001"
            "00000000");
  // READ id 7 of handle "h" at 2^32 + 1, 32 KiB.
  EXPECT_EQ(hex(read_request(7, "h", (1ull << 32) + 1, 32768)),
            "00000016"
            "05"
            "00000007"
            "0000000168"
            "0000000100000001"
            "00008000");
  // SETSTAT with mode and times.
  Attrs a;
  a.permissions = 0100644;
  a.atime = 1;
  a.mtime = 2;
  EXPECT_EQ(hex(setstat_request(3, "/f", a)),
            "0000001b"
            "09"
            "00000003"
            "000000022f66"
            "0000000c"
            "000081a4"
            "00000001"
            "00000002");
  // posix-rename is an EXTENDED request named by its extension.
  const std::string pr = posix_rename_request(4, "/x", "/y");
  EXPECT_NE(pr.find("posix-rename@openssh.com"), std::string::npos);
  EXPECT_EQ(static_cast<std::uint8_t>(pr[4]), 200);
  // SYMLINK in OpenSSH's order: the target first, then the link.
  EXPECT_EQ(hex(symlink_request(5, "/link", "dest")),
            "00000016"
            "14"
            "00000005"
            "0000000464657374"
            "000000052f6c696e6b");
}

TEST(SftpProtocol, RepliesParse) {
  auto version = parse_reply(bytes(Body()
                                       .u8(2)
                                       .u32(3)
                                       .str("posix-rename@openssh.com")
                                       .str("1")
                                       .str("limits@openssh.com")
                                       .str("1")
                                       .s));
  ASSERT_TRUE(version.ok()) << version.error().message();
  EXPECT_EQ(version->version, 3u);
  ASSERT_EQ(version->extensions.size(), 2u);
  EXPECT_EQ(version->extensions[0].first, "posix-rename@openssh.com");

  auto status = parse_reply(bytes(Body().u8(101).u32(9).u32(2).str("No such file").str("").s));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->id, 9u);
  EXPECT_EQ(status->status, Status::kNoSuchFile);
  EXPECT_EQ(status_error(*status, "stat", "/x").code, ErrorCode::kNotFound);
  // Some servers send no message at all.
  EXPECT_TRUE(parse_reply(bytes(Body().u8(101).u32(1).u32(0).s)).ok());

  auto handle = parse_reply(bytes(Body().u8(102).u32(2).str("\x01\x02").s));
  ASSERT_TRUE(handle.ok());
  EXPECT_EQ(handle->bytes, std::string("\x01\x02"));

  auto data = parse_reply(bytes(Body().u8(103).u32(3).str("hello").s));
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(data->bytes, "hello");

  // NAME with two entries: one with size, mode and times, one with nothing.
  auto names = parse_reply(bytes(Body()
                                     .u8(104)
                                     .u32(4)
                                     .u32(2)
                                     .str("a.txt")
                                     .str("-rw-r--r-- ...")
                                     .u32(0x1 | 0x4 | 0x8)
                                     .u64(12)
                                     .u32(0100644)
                                     .u32(5)
                                     .u32(6)
                                     .str("sub")
                                     .str("drwx...")
                                     .u32(0)
                                     .s));
  ASSERT_TRUE(names.ok()) << names.error().message();
  ASSERT_EQ(names->names.size(), 2u);
  EXPECT_EQ(names->names[0].name, "a.txt");
  EXPECT_EQ(names->names[0].attrs.size, 12u);
  EXPECT_EQ(names->names[0].attrs.permissions, 0100644u);
  EXPECT_EQ(names->names[0].attrs.mtime, 6u);
  EXPECT_FALSE(names->names[1].attrs.size.has_value());

  // ATTRS with an extended pair (skipped).
  auto attrs = parse_reply(
      bytes(Body().u8(105).u32(5).u32(0x1 | 0x80000000).u64(7).u32(1).str("k").str("v").s));
  ASSERT_TRUE(attrs.ok()) << attrs.error().message();
  EXPECT_EQ(attrs->attrs.size, 7u);
}

TEST(SftpProtocol, MalformedRepliesAreCorrupt) {
  const std::vector<std::string> bad = {
      "",                                                       // empty
      Body().u8(101).s,                                         // no id
      Body().u8(101).u32(1).s,                                  // no code
      Body().u8(102).u32(1).u32(1000).s,                        // handle longer than the packet
      Body().u8(102).u32(1).str(std::string(300, 'h')).s,       // handle over 256 bytes
      Body().u8(102).u32(1).str("").s,                          // empty handle
      Body().u8(103).u32(1).u32(0xffffffff).s,                  // data length past the end
      Body().u8(104).u32(1).u32(0x7fffffff).s,                  // a count no packet holds
      Body().u8(104).u32(1).u32(1).str("a").str("l").u32(1).s,  // size flag, no size
      Body().u8(105).u32(1).u32(0x80000000).u32(0x7fffffff).s,  // extended count too large
      Body().u8(103).u32(1).str("x").u8(0).s,                   // a byte after the reply
      Body().u8(3).u32(1).str("/a").s,                          // a request, not a reply
      Body().u8(2).u32(3).str("ext").s,                         // extension without its data
  };
  for (const auto& b : bad) {
    auto r = parse_reply(bytes(b));
    EXPECT_FALSE(r.ok()) << hex(b);
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kCorrupt) << hex(b);
    }
  }
}

TEST(SftpProtocol, FramerCutsAStreamIntoPackets) {
  const std::string a = read_request(1, "h", 0, 10);
  const std::string b = init_request();
  const std::string stream = a + b;
  Framer f;
  // One byte at a time: nothing until a packet is whole.
  std::vector<std::vector<std::byte>> got;
  for (const char c : stream) {
    const std::byte one = static_cast<std::byte>(c);
    f.feed({&one, 1});
    while (auto p = f.next()) {
      ASSERT_TRUE(p->ok());
      got.push_back(std::move(p->value()));
    }
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].size(), a.size() - 4);
  EXPECT_EQ(got[1].size(), b.size() - 4);
  EXPECT_EQ(f.buffered(), 0u);
}

TEST(SftpProtocol, FramerRefusesAnOversizedLengthForGood) {
  Framer f;
  const auto huge = bytes(Body().u32(kMaxPacket + 1).s);
  f.feed(huge);
  auto p = f.next();
  ASSERT_TRUE(p.has_value());
  ASSERT_FALSE(p->ok());
  EXPECT_EQ(p->error().code, ErrorCode::kCorrupt);
  // Whatever follows cannot be trusted either.
  f.feed(bytes(init_request()));
  auto again = f.next();
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->ok());
  Framer zero;
  zero.feed(bytes(Body().u32(0).s));
  auto z = zero.next();
  ASSERT_TRUE(z.has_value());
  EXPECT_FALSE(z->ok());
}

// limits@openssh.com's reply: four 64-bit numbers, nothing more or less.
TEST(SftpProtocol, LimitsReplyParsesOnlyWhole) {
  std::string payload;
  for (std::uint64_t v : {262144ull, 261120ull, 261120ull, 0ull}) {
    for (int shift = 56; shift >= 0; shift -= 8) payload.push_back(static_cast<char>(v >> shift));
  }
  auto l = parse_limits(payload);
  ASSERT_TRUE(l.ok()) << l.error().message();
  EXPECT_EQ(l->max_packet, 262144u);
  EXPECT_EQ(l->max_read, 261120u);
  EXPECT_EQ(l->max_write, 261120u);
  EXPECT_EQ(l->max_open_handles, 0u);
  EXPECT_EQ(parse_limits(payload.substr(0, 31)).error().code, ErrorCode::kCorrupt);
  EXPECT_EQ(parse_limits(payload + "x").error().code, ErrorCode::kCorrupt);
  EXPECT_EQ(parse_limits("").error().code, ErrorCode::kCorrupt);
}

}  // namespace
}  // namespace xfer::sftp
