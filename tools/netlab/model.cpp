// The per-direction link model (model.hpp) and tc-style unit parsing. Pure
// functions and one seeded state machine; no I/O, no threads.

#include "model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

namespace netlab {
namespace {

xfer::Error bad_value(std::string_view what, std::string_view text, std::string_view why) {
  return xfer::make_error(xfer::ErrorCode::kInvalidArgument, fmt::format("parse {}", what), text,
                          why);
}

// Splits "12.5mbit" into 12.5 and "mbit" (lower-cased). Rejects negatives,
// NaN and empty numbers.
xfer::Result<std::pair<double, std::string>> number_and_unit(std::string_view what,
                                                             std::string_view text) {
  double number = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, number);
  if (ec != std::errc{} || !std::isfinite(number)) return bad_value(what, text, "not a number");
  if (number < 0) return bad_value(what, text, "negative");
  std::string unit(p, end);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return std::pair{number, unit};
}

template <typename T>
xfer::Result<T> checked(std::string_view what, std::string_view text, double v) {
  if (!(v < static_cast<double>(std::numeric_limits<T>::max()))) {
    return bad_value(what, text, "too large");
  }
  return static_cast<T>(std::llround(v));
}

}  // namespace

std::uint64_t DirectionParams::default_queue_bytes() const {
  const double bdp =
      static_cast<double>(rate_bps) / 8.0 * 2.0 * static_cast<double>(delay_ns) / 1e9;
  return std::max<std::uint64_t>(64 * 1024, static_cast<std::uint64_t>(bdp));
}

xfer::Result<std::uint64_t> parse_rate(std::string_view text) {
  XFER_ASSIGN_OR_RETURN(auto nu, number_and_unit("rate", text));
  auto [n, unit] = nu;
  // tc's units: bit, kbit, mbit, gbit, tbit (powers of 1000) and bps, kbps,
  // mbps, gbps (bytes per second).
  static constexpr std::pair<const char*, double> kUnits[] = {
      {"bit", 1}, {"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9}, {"tbit", 1e12},
      {"bps", 8}, {"kbps", 8e3}, {"mbps", 8e6}, {"gbps", 8e9}, {"", 1}};
  for (const auto& [name, mult] : kUnits) {
    if (unit == name) return checked<std::uint64_t>("rate", text, n * mult);
  }
  return bad_value("rate", text, "unknown unit (use bit, kbit, mbit, gbit, or bps, kbps, mbps)");
}

xfer::Result<std::int64_t> parse_time(std::string_view text) {
  XFER_ASSIGN_OR_RETURN(auto nu, number_and_unit("time", text));
  auto [n, unit] = nu;
  static constexpr std::pair<const char*, double> kUnits[] = {
      {"ns", 1},    {"us", 1e3},   {"ms", 1e6},   {"s", 1e9},
      {"sec", 1e9}, {"min", 60e9}, {"h", 3600e9}, {"", 1e3}};  // tc: a bare number is µs
  for (const auto& [name, mult] : kUnits) {
    if (unit == name) {
      XFER_ASSIGN_OR_RETURN(auto ns, checked<std::int64_t>("time", text, n * mult));
      if (ns > std::int64_t{86400} * 1'000'000'000) return bad_value("time", text, "over a day");
      return ns;
    }
  }
  return bad_value("time", text, "unknown unit (use ns, us, ms or s)");
}

xfer::Result<std::uint64_t> parse_bytes(std::string_view text) {
  XFER_ASSIGN_OR_RETURN(auto nu, number_and_unit("size", text));
  auto [n, unit] = nu;
  static constexpr std::pair<const char*, double> kUnits[] = {
      {"", 1},        {"b", 1},        {"k", 1024},        {"kb", 1024},
      {"m", 1048576}, {"mb", 1048576}, {"g", 1073741824.}, {"gb", 1073741824.}};
  for (const auto& [name, mult] : kUnits) {
    if (unit == name) return checked<std::uint64_t>("size", text, n * mult);
  }
  return bad_value("size", text, "unknown unit (use b, kb, mb or gb)");
}

xfer::Result<double> parse_probability(std::string_view text) {
  XFER_ASSIGN_OR_RETURN(auto nu, number_and_unit("probability", text));
  auto [n, unit] = nu;
  if (unit == "%")
    n /= 100;
  else if (!unit.empty())
    return bad_value("probability", text, "use a share (0.01) or a percent (1%)");
  if (n > 1) return bad_value("probability", text, "over 100%");
  return n;
}

xfer::Status set_param(DirectionParams& p, std::string_view key, std::string_view value) {
  auto prob = [&](double& field) -> xfer::Status {
    XFER_ASSIGN_OR_RETURN(field, parse_probability(value));
    return {};
  };
  auto time = [&](std::int64_t& field) -> xfer::Status {
    XFER_ASSIGN_OR_RETURN(auto ns, parse_time(value));
    // Frames wait in memory for this long: 10 s at most (and 1 s of delay
    // at 1 Gbit/s already fills kMaxInflightBytes).
    if (ns > std::int64_t{10} * 1'000'000'000) return bad_value(key, value, "over 10 s");
    field = ns;
    return {};
  };
  if (key == "rate") {
    XFER_ASSIGN_OR_RETURN(p.rate_bps, parse_rate(value));
    return {};
  }
  if (key == "delay") return time(p.delay_ns);
  if (key == "jitter") return time(p.jitter_ns);
  if (key == "reorder_gap") return time(p.reorder_gap_ns);
  if (key == "loss") return prob(p.loss);
  if (key == "ge_p") return prob(p.ge_p);
  if (key == "ge_r") return prob(p.ge_r);
  if (key == "ge_loss_bad") return prob(p.ge_loss_bad);
  if (key == "ge_loss_good") return prob(p.ge_loss_good);
  if (key == "reorder") return prob(p.reorder);
  if (key == "duplicate") return prob(p.duplicate);
  if (key == "queue") {
    XFER_ASSIGN_OR_RETURN(p.queue_bytes, parse_bytes(value));
    return {};
  }
  if (key == "up") {
    if (value == "1" || value == "true")
      p.up = true;
    else if (value == "0" || value == "false")
      p.up = false;
    else
      return bad_value("up", value, "use 1 or 0");
    return {};
  }
  return xfer::make_error(xfer::ErrorCode::kInvalidArgument, "set", key,
                          "unknown link setting (rate, delay, jitter, loss, ge_p, ge_r, "
                          "ge_loss_bad, ge_loss_good, reorder, reorder_gap, duplicate, queue, up)");
}

std::uint64_t DirectionModel::backlog_bytes(std::int64_t now_ns) const {
  if (params_.rate_bps == 0 || link_free_at_ns_ <= now_ns) return 0;
  const auto bits = static_cast<long double>(link_free_at_ns_ - now_ns) *
                    static_cast<long double>(params_.rate_bps) / 1e9L;
  return static_cast<std::uint64_t>(std::llround(bits / 8));
}

Verdict DirectionModel::admit(std::int64_t now_ns, std::uint32_t frame_bytes) {
  Verdict v;
  ++counters_.frames_in;
  counters_.bytes_in += frame_bytes;
  if (!params_.up) {
    ++counters_.cut;
    v.fate = Fate::kCut;
    return v;
  }
  // Loss first: a lost frame never takes a place in the queue (as netem).
  bool lost = chance(params_.loss);
  if (params_.ge_p > 0) {
    ge_bad_ = ge_bad_ ? !chance(params_.ge_r) : chance(params_.ge_p);
    lost = lost || chance(ge_bad_ ? params_.ge_loss_bad : params_.ge_loss_good);
  }
  if (lost) {
    ++counters_.lost;
    v.fate = Fate::kLost;
    return v;
  }
  std::int64_t leaves_ns = now_ns;
  if (params_.rate_bps != 0) {
    if (backlog_bytes(now_ns) + frame_bytes > params_.effective_queue_bytes()) {
      ++counters_.queue_full;
      v.fate = Fate::kQueueFull;
      return v;
    }
    const auto tx_ns = static_cast<std::int64_t>(std::llround(
        static_cast<double>(frame_bytes) * 8e9 / static_cast<double>(params_.rate_bps)));
    link_free_at_ns_ = std::max(link_free_at_ns_, now_ns) + tx_ns;
    leaves_ns = link_free_at_ns_;
  }
  std::int64_t at = leaves_ns + params_.delay_ns;
  if (params_.jitter_ns > 0) {
    at += static_cast<std::int64_t>((uniform_(rng_) * 2 - 1) *
                                    static_cast<double>(params_.jitter_ns));
  }
  if (chance(params_.reorder)) {
    ++counters_.reordered;
    v.in_order = false;
    at = std::max(at, now_ns) + params_.reorder_gap_ns;
  } else {
    at = std::max({at, now_ns, last_in_order_ns_});  // jitter never reorders
    last_in_order_ns_ = at;
  }
  v.deliver_at_ns = at;
  if (chance(params_.duplicate)) {
    ++counters_.duplicated;
    v.duplicate = true;
  }
  return v;
}

}  // namespace netlab
