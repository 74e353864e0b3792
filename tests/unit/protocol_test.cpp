// The data-channel frame codec and its crypto (include/xfer/protocol/).

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol/conn.hpp"
#include "xfer/core/checksum.hpp"
#include "xfer/protocol/crypto.hpp"
#include "xfer/protocol/frame.hpp"

namespace xfer::protocol {
namespace {

using Bytes = std::vector<std::byte>;

Bytes bytes_of(std::string_view s) {
  Bytes out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

Bytes from_hex(std::string_view hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::byte>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

template <std::size_t N>
std::array<std::uint8_t, N> fill_array(std::uint8_t start) {
  std::array<std::uint8_t, N> a{};
  for (std::size_t i = 0; i < N; ++i) a[i] = static_cast<std::uint8_t>(start + i);
  return a;
}

FrameHeader sample_header() {
  FrameHeader h;
  h.type = FrameType::kData;
  h.flags = kFlagSealed;
  h.length = 123456;
  h.id = 0x0102030405060708ull;
  h.offset = 0xF0E0D0C0B0A09080ull;
  h.payload_hash = 0x1122334455667788ull;
  h.aux = 0xCAFEBABE;
  return h;
}

Hello sample_hello() {
  Hello v;
  v.version = 1;
  v.flags = 1;
  v.data_token = "token-abc";
  v.public_key = fill_array<32>(1);
  v.nonce = fill_array<16>(100);
  return v;
}

HelloOk sample_hello_ok() {
  HelloOk v;
  v.flags = 1;
  v.public_key = fill_array<32>(50);
  v.nonce = fill_array<16>(200);
  v.connection_id = 0xDEADBEEF12345678ull;
  return v;
}

ErrorBody sample_error() {
  return ErrorBody{static_cast<std::uint32_t>(ErrorCode::kPermission),
                   static_cast<std::uint32_t>(RetryClass::kFatal), "open /x: permission denied"};
}

FileMeta sample_meta(std::uint64_t size) {
  FileMeta m;
  m.path = "dir/sub/file.bin";
  m.size = size;
  m.mode = 0640;
  m.mtime_ns = -1234567890123;  // before the epoch: signed round trip
  m.flags = 0b101;
  m.resume_name = ".xfer-partial-42";
  return m;
}

FileMeta sample_basis_meta() {
  FileMeta m = sample_meta(5u << 20);
  m.flags = kMetaBasis;
  m.resume_name.clear();
  m.basis_size = 3u << 20;
  m.basis_mtime_ns = 1700000000987654321;
  return m;
}

OpenRead sample_open_read() {
  return OpenRead{"a/b/c.txt", 65536};
}

OpenReply sample_open_reply() {
  OpenReply v;
  v.size = 5;
  v.mode = 0600;
  v.mtime_ns = 1700000000123456789;
  v.flags = 0b10;
  v.inline_data = bytes_of("hello");
  return v;
}

PutFile sample_put_file() {
  PutFile v;
  v.data = bytes_of("file contents\n");
  v.meta = sample_meta(v.data.size());
  return v;
}

template <typename T>
Bytes encoded(const T& v) {
  Bytes out;
  encode(v, out);
  return out;
}

void expect_corrupt(const Error& e, std::string_view needle = {}) {
  EXPECT_EQ(e.code, ErrorCode::kCorrupt) << e.message();
  EXPECT_EQ(e.retry, RetryClass::kFatal) << e.message();
  if (!needle.empty()) {
    EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
  }
}

// Every body decoder, by name, for the table-driven truncation tests.
struct BodyCase {
  const char* name;
  Bytes bytes;
  std::function<Status(std::span<const std::byte>)> decode;
};

template <typename F>
std::function<Status(std::span<const std::byte>)> as_status(F f) {
  return [f](std::span<const std::byte> in) -> Status {
    auto r = f(in);
    if (!r.ok()) return r.error();
    return ok_status();
  };
}

std::vector<BodyCase> all_bodies() {
  Bytes put;
  encode(sample_put_file(), put);
  return {
      {"Hello", encoded(sample_hello()), as_status(decode_hello)},
      {"HelloOk", encoded(sample_hello_ok()), as_status(decode_hello_ok)},
      {"ErrorBody", encoded(sample_error()), as_status(decode_error)},
      {"OpenWrite", encoded(OpenWrite{sample_meta(77)}), as_status(decode_open_write)},
      {"OpenWrite with a basis", encoded(OpenWrite{sample_basis_meta()}),
       as_status(decode_open_write)},
      {"CopyBasis", encoded(CopyBasis{1ull << 40, 64ull << 20}), as_status(decode_copy_basis)},
      {"OpenRead", encoded(sample_open_read()), as_status(decode_open_read)},
      {"OpenReply", encoded(sample_open_reply()), as_status(decode_open_reply)},
      {"PutFile", put, as_status(decode_put_file)},
  };
}

// ---------------------------------------------------------------- header

TEST(FrameHeaderTest, RoundTrip) {
  const FrameHeader h = sample_header();
  const auto bytes = encode_header(h);
  auto d = decode_header(bytes);
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, h);
}

TEST(FrameHeaderTest, WireLayoutIsLittleEndian) {
  const auto b = encode_header(sample_header());
  EXPECT_EQ(b[0], std::byte{6});  // kData
  EXPECT_EQ(b[1], std::byte{1});  // kFlagSealed
  EXPECT_EQ(b[2], std::byte{0});  // reserved
  EXPECT_EQ(b[3], std::byte{0});
  EXPECT_EQ(b[4], std::byte{0x40});  // 123456 = 0x0001E240
  EXPECT_EQ(b[5], std::byte{0xE2});
  EXPECT_EQ(b[6], std::byte{0x01});
  EXPECT_EQ(b[8], std::byte{0x08});  // id low byte first
  EXPECT_EQ(b[15], std::byte{0x01});
  EXPECT_EQ(b[16], std::byte{0x80});  // offset
  EXPECT_EQ(b[24], std::byte{0x88});  // payload_hash
  EXPECT_EQ(b[32], std::byte{0xBE});  // aux
  EXPECT_EQ(b[35], std::byte{0xCA});
  const auto check = static_cast<std::uint32_t>(xxh3_64(std::span(b).first(36)));
  std::uint32_t stored = 0;
  for (int i = 0; i < 4; ++i) stored |= static_cast<std::uint32_t>(b[36 + i]) << (8 * i);
  EXPECT_EQ(stored, check);
}

TEST(FrameHeaderTest, SpanOverloadMatchesArrayOverload) {
  std::array<std::byte, kHeaderSize> out{};
  encode_header(sample_header(), out);
  EXPECT_EQ(out, encode_header(sample_header()));
}

TEST(FrameHeaderTest, EveryFrameTypeRoundTrips) {
  for (int t = 1; t <= 17; ++t) {
    FrameHeader h;
    h.type = static_cast<FrameType>(t);
    auto d = decode_header(encode_header(h));
    ASSERT_TRUE(d.ok()) << t << ": " << d.error().message();
    EXPECT_EQ(d->type, h.type);
    EXPECT_NE(to_string(h.type), "UNKNOWN");
  }
}

TEST(FrameHeaderTest, LongerSpanReadsOnlyTheHeader) {
  const auto hdr = encode_header(sample_header());
  Bytes frame(hdr.begin(), hdr.end());
  frame.resize(frame.size() + 10, std::byte{0xEE});
  auto d = decode_header(frame);
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, sample_header());
}

TEST(FrameHeaderTest, EveryTruncatedPrefixIsRefused) {
  const auto b = encode_header(sample_header());
  for (std::size_t n = 0; n < kHeaderSize; ++n) {
    auto d = decode_header(std::span(b).first(n));
    ASSERT_FALSE(d.ok()) << n;
    expect_corrupt(d.error(), "truncated frame header");
  }
}

TEST(FrameHeaderTest, EverySingleByteFlipIsDetected) {
  const auto good = encode_header(sample_header());
  for (std::size_t i = 0; i < kHeaderSize; ++i) {
    for (std::uint8_t mask : {0x01, 0x10, 0x80, 0xFF}) {
      auto b = good;
      b[i] ^= std::byte{mask};
      auto d = decode_header(b);
      ASSERT_FALSE(d.ok()) << "byte " << i << " mask " << int{mask};
      expect_corrupt(d.error(), "frame header check mismatch");
    }
  }
}

// A header with a valid check value but a bad field: encode the fields by
// hand, then recompute the check, so only the field test can refuse it.
std::array<std::byte, kHeaderSize> with_valid_check(std::array<std::byte, kHeaderSize> b) {
  const auto check = static_cast<std::uint32_t>(xxh3_64(std::span(b).first(36)));
  for (int i = 0; i < 4; ++i) b[36 + i] = static_cast<std::byte>(check >> (8 * i));
  return b;
}

TEST(FrameHeaderTest, UnknownTypeIsRefused) {
  for (std::uint8_t t : {0, 18, 77, 255}) {
    auto b = encode_header(sample_header());
    b[0] = std::byte{t};
    auto d = decode_header(with_valid_check(b));
    ASSERT_FALSE(d.ok()) << int{t};
    expect_corrupt(d.error(), "unknown frame type " + std::to_string(t));
  }
}

TEST(FrameHeaderTest, UnknownFlagsAreRefused) {
  for (std::uint8_t f : {0x02, 0x80, 0xFF}) {
    auto b = encode_header(sample_header());
    b[1] = std::byte{f};
    auto d = decode_header(with_valid_check(b));
    ASSERT_FALSE(d.ok()) << int{f};
    expect_corrupt(d.error(), "unknown frame flags");
  }
}

TEST(FrameHeaderTest, ReservedBitsAreRefused) {
  for (std::size_t i : {2, 3}) {
    auto b = encode_header(sample_header());
    b[i] = std::byte{1};
    auto d = decode_header(with_valid_check(b));
    ASSERT_FALSE(d.ok());
    expect_corrupt(d.error(), "reserved");
  }
}

TEST(FrameHeaderTest, OversizeLengthIsRefused) {
  FrameHeader h = sample_header();
  h.length = kMaxPayload;
  ASSERT_TRUE(decode_header(encode_header(h)).ok());
  h.length = kMaxPayload + 1;
  auto d = decode_header(encode_header(h));
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "exceeds the limit");
  h.length = 0xFFFFFFFF;
  ASSERT_FALSE(decode_header(encode_header(h)).ok());
}

TEST(FrameHeaderTest, PayloadHash) {
  EXPECT_EQ(payload_hash({}), 0u);
  const Bytes p = bytes_of("payload");
  EXPECT_EQ(payload_hash(p), xxh3_64(p));
  EXPECT_NE(payload_hash(p), 0u);
}

// ---------------------------------------------------------------- bodies

TEST(FrameBodyTest, HelloRoundTrip) {
  auto d = decode_hello(encoded(sample_hello()));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, sample_hello());
}

TEST(FrameBodyTest, HelloLayout) {
  // u16 version, u16 flags, u32 token length, token, 32 key bytes, 16 nonce bytes.
  const Bytes b = encoded(sample_hello());
  ASSERT_EQ(b.size(), 2 + 2 + 4 + 9 + 32 + 16u);
  EXPECT_EQ(b[0], std::byte{1});
  EXPECT_EQ(b[2], std::byte{1});
  EXPECT_EQ(b[4], std::byte{9});
  EXPECT_EQ(b[8], std::byte{'t'});
  EXPECT_EQ(b[17], std::byte{1});    // first public key byte
  EXPECT_EQ(b[49], std::byte{100});  // first nonce byte
}

TEST(FrameBodyTest, HelloOkRoundTrip) {
  auto d = decode_hello_ok(encoded(sample_hello_ok()));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, sample_hello_ok());
  EXPECT_EQ(encoded(sample_hello_ok()).size(), 2 + 2 + 32 + 16 + 8u);
}

TEST(FrameBodyTest, ErrorBodyRoundTrip) {
  auto d = decode_error(encoded(sample_error()));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, sample_error());
}

TEST(FrameBodyTest, OverlongErrorMessageIsCutNotRefused) {
  ErrorBody e = sample_error();
  e.message = std::string(70000, 'x');
  auto d = decode_error(encoded(e));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->message.size(), 64u << 10);
  // Not in the middle of a UTF-8 character: "é" is 2 bytes; place one across the limit.
  e.message = std::string((64u << 10) - 1, 'x') + "\xC3\xA9" + "tail";
  d = decode_error(encoded(e));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->message, std::string((64u << 10) - 1, 'x'));
}

TEST(FrameBodyTest, OpenWriteRoundTrip) {
  const OpenWrite v{sample_meta(1ull << 40)};
  auto d = decode_open_write(encoded(v));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->meta, v.meta);
}

TEST(FrameBodyTest, OpenWriteWithEmptyResumeName) {
  OpenWrite v{sample_meta(0)};
  v.meta.resume_name.clear();
  auto d = decode_open_write(encoded(v));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->meta, v.meta);
}

TEST(FrameBodyTest, OpenWriteWithABasisCarriesWhatTheOldFileMustBe) {
  const OpenWrite v{sample_basis_meta()};
  auto d = decode_open_write(encoded(v));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->meta, v.meta);
  // Without the flag the two fields are not on the wire: the same bytes
  // read as a meta with trailing garbage.
  Bytes b = encoded(v);
  b[b.size() - 16 - 4 - 4] = std::byte{0};  // the flags' low byte (before resume_name's u32 length)
  EXPECT_FALSE(decode_open_write(b).ok());
}

TEST(FrameBodyTest, CopyBasisRoundTrip) {
  const CopyBasis v{123456789012ull, 42ull << 20};
  auto d = decode_copy_basis(encoded(v));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, v);
}

TEST(FrameBodyTest, OpenReadRoundTrip) {
  auto d = decode_open_read(encoded(sample_open_read()));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, sample_open_read());
}

TEST(FrameBodyTest, OpenReplyRoundTrip) {
  auto d = decode_open_reply(encoded(sample_open_reply()));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, sample_open_reply());

  OpenReply not_inlined;
  not_inlined.size = 1ull << 33;
  not_inlined.flags = 0b01;  // resumed partial
  d = decode_open_reply(encoded(not_inlined));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(*d, not_inlined);
}

TEST(FrameBodyTest, OpenReplyInlineDataMustMatchFlagAndSize) {
  OpenReply v = sample_open_reply();
  v.size = 6;  // inline_data has 5 bytes
  auto d = decode_open_reply(encoded(v));
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "inline_data has 5 bytes");
  v = sample_open_reply();
  v.flags = 0;  // data without the inlined flag
  d = decode_open_reply(encoded(v));
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "without the inlined flag");
}

TEST(FrameBodyTest, PutFileRoundTrip) {
  const PutFile v = sample_put_file();
  const Bytes b = encoded(v);
  auto d = decode_put_file(b);
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_EQ(d->meta, v.meta);
  EXPECT_EQ(Bytes(d->data.begin(), d->data.end()), v.data);
  // The data is a view into the payload, at its end.
  EXPECT_EQ(d->data.data() + d->data.size(), b.data() + b.size());
}

TEST(FrameBodyTest, PutFileMetaPlusDataEqualsPutFile) {
  const PutFile v = sample_put_file();
  Bytes b;
  encode_put_file_meta(v.meta, b);
  b.insert(b.end(), v.data.begin(), v.data.end());
  EXPECT_EQ(b, encoded(v));
}

TEST(FrameBodyTest, EmptyPutFile) {
  PutFile v;
  v.meta = sample_meta(0);
  auto d = decode_put_file(encoded(v));
  ASSERT_TRUE(d.ok()) << d.error().message();
  EXPECT_TRUE(d->data.empty());
}

TEST(FrameBodyTest, PutFileDataSizeMismatchIsRefused) {
  const PutFile v = sample_put_file();
  Bytes b = encoded(v);
  b.push_back(std::byte{0});  // one byte more than meta.size
  auto d = decode_put_file(b);
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "meta.size");
  b.pop_back();  // back to the exact size,
  b.pop_back();  // then one byte less
  d = decode_put_file(b);
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "meta.size");
}

TEST(FrameBodyTest, EveryTruncatedPrefixIsRefused) {
  for (const auto& c : all_bodies()) {
    ASSERT_TRUE(c.decode(c.bytes).ok()) << c.name;
    for (std::size_t n = 0; n < c.bytes.size(); ++n) {
      // A copy of exactly n bytes, so AddressSanitizer sees any overread.
      const Bytes prefix(c.bytes.begin(), c.bytes.begin() + static_cast<std::ptrdiff_t>(n));
      auto s = c.decode(prefix);
      ASSERT_FALSE(s.ok()) << c.name << " prefix " << n;
      expect_corrupt(s.error());
    }
  }
}

TEST(FrameBodyTest, TrailingBytesAreRefused) {
  for (const auto& c : all_bodies()) {
    Bytes b = c.bytes;
    b.push_back(std::byte{0});
    auto s = c.decode(b);
    ASSERT_FALSE(s.ok()) << c.name;
    expect_corrupt(s.error());
    if (std::string_view(c.name) != "PutFile") {
      EXPECT_NE(s.error().message().find("trailing"), std::string::npos) << s.error().message();
    }
  }
}

TEST(FrameBodyTest, StringLongerThanRemainingIsRefused) {
  Bytes b = encoded(sample_open_read());  // u32 path length first
  b[0] = std::byte{0xF0};                 // 240 > bytes left
  auto d = decode_open_read(b);
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "truncated");
}

TEST(FrameBodyTest, StringOverLimitIsRefused) {
  Bytes b;
  const std::uint32_t n = (64u << 10) + 1;
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::byte>(n >> (8 * i)));
  b.resize(4 + n, std::byte{'a'});
  for (int i = 0; i < 4; ++i) b.push_back(std::byte{0});  // inline_limit
  auto d = decode_open_read(b);
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "exceeds the limit");
}

TEST(FrameBodyTest, NulInPathIsRefused) {
  OpenRead v = sample_open_read();
  v.path = std::string("a\0b", 3);
  auto d = decode_open_read(encoded(v));
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "NUL");

  OpenWrite w{sample_meta(1)};
  w.meta.resume_name = std::string("p\0", 2);
  auto dw = decode_open_write(encoded(w));
  ASSERT_FALSE(dw.ok());
  expect_corrupt(dw.error(), "NUL");
}

TEST(FrameBodyTest, InlineDataLongerThanRemainingIsRefused) {
  Bytes b = encoded(sample_open_reply());
  // inline_data length sits after u64 size, u32 mode, i64 mtime, u32 flags.
  b[24] = std::byte{6};
  auto d = decode_open_reply(b);
  ASSERT_FALSE(d.ok());
  expect_corrupt(d.error(), "truncated");
}

// ---------------------------------------------------------------- crypto

TEST(CryptoTest, KeyPairsAgree) {
  auto a = KeyPair::generate();
  auto b = KeyPair::generate();
  ASSERT_TRUE(a.ok()) << a.error().message();
  ASSERT_TRUE(b.ok()) << b.error().message();
  EXPECT_NE(a->public_key(), b->public_key());
  auto ab = a->agree(b->public_key());
  auto ba = b->agree(a->public_key());
  ASSERT_TRUE(ab.ok()) << ab.error().message();
  ASSERT_TRUE(ba.ok()) << ba.error().message();
  EXPECT_EQ(*ab, *ba);
  EXPECT_NE(*ab, (std::array<std::uint8_t, 32>{}));
}

TEST(CryptoTest, LowOrderPeerKeyIsRefused) {
  auto a = KeyPair::generate();
  ASSERT_TRUE(a.ok());
  const std::array<std::uint8_t, 32> zero{};  // the identity: shared secret would be 0
  auto s = a->agree(zero);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kCorrupt) << s.error().message();
}

TEST(CryptoTest, KeyPairMoves) {
  auto a = KeyPair::generate();
  auto peer = KeyPair::generate();
  ASSERT_TRUE(a.ok() && peer.ok());
  const auto pub = a->public_key();
  KeyPair moved = std::move(a).value();
  EXPECT_EQ(moved.public_key(), pub);
  EXPECT_TRUE(moved.agree(peer->public_key()).ok());
  moved = std::move(peer).value();
  EXPECT_NE(moved.public_key(), pub);
}

TEST(CryptoTest, DeriveKeysKnownAnswer) {
  // Expected values from an independent HKDF-SHA256 (Python hmac/hashlib):
  // salt = sha256("tok-123") || client_nonce || server_nonce.
  const auto shared = fill_array<32>(0);
  const auto cn = fill_array<16>(0xA0);
  const auto sn = fill_array<16>(0xB0);
  auto k = derive_keys(shared, "tok-123", cn, sn);
  ASSERT_TRUE(k.ok()) << k.error().message();
  EXPECT_EQ(Bytes(std::as_bytes(std::span(k->client_to_server)).begin(),
                  std::as_bytes(std::span(k->client_to_server)).end()),
            from_hex("70a007c8d05a04d2554a2af4a83688a2a3df15cce3e8fef477ebe17d7380a926"));
  EXPECT_EQ(Bytes(std::as_bytes(std::span(k->server_to_client)).begin(),
                  std::as_bytes(std::span(k->server_to_client)).end()),
            from_hex("76720e652eebcc61416275529ad36cf269bbfc93cc92b67c3edcce590d2e7439"));
}

TEST(CryptoTest, BothSidesDeriveTheSameDistinctKeys) {
  auto client = KeyPair::generate();
  auto server = KeyPair::generate();
  ASSERT_TRUE(client.ok() && server.ok());
  std::array<std::uint8_t, 16> cn{}, sn{};
  ASSERT_TRUE(random_bytes(cn).ok());
  ASSERT_TRUE(random_bytes(sn).ok());
  auto cs = client->agree(server->public_key());
  auto ss = server->agree(client->public_key());
  ASSERT_TRUE(cs.ok() && ss.ok());
  auto ck = derive_keys(*cs, "token", cn, sn);
  auto sk = derive_keys(*ss, "token", cn, sn);
  ASSERT_TRUE(ck.ok() && sk.ok());
  EXPECT_NE(ck->client_to_server, ck->server_to_client);
  EXPECT_EQ(ck->client_to_server, sk->client_to_server);
  EXPECT_EQ(ck->server_to_client, sk->server_to_client);
  // Every input matters.
  auto other_token = derive_keys(*cs, "tokem", cn, sn);
  auto swapped_nonces = derive_keys(*cs, "token", sn, cn);
  ASSERT_TRUE(other_token.ok() && swapped_nonces.ok());
  EXPECT_NE(other_token->client_to_server, ck->client_to_server);
  EXPECT_NE(swapped_nonces->client_to_server, ck->client_to_server);
}

TEST(CryptoTest, RandomBytes) {
  std::array<std::uint8_t, 32> a{}, b{};
  ASSERT_TRUE(random_bytes(a).ok());
  ASSERT_TRUE(random_bytes(b).ok());
  EXPECT_NE(a, b);
  EXPECT_TRUE(random_bytes({}).ok());
}

// A sender and a receiver sharing one direction's key.
struct CipherPair {
  FrameCipher tx;
  FrameCipher rx;
};
CipherPair make_pair_for(const std::array<std::uint8_t, 32>& key) {
  auto tx = FrameCipher::create(key);
  auto rx = FrameCipher::create(key);
  EXPECT_TRUE(tx.ok() && rx.ok());
  return {std::move(tx).value(), std::move(rx).value()};
}

TEST(CryptoTest, AesGcmKnownAnswer) {
  // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 14:
  // K = 0^256, IV = 0^96 (= counter 0), P = 0^128, no AAD.
  const std::array<std::uint8_t, 32> key{};
  auto tx = FrameCipher::create(key);
  ASSERT_TRUE(tx.ok());
  Bytes data(16, std::byte{0});
  std::array<std::byte, 16> tag{};
  ASSERT_TRUE(tx->seal({}, data, tag).ok());
  EXPECT_EQ(data, from_hex("cea7403d4d606b6e074ec5d3baf39d18"));
  EXPECT_EQ(Bytes(tag.begin(), tag.end()), from_hex("d0d1c8a799996bf0265b98b5d48ab919"));

  // Counter 1 (IV 01 00 .. 00), with AAD: from an independent AES-GCM
  // (Python cryptography), pinning the nonce construction.
  data = bytes_of("hello xfer");
  const Bytes aad = bytes_of("header");
  auto tx2 = FrameCipher::create(fill_array<32>(0));
  ASSERT_TRUE(tx2.ok());
  Bytes scratch;
  ASSERT_TRUE(tx2->seal({}, scratch, tag).ok());  // consumes counter 0
  ASSERT_TRUE(tx2->seal(aad, data, tag).ok());
  EXPECT_EQ(data, from_hex("8a49ee53cb8f94612f76"));
  EXPECT_EQ(Bytes(tag.begin(), tag.end()), from_hex("b83f73bdc9462dc480218c27d3b761f2"));
}

TEST(CryptoTest, SealOpenRoundTripAdvancesCounters) {
  auto [tx, rx] = make_pair_for(fill_array<32>(7));
  EXPECT_EQ(tx.counter(), 0u);
  for (int i = 0; i < 5; ++i) {
    const Bytes plain = bytes_of("frame payload number " + std::to_string(i));
    const auto header = encode_header(sample_header());
    Bytes data = plain;
    std::array<std::byte, 16> tag{};
    ASSERT_TRUE(tx.seal(header, data, tag).ok());
    EXPECT_NE(data, plain);
    auto s = rx.open(header, data, tag);
    ASSERT_TRUE(s.ok()) << s.error().message();
    EXPECT_EQ(data, plain);
    EXPECT_EQ(tx.counter(), static_cast<std::uint64_t>(i + 1));
    EXPECT_EQ(rx.counter(), static_cast<std::uint64_t>(i + 1));
  }
}

TEST(CryptoTest, SamePlaintextSealsDifferentlyPerFrame) {
  auto [tx, rx] = make_pair_for(fill_array<32>(9));
  Bytes a = bytes_of("same"), b = bytes_of("same");
  std::array<std::byte, 16> ta{}, tb{};
  ASSERT_TRUE(tx.seal({}, a, ta).ok());
  ASSERT_TRUE(tx.seal({}, b, tb).ok());
  EXPECT_NE(a, b);
  EXPECT_NE(ta, tb);
}

TEST(CryptoTest, EmptyPayloadIsAuthenticated) {
  auto [tx, rx] = make_pair_for(fill_array<32>(3));
  const auto header = encode_header(sample_header());
  Bytes data;
  std::array<std::byte, 16> tag{};
  ASSERT_TRUE(tx.seal(header, data, tag).ok());
  auto bad_header = header;
  bad_header[8] ^= std::byte{1};
  auto s = rx.open(bad_header, data, tag);
  ASSERT_FALSE(s.ok());
  expect_corrupt(s.error(), "data frame authentication failed");
}

// Seals one frame, lets `tamper` change it, and expects open to refuse it.
void expect_tamper_detected(const std::function<void(std::array<std::byte, kHeaderSize>&, Bytes&,
                                                     std::array<std::byte, 16>&)>& tamper) {
  auto [tx, rx] = make_pair_for(fill_array<32>(5));
  auto header = encode_header(sample_header());
  const Bytes plain = bytes_of("some secret file bytes");
  Bytes data = plain;
  std::array<std::byte, 16> tag{};
  ASSERT_TRUE(tx.seal(header, data, tag).ok());
  tamper(header, data, tag);
  auto s = rx.open(header, data, tag);
  ASSERT_FALSE(s.ok());
  expect_corrupt(s.error(), "data frame authentication failed");
  EXPECT_EQ(data, Bytes(data.size(), std::byte{0}));  // no unauthenticated plaintext
  EXPECT_EQ(rx.counter(), 1u);                        // a failed open consumes the counter
}

TEST(CryptoTest, TamperedCiphertextIsRefused) {
  for (std::size_t i = 0; i < 22; ++i) {
    expect_tamper_detected([i](auto&, Bytes& data, auto&) { data[i] ^= std::byte{0x01}; });
  }
}

TEST(CryptoTest, TamperedTagIsRefused) {
  for (std::size_t i = 0; i < 16; ++i) {
    expect_tamper_detected([i](auto&, auto&, auto& tag) { tag[i] ^= std::byte{0x80}; });
  }
}

TEST(CryptoTest, TamperedAadIsRefused) {
  for (std::size_t i = 0; i < kHeaderSize; ++i) {
    expect_tamper_detected([i](auto& header, auto&, auto&) { header[i] ^= std::byte{0x04}; });
  }
}

TEST(CryptoTest, TruncatedCiphertextIsRefused) {
  expect_tamper_detected([](auto&, Bytes& data, auto&) { data.pop_back(); });
}

TEST(CryptoTest, WrongKeyIsRefused) {
  auto tx = FrameCipher::create(fill_array<32>(1));
  auto rx = FrameCipher::create(fill_array<32>(2));
  ASSERT_TRUE(tx.ok() && rx.ok());
  Bytes data = bytes_of("x");
  std::array<std::byte, 16> tag{};
  ASSERT_TRUE(tx->seal({}, data, tag).ok());
  auto s = rx->open({}, data, tag);
  ASSERT_FALSE(s.ok());
  expect_corrupt(s.error());
}

TEST(CryptoTest, OutOfOrderOpenFails) {
  auto [tx, rx] = make_pair_for(fill_array<32>(11));
  Bytes first = bytes_of("first"), second = bytes_of("second");
  std::array<std::byte, 16> t1{}, t2{};
  ASSERT_TRUE(tx.seal({}, first, t1).ok());
  ASSERT_TRUE(tx.seal({}, second, t2).ok());
  // The receiver expects counter 0 but gets the frame sealed with counter 1.
  auto s = rx.open({}, second, t2);
  ASSERT_FALSE(s.ok());
  expect_corrupt(s.error());
  // The failed open consumed counter 0: the stream is now out of step for good.
  EXPECT_EQ(rx.counter(), 1u);
  EXPECT_FALSE(rx.open({}, first, t1).ok());
}

TEST(CryptoTest, ReplayedFrameFails) {
  auto [tx, rx] = make_pair_for(fill_array<32>(12));
  Bytes data = bytes_of("once");
  std::array<std::byte, 16> tag{};
  ASSERT_TRUE(tx.seal({}, data, tag).ok());
  const Bytes sealed = data;
  ASSERT_TRUE(rx.open({}, data, tag).ok());
  data = sealed;
  EXPECT_FALSE(rx.open({}, data, tag).ok());
}

TEST(CryptoTest, CipherMoves) {
  auto [tx, rx] = make_pair_for(fill_array<32>(13));
  Bytes data = bytes_of("moved");
  std::array<std::byte, 16> tag{};
  ASSERT_TRUE(tx.seal({}, data, tag).ok());
  FrameCipher moved = std::move(rx);
  ASSERT_TRUE(moved.open({}, data, tag).ok());
  EXPECT_EQ(data, bytes_of("moved"));
  EXPECT_EQ(moved.counter(), 1u);
  // A moved-from cipher refuses to work instead of crashing.
  auto s = rx.seal({}, data, tag);  // NOLINT(bugprone-use-after-move): tested on purpose
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kInternal);
}

// A whole sealed frame as a connection would send it: header as AAD,
// payload_hash 0, length counting the tag.
TEST(ProtocolTest, SealedFrameEndToEnd) {
  auto client = KeyPair::generate();
  auto server = KeyPair::generate();
  ASSERT_TRUE(client.ok() && server.ok());
  Hello hello = sample_hello();
  hello.public_key = client->public_key();
  HelloOk ok = sample_hello_ok();
  ok.public_key = server->public_key();
  // Each side decodes the other's body and derives the keys.
  auto hello_rx = decode_hello(encoded(hello));
  auto ok_rx = decode_hello_ok(encoded(ok));
  ASSERT_TRUE(hello_rx.ok() && ok_rx.ok());
  auto cs = client->agree(ok_rx->public_key);
  auto ss = server->agree(hello_rx->public_key);
  ASSERT_TRUE(cs.ok() && ss.ok());
  auto ck = derive_keys(*cs, hello.data_token, hello.nonce, ok_rx->nonce);
  auto sk = derive_keys(*ss, hello_rx->data_token, hello_rx->nonce, ok.nonce);
  ASSERT_TRUE(ck.ok() && sk.ok());
  auto tx = FrameCipher::create(ck->client_to_server);
  auto rx = FrameCipher::create(sk->client_to_server);
  ASSERT_TRUE(tx.ok() && rx.ok());

  const Bytes file = bytes_of("the bytes of a small file");
  FrameHeader h;
  h.type = FrameType::kData;
  h.flags = kFlagSealed;
  h.id = 3;
  h.offset = 4096;
  h.length = static_cast<std::uint32_t>(file.size() + kTagSize);
  const auto header = encode_header(h);
  Bytes wire(header.begin(), header.end());
  wire.insert(wire.end(), file.begin(), file.end());
  wire.resize(wire.size() + kTagSize);
  auto body = std::span(wire).subspan(kHeaderSize, file.size());
  auto tag = std::span(wire).last<kTagSize>();
  ASSERT_TRUE(tx->seal(std::span(wire).first(kHeaderSize), body, tag).ok());

  auto got = decode_header(wire);
  ASSERT_TRUE(got.ok()) << got.error().message();
  EXPECT_EQ(got->payload_hash, 0u);
  ASSERT_EQ(wire.size(), kHeaderSize + got->length);
  auto payload = std::span(wire).subspan(kHeaderSize, got->length - kTagSize);
  auto s = rx->open(std::span(wire).first(kHeaderSize), payload,
                    std::span<const std::byte, kTagSize>(std::span(wire).last<kTagSize>()));
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ(Bytes(payload.begin(), payload.end()), file);
}

TEST(Sockets, BuffersAreTheConnectionsShareOfTheWindow) {
  constexpr std::size_t kCap = std::size_t{64} << 20;
  EXPECT_EQ(path_socket_buffer(0, 4, kCap), 0u) << "no round trip known: autotuning";
  EXPECT_EQ(path_socket_buffer(1, 4, kCap), kLoopbackSocketBuffer) << "never below 4 MiB";
  // 2 × 150 ms × 2.5 Gbit/s shared by 4 connections.
  EXPECT_EQ(path_socket_buffer(150, 4, kCap), 23'437'500u);
  EXPECT_EQ(path_socket_buffer(600, 1, kCap), kCap);
}

TEST(Sockets, CongestionControlIsSetOrTheKernelsAreListed) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(set_congestion_control(fd, "reno").ok());  // always built in
  char name[16] = {};
  socklen_t len = sizeof(name);
  ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len), 0);
  EXPECT_STREQ(name, "reno");
  auto st = set_congestion_control(fd, "no-such-cc");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("this kernel has: "), std::string::npos)
      << st.error().message();
  EXPECT_NE(st.error().message().find("reno"), std::string::npos) << st.error().message();
  ::close(fd);
}

}  // namespace
}  // namespace xfer::protocol
