#pragma once
// Human sizes: "16M" -> 16 MiB, and back ("1.5 GiB").

#include <cstdint>
#include <string>
#include <string_view>

#include "xfer/core/result.hpp"

namespace xfer {

// Accepts a decimal number with an optional K/M/G/T suffix (powers of 1024,
// optional trailing "B" or "iB"). Rejects negatives, garbage and overflow.
Result<std::uint64_t> parse_size(std::string_view text);
// A rate in bytes per second, read as rsync and rclone read --bwlimit: a
// bare number is KiB/s ("500"); K/M/G/T are powers of 1024 bytes ("30M",
// "1.5GiB", "64KB/s"); "B" is bytes ("30000B"); bit forms are decimal, as
// network links are quoted ("800Mbit", "1Gbit/s", "100Mbps", "512kbit").
// A lone lower-case "b" after a unit ("100Mb") is refused as ambiguous.
Result<std::uint64_t> parse_rate(std::string_view text);
std::string format_bytes(double bytes);       // "12.3 MiB"
std::string format_duration(double seconds);  // "1m02s", "3.4s"

}  // namespace xfer
