#pragma once
// The data paths of an xfer session: which of the server's data addresses
// the client connects to, and from which of its own addresses (--bind).
// A server with several NICs advertises one data address per NIC; each
// (local, server) pair is a path, and the session's connections are dealt
// over the paths in turn.
//
// The advertised addresses come from the server and are hostile input:
// plan_data_paths() is their one validation (count, length, numeric
// unicast IP literals only — a peer never makes the client resolve a name
// or reach its own loopback —, port 1..65535, duplicates dropped) before
// anything connects to them.
//
// Threading: pure functions.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "xfer/core/result.hpp"

namespace xfer {

// Data addresses taken from one server.
inline constexpr std::size_t kMaxDataPaths = 16;

struct DataPath {
  std::string local;  // address to leave from; "" = the kernel's choice (routes)
  std::string host;   // the server's data address (numeric)
  std::uint16_t port = 0;
  std::string name;  // "host:port", or "local>host:port" when bound
};

// Pairs the advertised addresses with the local ones (--bind, checked by
// parse_address_list): path i leaves from
// local[i % L] to advertised[i % A], max(L, A) paths (A when no --bind).
// A wildcard address ("0.0.0.0", "[::]") stands for `control_host`, the
// host the control channel reached. Refused: anything but a numeric
// unicast address; loopback unless the control channel itself went over
// loopback (`control_is_loopback`: a remote server must not make the
// client probe its own local services); link-local (no zone). A --bind
// address of another family than its server address is the user's error.
Result<std::vector<DataPath>> plan_data_paths(const std::vector<std::string>& advertised,
                                              const std::string& control_host,
                                              bool control_is_loopback,
                                              const std::vector<std::string>& local);

}  // namespace xfer
