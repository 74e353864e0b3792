#pragma once
// Limits on what xfer handles, shared by the client, the engine and xferd.
// Sizes that arrive from a peer (a listing, an OPEN_WRITE, an open reply)
// are checked against them before anything is allocated from them.

#include <cstdint>

namespace xfer {

// The largest file xfer copies: 16 TiB (ext4's own limit). The engine's
// per-file bookkeeping (piece hashes for --verify, the checkpoint's chunk
// bitmap and hashes) grows with the size, about 16 bytes per MiB; at this
// size that is 256 MiB, and a peer claiming an exabyte file must get a
// clear error, not an allocation failure.
inline constexpr std::uint64_t kMaxFileSize = std::uint64_t{16} << 40;

// The rate (bytes/s) that what is in flight on a path is sized for: the
// engine keeps 2 × RTT × kWindowRate of calls outstanding, and data sockets
// get their share of it as buffers. 2.5 Gbit/s covers the links xfer is
// measured on with room; only memory is spent above a link's real rate.
inline constexpr double kWindowRate = 2.5e9 / 8;

}  // namespace xfer
