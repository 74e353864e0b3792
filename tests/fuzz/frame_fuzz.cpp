// libFuzzer target for the data-channel frame codec (src/protocol/frame.cpp).
//
// The first input byte picks the decoder, the rest is its input. Any input
// may be refused, but a decoder must never crash, read out of bounds or
// return a value that does not survive a round trip: for every successful
// decode, encode(x) must reproduce the input bytes exactly (the encoding is
// canonical) and decode(encode(x)) must give back x. Built and run by
// scripts/fuzz.sh.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <tuple>
#include <vector>

#include "xfer/protocol/frame.hpp"

namespace {

using namespace xfer::protocol;
using Bytes = std::vector<std::byte>;
using In = std::span<const std::byte>;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "frame_fuzz: round trip mismatch: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

bool same_bytes(In a, In b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

// decode -> encode must give the input back, and decode again the same value.
template <typename T, typename Decode>
void round_trip(In in, Decode decode, const char* name) {
  auto first = decode(in);
  if (!first.ok()) {
    check(first.error().code == xfer::ErrorCode::kCorrupt, name);
    return;
  }
  Bytes out;
  encode(*first, out);
  check(same_bytes(out, in), name);
  auto second = decode(out);
  check(second.ok(), name);
  check(*second == *first, name);
}

void fuzz_header(In in) {
  auto h = decode_header(in);
  if (!h.ok()) {
    check(h.error().code == xfer::ErrorCode::kCorrupt, "header error code");
    return;
  }
  const auto out = encode_header(*h);
  check(same_bytes(out, in.first(kHeaderSize)), "header bytes");
  auto again = decode_header(out);
  check(again.ok() && *again == *h, "header fields");
}

void fuzz_put_file(In in) {
  auto v = decode_put_file(in);
  if (!v.ok()) {
    check(v.error().code == xfer::ErrorCode::kCorrupt, "PutFile error code");
    return;
  }
  check(v->data.size() == v->meta.size, "PutFile data size");
  PutFile p;
  p.meta = v->meta;
  p.data.assign(v->data.begin(), v->data.end());
  Bytes out;
  encode(p, out);
  check(same_bytes(out, in), "PutFile bytes");
  Bytes meta_only;
  encode_put_file_meta(p.meta, meta_only);
  check(same_bytes(meta_only, In(out).first(meta_only.size())), "PutFile meta prefix");
  auto again = decode_put_file(out);
  check(again.ok() && again->meta == p.meta && same_bytes(again->data, p.data), "PutFile fields");
}

// A whole frame as a receiver sees it: header, then a payload of `length`
// bytes decoded by the body decoder its type calls for.
void fuzz_frame(In in) {
  auto h = decode_header(in);
  if (!h.ok()) return;
  fuzz_header(in);
  In payload = in.subspan(kHeaderSize);
  if (payload.size() < h->length) return;
  payload = payload.first(h->length);
  if ((h->flags & kFlagSealed) != 0) return;  // ciphertext: nothing to decode
  switch (h->type) {
    case FrameType::kHello:
      round_trip<Hello>(payload, decode_hello, "frame Hello");
      break;
    case FrameType::kHelloOk:
      round_trip<HelloOk>(payload, decode_hello_ok, "frame HelloOk");
      break;
    case FrameType::kError:
      round_trip<ErrorBody>(payload, decode_error, "frame Error");
      break;
    case FrameType::kOpenWrite:
      round_trip<OpenWrite>(payload, decode_open_write, "frame OpenWrite");
      break;
    case FrameType::kOpenOk:
      round_trip<OpenReply>(payload, decode_open_reply, "frame OpenReply");
      break;
    case FrameType::kOpenRead:
      round_trip<OpenRead>(payload, decode_open_read, "frame OpenRead");
      break;
    case FrameType::kPutFile:
      fuzz_put_file(payload);
      break;
    case FrameType::kCopyBasis:
      round_trip<CopyBasis>(payload, decode_copy_basis, "frame CopyBasis");
      break;
    default:
      (void)payload_hash(payload);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // Copy the input so AddressSanitizer catches a read even one byte past it.
  const Bytes buf(reinterpret_cast<const std::byte*>(data + 1),
                  reinterpret_cast<const std::byte*>(data + size));
  const In in(buf);
  switch (data[0] % 10) {
    case 0:
      fuzz_header(in);
      break;
    case 1:
      round_trip<Hello>(in, decode_hello, "Hello");
      break;
    case 2:
      round_trip<HelloOk>(in, decode_hello_ok, "HelloOk");
      break;
    case 3:
      round_trip<ErrorBody>(in, decode_error, "ErrorBody");
      break;
    case 4:
      round_trip<OpenWrite>(in, decode_open_write, "OpenWrite");
      break;
    case 5:
      round_trip<OpenRead>(in, decode_open_read, "OpenRead");
      break;
    case 6:
      round_trip<OpenReply>(in, decode_open_reply, "OpenReply");
      break;
    case 7:
      fuzz_put_file(in);
      break;
    case 8:
      fuzz_frame(in);
      break;
    case 9:
      round_trip<CopyBasis>(in, decode_copy_basis, "CopyBasis");
      break;
  }
  return 0;
}
