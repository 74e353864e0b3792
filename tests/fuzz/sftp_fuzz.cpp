// libFuzzer target for what an SFTP server sends (src/backend/sftp/
// protocol.cpp): a byte stream cut into packets by the Framer, at split
// points the input chooses, and each packet parsed as a reply. None may
// crash, read out of bounds or allocate from a length it did not check;
// what parses keeps the protocol's bounds (a handle of 1-256 bytes, data of
// at most kMaxData, packets of at most kMaxPacket). Built by this build's
// fuzz rules (tests/fuzz/CMakeLists.txt), run by run_fuzz.sh.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "backend/sftp/protocol.hpp"

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "sftp_fuzz: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace xfer::sftp;
  if (size == 0) return 0;
  // The first byte: how many bytes each feed() carries (1-256).
  const std::size_t step = static_cast<std::size_t>(data[0]) + 1;
  const auto* p = reinterpret_cast<const std::byte*>(data + 1);
  const std::size_t n = size - 1;
  // The stream as frames, and the whole input as one packet too.
  Framer f;
  for (std::size_t at = 0; at < n; at += step) {
    f.feed(std::span(p + at, std::min(step, n - at)));
    while (auto packet = f.next()) {
      if (!packet->ok()) break;
      check(packet->value().size() <= kMaxPacket, "a packet over kMaxPacket");
      (void)parse_reply(packet->value());
    }
  }
  auto r = parse_reply(std::span(p, n));
  if (r.ok()) {
    if (r->type == Type::kHandle) {
      check(!r->bytes.empty() && r->bytes.size() <= kMaxHandle, "a handle out of bounds");
    }
    if (r->type == Type::kData) check(r->bytes.size() <= kMaxData, "data over kMaxData");
    check(r->names.size() <= n / 12 + 1, "more names than the packet holds");
    if (r->type == Type::kExtendedReply) (void)parse_limits(r->bytes);  // limits@openssh.com
  }
  return 0;
}
